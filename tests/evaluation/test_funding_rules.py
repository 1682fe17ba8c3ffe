"""The funding engine on its own: every seed example to the yuan, and the budget cap."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.evaluation.funding.engine import (
    SEED_RULE_SETS,
    FundingOptions,
    Line,
    PartyOrgFacts,
    RuleList,
    compute_lines,
    months_in_year,
    option_assumptions,
    scale_to_cap,
)

YEAR = 2026


def rules(seed: str) -> Any:
    return RuleList.model_validate({"rules": SEED_RULE_SETS[seed]["rules"]}).rules


def facts(**fields: Any) -> PartyOrgFacts:
    values: dict[str, Any] = {
        "party_org_id": uuid.uuid4(),
        "region_code": "430723100001",
        "name": "测试党支部",
        "level": "branch",
        "formal_members": 0,
        "probationary_members": 0,
        "established_on": date(2020, 5, 1),
    }
    values.update(fields)
    return PartyOrgFacts(**values)


def amounts(party_org: PartyOrgFacts, seed: str, year: int = YEAR) -> dict[str, int]:
    return {line.rule_code: line.amount for line in compute_lines(party_org, rules(seed), year)}


@pytest.mark.parametrize(("stars", "subsidy"), [(3, 3000), (4, 10000), (5, 20000)])
def test_fuyang_tiers_members_and_one_to_one_matching(stars: int, subsidy: int) -> None:
    """富阳: 3,000 / 10,000 / 20,000 by tier, 150 per member per year, town and enterprise match 1:1."""
    got = amounts(facts(star_level=stars, formal_members=10, probationary_members=2), "fuyang")
    assert got == {
        "star_subsidy": subsidy,
        "member_activity": 12 * 150,
        "town_enterprise_matching": subsidy + 1800,
    }


def test_fuyang_below_the_tiers_gets_member_funds_only() -> None:
    got = amounts(facts(star_level=2, formal_members=3), "fuyang")
    assert got == {"member_activity": 450, "town_enterprise_matching": 450}
    assert amounts(facts(star_level=None, formal_members=0), "fuyang") == {}


def test_diqing_startup_level_funds_and_secretary_allowance() -> None:
    """迪庆: 5,000 start-up for a new party org, 20,000 committee / general branch, 3,000 branch, 300 a month."""
    new_branch = amounts(facts(level="branch", established_on=date(YEAR, 1, 10)), "diqing")
    assert new_branch == {"startup_grant": 5000, "annual_activity": 3000, "secretary_allowance": 12 * 300}
    assert amounts(facts(level="committee"), "diqing") == {"annual_activity": 20000}
    assert amounts(facts(level="general_branch"), "diqing") == {"annual_activity": 20000}
    # Established in July: six months of allowance (July to December).
    july = compute_lines(facts(established_on=date(YEAR, 7, 1)), rules("diqing"), YEAR)
    allowance = next(line for line in july if line.rule_code == "secretary_allowance")
    assert (allowance.quantity, allowance.unit_amount, allowance.amount) == (6, 300, 1800)


def test_luzhou_designation_awards() -> None:
    """泸州: 100,000 per city demonstration site, 30,000 per city standardized site."""
    assert amounts(facts(designations=(("city", "model"),)), "luzhou") == {"site_award": 100000}
    assert amounts(facts(designations=(("city", "compliant"),)), "luzhou") == {"site_award": 30000}
    assert amounts(facts(designations=(("county", "model"),)), "luzhou") == {}
    # Six demonstration and twenty standardized sites a year: 1,200,000 in all, as the report says.
    sites = [facts(designations=(("city", "model"),)) for _ in range(6)]
    sites += [facts(designations=(("city", "compliant"),)) for _ in range(20)]
    assert sum(sum(amounts(s, "luzhou").values()) for s in sites) == 1_200_000


def test_nothing_for_a_party_org_that_did_not_exist_that_year() -> None:
    assert amounts(facts(established_on=date(YEAR + 1, 1, 1)), "diqing") == {}
    assert amounts(facts(dissolved_on=date(YEAR - 1, 12, 31)), "diqing") == {}
    assert months_in_year(date(2020, 1, 1), date(YEAR, 3, 15), YEAR) == 3


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"code": "x", "kind": "lottery", "name": "彩票"}, "does not match any of the expected tags"),
        ({"code": "x", "kind": "per_member", "name": "党员", "amount": -1}, "greater than or equal to 0"),
        ({"code": "x", "kind": "per_member", "name": "党员", "amount": 150.5}, "fractional part"),
        ({"code": "x", "kind": "matching", "name": "配套", "of": ["y"], "ratio": "1:1"}, "not an earlier rule"),
    ],
)
def test_bad_rules_are_refused(rule: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        RuleList.model_validate({"rules": [rule]})


def test_the_cap_sums_exactly_and_rounds_by_largest_remainder() -> None:
    # 10,000 over three lines of 3,333.33…: the first line (tie, earlier) gets the extra yuan.
    assert scale_to_cap([100, 100, 100], 10_000) == [100, 100, 100]
    assert scale_to_cap([3000, 3000, 3000], 1000) == [334, 333, 333]
    assert scale_to_cap([20000, 1800, 21800], 10_000) == [4587, 413, 5000]


@given(st.lists(st.integers(min_value=0, max_value=200_000), min_size=1, max_size=60), st.integers(0, 3_000_000))
def test_a_capped_allocation_never_exceeds_and_meets_the_cap(amounts: list[int], cap: int) -> None:
    scaled = scale_to_cap(amounts, cap)
    assert sum(scaled) == min(cap, sum(amounts))
    assert all(0 <= s <= a for s, a in zip(scaled, amounts, strict=True))
    if cap < sum(amounts):
        total = sum(amounts)
        assert all(abs(s * total - a * cap) < total for s, a in zip(scaled, amounts, strict=True))


def lines_with(party_org: PartyOrgFacts, seed: str, **options: Any) -> dict[str, Line]:
    found = compute_lines(party_org, rules(seed), YEAR, FundingOptions(**options))
    return {line.rule_code: line for line in found}


def test_part_months_count_as_the_rule_set_says() -> None:
    """Established on 15 July: six months when any day counts (the default), five whole months, or
    5 + 17/31 months by day (170 days)."""
    july = facts(established_on=date(YEAR, 7, 15))
    allowance = lines_with(july, "diqing")["secretary_allowance"]
    assert (allowance.quantity, allowance.unit_amount, allowance.amount, allowance.basis) == (
        6,
        300,
        1800,
        "6个月 × 300元",
    )
    whole = lines_with(july, "diqing", months="whole_months")["secretary_allowance"]
    assert (whole.quantity, whole.amount, whole.basis) == (5, 1500, "5个整月 × 300元")
    by_day = lines_with(july, "diqing", months="by_day")["secretary_allowance"]
    assert (by_day.quantity, by_day.amount) == (170, 1665)  # 300 × 172/31 = 1,664.52
    assert by_day.basis == "5.55个月（170天） × 300元"


def test_a_party_org_dissolved_mid_year_gets_its_yearly_amounts_as_the_rule_set_says() -> None:
    march = facts(dissolved_on=date(YEAR, 3, 15))
    assert {k: v.amount for k, v in lines_with(march, "diqing").items()} == {
        "annual_activity": 3000,  # the default: in full
        "secretary_allowance": 900,
    }
    prorated = lines_with(march, "diqing", part_year="prorated_when_dissolved")["annual_activity"]
    assert (prorated.amount, prorated.unit_amount, prorated.basis) == (750, None, "党支部，按存续3个月/12折算")
    assert lines_with(march, "diqing", part_year="prorated", months="whole_months")["annual_activity"].amount == 500
    # One established mid-year keeps its yearly amounts unless every part year is prorated.
    july = facts(established_on=date(YEAR, 7, 1))
    assert lines_with(july, "diqing", part_year="prorated_when_dissolved")["annual_activity"].amount == 3000
    assert lines_with(july, "diqing", part_year="prorated")["annual_activity"].amount == 1500
    # Matching follows the prorated lines it matches.
    june = facts(star_level=4, formal_members=12, dissolved_on=date(YEAR, 6, 30))
    assert {k: v.amount for k, v in lines_with(june, "fuyang", part_year="prorated").items()} == {
        "star_subsidy": 5000,
        "member_activity": 900,
        "town_enterprise_matching": 5900,
    }


def test_the_secretary_allowance_can_require_a_recorded_secretary() -> None:
    assert "secretary_allowance" in lines_with(facts(), "diqing")  # the default assumes one
    assert "secretary_allowance" not in lines_with(facts(), "diqing", secretaries="recorded")
    recorded = lines_with(facts(secretary_recorded=True), "diqing", secretaries="recorded")
    assert recorded["secretary_allowance"].amount == 12 * 300


def test_the_assumptions_name_the_readings_the_rules_depend_on() -> None:
    def codes(seed: str, **options: Any) -> list[tuple[str, str]]:
        return [(c, v) for c, v, _ in option_assumptions(FundingOptions(**options), rules(seed))]

    assert codes("diqing") == [("part_year", "full"), ("months", "any_day"), ("secretaries", "assumed")]
    assert codes("fuyang") == [("part_year", "full"), ("star_level", "standing")]
    assert codes("fuyang", part_year="prorated") == [
        ("part_year", "prorated"),
        ("months", "any_day"),
        ("star_level", "standing"),
    ]
    assert codes("luzhou") == []
