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


async def test_an_uploaded_xlsform_is_answered_with_its_rows_and_columns(coverage, campaign) -> None:
    officer, cid = campaign["officer"], campaign["id"]

    async def upload(workbook: bytes) -> Any:
        return await coverage.post(
            f"/v1/campaigns/{cid}/form:upload", headers=officer, files={"file": ("form.xlsx", workbook)}
        )

    # What pyxform accepts but the server cannot check: each named by its cell, nothing published.
    beyond = await upload(
        xlsform(
            [
                SURVEY_HEADER,
                ["integer", "members", "党员数", "yes", ". > 0 and . < now()", "", ""],
                ["barcode", "code", "条码", "", "", "", ""],
                ["text", "note_text", "说明", "${members} > 3", "", "", ""],
                ["integer", "staff", "职工数", "", ". >= 0", "string-length(${members}) = 1 or .", ""],
            ],
            [],
        )
    )
    assert beyond.status_code == 422, beyond.text
    errors = {e["field"]: e["reason"] for e in beyond.json()["errors"]}
    assert set(errors) == {"survey[2].constraint", "survey[3].type", "survey[4].required", "survey[5].relevant"}
    assert "'now'" in errors["survey[2].constraint"] and "barcode" in errors["survey[3].type"]
    # What pyxform itself refuses (a choice list that does not exist) comes with pyxform's row.
    broken = await upload(
        xlsform([SURVEY_HEADER, ["select_one missing", "kind", "类别", "", "", "", ""]], [["yes_no", "yes", "是"]])
    )
    assert broken.status_code == 422
    [error] = broken.json()["errors"]
    assert error["field"] == "survey[2]" and "missing" in error["reason"]
    # Not a workbook at all.
    junk = await upload(b"PK\x03\x04 not really a zip")
    assert junk.status_code == 422 and junk.json()["errors"][0]["field"] == "file"
    assert (await coverage.get(f"/v1/campaigns/{cid}/form", headers=officer)).status_code == 404
    assert (await upload(FORM_V1)).status_code == 201


async def test_each_failing_answer_is_reported_on_its_own(registry, coverage, campaign) -> None:
    officer, cid = campaign["officer"], campaign["id"]
    form: dict[str, Any] = {
        "title": "迪庆州两新组织摸排表",
        "questions": [
            {"name": "employees", "type": "integer", "label": "从业人员数", "required": True, "constraint": ". >= 1"},
            {"name": "willing_to_develop", "type": "yes_no", "label": "有无发展党员意愿", "required": True},
            {
                "name": "charter_amended",
                "type": "select_one",
                "label": "党建工作是否写入章程",
                "choices": [{"value": "done", "label": "已写入"}, {"value": "planned", "label": "计划写入"}],
            },
            {"name": "founded_on", "type": "date", "label": "成立日期"},
            {"name": "suggestions", "type": "text", "label": "意见建议", "relevant": "${willing_to_develop} = 'yes'"},
        ],
    }
    published = await coverage.put(f"/v1/campaigns/{cid}/form", headers=officer, json=form)
    assert published.status_code == 201, published.text
    bad_form = {**form, "questions": [{**form["questions"][0], "constraint": ". >= ${nowhere}"}]}
    refused = await coverage.put(f"/v1/campaigns/{cid}/form", headers=officer, json=bad_form)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "questions[0].constraint", "reason": "names no question: nowhere"}]

    await coverage.post(f"/v1/campaigns/{cid}/assignments:generate", headers=officer, json={"round": 1})
    phone = await sign_in(registry)
    items, _ = await sync_all(coverage, phone["headers"])
    aid = next(iter(items))
    wrong = visit(
        aid,
        form_version=1,
        employees=0,
        answers={
            "willing_to_develop": "yes",  # a yes/no answer is true or false
            "charter_amended": "maybe",
            "founded_on": "2020-13-01",
            "employees": 5,  # a fixed field goes in the visit's own field
            "opinions": "x",  # not a question of this form
        },
    )
    wrong["employees"] = 0
    not_asked = visit(aid, form_version=1, employees=3, answers={"willing_to_develop": False, "suggestions": "无"})
    no_version = {**visit(aid, form_version=1, answers={}), "form_version": None}
    unknown_version = visit(aid, form_version=7, answers={})
    good = visit(aid, form_version=1, employees=12, answers={"willing_to_develop": True, "suggestions": "希望培训"})
    answer = (
        await coverage.post(
            "/v1/mobile/visits",
            headers=phone["headers"],
            json={"visits": [wrong, not_asked, no_version, unknown_version, good]},
        )
    ).json()["items"]
    assert [a["status"] for a in answer] == ["invalid", "invalid", "invalid", "invalid", "accepted"]
    assert sorted((r["field"], r["reason"]) for r in answer[0]["reasons"]) == [
        ("answers.charter_amended", "must be one of done, planned"),
        ("answers.employees", "send employees as the visit's own field"),
        ("answers.founded_on", "must be a date (YYYY-MM-DD)"),
        ("answers.opinions", "not a question of form version 1"),
        ("answers.willing_to_develop", "must be true or false"),
        ("employees", "must satisfy . >= 1"),
    ]
    assert answer[1]["reasons"] == [
        {"field": "answers.suggestions", "reason": "is not asked unless ${willing_to_develop} = 'yes'"}
    ]
    assert answer[2]["reasons"] == [
        {"field": "form_version", "reason": "required: the campaign has a form (version 1)"}
    ]
    assert answer[3]["reasons"] == [{"field": "form_version", "reason": "the campaign has no form version 7"}]
    rows = (await coverage.get(f"/v1/campaigns/{cid}/answers", headers=officer)).json()["items"]
    assert [(r["visit_id"], r["answers"]) for r in rows] == [(good["id"], good["answers"])]
    assert rows[0]["observation"]["employees"] == 12


