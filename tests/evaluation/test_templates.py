"""Templates as versioned data: the built-ins from the seeds, editing publishes a new version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.evaluation.factories import LIXIAN, WULING, assess, county, cycle, fuyang, seed_builtins
from tests.helpers import import_tree, make_user


async def test_builtin_templates_come_from_the_seeds(db, evaluation, admin) -> None:
    await seed_builtins(db)
    await seed_builtins(db)  # idempotent
    found = (await evaluation.get("/v1/templates", headers=admin)).json()
    by_code = {t["code"]: t for t in found}
    assert set(by_code) == {
        "fuyang_five_star",
        "qinghe_nine_aspects",
        "luzhou_standardization",
        "luzhou_seven_have",
        "lixian_six_have",
        "fuyang_6s",
    }
    five = by_code["fuyang_five_star"]
    assert five["kind"] == "star_rating" and five["version"] == 1 and five["builtin"]
    assert [g["label"] for g in five["definition"]["groups"]] == [
        "班子建设星",
        "党员队伍星",
        "工作机制星",
        "企业发展星",
        "群众满意星",
    ]
    assert five["max_total"] == "100.00"
    assert len(by_code["qinghe_nine_aspects"]["definition"]["groups"]) == 9
    areas = by_code["luzhou_standardization"]["definition"]["groups"]
    assert len(areas) == 8 and [a["label"] for a in areas[:4]] == ["组织设置", "活动载体", "阵地建设", "工作保障"]
    assert all(i["placeholder"] and i["label"].startswith("待补充") for a in areas for i in a["items"])
    seven = by_code["luzhou_seven_have"]["definition"]["groups"][0]["items"]
    assert [i["label"] for i in seven] == ["有场所", "有设施", "有标志", "有党旗", "有书报", "有制度", "有活动"]
    assert len(by_code["lixian_six_have"]["definition"]["groups"][0]["items"]) == 6
    assert len(by_code["fuyang_6s"]["definition"]["groups"][0]["items"]) == 6
    site = (await evaluation.get("/v1/templates", params={"kind": "site_standard"}, headers=admin)).json()
    assert {t["code"] for t in site} == {"luzhou_seven_have", "lixian_six_have", "fuyang_6s"}


async def test_a_template_edit_leaves_earlier_assessments_untouched(db, registry, evaluation, admin) -> None:
    people: dict[str, Any] = await county(db, registry, admin, n=2)
    first, second = people["party_orgs"]
    old_cycle = await cycle(evaluation, people["county"], name="2027年度")
    before = await assess(evaluation, people["county"], old_cycle["id"], first["id"], fuyang(20, 18, 16, 10, 8))
    assert before["total"] == "72.00" and before["star_level"] == 3

    current = await evaluation.get("/v1/templates/fuyang_five_star", headers=admin)
    etag = current.headers["ETag"]
    definition = current.json()["definition"]
    definition["groups"][0]["items"][0]["max_score"] = 40  # 班子建设 now weighs double
    definition["groups"][0]["star_min_ratio"] = 0.9

    # A county officer may read the national template but not change it.
    refused = await evaluation.put(
        "/v1/templates/fuyang_five_star",
        headers={**people["county"], "If-Match": etag},
        json={"definition": definition},
    )
    assert refused.status_code == 403
    missing = await evaluation.put("/v1/templates/fuyang_five_star", headers=admin, json={"definition": definition})
    assert missing.status_code == 428
    edited = await evaluation.put(
        "/v1/templates/fuyang_five_star", headers={**admin, "If-Match": etag}, json={"definition": definition}
    )
    assert edited.status_code == 201, edited.text
    assert edited.json()["version"] == 2 and edited.json()["max_total"] == "120.00"
    assert edited.headers["ETag"] == '"v2"'
    stale = await evaluation.put(
        "/v1/templates/fuyang_five_star", headers={**admin, "If-Match": etag}, json={"definition": definition}
    )
    assert stale.status_code == 412 and stale.json()["current_etag"] == '"v2"'

    # The earlier assessment keeps its version: same scores, same total, same stars; 40 is still too much there.
    again = (await evaluation.get(f"/v1/assessments/{before['id']}", headers=people["county"])).json()
    assert (again["scores"], again["total"], again["star_level"]) == (before["scores"], "72.00", 3)
    too_much = await evaluation.patch(
        f"/v1/assessments/{before['id']}",
        headers={**people["county"], "If-Match": '"v1"'},
        json={"scores": {"team_score": "40"}},
    )
    assert too_much.status_code == 422
    assert too_much.json()["errors"] == [{"field": "scores.team_score", "reason": "exceeds the item's maximum of 20"}]

    # A new cycle made with version 2 scores against it.
    new_template = edited.json()["id"]
    response = await evaluation.post(
        "/v1/cycles",
        headers=people["county"],
        json={"name": "2028年度", "year": 2028, "template_id": new_template},
    )
    new_cycle = response.json()
    assert new_cycle["template_version"] == 2
    after = await assess(evaluation, people["county"], new_cycle["id"], second["id"], fuyang(40, 18, 16, 10, 8))
    assert after["total"] == "92.00" and after["star_level"] == 3
    versions = (await evaluation.get("/v1/templates/fuyang_five_star/versions", headers=admin)).json()
    assert [v["version"] for v in versions] == [1, 2]
    v1 = (await evaluation.get("/v1/templates/fuyang_five_star/versions/1", headers=admin)).json()
    assert v1["max_total"] == "100.00"


async def test_creating_templates_is_validated(db, evaluation, admin) -> None:
    bad = await evaluation.post(
        "/v1/templates",
        headers=admin,
        json={
            "code": "my_template",
            "kind": "star_rating",
            "name": "自定义",
            "definition": {
                "groups": [
                    {"key": "a", "label": "甲", "items": [{"key": "x", "label": "一", "max_score": 10}]},
                    {"key": "b", "label": "乙", "items": [{"key": "x", "label": "二", "max_score": -1}]},
                ]
            },
            "surprise": True,
        },
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert "surprise" in fields and "definition.groups[1].items[0].max_score" in fields
    good = await evaluation.post(
        "/v1/templates",
        headers=admin,
        json={
            "code": "my_template",
            "kind": "site_standard",
            "name": "自定义阵地标准",
            "definition": {
                "groups": [{"key": "a", "label": "甲", "items": [{"key": "x", "label": "一", "max_score": 5}]}]
            },
        },
    )
    assert good.status_code == 201 and good.json()["version"] == 1
    twice = await evaluation.post("/v1/templates", headers=admin, json={**good.json(), "definition": {"groups": []}})
    assert twice.status_code == 422


async def test_a_star_rating_template_needs_a_usable_star_rule(db, evaluation, admin) -> None:
    groups = [{"key": "a", "label": "甲", "items": [{"key": "x", "label": "一", "max_score": 10}]}]
    base = {"code": "stars_test", "kind": "star_rating", "name": "星级"}
    none = await evaluation.post("/v1/templates", headers=admin, json={**base, "definition": {"groups": groups}})
    assert none.status_code == 422 and none.json()["errors"][0]["field"] == "definition.stars"
    unusable = await evaluation.post(
        "/v1/templates",
        headers=admin,
        json={**base, "definition": {"groups": groups, "stars": {"method": "dimensions"}}},
    )
    assert unusable.status_code == 422 and "star_min_ratio" in unusable.json()["errors"][0]["reason"]
    ok = await evaluation.post(
        "/v1/templates",
        headers=admin,
        json={
            **base,
            "definition": {
                "groups": groups,
                "stars": {"method": "thresholds", "thresholds": [{"stars": 3, "min_total": 5}]},
            },
        },
    )
    assert ok.status_code == 201, ok.text


async def test_a_version_number_beyond_the_database_integer_is_a_422(db, registry, evaluation, admin) -> None:
    """Found by the fuzzer: it was a 500."""
    response = await evaluation.get(
        "/v1/templates/fuyang_five_star/versions/161245125273096384373850112", headers=admin
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "version"


async def test_a_code_held_by_another_jurisdiction_is_the_same_409_as_one_in_sight(
    db, registry, evaluation, admin
) -> None:
    """Template codes are national; whether the holder is visible to the caller or not, the answer
    is one 409 that names no jurisdiction (it was a 500, a unique violation, for a hidden one)."""
    await import_tree(registry, admin)
    await seed_builtins(db)
    lixian = await make_user(db, role="officer", region=LIXIAN)
    wuling = await make_user(db, role="officer", region=WULING)
    definition = (await evaluation.get("/v1/templates/fuyang_five_star", headers=admin)).json()["definition"]
    body = {"code": "lixian_stars", "kind": "star_rating", "name": "澧县星级", "definition": definition}
    assert (await evaluation.post("/v1/templates", headers=lixian, json=body)).status_code == 201

    hidden = await evaluation.post("/v1/templates", headers=wuling, json=body)  # 武陵区 cannot see 澧县's
    in_sight = await evaluation.post("/v1/templates", headers=lixian, json=body)
    assert hidden.status_code == in_sight.status_code == 409, hidden.text
    assert hidden.json() == in_sight.json() and hidden.headers["content-type"] == "application/problem+json"
    assert "430723" not in hidden.text and "澧县" not in hidden.text
    national = await evaluation.post("/v1/templates", headers=wuling, json={**body, "code": "fuyang_five_star"})
    assert national.status_code == 409
    assert national.json()["detail"] == hidden.json()["detail"].replace("lixian_stars", "fuyang_five_star")
    async with db.session() as session:
        count = await session.execute(text("SELECT count(*) FROM evaluation_template WHERE code = 'lixian_stars'"))
        assert count.scalar_one() == 1
