"""Organizations: validation, derived scope, optimistic locking, ledger history, filters."""

from __future__ import annotations

from typing import Any

from tests.helpers import LIXIAN, WULING, credit_code, import_orgs, import_tree, make_api_key, make_user, org_record


async def create(registry, headers: dict[str, str], **fields: Any) -> Any:
    response = await registry.post("/v1/organizations", json=fields, headers=headers)
    return response


async def test_a_wrong_check_character_names_the_field_and_the_expected_character(registry, admin, tree) -> None:
    good = credit_code(1)
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    response = await create(registry, admin, **org_record(1, credit_code=wrong))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "credit_code"
    assert error["reason"] == f"check character should be {good[17]!r} (got {wrong[17]!r})"
    bad_letter = await create(registry, admin, **org_record(2, credit_code="91430723MA4L0OOOO" + "1"))
    assert "I, O, S, V, Z are never used" in bad_letter.json()["errors"][0]["reason"]


async def test_registration_derives_scope_and_starts_the_ledger(registry, admin, tree) -> None:
    response = await create(registry, {**admin, "X-Request-ID": "reg-1"}, **org_record(1))
    assert response.status_code == 201, response.text
    org = response.json()
    assert org["in_scope"] is True and org["covered"] is False and org["work_covered"] is False
    assert response.headers["etag"] == '"v1"'
    small = (await create(registry, admin, **org_record(2, employees=9))).json()
    assert small["in_scope"] is False
    unknown = (await create(registry, admin, **org_record(3, has_fixed_premises=None))).json()
    assert unknown["in_scope"] is None
    social = (
        await create(registry, admin, **org_record(4, kind="social_org", employees=5, social_org_level="province"))
    ).json()
    assert social["in_scope"] is True

    history = (await registry.get(f"/v1/organizations/{org['id']}/history", headers=admin)).json()["items"]
    [entry] = history
    assert entry["action"] == "created" and entry["source"] == "manual" and entry["request_id"] == "reg-1"
    assert entry["actor"].startswith("user:") and entry["before"] is None
    assert entry["after"]["name"] == org["name"] and entry["after"]["in_scope"] is True


async def test_the_region_must_be_a_township_or_community(registry, admin, tree) -> None:
    county = await create(registry, admin, **org_record(1, region_code=LIXIAN))
    assert county.status_code == 422
    assert county.json()["errors"] == [
        {"field": "region_code", "reason": "must be a township (level 4) or a village or community (level 5)"}
    ]
    missing = await create(registry, admin, **org_record(1, region_code="430723199000"))
    assert missing.json()["errors"][0]["reason"] == "region 430723199000 is not registered"
    again = await create(registry, admin, **org_record(1))
    assert again.status_code == 201
    duplicate = await create(registry, admin, **org_record(1))
    assert duplicate.status_code == 409


async def test_edits_need_the_current_etag_and_status_changes_need_a_reason(registry, admin, tree) -> None:
    org = (await create(registry, admin, **org_record(1))).json()
    url = f"/v1/organizations/{org['id']}"
    no_etag = await registry.patch(url, json={"employees": 30}, headers=admin)
    assert no_etag.status_code == 428
    first = await registry.patch(url, json={"employees": 30}, headers={**admin, "If-Match": '"v1"'})
    assert first.status_code == 200 and first.headers["etag"] == '"v2"' and first.json()["employees"] == 30
    stale = await registry.patch(url, json={"employees": 31}, headers={**admin, "If-Match": '"v1"'})
    assert stale.status_code == 412 and stale.json()["current_etag"] == '"v2"'

    no_reason = await registry.patch(url, json={"status": "zombie"}, headers={**admin, "If-Match": '"v2"'})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"] == [{"field": "status_reason", "reason": "a status change needs a reason"}]
    zombie = await registry.patch(
        url, json={"status": "zombie", "status_reason": "走访发现无经营场所"}, headers={**admin, "If-Match": '"v2"'}
    )
    assert zombie.status_code == 200 and zombie.json()["status"] == "zombie"

    history = (await registry.get(f"{url}/history", headers=admin)).json()["items"]
    assert [h["action"] for h in history] == ["created", "updated", "status_changed"]
    assert history[1]["before"] == {"employees": 25} and history[1]["after"] == {"employees": 30}
    assert history[2]["reason"] == "走访发现无经营场所"
    assert history[2]["before"]["status"] == "active" and history[2]["after"]["status"] == "zombie"


