"""The field app, second round: a campaign's own form from an uploaded XLSForm, versions, answers
checked per version, photos in an S3 server that reviewers can open inside their jurisdiction,
paradata flags, reference data, and phones bound to a device an official can revoke."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import text

from tests.coverage.test_campaign import phone_jpeg
from tests.helpers import (
    LIXIAN,
    WULING,
    credit_code,
    feeds_caught_up,
    import_orgs,
    import_tree,
    make_user,
    org_record,
    settle,
)

TOWN_A, COMMUNITY = "430723100000", "430723100001"
TODAY = date.today()
PASSWORD = "correct-horse-battery"  # tests.helpers.make_user's
# 澧州社区, and a point about 5 km east of it (0.05° of longitude at 29.6°N ≈ 4.8 km).
HOME = (29.6329, 111.7580)
FAR = (29.6329, 111.8080)


def xlsform(survey: list[list[Any]], choices: list[list[Any]], title: str = "澧县两新组织摸排表") -> bytes:
    """An XLSForm workbook as an official would save it from Excel or WPS."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "survey"
    for row in survey:
        sheet.append(row)
    listing = book.create_sheet("choices")
    for row in [["list_name", "name", "label"], *choices]:
        listing.append(row)
    book.create_sheet("settings").append(["form_title"])
    book["settings"].append([title])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


SURVEY_HEADER = ["type", "name", "label", "required", "constraint", "relevant", "constraint_message"]
FORM_V1 = xlsform(
    [
        SURVEY_HEADER,
        ["start", "start", "", "", "", "", ""],
        ["integer", "formal_members", "正式党员数", "yes", ". <= 1000", "", ""],
        ["select_one yes_no", "has_trade_union", "是否建立工会", "yes", "", "", ""],
        [
            "integer",
            "union_members",
            "工会会员人数",
            "yes",
            ". >= 1 and . <= 500",
            "${has_trade_union} = 'yes'",
            "工会会员人数应在1至500之间",
        ],
        ["select_multiple opinions", "opinions", "意见建议", "", "", "", ""],
        ["image", "door_photo", "门头照片", "", "", "", ""],
    ],
    [
        ["yes_no", "yes", "是"],
        ["yes_no", "no", "否"],
        ["opinions", "funding", "希望增加党建经费"],
        ["opinions", "training", "希望开展党务培训"],
        ["opinions", "none", "无"],
    ],
)


@pytest.fixture
async def campaign(db, redis, registry, coverage, admin) -> dict[str, Any]:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(n, formal_members=1) for n in (1, 2, 3, 4)])
    await make_user(db, role="surveyor", region=LIXIAN, username="surveyor.li")
    async with db.session() as session:
        surveyor_id = (
            await session.execute(text("SELECT id FROM staff_user WHERE username = 'surveyor.li'"))
        ).scalar_one()
    officer = await make_user(db, role="officer", region=LIXIAN)
    made = await coverage.post(
        "/v1/campaigns",
        headers=officer,
        json={
            "name": "2026年澧县两新组织摸底排查",
            "region_code": LIXIAN,
            "kinds": ["enterprise"],
            "rounds": [
                {
                    "number": 1,
                    "starts_on": (TODAY - timedelta(days=10)).isoformat(),
                    "ends_on": (TODAY + timedelta(days=20)).isoformat(),
                }
            ],
        },
    )
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    team = await coverage.post(
        f"/v1/campaigns/{cid}/teams",
        headers=officer,
        json={"name": "第一摸排小组", "surveyor_ids": [str(surveyor_id)], "townships": [TOWN_A]},
    )
    assert team.status_code == 201, team.text
    await settle(db, redis)
    return {"id": cid, "officer": officer, "surveyor_id": str(surveyor_id)}


async def sign_in(registry, device_id: str = "android-8f1c2e") -> dict[str, Any]:
    answer = await registry.post(
        "/v1/auth/device-token",
        json={"username": "surveyor.li", "password": PASSWORD, "device_id": device_id, "device_name": "华为 Mate 60"},
    )
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    tokens["headers"] = {"Authorization": f"Bearer {tokens['access_token']}"}
    return tokens


