"""Regions: import with derived levels and parents, reads, jurisdiction."""

from __future__ import annotations

from tests.helpers import LIXIAN, TREE, import_tree, make_user


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
