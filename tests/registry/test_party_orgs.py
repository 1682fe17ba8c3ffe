"""Party organizations: formation rules, coverage, transfer, dissolution, and the events they emit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.helpers import credit_code, figure_rows, import_orgs, import_tree, org_record, recompute, settle

TOWNSHIP = "430723100000"


@pytest.fixture
async def orgs(registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, formal_members=5),
            org_record(2, formal_members=2),
            org_record(3, formal_members=1),
            org_record(4, formal_members=0, region_code="430723101000"),
            org_record(5, formal_members=3),
        ],
    )


def party_org(**fields: Any) -> dict[str, Any]:
    return {
        "name": "测试党支部",
        "level": "branch",
        "formation": "single",
        "region_code": TOWNSHIP,
        "established_on": "2026-07-01",
        "covered_credit_codes": [credit_code(1)],
        "secretary_in_management": True,
        "secretary_is_investor": False,
        **fields,
    }


async def events(db: Any, event_type: str) -> list[dict[str, Any]]:
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT payload FROM registry_outbox WHERE type = :t ORDER BY seq"), {"t": event_type}
        )
        return [r.payload for r in rows]


async def org(registry, admin, n: int) -> dict[str, Any]:
    return (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(n)}", headers=admin)).json()


async def test_single_formation_needs_three_formal_members(registry, admin, orgs) -> None:
    refused = await registry.post(
        "/v1/party-orgs", json=party_org(covered_credit_codes=[credit_code(2)]), headers=admin
    )
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["field"] == "covered_credit_codes"
    assert error["reason"].startswith(
        "澧县测试企业2号有限公司 has 2 formal party member(s); single formation needs at least 3"
    )


async def test_establishing_covers_the_organization_and_tells_coverage(db, registry, admin, orgs) -> None:
    response = await registry.post("/v1/party-orgs", json=party_org(), headers=admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["covered_credit_codes"] == [credit_code(1)] and body["kind"] == "enterprise"
    covered = await org(registry, admin, 1)
    assert covered["covered"] and covered["work_covered"] and covered["party_org_id"] == body["id"]

    [event] = await events(db, "registry.party_org.established")
    assert event["after"]["formation"] == "single" and event["after"]["secretary_in_management"] is True
    [change] = event["organizations"]
    assert change["before"]["covered"] is False
    assert change["after"]["covered"] is True and change["after"]["formation"] == "single"
    history = (await registry.get(f"/v1/organizations/{covered['id']}/history", headers=admin)).json()["items"]
    assert history[-1]["action"] == "covered" and history[-1]["after"]["party_org_name"] == "测试党支部"


async def test_joint_needs_two_and_a_covered_organization_moves_only_on_request(db, registry, admin, orgs) -> None:
    lonely = await registry.post(
        "/v1/party-orgs", headers=admin, json=party_org(formation="joint", covered_credit_codes=[credit_code(2)])
    )
    assert lonely.status_code == 422
    joint = (
        await registry.post(
            "/v1/party-orgs",
            headers=admin,
            json=party_org(name="联合党支部", formation="joint", covered_credit_codes=[credit_code(2), credit_code(5)]),
        )
    ).json()

    grab = party_org(name="五号企业党支部", covered_credit_codes=[credit_code(5)])
    refused = await registry.post("/v1/party-orgs", headers=admin, json=grab)
    assert refused.status_code == 409 and "transfer=true" in refused.json()["detail"]
    moved = await registry.post("/v1/party-orgs", headers=admin, json={**grab, "transfer": True})
    assert moved.status_code == 201
    assert (await registry.get(f"/v1/party-orgs/{joint['id']}", headers=admin)).json()["covered_credit_codes"] == [
        credit_code(2)
    ]
    # The moved organization's change travels once, in the new party organization's event.
    [established] = (await events(db, "registry.party_org.established"))[1:]
    assert established["organizations"][0]["before"]["formation"] == "joint"
    assert established["organizations"][0]["after"]["formation"] == "single"
    [left] = await events(db, "registry.party_org.coverage_changed")
    assert left["party_org_id"] == joint["id"] and left["organizations"] == []


async def test_covered_organizations_must_lie_in_the_party_orgs_region(registry, admin, orgs) -> None:
    response = await registry.post(
        "/v1/party-orgs",
        headers=admin,
        json=party_org(formation="joint", covered_credit_codes=[credit_code(2), credit_code(4)]),
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "covered_credit_codes[1]",
            "reason": "澧县测试企业4号有限公司 lies outside the party organization's region",
        }
    ]


async def test_changing_coverage_and_dissolving(db, registry, admin, orgs) -> None:
    joint = (
        await registry.post(
            "/v1/party-orgs",
            headers=admin,
            json=party_org(formation="joint", covered_credit_codes=[credit_code(2), credit_code(3)]),
        )
    ).json()
    url = f"/v1/party-orgs/{joint['id']}"
    changed = await registry.put(
        f"{url}/covered-organizations", headers=admin, json={"credit_codes": [credit_code(2), credit_code(5)]}
    )
    assert changed.json()["covered_credit_codes"] == sorted([credit_code(2), credit_code(5)])
    assert not (await org(registry, admin, 3))["covered"]
    [event] = await events(db, "registry.party_org.coverage_changed")
    assert {(c["credit_code"], c["after"]["covered"]) for c in event["organizations"]} == {
        (credit_code(3), False),
        (credit_code(5), True),
    }

    future = await registry.post(f"{url}/dissolve", headers=admin, json={"dissolved_on": "2099-01-01", "reason": "x"})
    assert future.status_code == 422
    dissolved = await registry.post(
        f"{url}/dissolve", headers=admin, json={"dissolved_on": "2026-10-01", "reason": "企业迁出本县"}
    )
    assert dissolved.status_code == 200 and dissolved.json()["active"] is False
    assert dissolved.json()["covered_credit_codes"] == []
    assert not (await org(registry, admin, 2))["covered"]
    [gone] = await events(db, "registry.party_org.dissolved")
    assert gone["after"]["active"] is False and len(gone["organizations"]) == 2
    again = await registry.post(
        f"{url}/dissolve", headers=admin, json={"dissolved_on": "2026-10-01", "reason": "重复撤销"}
    )
    assert again.status_code == 409


async def test_attribute_edits_need_the_etag(db, registry, admin, orgs) -> None:
    created = await registry.post("/v1/party-orgs", json=party_org(), headers=admin)
    url = f"/v1/party-orgs/{created.json()['id']}"
    assert (await registry.patch(url, json={"secretary_is_investor": True}, headers=admin)).status_code == 428
    ok = await registry.patch(
        url, json={"secretary_is_investor": True}, headers={**admin, "If-Match": created.headers["etag"]}
    )
    assert ok.status_code == 200 and ok.json()["secretary_is_investor"] is True
    [event] = await events(db, "registry.party_org.updated")
    assert event["before"]["secretary_is_investor"] is False and event["after"]["secretary_is_investor"] is True
    listed = (await registry.get("/v1/party-orgs", params={"formation": "single"}, headers=admin)).json()
    assert [p["covered_credit_codes"] for p in listed["items"]] == [[credit_code(1)]]


async def test_an_edit_cannot_null_a_required_attribute(apps, registry, admin, orgs) -> None:
    """Found by the fuzzer: `{"functional": null}` reached the NOT NULL column and answered 500."""
    created = await registry.post("/v1/party-orgs", json=party_org(), headers=admin)
    url = f"/v1/party-orgs/{created.json()['id']}"
    current = {**admin, "If-Match": created.headers["etag"]}
    for field in ("name", "level", "functional", "secretary_in_management", "secretary_is_investor"):
        refused = await registry.patch(url, json={field: None}, headers=current)
        assert refused.status_code == 422, (field, refused.text)
        assert refused.json()["errors"] == [{"field": field, "reason": "cannot be null"}]
    # The document says so: these fields may be left out, never null; a superior may be removed.
    schema = apps["registry"].openapi()["components"]["schemas"]["PartyOrgUpdate"]["properties"]
    assert "anyOf" not in schema["functional"] and schema["functional"]["type"] == "boolean"
    assert {"type": "null"} in schema["superior_id"]["anyOf"]
    unlinked = await registry.patch(url, json={"superior_id": None}, headers=current)
    assert unlinked.status_code == 200, unlinked.text


async def test_a_large_coverage_change_travels_in_bounded_events(db, redis, registry, admin) -> None:
    """A regional party organization moving from 500 organizations to 500 others changes 1,000: its
    events carry at most 500 each (the party organization's own change once), and the counters kept
    from them equal a full recount."""
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(n) for n in range(1, 1_001)])
    made = await registry.post(
        "/v1/party-orgs",
        json=party_org(formation="regional", covered_credit_codes=[credit_code(n) for n in range(1, 501)]),
        headers=admin,
    )
    assert made.status_code == 201, made.text
    party = made.json()
    moved = await registry.put(
        f"/v1/party-orgs/{party['id']}/covered-organizations",
        json={"credit_codes": [credit_code(n) for n in range(501, 1_001)]},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    changed = await events(db, "registry.party_org.coverage_changed")
    assert [len(e["organizations"]) for e in changed] == [500, 500]
    assert changed[1]["before"] == changed[1]["after"]  # the party organization's own change counts once
    await settle(db, redis)
    kept = await figure_rows(db)
    assert kept[("430723100000", "enterprise")][3] == 500  # org_covered
    assert (await recompute())["figures_changed"] == 0
