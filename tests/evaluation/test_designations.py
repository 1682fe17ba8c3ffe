"""示范点 / 标杆: yearly quotas per region, enforced with a 409 naming quota and used places."""

from __future__ import annotations

from tests.evaluation.factories import seed_builtins
from tests.helpers import credit_code, import_orgs, import_tree, make_user, org_record

LUZHOU = "510500000000"
JIANGYANG = "510502000000"
STREET = "510502001000"
LUZHOU_TREE = [
    {"code": "510000000000", "name": "四川省"},
    {"code": LUZHOU, "name": "泸州市"},
    {"code": JIANGYANG, "name": "江阳区"},
    {"code": STREET, "name": "南城街道"},
]


async def _luzhou(db, registry, admin, n: int) -> list[dict]:
    await import_tree(registry, admin, LUZHOU_TREE)
    await seed_builtins(db)
    records = [
        org_record(i, credit_code=credit_code(i, "91510502"), region_code=STREET, formal_members=3)
        for i in range(1, n + 1)
    ]
    await import_orgs(registry, admin, records)
    made = []
    for i, r in enumerate(records, start=1):
        response = await registry.post(
            "/v1/party-orgs",
            headers=admin,
            json={
                "name": f"泸州测试企业{i}号党支部",
                "level": "branch",
                "formation": "single",
                "region_code": STREET,
                "established_on": "2024-07-01",
                "covered_credit_codes": [r["credit_code"]],
            },
        )
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


async def test_luzhou_quota_of_six_city_demonstration_sites(db, registry, evaluation, admin) -> None:
    orgs = await _luzhou(db, registry, admin, 7)
    city = await make_user(db, role="officer", region=LUZHOU)
    district = await make_user(db, role="officer", region=JIANGYANG)
    for type_, quota in (("model", 6), ("compliant", 20)):
        response = await evaluation.put(
            "/v1/designation-quotas",
            headers=city,
            json={"region_code": LUZHOU, "year": 2027, "level": "city", "type": type_, "quota": quota},
        )
        assert response.status_code == 200, response.text
    wrong_level = await evaluation.put(
        "/v1/designation-quotas",
        headers=city,
        json={"region_code": JIANGYANG, "year": 2027, "level": "city", "type": "model", "quota": 3},
    )
    assert wrong_level.status_code == 422 and wrong_level.json()["errors"][0]["field"] == "region_code"

    # A district officer does not make city designations.
    body = {"party_org_id": orgs[0]["id"], "year": 2027, "level": "city", "type": "model", "title": "市级示范阵地"}
    assert (await evaluation.post("/v1/designations", headers=district, json=body)).status_code == 403

    made = []
    for po in orgs[:6]:
        response = await evaluation.post("/v1/designations", headers=city, json={**body, "party_org_id": po["id"]})
        assert response.status_code == 201, response.text
        made.append(response.json())
    assert made[0]["label"] == "市级示范型"
    duplicate = await evaluation.post("/v1/designations", headers=city, json=body)
    assert duplicate.status_code == 409 and duplicate.json()["type"].endswith("/conflict")

    seventh = await evaluation.post("/v1/designations", headers=city, json={**body, "party_org_id": orgs[6]["id"]})
    assert seventh.status_code == 409
    problem = seventh.json()
    assert problem["type"].endswith("/quota-exceeded")
    assert problem["quota"] == {
        "region_code": LUZHOU,
        "year": 2027,
        "level": "city",
        "type": "model",
        "label": "市级示范型",
        "quota": 6,
    }
    assert problem["used"] == 6 and "泸州市" in problem["detail"]

    # Other types and other years have their own places.
    compliant = await evaluation.post(
        "/v1/designations", headers=city, json={**body, "party_org_id": orgs[6]["id"], "type": "compliant"}
    )
    assert compliant.status_code == 201
    next_year = await evaluation.post(
        "/v1/designations", headers=city, json={**body, "party_org_id": orgs[6]["id"], "year": 2028}
    )
    assert next_year.status_code == 201

    quotas = (await evaluation.get("/v1/designation-quotas", params={"year": 2027}, headers=district)).json()
    assert {(q["type"], q["quota"], q["used"], q["remaining"]) for q in quotas} == {
        ("model", 6, 6, 0),
        ("compliant", 20, 1, 19),
    }

    revoked = await evaluation.post(f"/v1/designations/{made[0]['id']}:revoke", headers=city)
    assert revoked.json()["status"] == "revoked"
    freed = await evaluation.post("/v1/designations", headers=city, json={**body, "party_org_id": orgs[6]["id"]})
    assert freed.status_code == 201
    listed = (await evaluation.get("/v1/designations", params={"year": 2027, "type": "model"}, headers=district)).json()
    assert sum(d["status"] == "active" for d in listed["items"]) == 6

    outsider = await make_user(db, role="officer", region="000000000000", username="national")
    assert (await evaluation.get("/v1/designations", headers=outsider)).status_code == 200
    other_city = await make_user(db, role="officer", region="510000000000")
    assert len((await evaluation.get("/v1/designations", headers=other_city)).json()["items"]) == 9


async def test_two_officials_cannot_both_take_the_last_place(db, registry, evaluation, admin) -> None:
    import asyncio

    orgs = await _luzhou(db, registry, admin, 2)
    city = await make_user(db, role="officer", region=LUZHOU)
    await evaluation.put(
        "/v1/designation-quotas",
        headers=city,
        json={"region_code": LUZHOU, "year": 2027, "level": "city", "type": "leading", "quota": 1},
    )
    results = await asyncio.gather(
        *(
            evaluation.post(
                "/v1/designations",
                headers=city,
                json={"party_org_id": po["id"], "year": 2027, "level": "city", "type": "leading"},
            )
            for po in orgs
        )
    )
    assert sorted(r.status_code for r in results) == [201, 409]
    refused = next(r for r in results if r.status_code == 409).json()
    assert (refused["quota"]["quota"], refused["used"]) == (1, 1)


async def test_quotas_and_designations_stay_in_the_jurisdiction(db, registry, evaluation, admin) -> None:
    orgs = await _luzhou(db, registry, admin, 1)
    await import_tree(registry, admin)  # 湖南 as well
    changde = await make_user(db, role="officer", region="430700000000")
    body = {"region_code": LUZHOU, "year": 2027, "level": "city", "type": "model", "quota": 6}
    assert (await evaluation.put("/v1/designation-quotas", headers=changde, json=body)).status_code == 404
    assert (await evaluation.get("/v1/designation-quotas", headers=changde)).json() == []
    designate = {"party_org_id": orgs[0]["id"], "year": 2027, "level": "city", "type": "model"}
    assert (await evaluation.post("/v1/designations", headers=changde, json=designate)).status_code == 404
    made = await evaluation.post("/v1/designations", headers=admin, json=designate)
    assert made.status_code == 201
    assert (await evaluation.post(f"/v1/designations/{made.json()['id']}:revoke", headers=changde)).status_code == 404
    extra = await evaluation.put("/v1/designation-quotas", headers=admin, json={**body, "quota": -1, "x": 1})
    assert extra.status_code == 422 and {e["field"] for e in extra.json()["errors"]} == {"quota", "x"}
