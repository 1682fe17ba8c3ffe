"""The scope rule in Python and in SQL give the same answer for every input, unknowns included."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from shared.scope import ScopeCriteria, derive_in_scope, in_scope_sql

CRITERIA = [
    ScopeCriteria(enterprise_min_employees=10, social_org_min_staff=30, social_org_levels=("national", "province")),
    ScopeCriteria(enterprise_min_employees=0, social_org_min_staff=5, social_org_levels=()),
]
organizations = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["enterprise", "social_org", "individual_business"]),
        "employees": st.one_of(st.none(), st.integers(min_value=0, max_value=60)),
        "has_fixed_premises": st.sampled_from([True, False, None]),
        "has_business_activity": st.sampled_from([True, False, None]),
        "social_org_level": st.sampled_from([None, "national", "province", "city", "county"]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(organizations, min_size=1, max_size=40), which=st.integers(0, len(CRITERIA) - 1))
async def test_python_and_sql_agree(db: Any, rows: list[dict[str, Any]], which: int) -> None:
    criteria = CRITERIA[which]
    values = ", ".join(
        f"({i}, :k{i}, CAST(:e{i} AS int), CAST(:p{i} AS boolean), CAST(:a{i} AS boolean), CAST(:l{i} AS text))"
        for i in range(len(rows))
    )
    params: dict[str, Any] = {}
    for i, r in enumerate(rows):
        params |= {
            f"k{i}": r["kind"],
            f"e{i}": r["employees"],
            f"p{i}": r["has_fixed_premises"],
            f"a{i}": r["has_business_activity"],
            f"l{i}": r["social_org_level"],
        }
    async with db.session() as session:
        found = await session.execute(
            text(
                f"SELECT i, {in_scope_sql(criteria, 'o.')} FROM (VALUES {values}) "
                "AS o(i, kind, employees, has_fixed_premises, has_business_activity, social_org_level) ORDER BY i"
            ),
            params,
        )
        sql_answers = [r[1] for r in found]
    assert sql_answers == [derive_in_scope(r, criteria) for r in rows]


def test_a_campaign_overrides_only_what_it_names() -> None:
    from shared.settings import get_settings

    base = ScopeCriteria.from_settings(get_settings())
    campaign = ScopeCriteria.from_settings(get_settings(), {"enterprise_min_employees": 20, "social_org_levels": None})
    assert campaign.enterprise_min_employees == 20 and campaign.social_org_levels == base.social_org_levels
    org = {"kind": "enterprise", "employees": 15, "has_fixed_premises": True, "has_business_activity": True}
    assert derive_in_scope(org, base) is True and derive_in_scope(org, campaign) is False