async def test_lists_filter_within_the_jurisdiction_and_page_by_cursor(db, registry, admin, tree) -> None:
    await import_orgs(
        registry,
        admin,
        [
            org_record(1),
            org_record(2, employees=3),
            org_record(3, region_code="430723101000", industry_code="F5131"),
            org_record(4, kind="social_org", social_org_level="county", employees=40),
            org_record(5, region_code="430702001000"),
        ],
    )
    county = await make_user(db, role="officer", region=LIXIAN)

    async def codes(**params: Any) -> set[str]:
        response = await registry.get("/v1/organizations", params=params, headers=county)
        assert response.status_code == 200, response.text
        return {o["credit_code"] for o in response.json()["items"]}

    assert await codes() == {credit_code(n) for n in (1, 2, 3, 4)}
    assert await codes(region="430723101000") == {credit_code(3)}
    assert await codes(kind="social_org") == {credit_code(4)}
    assert await codes(in_scope="false") == {credit_code(2)}
    assert await codes(industry="F") == {credit_code(3)}
    assert await codes(covered="true") == set()
    assert await codes(covered="false") == {credit_code(n) for n in (1, 2, 3, 4)}
    outside = await registry.get("/v1/organizations", params={"region": WULING}, headers=county)
    assert outside.status_code == 404

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await registry.get("/v1/organizations", params=params, headers=admin)).json()
        seen += [o["credit_code"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(credit_code(n) for n in range(1, 6))
    assert (await registry.get("/v1/organizations", params={"cursor": "garbage!"}, headers=admin)).status_code == 422
    too_many = await registry.get("/v1/organizations", params={"limit": 501}, headers=admin)
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "limit"


async def test_outside_the_jurisdiction_is_not_found(db, registry, admin, tree) -> None:
    org = (await create(registry, admin, **org_record(5, region_code="430702001000"))).json()
    county = await make_user(db, role="officer", region=LIXIAN)
    assert (await registry.get(f"/v1/organizations/{org['id']}", headers=county)).status_code == 404
    by_code = await registry.get(f"/v1/organizations/by-credit-code/{org['credit_code']}", headers=county)
    assert by_code.status_code == 404
    patch = await registry.patch(
        f"/v1/organizations/{org['id']}", json={"employees": 1}, headers={**county, "If-Match": '"v1"'}
    )
    assert patch.status_code == 404
    history = await registry.get(f"/v1/organizations/{org['id']}/history", headers=county)
    assert history.status_code == 404
    # Nor can an official move an organization of the county out of it.
    own = (await create(registry, county, **org_record(6))).json()
    moved = await registry.patch(
        f"/v1/organizations/{own['id']}", json={"region_code": "430702001000"}, headers={**county, "If-Match": '"v1"'}
    )
    assert moved.status_code == 422 and moved.json()["errors"][0]["reason"] == "not within your jurisdiction"


async def test_partners_cannot_declare_zombies(db, registry, admin, tree) -> None:
    partner = await make_api_key(db, scopes=["registry:read", "registry:write"], region=LIXIAN)
    result = await import_orgs(
        registry,
        partner,
        [
            org_record(1),
            org_record(2, status="zombie", status_reason="系统判断"),
            org_record(3, status="deregistered", status_reason="市场监管局注销登记"),
        ],
    )
    assert result["created"] == 2
    assert result["errors"] == [
        {"row": 1, "field": "status", "reason": "only officials may set status 'zombie' (after a verified visit)"}
    ]


async def test_an_edit_cannot_null_a_field_the_registry_always_holds(registry, admin) -> None:
    """Found by the fuzzer: a null member count or flag reached a NOT NULL column (a 500)."""
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(1)])
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    for field in ("has_youth_league", "formal_members", "charter_includes_party_building"):
        refused = await registry.patch(
            f"/v1/organizations/{org['id']}", headers={**admin, "If-Match": f'"v{org["version"]}"'}, json={field: None}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"] == [{"field": field, "reason": "cannot be null"}]
    # A partner import that sends null for them leaves the organization as it was, row by row.
    answer = await registry.post(
        "/v1/organizations/import", headers=admin, json={"records": [org_record(1, has_youth_league=None)]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors"] == [{"row": 0, "field": "has_youth_league", "reason": "cannot be null"}]


async def test_a_number_beyond_what_the_database_holds_is_a_422(evaluation, admin) -> None:
    response = await evaluation.post(
        "/v1/funding/allocations:compute",
        headers=admin,
        json={"year": 2027, "rule_set_code": "fuyang", "rule_set_version": 287799947608482624},
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "rule_set_version"