async def sync_all(coverage, headers: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    await feeds_caught_up()
    items: dict[str, Any] = {}
    cursor = None
    while True:
        page = await coverage.get("/v1/mobile/sync", headers=headers, params={"after": cursor} if cursor else {})
        assert page.status_code == 200, page.text
        body = page.json()
        items |= {i["assignment_id"]: i for i in body["items"]}
        cursor = body["cursor"]
        if not body["more"]:
            return items, body["forms"]


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def visit(assignment_id: str, *, form_version: int, answers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    started = minutes_ago(30)
    return {
        "id": str(uuid.uuid4()),
        "assignment_id": assignment_id,
        "visited_at": (started + timedelta(minutes=6)).isoformat(),
        "outcome": "operating",
        "formal_members": 2,
        "form_version": form_version,
        "answers": answers,
        "paradata": {
            "device_id": "android-8f1c2e",
            "app_version": "2.3.1",
            "started_at": started.isoformat(),
            "ended_at": (started + timedelta(minutes=6)).isoformat(),
            "gps_accuracy_m": 8.5,
            "fix_time": (started + timedelta(minutes=5)).isoformat(),
        },
        **fields,
    }


async def test_a_campaign_with_its_own_form_from_phone_to_reviewer(
    db, redis, registry, coverage, campaign, s3_photos
) -> None:
    officer, cid = campaign["officer"], campaign["id"]
    # An official uploads the form as an XLSForm workbook: version 1.
    uploaded = await coverage.post(
        f"/v1/campaigns/{cid}/form:upload",
        headers=officer,
        files={"file": ("摸排表.xlsx", FORM_V1, "application/octet-stream")},
    )
    assert uploaded.status_code == 201, uploaded.text
    v1 = uploaded.json()
    assert (v1["version"], v1["source"], v1["title"]) == (1, "xlsform", "澧县两新组织摸排表")
    by_name = {q["name"]: q for q in v1["questions"]}
    assert list(by_name) == ["formal_members", "has_trade_union", "union_members", "opinions", "door_photo"]
    assert by_name["has_trade_union"]["type"] == "yes_no"
    assert by_name["union_members"]["relevant"] == "${has_trade_union} = 'yes'"
    assert [c["label"] for c in by_name["opinions"]["choices"]] == ["希望增加党建经费", "希望开展党务培训", "无"]

    generated = await coverage.post(f"/v1/campaigns/{cid}/assignments:generate", headers=officer, json={"round": 1})
    assert generated.json()["assigned"] == 4
    # One organization's place is known (an earlier verified visit): 澧州社区's centre.
    async with db.session() as session:
        await session.execute(
            text("UPDATE organization SET latitude = :lat, longitude = :lon WHERE credit_code = :c"),
            {"lat": HOME[0], "lon": HOME[1], "c": credit_code(3)},
        )

    # The phone signs in (a refresh token bound to it) and syncs the form with its assignments.
    phone = await sign_in(registry)
    items, synced_forms = await sync_all(coverage, phone["headers"])
    assert [f["version"] for f in synced_forms] == [1] and synced_forms[0]["questions"] == v1["questions"]
    assert {i["assignment"]["form_version"] for i in items.values()} == {1}
    by_code = {i["assignment"]["organization"]["credit_code"]: aid for aid, i in items.items()}

    # Meanwhile the official edits the form: version 2 adds a question for relocated organizations.
    edited = {
        "title": v1["title"],
        "questions": [
            *v1["questions"],
            {
                "name": "new_address",
                "type": "text",
                "label": "迁入地址",
                "required": True,
                "relevant": "${outcome} = 'relocated'",
            },
        ],
    }
    v2 = await coverage.put(f"/v1/campaigns/{cid}/form", headers=officer, json=edited)
    assert v2.status_code == 201 and v2.json()["version"] == 2, v2.text

    # The phone, still on version 1, posts its visits: one breaks a constraint.
    ok = visit(
        by_code[credit_code(1)],
        form_version=1,
        answers={
            "has_trade_union": True,
            "union_members": 12,
            "opinions": ["funding", "training"],
            "door_photo": "d.jpg",
        },
    )
    too_many = visit(by_code[credit_code(2)], form_version=1, answers={"has_trade_union": True, "union_members": 900})
    far = visit(
        by_code[credit_code(3)],
        form_version=1,
        answers={"has_trade_union": False},
        location={"lat": FAR[0], "lon": FAR[1]},
    )
    relocated = visit(
        by_code[credit_code(4)],
        form_version=2,
        outcome="relocated",
        answers={"has_trade_union": False, "new_address": "津市市嘉山街道"},
    )
    posted = await coverage.post(
        "/v1/mobile/visits", headers=phone["headers"], json={"visits": [ok, too_many, far, relocated]}
    )
    assert posted.status_code == 200, posted.text
    results = posted.json()["items"]
    assert [r["status"] for r in results] == ["accepted", "invalid", "accepted", "accepted"]
    assert results[1]["reasons"] == [{"field": "answers.union_members", "reason": "工会会员人数应在1至500之间"}]

    # The reviewer opens the photo, kept in the S3 server; a reviewer of another county cannot.
    photo = phone_jpeg()
    stored = await coverage.post(
        f"/v1/mobile/visits/{ok['id']}/photos", headers=phone["headers"], files={"file": ("d.jpg", photo, "image/jpeg")}
    )
    assert stored.status_code == 200, stored.text
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_photos["LIANGXIN_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test-access-key",
        aws_secret_access_key="test-secret-key",
    )
    sha = stored.json()["sha256"]
    in_s3 = s3.get_object(Bucket=s3_photos["LIANGXIN_S3_BUCKET"], Key=f"photos/{sha[:2]}/{sha}.jpg")["Body"].read()
    assert b"SN-PHONE-4F2A9C" not in in_s3
    listed = (await coverage.get("/v1/visits", headers=officer, params={"campaign_id": cid})).json()["items"]
    shown = {v["id"]: v for v in listed}
    assert shown[ok["id"]]["answers"]["union_members"] == 12 and shown[ok["id"]]["form_version"] == 1
    [ref] = shown[ok["id"]]["photos"]
    opened = await coverage.get(ref["href"], headers=officer)
    assert opened.status_code == 200 and opened.content == in_s3
    elsewhere = await make_user(db, role="officer", region=WULING)
    refused = await coverage.get(ref["href"], headers=elsewhere)
    assert refused.status_code == 404
    missing = await coverage.get(f"/v1/visits/{uuid.uuid4()}/photos/{sha}", headers=elsewhere)
    assert refused.json()["detail"] == missing.json()["detail"]

    # The visit 5 km from the organization's known place is flagged for the reviewer, not refused.
    flagged = (await coverage.get("/v1/visits", headers=officer, params={"flagged": "true"})).json()["items"]
    assert [v["id"] for v in flagged] == [far["id"]]
    [flag] = flagged[0]["flags"]
    assert flag["code"] == "far_from_organization" and flag["reason"].startswith("走访定位距该组织已知位置约4.8公里")
    assert shown[ok["id"]]["flags"] == [] and shown[ok["id"]]["paradata"]["app_version"] == "2.3.1"

    # The answers export: one row per visit, the questions as Chinese headers.
    book = await coverage.get(f"/v1/campaigns/{cid}/answers.xlsx", headers=officer)
    rows = list(load_workbook(io.BytesIO(book.content)).active.iter_rows(values_only=True))
    header = rows[0]
    assert {"正式党员数", "是否建立工会", "工会会员人数", "意见建议", "门头照片", "迁入地址"} <= set(header)
    assert len(rows) == 1 + 3
    ok_row = next(dict(zip(header, r, strict=True)) for r in rows[1:] if r[0] == ok["id"])
    assert ok_row["意见建议"] == "希望增加党建经费、希望开展党务培训" and ok_row["是否建立工会"] == "是"
    assert ok_row["工会会员人数"] == 12 and ok_row["表单版本"] == 1

    # An official revokes the phone: its next sync is refused, and tells it to sign in again.
    devices = (await registry.get(f"/v1/users/{campaign['surveyor_id']}/devices", headers=officer)).json()
    assert [d["device_id"] for d in devices] == ["android-8f1c2e"]
    revoked = await registry.post(
        f"/v1/users/{campaign['surveyor_id']}/devices/{devices[0]['id']}:revoke", headers=officer
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"], revoked.text
    cut_off = await coverage.get("/v1/mobile/sync", headers=phone["headers"])
    assert cut_off.status_code == 401 and cut_off.json()["type"].endswith("/device-revoked")
    assert "请重新登录" in cut_off.json()["detail"] and "sign in again" in cut_off.json()["detail"]
    refreshed = await registry.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert refreshed.status_code == 401 and refreshed.json()["type"].endswith("/device-revoked")
    # The visit it could not send is still on the phone: after signing in again it goes in, once.
    unsent = {**too_many, "id": str(uuid.uuid4()), "answers": {"has_trade_union": True, "union_members": 40}}
    refused_post = await coverage.post("/v1/mobile/visits", headers=phone["headers"], json={"visits": [unsent]})
    assert refused_post.status_code == 401
    again = await sign_in(registry)
    first = (await coverage.post("/v1/mobile/visits", headers=again["headers"], json={"visits": [unsent]})).json()
    second = (await coverage.post("/v1/mobile/visits", headers=again["headers"], json={"visits": [unsent]})).json()
    assert first["items"][0]["status"] == second["items"][0]["status"] == "accepted"
    assert first["items"][0]["received_at"] == second["items"][0]["received_at"]
    devices = (await registry.get(f"/v1/users/{campaign['surveyor_id']}/devices", headers=officer)).json()
    assert sorted(d["revoked_at"] is None for d in devices) == [False, True]

    # Verifying a visit that carried a GPS fix gives the organization its place.
    verified = await coverage.post(f"/v1/visits/{far['id']}:verify", headers=officer)
    assert verified.status_code == 200
    await settle(db, redis, "registry", "coverage")
    async with db.session() as session:
        place = (
            await session.execute(
                text("SELECT latitude, longitude FROM organization WHERE credit_code = :c"), {"c": credit_code(3)}
            )
        ).one()
    assert tuple(place) == FAR