async def test_reference_data_is_cacheable_and_comes_as_deltas(db, registry, coverage, admin, campaign) -> None:
    phone = await sign_in(registry)
    headers = phone["headers"]
    regions = await coverage.get("/v1/mobile/reference/regions", headers=headers)
    assert regions.status_code == 200, regions.text
    body = regions.json()
    assert body["ids"] == [TOWN_A, COMMUNITY] and {r["name"] for r in body["items"]} == {"澧阳街道", "澧州社区"}
    etag = regions.headers["etag"]
    assert etag == f'W/"{body["version"]}"'
    unchanged = await coverage.get("/v1/mobile/reference/regions", headers={**headers, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag and unchanged.content == b""
    nothing_new = (
        await coverage.get("/v1/mobile/reference/regions", headers=headers, params={"since": body["version"]})
    ).json()
    assert nothing_new["items"] == [] and nothing_new["ids"] == body["ids"]
    # A community is added: the delta carries it alone, the ETag changes.
    await import_tree(registry, admin, [{"code": "430723100002", "name": "新建社区"}])
    delta = await coverage.get(
        "/v1/mobile/reference/regions", headers={**headers, "If-None-Match": etag}, params={"since": body["version"]}
    )
    assert delta.status_code == 200 and delta.headers["etag"] != etag
    assert [r["code"] for r in delta.json()["items"]] == ["430723100002"]
    assert delta.json()["since"] == body["version"] and len(delta.json()["ids"]) == 3

    industries = (await coverage.get("/v1/mobile/reference/industries", headers=headers)).json()
    names = {i["code"]: i["name"] for i in industries["items"]}
    assert names["C"] == "制造业" and names["C13"] == "农副食品加工业" and names["H62"] == "餐饮业"
    assert len([c for c in names if len(c) == 1]) == 20 and len([c for c in names if len(c) == 3]) == 97
    same = (
        await coverage.get("/v1/mobile/reference/industries", headers=headers, params={"since": industries["version"]})
    ).json()
    assert same["items"] == [] and len(same["ids"]) == 117

    area = await registry.post(
        "/v1/areas", headers=admin, json={"name": "澧县经济开发区", "kind": "park", "region_code": COMMUNITY}
    )
    assert area.status_code == 201, area.text
    await registry.post("/v1/areas", headers=admin, json={"name": "武陵商圈", "kind": "park", "region_code": WULING})
    areas = (await coverage.get("/v1/mobile/reference/areas", headers=headers)).json()
    assert [a["name"] for a in areas["items"]] == ["澧县经济开发区"]

    await coverage.put(
        f"/v1/campaigns/{campaign['id']}/form",
        headers=campaign["officer"],
        json={
            "title": "表",
            "questions": [
                {"name": "sector", "type": "select_one", "label": "行业", "choices": [{"value": "a", "label": "甲"}]}
            ],
        },
    )
    await coverage.post(
        f"/v1/campaigns/{campaign['id']}/assignments:generate", headers=campaign["officer"], json={"round": 1}
    )
    choices = (await coverage.get("/v1/mobile/reference/choices", headers=headers)).json()
    lists = {(c["campaign_id"], c["question"]): c["choices"] for c in choices["items"]}
    assert lists[(campaign["id"], "sector")] == [{"value": "a", "label": "甲"}]
    assert [c["label"] for c in lists[(None, "outcome")]][:2] == ["正常经营", "僵尸企业（无经营）"]
    bad = await coverage.get("/v1/mobile/reference/regions", headers=headers, params={"since": "yesterday"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "since"


async def test_suspicious_visits_are_flagged_not_refused(registry, coverage, campaign, settings) -> None:
    settings.visit_flag_device_visits = 2
    officer, cid = campaign["officer"], campaign["id"]
    await coverage.post(f"/v1/campaigns/{cid}/assignments:generate", headers=officer, json={"round": 1})
    phone = await sign_in(registry)
    items, _ = await sync_all(coverage, phone["headers"])
    a, b, c, d = list(items)
    quick = visit(a, form_version=1, answers={})
    quick["paradata"]["ended_at"] = (
        datetime.fromisoformat(quick["paradata"]["started_at"]) + timedelta(seconds=20)
    ).isoformat()
    early = visit(b, form_version=1, answers={}, visited_at=(datetime.now(UTC) - timedelta(days=15)).isoformat())
    ahead = visit(c, form_version=1, answers={}, visited_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    plain = visit(d, form_version=1, answers={})
    plain["paradata"]["device_id"] = "another-phone"
    batch = [quick, early, ahead, plain]
    for v in batch:
        v.pop("form_version")
        v.pop("answers")
    answer = (await coverage.post("/v1/mobile/visits", headers=phone["headers"], json={"visits": batch})).json()
    assert [i["status"] for i in answer["items"]] == ["accepted"] * 4, answer
    listed = {v["id"]: v for v in (await coverage.get("/v1/visits", headers=officer)).json()["items"]}
    codes = {k: sorted(f["code"] for f in v["flags"]) for k, v in listed.items()}
    assert codes[quick["id"]] == ["too_short"]
    assert codes[early["id"]] == ["before_round"]
    assert codes[ahead["id"]] == ["dated_in_future"]
    assert codes[plain["id"]] == []
    assert listed[quick["id"]]["flags"][0]["reason"] == "表单填写仅用时20秒"
    # Another visit from the same phone within minutes of one it sent before (2 in 10 minutes, as set).
    burst = visit(a, form_version=1, answers={})
    burst["visited_at"] = quick["visited_at"]
    burst["outcome"] = "zombie"
    burst.pop("form_version")
    burst.pop("answers")
    third = (await coverage.post("/v1/mobile/visits", headers=phone["headers"], json={"visits": [burst]})).json()
    assert third["items"][0]["status"] == "accepted"
    listed = {v["id"]: v for v in (await coverage.get("/v1/visits", headers=officer)).json()["items"]}
    assert [f["code"] for f in listed[burst["id"]]["flags"]] == ["many_from_device"]
    unflagged = (await coverage.get("/v1/visits", headers=officer, params={"flagged": "false"})).json()["items"]
    assert [v["id"] for v in unflagged] == [plain["id"]]


async def test_a_phone_refreshes_its_tokens_and_a_used_refresh_token_dies(db, registry, coverage, campaign) -> None:
    phone = await sign_in(registry)
    assert phone["expires_in"] <= 3600 and phone["refresh_expires_in"] == 30 * 86400
    renewed = await registry.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["device"]["id"] == phone["device"]["id"] and fresh["refresh_token"] != phone["refresh_token"]
    me = await coverage.get("/v1/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert me.status_code == 200 and me.json()["name"] == "surveyor.li"
    reused = await registry.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    forged = await registry.post("/v1/auth/refresh", json={"refresh_token": f"lxr_{uuid.uuid4().hex}_guess"})
    assert forged.status_code == 400
    wrong_password = await registry.post(
        "/v1/auth/device-token", json={"username": "surveyor.li", "password": "nope-nope-nope", "device_id": "x"}
    )
    assert wrong_password.status_code == 400
    # Signing in again on the same phone keeps one registration.
    await sign_in(registry)
    devices = (await registry.get(f"/v1/users/{campaign['surveyor_id']}/devices", headers=campaign["officer"])).json()
    assert len(devices) == 1
    # Officials see and revoke devices inside their jurisdiction only; a phone cannot revoke itself.
    other = await make_user(db, role="officer", region=WULING)
    url = f"/v1/users/{campaign['surveyor_id']}/devices"
    assert (await registry.get(url, headers=other)).status_code == 404
    revoke = f"{url}/{devices[0]['id']}:revoke"
    assert (await registry.post(revoke, headers=other)).status_code == 404
    assert (await registry.post(revoke, headers=phone["headers"])).status_code == 403
    assert (await registry.get(url, headers=campaign["officer"])).json()[0]["revoked_at"] is None


async def test_a_photo_store_that_is_down_is_a_503_the_phone_can_retry(
    db, redis, registry, coverage, campaign, monkeypatch
) -> None:
    import socket

    from services.coverage import photos
    from shared.settings import get_settings

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key, value in {
        "LIANGXIN_PHOTO_STORE": "s3",
        "LIANGXIN_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "LIANGXIN_S3_ACCESS_KEY_ID": "k",
        "LIANGXIN_S3_SECRET_ACCESS_KEY": "s",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    photos._store.cache_clear()
    try:
        await coverage.post(
            f"/v1/campaigns/{campaign['id']}/assignments:generate", headers=campaign["officer"], json={"round": 1}
        )
        phone = await sign_in(registry)
        items, _ = await sync_all(coverage, phone["headers"])
        v = visit(next(iter(items)), form_version=1, answers={})
        del v["form_version"], v["answers"]
        await coverage.post("/v1/mobile/visits", headers=phone["headers"], json={"visits": [v]})
        down = await coverage.post(
            f"/v1/mobile/visits/{v['id']}/photos", headers=phone["headers"], files={"file": ("d.jpg", phone_jpeg())}
        )
        assert down.status_code == 503 and down.json()["type"].endswith("/unavailable"), down.text
        async with db.session() as session:  # nothing recorded for a photo that was not kept
            assert (await session.execute(text("SELECT count(*) FROM visit_photo"))).scalar_one() == 0
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        photos._store.cache_clear()
