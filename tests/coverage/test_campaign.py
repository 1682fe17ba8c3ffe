"""A survey campaign end to end: assignments, sync to two phones, idempotent visits, review, ledger, figures."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from shared.settings import get_settings
from tests.helpers import (
    LIXIAN,
    credit_code,
    feeds_caught_up,
    import_orgs,
    import_tree,
    make_user,
    org_record,
    recompute,
    settle,
)

TOWN_A, COMMUNITY, TOWN_B = "430723100000", "430723100001", "430723101000"
TODAY = date.today()


def at(days_ago: int, hour: int = 10) -> str:
    return (
        datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    ).isoformat()


@pytest.fixture
async def field(db, redis, registry, coverage, admin) -> dict[str, Any]:
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, formal_members=2),
            org_record(2, formal_members=0),  # 澧州社区 (town A)
            org_record(3, region_code=TOWN_A, has_fixed_premises=None),  # scope unknown
            org_record(4, region_code=TOWN_A, employees=2),  # out of scope
            org_record(5, region_code=TOWN_B),
            org_record(6, region_code=TOWN_B),  # town B
            org_record(7, region_code="430702001000"),  # another county
        ],
    )
    surveyors = []
    for name in ("surveyor.a", "surveyor.b"):
        surveyors.append(await make_user(db, role="surveyor", region=LIXIAN, username=name))
    ids = {}
    for name, headers in zip(("a", "b"), surveyors, strict=True):
        ids[name] = (await coverage.get("/v1/auth/me", headers=headers)).json()
    async with db.session() as session:
        found = await session.execute(text("SELECT username, id FROM staff_user WHERE role = 'surveyor'"))
        user_ids = {r.username: r.id for r in found}
    officer = await make_user(db, role="officer", region=LIXIAN)
    campaign = await coverage.post(
        "/v1/campaigns",
        headers=officer,
        json={
            "name": "2026年澧县两新组织摸底排查",
            "region_code": LIXIAN,
            "kinds": ["enterprise", "social_org"],
            "rounds": [
                {
                    "number": 1,
                    "starts_on": (TODAY - timedelta(days=20)).isoformat(),
                    "ends_on": (TODAY - timedelta(days=1)).isoformat(),
                },
                {"number": 2, "starts_on": TODAY.isoformat(), "ends_on": (TODAY + timedelta(days=30)).isoformat()},
            ],
            "target_rate": 1.0,
        },
    )
    assert campaign.status_code == 201, campaign.text
    cid = campaign.json()["id"]
    for team, township, user in (("第一摸排小组", TOWN_A, "surveyor.a"), ("第二摸排小组", TOWN_B, "surveyor.b")):
        made = await coverage.post(
            f"/v1/campaigns/{cid}/teams",
            headers=officer,
            json={"name": team, "surveyor_ids": [str(user_ids[user])], "townships": [township]},
        )
        assert made.status_code == 201, made.text
    await settle(db, redis)
    return {"campaign": cid, "officer": officer, "a": surveyors[0], "b": surveyors[1], "user_ids": user_ids}


async def sync_all(coverage, headers: dict[str, str], cursor: str | None = None) -> tuple[dict[str, Any], str]:
    await feeds_caught_up()
    items: dict[str, Any] = {}
    while True:
        page = (
            await coverage.get(
                "/v1/mobile/sync", headers=headers, params={"limit": 3, **({"after": cursor} if cursor else {})}
            )
        ).json()
        for item in page["items"]:
            items[item["assignment_id"]] = item
        cursor = page["cursor"]
        if not page["more"]:
            return items, cursor


async def generate(coverage, field) -> dict[str, Any]:
    response = await coverage.post(
        f"/v1/campaigns/{field['campaign']}/assignments:generate", headers=field["officer"], json={"round": 1}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_assignments_go_to_the_team_of_each_township(db, coverage, field) -> None:
    result = await generate(coverage, field)
    # In scope or unknown: 1, 2, 3 in town A and 5, 6 in town B; 4 is too small, 7 in another county.
    assert (result["assigned"], result["unassigned"], result["already_assigned"]) == (5, 0, 0)
    assert sorted(result["by_team"].values()) == [2, 3]
    again = await generate(coverage, field)
    assert (again["assigned"], again["already_assigned"]) == (0, 5)

    a_items, a_cursor = await sync_all(coverage, field["a"])
    b_items, _ = await sync_all(coverage, field["b"])
    a_codes = {i["assignment"]["organization"]["credit_code"] for i in a_items.values()}
    assert a_codes == {credit_code(1), credit_code(2), credit_code(3)}
    assert {i["assignment"]["organization"]["credit_code"] for i in b_items.values()} == {
        credit_code(5),
        credit_code(6),
    }
    first = next(iter(a_items.values()))["assignment"]
    assert first["campaign_name"] == "2026年澧县两新组织摸底排查" and first["previous_visit"] is None
    nothing_new, same = await sync_all(coverage, field["a"], a_cursor)
    assert nothing_new == {} and same == a_cursor

    # Moving an assignment takes it off one phone and puts it on the other.
    moved_id = next(
        i for i, item in a_items.items() if item["assignment"]["organization"]["credit_code"] == credit_code(3)
    )
    assignment = await coverage.get(f"/v1/assignments/{moved_id}", headers=field["officer"])
    teams = (await coverage.get(f"/v1/campaigns/{field['campaign']}/teams", headers=field["officer"])).json()
    team_b = next(t for t in teams if t["name"] == "第二摸排小组")
    moved = await coverage.patch(
        f"/v1/assignments/{moved_id}",
        json={"team_id": team_b["id"]},
        headers={**field["officer"], "If-Match": assignment.headers["etag"]},
    )
    assert moved.status_code == 200 and moved.json()["surveyor_id"] == str(field["user_ids"]["surveyor.b"])
    removed, _ = await sync_all(coverage, field["a"], a_cursor)
    assert removed == {moved_id: {"op": "remove", "assignment_id": moved_id, "assignment": None}}
    b_after, _ = await sync_all(coverage, field["b"])
    assert b_after[moved_id]["op"] == "upsert"


def visit(assignment_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "assignment_id": assignment_id,
        "visited_at": at(5),
        "outcome": "operating",
        **fields,
    }


async def test_a_field_round_from_phone_to_ledger_and_figures(db, redis, registry, coverage, admin, field) -> None:
    await generate(coverage, field)
    a_items, a_cursor = await sync_all(coverage, field["a"])
    b_items, _ = await sync_all(coverage, field["b"])
    by_code = {i["assignment"]["organization"]["credit_code"]: aid for aid, i in a_items.items()}
    other = next(iter(b_items))
    before = (await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=admin)).json()["total"]

    v1 = visit(by_code[credit_code(1)], formal_members=4, employees=28, willing_to_establish=True)
    v2 = visit(by_code[credit_code(2)], outcome="zombie", has_business_activity=False, notes="厂房闲置，无人员")
    v3 = visit(by_code[credit_code(3)], has_fixed_premises=True, employees=15)
    found = {
        "id": str(uuid.uuid4()),
        "campaign_id": field["campaign"],
        "visited_at": at(3),
        "outcome": "operating",
        "new_organization": {"name": "澧县新发现餐饮有限公司", "address": "澧阳路8号", "region_code": COMMUNITY},
        "employees": 12,
        "has_fixed_premises": True,
        "has_business_activity": True,
        "formal_members": 1,
    }
    copy_of_v1 = {**v1, "id": str(uuid.uuid4())}
    batch = [
        v1,
        v2,
        v3,
        found,
        copy_of_v1,
        {**v1, "notes": "same id, other content"},  # conflict inside the batch
        visit(other),  # someone else's assignment
        {"id": "not-a-uuid", "outcome": "operating"},
    ]  # malformed
    response = await coverage.post("/v1/mobile/visits", json={"visits": batch}, headers=field["a"])
    assert response.status_code == 200, response.text
    answer = response.json()
    statuses = [item["status"] for item in answer["items"]]
    assert statuses == ["accepted", "accepted", "accepted", "accepted", "duplicate", "conflict", "invalid", "invalid"]
    assert answer["items"][4]["duplicate_of"] == v1["id"]
    assert answer["items"][6]["reasons"] == [{"field": "assignment_id", "reason": "no such assignment of yours"}]
    assert (answer["accepted"], answer["duplicate"], answer["conflict"], answer["invalid"]) == (4, 1, 1, 2)

    # The phone lost the answer and sends everything again: same answers, no new rows.
    again = (await coverage.post("/v1/mobile/visits", json={"visits": batch}, headers=field["a"])).json()
    assert [i["status"] for i in again["items"]] == statuses
    assert again["items"][0]["received_at"] == answer["items"][0]["received_at"]
    changed = (
        await coverage.post("/v1/mobile/visits", headers=field["a"], json={"visits": [{**v2, "outcome": "closed"}]})
    ).json()
    assert changed["items"][0]["status"] == "conflict"
    # An offline batch arrives late and out of order: visited during round 1, sent today.
    late = visit(by_code[credit_code(1)], visited_at=at(9), formal_members=3)
    after_round = visit(by_code[credit_code(1)], visited_at=at(0, hour=1), formal_members=4)
    late_answer = (
        await coverage.post("/v1/mobile/visits", json={"visits": [after_round, late]}, headers=field["a"])
    ).json()
    assert [(i["status"], i["late"]) for i in late_answer["items"]] == [("accepted", True), ("accepted", False)]
    async with db.session() as session:
        assert (await session.execute(text("SELECT count(*) FROM visit"))).scalar() == 6

    officer = field["officer"]
    assert (await coverage.post(f"/v1/visits/{v1['id']}:verify", headers=field["a"])).status_code == 403
    pending = (
        await coverage.get(
            "/v1/visits", params={"review_status": "pending", "campaign_id": field["campaign"]}, headers=officer
        )
    ).json()
    assert len(pending["items"]) == 6
    for v in (v1, v2, found):
        assert (await coverage.post(f"/v1/visits/{v['id']}:verify", headers=officer)).status_code == 200
    rejected = await coverage.post(
        f"/v1/visits/{v3['id']}:reject", headers=officer, json={"reason": "照片与企业名称不符，请重新走访"}
    )
    assert rejected.json()["review_status"] == "rejected"
    twice = await coverage.post(f"/v1/visits/{v1['id']}:verify", headers=officer)
    assert twice.status_code == 409
    # The surveyor learns the outcome at the next sync.
    news, _ = await sync_all(coverage, field["a"], a_cursor)
    told = news[by_code[credit_code(3)]]["assignment"]
    assert told["status"] == "rejected"
    assert told["rejections"][0]["reason"] == "照片与企业名称不符，请重新走访"

    confirm = await coverage.post(
        f"/v1/visits/{found['id']}/registration:confirm", headers=officer, json={"industry_code": "H6210"}
    )
    assert confirm.status_code == 200 and confirm.json()["registration_status"] == "registered"
    await settle(db, redis, "registry", "coverage")
    await settle(db, redis, "coverage")

    zombie = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(2)}", headers=admin)).json()
    assert zombie["status"] == "zombie" and zombie["has_business_activity"] is False
    history = (await registry.get(f"/v1/organizations/{zombie['id']}/history", headers=admin)).json()["items"]
    assert history[-1]["source"] == "visit" and history[-1]["action"] == "status_changed"
    assert history[-1]["reason"].startswith("摸排走访核实（第1轮") and "厂房闲置" in history[-1]["reason"]
    assert history[-1]["actor"].startswith("system:visit verified by user:")
    one = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    assert (one["formal_members"], one["employees"]) == (4, 28)
    new = (
        await registry.get(f"/v1/organizations/{confirm.json()['registered_organization_id']}", headers=admin)
    ).json()
    assert new["name"] == "澧县新发现餐饮有限公司" and new["credit_code"] is None and new["in_scope"] is True
    assert new["industry_code"] == "H6210"

    after = (await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=admin)).json()["total"]
    # The zombie leaves the denominator; the organization found in the field joins it.
    assert after["in_scope"] == before["in_scope"] - 1 + 1
    assert after["registered"] == before["registered"] + 1 and after["active"] == before["active"]

    progress = (await coverage.get(f"/v1/campaigns/{field['campaign']}/progress", headers=officer)).json()
    assert progress["by_round"]["1"] == {"assigned": 5, "visited": 3, "verified": 2, "rejected": 1, "remaining": 2}
    assert progress["by_team"]["第二摸排小组"]["remaining"] == 2
    assert (progress["zombies_cleared"], progress["new_found"], progress["new_registered"]) == (1, 1, 1)
    assert progress["outcomes"] == {"operating": 2, "zombie": 1}
    assert (progress["registered"], progress["in_scope"]) == (7, 4)  # 6 listed + 1 found; 1, 3?, 5, 6, new


def phone_jpeg(color: tuple[int, int, int] = (180, 40, 40)) -> bytes:
    """A JPEG as a phone writes it: EXIF with the maker, model and serial numbers, and GPS."""
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "HUAWEI", "NOH-AN00"  # make, model
    exif[0xA431] = "SN-PHONE-4F2A9C"  # body serial number
    exif[0x013B] = "LI-SI-OWNER"  # artist: the owner's name
    out = io.BytesIO()
    Image.new("RGB", (320, 240), color).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


async def test_photos_are_stored_once_by_content_without_their_metadata(
    db, coverage, field, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("LIANGXIN_PHOTO_DIR", str(tmp_path / "photos"))
    get_settings.cache_clear()
    try:
        await generate(coverage, field)
        a_items, _ = await sync_all(coverage, field["a"])
        first, second = (visit(aid) for aid in list(a_items)[:2])
        await coverage.post("/v1/mobile/visits", json={"visits": [first, second]}, headers=field["a"])
        jpeg = phone_jpeg()
        assert b"SN-PHONE-4F2A9C" in jpeg and b"LI-SI-OWNER" in jpeg
        url = f"/v1/mobile/visits/{first['id']}/photos"
        made = await coverage.post(url, headers=field["a"], files={"file": ("door.jpg", jpeg, "image/jpeg")})
        assert made.status_code == 200 and made.json()["new"] is True and made.json()["content_type"] == "image/jpeg"
        assert made.json()["file_name"] == "door.jpg"
        resent = await coverage.post(url, headers=field["a"], files={"file": ("door.jpg", jpeg, "image/jpeg")})
        assert resent.json()["new"] is False and resent.json()["sha256"] == made.json()["sha256"]
        shared = await coverage.post(
            f"/v1/mobile/visits/{second['id']}/photos",
            headers=field["a"],
            files={"file": ("same.jpg", jpeg, "image/jpeg")},
        )
        assert shared.json()["new"] is True
        [stored] = list((tmp_path / "photos").rglob("*.jpg"))
        kept = stored.read_bytes()
        assert b"SN-PHONE-4F2A9C" not in kept and b"HUAWEI" not in kept and b"LI-SI-OWNER" not in kept
        assert b"Exif" not in kept and kept.startswith(b"\xff\xd8\xff")
        not_image = await coverage.post(url, headers=field["a"], files={"file": ("x.gif", b"GIF89a....", "image/gif")})
        assert not_image.status_code == 415
        broken = jpeg[:40] + b"\x00" * 200  # starts like a JPEG, decodes as nothing
        assert (await coverage.post(url, headers=field["a"], files={"file": ("b.jpg", broken)})).status_code == 415
        not_mine = await coverage.post(url, headers=field["b"], files={"file": ("p.jpg", jpeg, "image/jpeg")})
        assert not_mine.status_code == 404
        # The reviewer sees the photo the visit lists, as stored.
        listed = (await coverage.get("/v1/visits", headers=field["officer"])).json()["items"]
        [ref] = next(v["photos"] for v in listed if v["id"] == first["id"])
        assert ref["file_name"] == "door.jpg" and ref["sha256"] == made.json()["sha256"]
        shown = await coverage.get(ref["href"], headers=field["officer"])
        assert shown.status_code == 200 and shown.content == kept and shown.headers["content-type"] == "image/jpeg"
    finally:
        get_settings.cache_clear()


async def test_a_visit_the_registry_refuses_says_why_on_the_visit(db, redis, registry, coverage, admin, field) -> None:
    """An organization moved to another county after its visit was assigned: the county official's
    verification cannot change it any more. The registry refuses, changes nothing, and the reason
    reaches the visit (and the operators); the visit verified alongside shows it was applied."""
    await generate(coverage, field)
    a_items, _ = await sync_all(coverage, field["a"])
    by_code = {i["assignment"]["organization"]["credit_code"]: aid for aid, i in a_items.items()}
    moved = visit(by_code[credit_code(1)], outcome="zombie", has_business_activity=False, notes="厂房闲置")
    kept = visit(by_code[credit_code(2)], formal_members=3)
    posted = (await coverage.post("/v1/mobile/visits", json={"visits": [moved, kept]}, headers=field["a"])).json()
    assert [i["status"] for i in posted["items"]] == ["accepted", "accepted"]

    city = await make_user(db, role="officer", region="430700000000")
    org = await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=city)
    relocated = await registry.patch(
        f"/v1/organizations/{org.json()['id']}",
        json={"region_code": "430702001000"},
        headers={**city, "If-Match": org.headers["etag"]},
    )
    assert relocated.status_code == 200, relocated.text

    for v in (moved, kept):
        verified = await coverage.post(f"/v1/visits/{v['id']}:verify", headers=field["officer"])
        assert verified.status_code == 200 and verified.json()["ledger_status"] == "pending"
    await settle(db, redis, "registry")
    # A full recount while the registry's answers are still queued counts the organizations; it
    # must not swallow the answers, which only the visits hold.
    await recompute()
    await settle(db, redis, "coverage")

    visits = {
        v["id"]: v
        for v in (await coverage.get("/v1/visits", params={"campaign_id": field["campaign"]}, headers=admin)).json()[
            "items"
        ]
    }
    assert visits[moved["id"]]["review_status"] == "verified"
    assert visits[moved["id"]]["ledger_status"] == "refused"
    assert visits[moved["id"]]["ledger_error"] == (
        "organization_id: the organization is no longer within the verifier's jurisdiction "
        "(it moved after the visit was assigned)"
    )
    assert (visits[kept["id"]]["ledger_status"], visits[kept["id"]]["ledger_error"]) == ("applied", None)

    # Nothing of the refused visit reached the ledger; the other one did.
    org = (await registry.get(f"/v1/organizations/{org.json()['id']}", headers=admin)).json()
    assert (org["status"], org["has_business_activity"], org["region_code"]) == ("active", True, "430702001000")
    history = (await registry.get(f"/v1/organizations/{org['id']}/history", headers=admin)).json()["items"]
    assert all(line["source"] != "visit" for line in history)
    two = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(2)}", headers=admin)).json()
    assert two["formal_members"] == 3

    # The operators see the refusal, with its reason, in the registry (whose consumer refused it).
    refused = (await registry.get("/v1/events/failed", params={"status": "refused"}, headers=admin)).json()["items"]
    assert [(r["event_type"], r["status"]) for r in refused] == [("coverage.visit.verified", "refused")]
    assert "no longer within the verifier's jurisdiction" in refused[0]["reason"]
    assert (await registry.get("/v1/events/failed", headers=admin)).json()["items"] == []
    assert 'liangxin_events_refused{service="registry"} 1.0' in (await registry.get("/metrics")).text
    retry = await registry.post(f"/v1/events/{refused[0]['event_id']}:retry", headers=admin)
    assert retry.status_code == 409  # an answer on the merits: the same visit would be refused again
