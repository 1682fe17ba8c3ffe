"""Each rule of shared/rules.py and shared/regions.py gives the same answer in Python and in SQL.

Generated organization rows (every status, kind and unknown scope; facts in and out of step with
each other) and region codes go to Postgres as literal rows; each SQL form is evaluated there and
compared with the Python form over the same row.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from shared import regions, rules
from shared.events import OrgFacts

STATUSES = ["active", "zombie", "closed", "deregistered", "relocated"]
CODES = ["430723000000", "430723100000", "430723100001", "441900003000", "441900003001", "429004000000"]

organizations = st.fixed_dictionaries(
    {
        "region_code": st.sampled_from(CODES),
        "kind": st.sampled_from(rules.ORG_KINDS),
        "area_id": st.one_of(st.none(), st.uuids()),
        "industry_code": st.sampled_from([None, "C1310", "M"]),
        "sector": st.sampled_from([None, "law_firm", "private_school"]),
        "status": st.sampled_from(STATUSES),
        "in_scope": st.sampled_from([True, False, None]),
        "formal_members": st.integers(min_value=0, max_value=6),
        "party_org_id": st.one_of(st.none(), st.uuids()),
        # Independent of party_org_id on purpose: a formation without a party organization counts for nothing.
        "formation": st.one_of(st.none(), st.sampled_from(rules.FORMATIONS)),
        "instructed": st.booleans(),
        "has_trade_union": st.booleans(),
        "has_youth_league": st.booleans(),
        "charter_includes_party_building": st.booleans(),
    }
)
# (name, SQL type): the organization table's columns the rules read, and the covering formation.
COLUMNS = [
    ("region_code", "text"),
    ("kind", "text"),
    ("area_id", "uuid"),
    ("industry_code", "text"),
    ("sector", "text"),
    ("status", "text"),
    ("in_scope", "boolean"),
    ("formal_members", "int"),
    ("party_org_id", "uuid"),
    ("formation", "text"),
    ("instructed", "boolean"),
    ("has_trade_union", "boolean"),
    ("has_youth_league", "boolean"),
    ("charter_includes_party_building", "boolean"),
]


def _python(row: dict[str, Any]) -> tuple[Any, ...]:
    facts = rules.org_facts(row, row["formation"])
    return (
        rules.counted(row["status"], row["in_scope"]),
        rules.org_covered(facts),
        rules.group_org(row["has_trade_union"], row["has_youth_league"]),
        rules.work_covered(facts),
        rules.single_eligible(row["formal_members"]),
        rules.single_formed(facts),
        facts.model_dump(mode="json"),
    )


SQL_FORMS = [
    rules.counted_sql("o."),
    rules.org_covered_sql("o."),
    rules.group_org_sql("o."),
    rules.work_covered_sql("o."),
    rules.single_eligible_sql("o."),
    rules.single_formed_sql("o.", "o.formation"),
    rules.org_facts_sql("o.", "o.formation"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(organizations, min_size=1, max_size=30))
async def test_organization_rules_agree(db: Any, rows: list[dict[str, Any]]) -> None:
    values = ", ".join(
        "(" + ", ".join([str(i), *(f"CAST(:{name}{i} AS {kind})" for name, kind in COLUMNS)]) + ")"
        for i in range(len(rows))
    )
    params = {f"{name}{i}": row[name] for i, row in enumerate(rows) for name, _ in COLUMNS}
    names = ", ".join(name for name, _ in COLUMNS)
    async with db.session() as session:
        found = await session.execute(
            text(f"SELECT i, {', '.join(SQL_FORMS)} FROM (VALUES {values}) AS o(i, {names}) ORDER BY i"), params
        )
        answers = [tuple(r[1:]) for r in found]
    sql = [(*a[:-1], json.loads(a[-1]) if isinstance(a[-1], str) else a[-1]) for a in answers]
    assert sql == [_python(r) for r in rows]


def test_the_facts_projection_fills_every_fact() -> None:
    row = {"region_code": CODES[2], "kind": "enterprise", "status": "active", "party_org_id": uuid.uuid4()}
    facts = rules.org_facts(row, "single")
    assert facts == OrgFacts(
        region_code=CODES[2],
        kind="enterprise",
        area_id=None,
        industry_code=None,
        sector=None,
        status="active",
        in_scope=None,
        formal_members=0,
        covered=True,
        formation="single",
        instructed=False,
        group_org=False,
        charter=False,
    )
    assert rules.org_facts({**row, "party_org_id": None}, "single").formation is None


segments = st.tuples(*(st.sampled_from(["0" * n, "1".zfill(n), "4" * n, "9" * n]) for n in (2, 2, 2, 3, 3)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(codes=st.lists(segments.map("".join), min_size=1, max_size=30))
async def test_region_rules_agree(db: Any, codes: list[str]) -> None:
    values = ", ".join(f"({i}, CAST(:c{i} AS text))" for i in range(len(codes)))
    params = {f"c{i}": code for i, code in enumerate(codes)}
    async with db.session() as session:
        found = await session.execute(
            text(
                f"SELECT i, {regions.prefix_sql('r.code')}, {regions.township_sql('r.code')}, "
                f"ARRAY({regions.ancestors_sql('r.code')} ORDER BY 1) "
                f"FROM (VALUES {values}) AS r(i, code) ORDER BY i"
            ),
            params,
        )
        answers = [tuple(r[1:]) for r in found]
    assert answers == [(regions.prefix(c), regions.township_of(c), sorted(regions.ancestors(c))) for c in codes]
