"""Funding over HTTP: the seed examples on registry data, the cap, idempotent recompute, the workbook."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from services.evaluation.funding.engine import SEED_RULE_SETS
from shared.pagination import encode_cursor
from tests.helpers import LIXIAN, WULING, credit_code, import_orgs, import_tree, make_user, org_record

YEAR = 2026
TOWNSHIP = "430723100000"


async def party_org(registry, admin, n: int, *, level: str = "branch", established_on: str = "2020-05-01") -> str:
    response = await registry.post(
        "/v1/party-orgs",
        headers=admin,
        json={
            "name": f"测试企业{n}号党{'委' if level == 'committee' else '支部'}",
            "level": level,
            "formation": "single",
            "region_code": TOWNSHIP,
            "established_on": established_on,
            "covered_credit_codes": [credit_code(n)],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def rate(db: Any, party_org_id: str, stars: int, year: int = YEAR) -> None:
    """An approved star rating in a cycle of `year` (what the assessment workflow leaves behind)."""
    template, cycle = uuid.uuid4(), uuid.uuid4()
    async with db.session() as session:
        await session.execute(
            text(
                "INSERT INTO evaluation_template (id, code, version, kind, name, region_code, definition, created_by) "
                "VALUES (:id, :code, 1, 'star_rating', '五星', :r, '{}', 'test')"
            ),
            {"id": template, "code": f"stars-{template.hex[:8]}", "r": LIXIAN},
        )
        await session.execute(
            text(
                "INSERT INTO evaluation_cycle (id, name, year, template_id, region_code, status, created_by) "
                "VALUES (:id, '年度星级评定', :y, :t, :r, 'closed', 'test')"
            ),
            {"id": cycle, "y": year, "t": template, "r": LIXIAN},
        )
        await session.execute(
            text(
                "INSERT INTO assessment (id, cycle_id, party_org_id, party_org_name, region_code, status, star_level, "
                "approved_at, created_by) VALUES (:id, :c, :p, '党支部', :r, 'approved', :s, now(), 'test')"
            ),
            {"id": uuid.uuid4(), "c": cycle, "p": uuid.UUID(party_org_id), "r": TOWNSHIP, "s": stars},
        )


async def designate(db: Any, party_org_id: str, level: str, kind: str, year: int = YEAR) -> None:
    async with db.session() as session:
        await session.execute(
            text(
                "INSERT INTO designation (id, party_org_id, party_org_name, region_code, year, level, type, status, "
                "created_by) VALUES (:id, :p, '党支部', :r, :y, :l, :t, 'active', 'test')"
            ),
            {"id": uuid.uuid4(), "p": uuid.UUID(party_org_id), "r": TOWNSHIP, "y": year, "l": level, "t": kind},
        )


async def rule_set(evaluation, headers, seed: str, region: str = LIXIAN) -> dict[str, Any]:
    response = await evaluation.post(
        "/v1/funding/rule-sets", headers=headers, json={"code": seed, "region_code": region, **SEED_RULE_SETS[seed]}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def compute(evaluation, headers, seed: str, **extra: Any) -> dict[str, Any]:
    body = {"year": YEAR, "region_code": LIXIAN, "rule_set_code": seed, **extra}
    response = await evaluation.post("/v1/funding/allocations:compute", headers=headers, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def allocations(evaluation, headers, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
        response = await evaluation.get("/v1/funding/allocations", headers=headers, params=query)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        if not (cursor := response.json()["next_cursor"]):
            return items


def lines_by_org(items: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {a["party_org_name"]: {line["rule_code"]: line["amount"] for line in a["lines"]} for a in items}


@pytest.fixture
async def county(registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, formal_members=10, probationary_members=2),
            org_record(2, formal_members=3),
            org_record(3, formal_members=5),
            org_record(4, formal_members=4),
        ],
    )


async def test_fuyang_tiers_per_member_funds_and_matching(evaluation, registry, admin, db, county) -> None:
    four_star = await party_org(registry, admin, 1)
    five_star = await party_org(registry, admin, 2)
    unrated = await party_org(registry, admin, 3)
    await rate(db, four_star, 4)
    await rate(db, five_star, 5)
    await rate(db, unrated, 4, year=YEAR - 1)  # last year's rating does not count this year
    created = await rule_set(evaluation, admin, "fuyang")
    assert (created["version"], created["rules"][0]["tiers"]) == (1, {"3": 3000, "4": 10000, "5": 20000})

    result = await compute(evaluation, admin, "fuyang")
    assert (result["party_orgs"], result["total"], result["created"]) == (3, 66_000, 3)
    got = lines_by_org(await allocations(evaluation, admin, year=YEAR))
    assert got == {
        "测试企业1号党支部": {"star_subsidy": 10000, "member_activity": 1800, "town_enterprise_matching": 11800},
        "测试企业2号党支部": {"star_subsidy": 20000, "member_activity": 450, "town_enterprise_matching": 20450},
        "测试企业3号党支部": {"member_activity": 750, "town_enterprise_matching": 750},
    }
    [first] = [a for a in await allocations(evaluation, admin) if a["party_org_id"] == four_star]
    assert [(line["rule_name"], line["basis"]) for line in first["lines"]] == [
        ("区财政星级补助", "4星"),
        ("党员活动经费", "12名党员 × 150元"),
        ("镇、企1:1配套", "1:1配套11800元（镇、企）"),
    ]


async def test_diqing_startup_level_funds_and_allowance(evaluation, registry, admin, county) -> None:
    await party_org(registry, admin, 1, level="committee", established_on="2019-03-01")
    await party_org(registry, admin, 2, established_on=f"{YEAR}-07-01")
    await party_org(registry, admin, 3, established_on=f"{YEAR + 1}-01-05")  # not yet in YEAR
    await rule_set(evaluation, admin, "diqing")
    result = await compute(evaluation, admin, "diqing")
    assert lines_by_org(await allocations(evaluation, admin)) == {
        "测试企业1号党委": {"annual_activity": 20000},
        "测试企业2号党支部": {"startup_grant": 5000, "annual_activity": 3000, "secretary_allowance": 6 * 300},
    }
    assert result["total"] == 29800


async def test_luzhou_site_awards(evaluation, registry, admin, db, county) -> None:
    model = await party_org(registry, admin, 1)
    standard = await party_org(registry, admin, 2)
    await party_org(registry, admin, 3)
    await designate(db, model, "city", "model")
    await designate(db, standard, "city", "compliant")
    await designate(db, standard, "city", "model", year=YEAR - 1)
    await rule_set(evaluation, admin, "luzhou")
    result = await compute(evaluation, admin, "luzhou")
    assert lines_by_org(await allocations(evaluation, admin)) == {
        "测试企业1号党支部": {"site_award": 100000},
        "测试企业2号党支部": {"site_award": 30000},
    }
    assert result["total"] == 130000


async def test_budget_cap_sums_exactly_and_recompute_changes_nothing(evaluation, registry, admin, db, county) -> None:
    for n in (1, 2, 3, 4):
        await rate(db, await party_org(registry, admin, n), 3 + n % 3)
    await rule_set(evaluation, admin, "fuyang")
    first = await compute(evaluation, admin, "fuyang", budget_cap=50_001)
    assert first["uncapped_total"] == 93_200 and first["scaled"]
    stored = await allocations(evaluation, admin)
    assert sum(a["total"] for a in stored) == 50_001 == first["total"]
    assert sum(line["amount"] for a in stored for line in a["lines"]) == 50_001
    assert all(line["amount"] <= line["uncapped_amount"] for a in stored for line in a["lines"])

    again = await compute(evaluation, admin, "fuyang", budget_cap=50_001)
    assert (again["created"], again["updated"], again["unchanged"], again["removed"]) == (0, 0, 4, 0)
    assert await allocations(evaluation, admin) == stored
    async with db.session() as session:
        counts = (await session.execute(text("SELECT count(*) FROM funding_allocation"))).scalar_one()
        lines = (await session.execute(text("SELECT count(*) FROM funding_line"))).scalar_one()
    assert (counts, lines) == (4, 12)

    # A cap above the total scales nothing; the same rows are updated in place.
    lifted = await compute(evaluation, admin, "fuyang", budget_cap=1_000_000)
    assert (lifted["total"], lifted["scaled"], lifted["created"], lifted["updated"]) == (93_200, False, 0, 4)
    assert [a["id"] for a in await allocations(evaluation, admin)] == [a["id"] for a in stored]


async def test_recompute_rewrites_only_what_changed(evaluation, registry, admin, db, county) -> None:
    for n in (1, 2, 3):
        await rate(db, await party_org(registry, admin, n), 4)
    await rule_set(evaluation, admin, "fuyang")
    await compute(evaluation, admin, "fuyang")
    before = {a["party_org_name"]: a for a in await allocations(evaluation, admin)}
    await import_orgs(registry, admin, [org_record(2, formal_members=9)])  # three members became nine
    again = await compute(evaluation, admin, "fuyang")
    assert (again["created"], again["updated"], again["unchanged"], again["removed"]) == (0, 1, 2, 0)
    after = {a["party_org_name"]: a for a in await allocations(evaluation, admin)}
    assert lines_by_org([after["测试企业2号党支部"]]) == {
        "测试企业2号党支部": {"star_subsidy": 10000, "member_activity": 1350, "town_enterprise_matching": 11350}
    }
    assert after["测试企业1号党支部"] == before["测试企业1号党支部"]
    assert after["测试企业2号党支部"]["computed_at"] > before["测试企业2号党支部"]["computed_at"]


async def test_a_dissolved_party_org_leaves_the_allocation(evaluation, registry, admin, county) -> None:
    await party_org(registry, admin, 1)
    gone = await party_org(registry, admin, 2)
    await rule_set(evaluation, admin, "diqing")
    assert (await compute(evaluation, admin, "diqing"))["party_orgs"] == 2
    response = await registry.post(
        f"/v1/party-orgs/{gone}/dissolve",
        headers=admin,
        json={"dissolved_on": f"{YEAR - 1}-06-30", "reason": "企业注销"},
    )
    assert response.status_code == 200, response.text
    again = await compute(evaluation, admin, "diqing")
    assert (again["party_orgs"], again["removed"], again["unchanged"]) == (1, 1, 1)
    assert list(lines_by_org(await allocations(evaluation, admin))) == ["测试企业1号党支部"]


async def test_rule_sets_are_versioned(evaluation, admin, registry) -> None:
    await import_tree(registry, admin)
    await rule_set(evaluation, admin, "fuyang")
    changed = {**SEED_RULE_SETS["fuyang"], "code": "fuyang", "region_code": LIXIAN}
    changed["rules"] = [{**changed["rules"][1], "amount": 200}]
    second = await evaluation.post("/v1/funding/rule-sets", headers=admin, json=changed)
    assert second.status_code == 201 and second.json()["version"] == 2
    listed = (await evaluation.get("/v1/funding/rule-sets", headers=admin, params={"code": "fuyang"})).json()
    assert [(r["version"], len(r["rules"])) for r in listed["items"]] == [(1, 3), (2, 1)]
    elsewhere = await evaluation.post("/v1/funding/rule-sets", headers=admin, json={**changed, "region_code": WULING})
    assert elsewhere.status_code == 409


async def test_a_rule_set_code_held_out_of_sight_is_the_same_409(evaluation, admin, registry, db) -> None:
    """武陵区 cannot see 澧县's rule set; taking its code is the 409 a visible holder gives (it was a
    500, a unique violation), naming no jurisdiction, and nothing is written."""
    await import_tree(registry, admin)
    await rule_set(evaluation, admin, "fuyang")  # 澧县's
    body = {**SEED_RULE_SETS["fuyang"], "code": "fuyang"}
    wuling = await make_user(db, role="officer", region=WULING)
    hidden = await evaluation.post("/v1/funding/rule-sets", headers=wuling, json=body)
    in_sight = await evaluation.post("/v1/funding/rule-sets", headers=admin, json={**body, "region_code": WULING})
    assert hidden.status_code == in_sight.status_code == 409, hidden.text
    assert hidden.json() == in_sight.json() and "430723" not in hidden.text
    async with db.session() as session:
        count = await session.execute(text("SELECT count(*) FROM funding_rule_set WHERE code = 'fuyang'"))
        assert count.scalar_one() == 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/funding/rule-sets",
            {"code": "x", "name": "x", "rules": [{"code": "a", "kind": "lottery", "name": "彩票"}]},
            "rules[0]",
        ),
        (
            "/v1/funding/rule-sets",
            {"code": "x", "name": "x", "rules": [{"code": "a", "kind": "startup", "name": "启动", "amount": -5}]},
            "rules[0].startup.amount",
        ),
        (
            "/v1/funding/rule-sets",
            {
                "code": "x",
                "name": "x",
                "rules": [{"code": "a", "kind": "matching", "name": "配套", "of": ["b"], "ratio": "1:1"}],
            },
            "rules",
        ),
        ("/v1/funding/allocations:compute", {"year": YEAR, "rule_set_code": "x", "budget_cap": -1}, "budget_cap"),
        ("/v1/funding/allocations:compute", {"year": 1999, "rule_set_code": "x"}, "year"),
        ("/v1/funding/allocations:compute", {"year": YEAR, "rule_set_code": "x", "cap": 5}, "cap"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(evaluation, admin, path, body, field) -> None:
    response = await evaluation.post(path, headers=admin, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize("path", ["/v1/funding/allocations", "/v1/funding/rule-sets"])
@pytest.mark.parametrize("cursor", ["not-a-cursor", encode_cursor("430723100000", "x"), encode_cursor(1, "y")])
async def test_a_forged_cursor_is_a_422(evaluation, admin, path: str, cursor: str) -> None:
    response = await evaluation.get(path, headers=admin, params={"cursor": cursor})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "cursor"


async def test_jurisdiction(evaluation, registry, admin, db, county) -> None:
    await party_org(registry, admin, 1)
    fuyang = await rule_set(evaluation, admin, "diqing")
    await compute(evaluation, admin, "diqing")
    wuling = await make_user(db, role="officer", region=WULING)
    refused = await evaluation.post(
        "/v1/funding/allocations:compute",
        headers=wuling,
        json={"year": YEAR, "region_code": LIXIAN, "rule_set_code": "diqing"},
    )
    assert refused.status_code == 404
    assert (await evaluation.get(f"/v1/funding/rule-sets/{fuyang['id']}", headers=wuling)).status_code == 404
    assert (await evaluation.get("/v1/funding/allocations", headers=wuling)).json()["items"] == []
    outside = await evaluation.get("/v1/funding/allocations", headers=wuling, params={"region": LIXIAN})
    assert outside.status_code == 404
    # A township official reads the county's rules and its own allocations, and computes for itself.
    township = await make_user(db, role="officer", region=TOWNSHIP)
    assert (await evaluation.get(f"/v1/funding/rule-sets/{fuyang['id']}", headers=township)).status_code == 200
    assert len(await allocations(evaluation, township)) == 1
    own = await evaluation.post(
        "/v1/funding/allocations:compute",
        headers=township,
        json={"year": YEAR, "region_code": TOWNSHIP, "rule_set_code": "diqing"},
    )
    assert own.status_code == 200 and own.json()["total"] == 3000 + 12 * 300
    # The same party organization now has an allocation in each computation; `scope` picks one.
    assert [a["scope_code"] for a in await allocations(evaluation, township, scope=TOWNSHIP)] == [TOWNSHIP]
    assert len(await allocations(evaluation, township)) == 2
    auditor = await make_user(db, role="auditor", region=LIXIAN)
    forbidden = await evaluation.post(
        "/v1/funding/allocations:compute", headers=auditor, json={"year": YEAR, "rule_set_code": "diqing"}
    )
    assert forbidden.status_code == 403
    assert (await evaluation.get("/v1/funding/allocations")).status_code == 401


async def test_workbook_has_chinese_headers_and_the_total(evaluation, registry, admin, db, county) -> None:
    await rate(db, await party_org(registry, admin, 1), 4)
    await rule_set(evaluation, admin, "fuyang")
    await compute(evaluation, admin, "fuyang", budget_cap=20_000)
    response = await evaluation.get("/v1/funding/allocations.xlsx", headers=admin, params={"year": YEAR})
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:6] == ("年度", "规则集", "版本", "区划代码", "区划名称", "党组织名称")
    assert rows[0][-2:] == ("应拨金额（元）", "核定金额（元）")
    assert [r[7] for r in rows[1:-1]] == ["区财政星级补助", "党员活动经费", "镇、企1:1配套"]
    assert rows[1][4] == "澧阳街道" and rows[1][6] == "党支部"
    assert rows[-1][0] == "合计" and rows[-1][-2:] == (23_600, 20_000)


async def test_a_recompute_keeps_the_cap_unless_it_is_removed(evaluation, registry, admin, db, county) -> None:
    for n in (1, 2):
        await rate(db, await party_org(registry, admin, n), 4)
    await rule_set(evaluation, admin, "fuyang")
    capped = await compute(evaluation, admin, "fuyang", budget_cap=20_000)
    assert (capped["total"], capped["uncapped_total"], capped["budget_cap_source"]) == (20_000, 44_500, "request")
    kept = await compute(evaluation, admin, "fuyang")  # no cap in the request: the official's cap stays
    assert (kept["total"], kept["budget_cap"], kept["budget_cap_source"], kept["updated"]) == (
        20_000,
        20_000,
        "kept",
        0,
    )
    assert {a["budget_cap"] for a in await allocations(evaluation, admin)} == {20_000}
    removed = await compute(evaluation, admin, "fuyang", budget_cap=None)  # removed explicitly
    assert (removed["total"], removed["budget_cap"], removed["budget_cap_source"]) == (44_500, None, "none")
    assert (await compute(evaluation, admin, "fuyang"))["total"] == 44_500


async def test_a_zero_budget_must_be_confirmed(evaluation, registry, admin, county) -> None:
    await party_org(registry, admin, 1)
    await rule_set(evaluation, admin, "diqing")
    refused = await evaluation.post(
        "/v1/funding/allocations:compute",
        headers=admin,
        json={"year": YEAR, "region_code": LIXIAN, "rule_set_code": "diqing", "budget_cap": 0},
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "budget_cap"
    assert "confirm_zero_budget" in refused.json()["errors"][0]["reason"]
    assert await allocations(evaluation, admin) == []
    zero = await compute(evaluation, admin, "diqing", budget_cap=0, confirm_zero_budget=True)
    assert (zero["total"], zero["uncapped_total"]) == (0, 3000 + 12 * 300)


async def test_rule_set_options_are_data_and_listed_among_the_assumptions(evaluation, registry, admin, county) -> None:
    published = await rule_set(evaluation, admin, "diqing")
    assert published["options"] == {"months": "any_day", "part_year": "full", "secretaries": "assumed"}
    result = await compute(evaluation, admin, "diqing")
    assert [(a["code"], a["value"]) for a in result["assumptions"]] == [
        ("facts", "current"),
        ("budget_cap", "none"),
        ("part_year", "full"),
        ("months", "any_day"),
        ("secretaries", "assumed"),
    ]
    assert all(a["text"] for a in result["assumptions"])

    response = await registry.post(
        "/v1/party-orgs",
        headers=admin,
        json={
            "name": "测试企业1号党支部",
            "level": "branch",
            "formation": "single",
            "region_code": TOWNSHIP,
            "established_on": "2020-05-01",
            "covered_credit_codes": [credit_code(1)],
            "secretary_in_management": True,
        },
    )
    assert response.status_code == 201, response.text
    await party_org(registry, admin, 2)
    gone = await party_org(registry, admin, 3)
    response = await registry.post(
        f"/v1/party-orgs/{gone}/dissolve", headers=admin, json={"dissolved_on": f"{YEAR}-03-31", "reason": "企业注销"}
    )
    assert response.status_code == 200, response.text
    options = {"secretaries": "recorded", "part_year": "prorated_when_dissolved"}
    second = await evaluation.post(
        "/v1/funding/rule-sets",
        headers=admin,
        json={"code": "diqing", "region_code": LIXIAN, **SEED_RULE_SETS["diqing"], "options": options},
    )
    assert second.status_code == 201 and second.json()["options"]["secretaries"] == "recorded", second.text
    result = await compute(evaluation, admin, "diqing")
    assert ("secretaries", "recorded") in [(a["code"], a["value"]) for a in result["assumptions"]]
    assert lines_by_org(await allocations(evaluation, admin)) == {
        "测试企业1号党支部": {"annual_activity": 3000, "secretary_allowance": 3600},  # a secretary on record
        "测试企业2号党支部": {"annual_activity": 3000},
        "测试企业3号党支部": {"annual_activity": 750},  # dissolved at the end of March: 3/12
    }
    bad = await evaluation.post(
        "/v1/funding/rule-sets",
        headers=admin,
        json={"code": "diqing", **SEED_RULE_SETS["diqing"], "options": {"months": "weekly"}},
    )
    assert bad.status_code == 422 and "options.months" in [e["field"] for e in bad.json()["errors"]]
