"""Coverage figures of a small county computed by hand, kept by events and by the full recompute."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests.helpers import (
    LIXIAN,
    credit_code,
    figure_rows,
    import_orgs,
    import_tree,
    make_user,
    org_record,
    recompute,
    settle,
)

COMMUNITY, TOWN_A, TOWN_B, WULING_TOWN = "430723100001", "430723100000", "430723101000", "430702001000"


async def make_zombie(registry: Any, admin: dict[str, str], n: int, reason: str) -> None:
    """An official edit: organization n (first version) found a zombie."""
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(n)}", headers=admin)).json()
    changed = await registry.patch(
        f"/v1/organizations/{org['id']}",
        headers={**admin, "If-Match": '"v1"'},
        json={"status": "zombie", "status_reason": reason},
    )
    assert changed.status_code == 200, changed.text


def party_org(name: str, formation: str, region: str, codes: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "level": "branch",
        "formation": formation,
        "region_code": region,
        "established_on": "2026-05-01",
        "covered_credit_codes": codes,
        **extra,
    }


@pytest.fixture
async def county(db, redis, registry, admin) -> dict[str, Any]:
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, formal_members=5),  # E1: single P1
            org_record(2, formal_members=2),  # E2: joint P2
            org_record(3, formal_members=1, region_code=TOWN_B),  # E3: joint P2
            org_record(4, formal_members=0, region_code=TOWN_B, has_trade_union=True),  # E4: trade union
            org_record(5, formal_members=0, region_code=TOWN_B),  # E5: instructor
            org_record(6, formal_members=4, region_code=TOWN_B, charter_includes_party_building=True),  # E6
            org_record(7, employees=5),  # E7: out of scope
            org_record(8, formal_members=3),  # E8: becomes a zombie
            org_record(
                9, kind="social_org", social_org_level="province", employees=8, formal_members=3, industry_code="S9521"
            ),  # S1
            org_record(10, formal_members=6, region_code=WULING_TOWN),  # W1, another county
        ],
    )
    await make_zombie(registry, admin, 8, "2026年摸排：无经营场所")
    for body in (
        party_org("一号企业党支部", "single", COMMUNITY, [credit_code(1)], secretary_in_management=True),
        party_org("县联合党支部", "joint", LIXIAN, [credit_code(2), credit_code(3)]),
        party_org(
            "协会党支部",
            "single",
            COMMUNITY,
            [credit_code(9)],
            secretary_in_management=True,
            secretary_is_investor=True,
        ),
        party_org("武陵企业党支部", "single", WULING_TOWN, [credit_code(10)]),
    ):
        assert (await registry.post("/v1/party-orgs", json=body, headers=admin)).status_code == 201
    instructor = (
        await registry.post(
            "/v1/instructors",
            headers=admin,
            json={"name": "周指导", "kind": "part_time", "source": "retired_official", "region_code": LIXIAN},
        )
    ).json()
    assigned = await registry.post(
        f"/v1/instructors/{instructor['id']}/assignments",
        headers=admin,
        json={"credit_code": credit_code(5), "start_date": (date.today() - timedelta(days=30)).isoformat()},
    )
    assert assigned.status_code == 201
    await settle(db, redis)
    return {"officer": await make_user(db, role="officer", region=LIXIAN)}


async def test_county_figures_match_the_hand_count(coverage, county) -> None:
    response = await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=county["officer"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "counters" and body["region"]["name"] == "澧县"
    total = body["total"]
    # in scope: E1–E6 and S1 (E7 is too small, E8 a zombie, W1 in another county)
    assert (total["in_scope"], total["org_covered"], total["work_covered"]) == (7, 4, 6)
    assert total["org_coverage_rate"] == round(4 / 7, 6) and total["work_coverage_rate"] == round(6 / 7, 6)
    assert (total["single_formation_eligible"], total["single_formed"]) == (3, 2)
    assert total["single_formation_rate"] == round(2 / 3, 6)
    assert total["charter_rate"] == round(1 / 7, 6)
    assert total["party_orgs"] == {"total": 3, "single": 2, "joint": 1, "industry": 0, "regional": 0, "affiliated": 0}
    assert total["secretary_in_management_rate"] == round(2 / 3, 6)
    assert total["secretary_is_investor_rate"] == round(1 / 3, 6)
    assert (total["registered"], total["active"]) == (9, 8)  # E1–E8 and S1; E8 is a zombie

    children = {c["region"]["code"]: c for c in body["children"]}
    assert set(children) == {TOWN_A, TOWN_B}
    a, b = children[TOWN_A], children[TOWN_B]
    assert (a["in_scope"], a["org_covered"], a["work_covered"], a["org_coverage_rate"]) == (3, 3, 3, 1.0)
    assert a["party_orgs"]["total"] == 2  # the county-level joint party organization is not the township's
    assert (b["in_scope"], b["org_covered"], b["work_covered"]) == (4, 1, 3)
    assert (b["single_formation_eligible"], b["single_formed"], b["single_formation_rate"]) == (1, 0, 0.0)
    # No party organization registered in the township: its secretary rates are null, not 0.
    assert b["secretary_in_management_rate"] is None and b["secretary_is_investor_rate"] is None


async def test_kind_area_and_industry_cuts(db, redis, coverage, registry, admin, county) -> None:
    social = (
        await coverage.get("/v1/coverage", params={"region": LIXIAN, "kind": "social_org"}, headers=county["officer"])
    ).json()["total"]
    assert (social["in_scope"], social["org_covered"], social["party_orgs"]["total"]) == (1, 1, 1)
    retail = (
        await coverage.get("/v1/coverage", params={"region": LIXIAN, "industry": "F"}, headers=county["officer"])
    ).json()
    assert retail["source"] == "live" and retail["total"]["in_scope"] == 0
    assert retail["total"]["org_coverage_rate"] is None
    mills = (
        await coverage.get("/v1/coverage", params={"region": LIXIAN, "industry": "C131"}, headers=county["officer"])
    ).json()["total"]
    assert (mills["in_scope"], mills["org_covered"]) == (6, 3)  # the six enterprises in scope; S1 is not C131


async def test_a_zombie_leaves_the_denominator(db, redis, coverage, registry, admin, county) -> None:
    await make_zombie(registry, admin, 6, "核查为空壳企业")
    await settle(db, redis)
    total = (await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=admin)).json()["total"]
    assert (total["in_scope"], total["org_covered"], total["single_formation_eligible"]) == (6, 4, 2)
    assert total["org_coverage_rate"] == round(4 / 6, 6) and total["charter_rate"] == 0.0


async def test_the_full_recompute_agrees_and_changes_nothing(db, redis, county) -> None:
    kept = await figure_rows(db)
    result = await recompute()
    assert result["figures_changed"] == 0
    assert await figure_rows(db) == kept


async def test_figures_stay_inside_the_jurisdiction(db, coverage, county) -> None:
    outside = await coverage.get("/v1/coverage", params={"region": "430702000000"}, headers=county["officer"])
    assert outside.status_code == 404
    province = await coverage.get("/v1/coverage", params={"region": "430000000000"}, headers=county["officer"])
    assert province.status_code == 404
    default = (await coverage.get("/v1/coverage", headers=county["officer"])).json()
    assert default["region"]["code"] == LIXIAN
