"""Regions: import with derived levels and parents, reads, jurisdiction."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import is_transient
from shared.rules import FIGURE_KINDS
from tests.helpers import LIXIAN, TREE, credit_code, import_orgs, import_tree, make_user, org_record, settle


async def test_levels_and_parents_are_derived_from_the_code(registry, admin) -> None:
    result = await import_tree(registry, admin)
    assert result == {"created": len(TREE), "updated": 0, "unchanged": 0, "rejected": 0, "errors": []}
    community = (await registry.get("/v1/regions/430723100001", headers=admin)).json()
    assert community == {"code": "430723100001", "name": "澧州社区", "level": 5, "parent_code": "430723100000"}
    county = (await registry.get(f"/v1/regions/{LIXIAN}", headers=admin)).json()
    assert county["level"] == 3 and county["parent_code"] == "430700000000"
    children = (await registry.get(f"/v1/regions/{LIXIAN}/children", headers=admin)).json()
    assert [c["name"] for c in children] == ["澧阳街道", "小渡口镇"]


async def test_each_bad_record_is_rejected_with_its_reason(registry, admin) -> None:
    await import_tree(registry, admin)
    records = [
        {"code": "430723102000", "name": "新镇"},  # fine: parent 澧县 exists
        {"code": "430723102001", "name": "新镇社区"},  # fine: parent earlier in this batch
        {"code": "439901001000", "name": "孤儿镇"},  # parent 439901000000 missing everywhere
        {"code": "4307231", "name": "短码"},
        {"code": "430723103000", "name": "甲"},
        {"code": "430723103000", "name": "乙"},
        {"code": "000000000000", "name": "全国"},
    ]
    result = (await registry.post("/v1/regions/import", json={"records": records}, headers=admin)).json()
    assert result["created"] == 2 and result["rejected"] == 5
    reasons = {e["row"]: e["reason"] for e in result["errors"]}
    assert reasons[2] == "parent region 439901000000 is neither in this batch nor registered"
    assert reasons[3] == "must be 12 digits"
    assert reasons[4] == reasons[5] == "430723103000 appears more than once in this batch"
    assert reasons[6] == "the national root cannot be imported"


async def test_renaming_is_an_update_and_resending_changes_nothing(registry, admin) -> None:
    await import_tree(registry, admin)
    renamed = [{**r, "name": "澧县（新）"} if r["code"] == LIXIAN else r for r in TREE]
    result = await import_tree(registry, admin, renamed)
    assert (result["created"], result["updated"], result["unchanged"]) == (0, 1, len(TREE) - 1)
    assert (await registry.get(f"/v1/regions/{LIXIAN}", headers=admin)).json()["name"] == "澧县（新）"


async def test_a_county_official_imports_only_below_the_county(db, registry, admin) -> None:
    await import_tree(registry, admin)
    official = await make_user(db, role="officer", region=LIXIAN)
    records = [
        {"code": "430723104000", "name": "县内新镇"},
        {"code": "430702002000", "name": "武陵区的镇"},
        {"code": LIXIAN, "name": "改县名"},
    ]
    result = (await registry.post("/v1/regions/import", json={"records": records}, headers=official)).json()
    assert result["created"] == 1
    assert {e["row"]: e["reason"] for e in result["errors"]} == {
        1: "outside your jurisdiction",
        2: "outside your jurisdiction",
    }


def province_tree(total: int = 20_000) -> list[dict[str, str]]:
    """A province-sized batch of `total` records with the irregularities of real trees: 北京's 市辖区
    prefecture, 湖北's 省直辖县级 pseudo-prefecture (4290) and 东莞's townships directly under a
    prefecture-level city (441900003000); the rest a generated 广东 tree, shuffled so children often
    come before their parents."""
    records = [
        {"code": "110000000000", "name": "北京市"},
        {"code": "110100000000", "name": "市辖区"},
        {"code": "110101000000", "name": "东城区"},
        {"code": "110101001000", "name": "东华门街道"},
        {"code": "110101001001", "name": "多福巷社区"},
        {"code": "420000000000", "name": "湖北省"},
        {"code": "429000000000", "name": "省直辖县级行政区划"},
        {"code": "429004000000", "name": "仙桃市"},
        {"code": "429004001000", "name": "沙嘴街道"},
        {"code": "429004001001", "name": "新生社区"},
        {"code": "440000000000", "name": "广东省"},
        {"code": "441900000000", "name": "东莞市"},
        {"code": "441900003000", "name": "东城街道"},
        {"code": "441900003001", "name": "主山社区"},
    ]
    city = 0
    while len(records) < total:
        city += 1
        if city == 19:
            continue  # 东莞 is above
        records.append({"code": f"44{city:02d}00000000", "name": f"地级市{city}"})
        for county in range(1, 11):
            records.append({"code": f"44{city:02d}{county:02d}000000", "name": f"县{city}-{county}"})
            for town in range(1, 11):
                records.append({"code": f"44{city:02d}{county:02d}{town:03d}000", "name": f"镇{city}-{county}-{town}"})
                for village in range(1, 10):
                    code = f"44{city:02d}{county:02d}{town:03d}{village:03d}"
                    records.append({"code": code, "name": f"村{city}-{county}-{town}-{village}"})
    records = records[:total]
    random.Random(7).shuffle(records)
    return records


async def test_a_province_tree_is_imported_in_one_request_and_coverage_keeps_up(db, redis, registry, coverage, admin):
    """20,000 regions, the documented limit, in one request; then every consumer job of the events it
    sends finishes within the job timeout (5 s in tests), and organizations registered under the
    new regions appear in the figures of their ancestors, irregular trees included."""
    records = province_tree()
    response = await registry.post("/v1/regions/import", json={"records": records}, headers=admin)
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {"created": 20_000, "updated": 0, "unchanged": 0, "rejected": 0, "errors": []}
    for code, level, parent in (
        ("441900003000", 4, "441900000000"),
        ("429004000000", 3, "429000000000"),
        ("110101000000", 3, "110100000000"),
        ("441900000000", 2, "440000000000"),
    ):
        found = (await registry.get(f"/v1/regions/{code}", headers=admin)).json()
        assert (found["level"], found["parent_code"]) == (level, parent), found
    async with db.session() as session:
        sizes = (
            await session.execute(
                text(
                    "SELECT json_array_length(payload -> 'regions') FROM registry_outbox "
                    "WHERE type = 'registry.region.imported'"
                )
            )
        ).scalars()
        assert sorted(sizes) == [1_000] * 20  # bounded events, every region announced once

    await settle(db, redis)
    async with db.session() as session:
        statuses = (await session.execute(text("SELECT status, count(*) FROM coverage_inbox GROUP BY 1"))).all()
        zeroed = (await session.execute(text("SELECT count(*) FROM coverage_figure"))).scalar_one()
    assert statuses == [("done", 20)]
    assert zeroed == 20_000 * len(FIGURE_KINDS)

    places = {"441900003000": 3, "441900003001": 2, "429004001001": 4, "110101001001": 1}
    rows, n = [], 0
    for region, count in places.items():
        for _ in range(count):
            n += 1
            rows.append(org_record(n, credit_code=credit_code(n, "91" + region[:6]), region_code=region))
    await import_orgs(registry, admin, rows)
    await settle(db, redis)

    async def figures(region: str) -> dict[str, Any]:
        answer = await coverage.get("/v1/coverage", params={"region": region}, headers=admin)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    dongguan = await figures("441900000000")
    assert dongguan["total"]["in_scope"] == 5
    assert [(c["region"]["code"], c["in_scope"]) for c in dongguan["children"]] == [("441900003000", 5)]
    assert (await figures("440000000000"))["total"]["in_scope"] == 5
    pseudo = await figures("429000000000")
    assert [(c["region"]["code"], c["in_scope"]) for c in pseudo["children"]] == [("429004000000", 4)]
    beijing = await figures("110100000000")
    assert [(c["region"]["code"], c["in_scope"]) for c in beijing["children"]] == [("110101000000", 1)]
    assert (await figures("000000000000"))["total"]["in_scope"] == 10


async def test_a_statement_postgres_cannot_take_is_not_a_transient_failure(db) -> None:
    """More bind parameters than Postgres takes fails the same way every time: a retry cannot cure it,
    so it must never be answered as "retry shortly"."""
    params = {f"p{i}": i for i in range(33_000)}
    with pytest.raises(DBAPIError) as raised:
        async with db.session() as session:
            values = ", ".join(f"(:p{i})" for i in range(33_000))
            await session.execute(text(f"SELECT count(*) FROM (VALUES {values}) AS t(n)"), params)
    assert "32767" in str(raised.value)
    assert not is_transient(raised.value)
