"""The authorization suite, generated from the three OpenAPI documents.

For every operation of every service:
- without a caller → 401;
- with a caller that lacks the operation's permission (`x-required-scopes`) → 403;
- as a caller of a sibling jurisdiction (武陵区 next to 澧县), an object of 澧县 answers exactly as
  an object that does not exist (404 for reads), and changes nothing;
- lists, reports and feeds read by that caller carry nothing of 澧县.
An operation that is not public and publishes no `x-required-scopes`, or whose path names an
object this suite cannot seed, fails the suite: a new endpoint cannot slip past it.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from shared.models import PARTNER_SCOPES
from tests.helpers import (
    LIXIAN,
    WULING,
    credit_code,
    feeds_caught_up,
    import_orgs,
    import_tree,
    make_api_key,
    make_user,
    org_record,
    settle,
)

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/device-token"),  # a password sign-in on a phone
    ("POST", "/v1/auth/refresh"),  # the device's refresh token is the credential
}
ANY_CALLER = {("GET", "/v1/auth/me")}
TODAY = date.today()
WULING_TOWN = "430702001000"
SECRET = "澧县机密"  # in the name of every object seeded in 澧县


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()
FORM = {"title": "摸排表", "questions": [{"name": "union_members", "type": "integer", "label": "工会会员数"}]}


def operations(apps: dict[str, FastAPI]) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = []
    for service, app in apps.items():
        for path, ops in app.openapi()["paths"].items():
            for method, op in ops.items():
                found.append((service, method.upper(), path, op))
    return found


def fill(path: str, ids: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ids:
            pytest.fail(f"{path}: the authorization suite cannot seed a {name!r}; add it to seed()")
        return ids[name]

    return re.sub(r"\{([a-z_]+)\}", one, path)


def nowhere(ids: dict[str, str]) -> dict[str, str]:
    """Identifiers of the same kinds that exist nowhere."""

    def absent(key: str, value: str) -> str:
        if key == "code":
            return "430799000000" if value.isdigit() else "no_such_template"
        if key == "credit_code":
            return credit_code(999_999_999)
        if key == "version":
            return value
        if key == "photo_hash":
            return "0" * 64
        return str(uuid.uuid4())

    return {k: absent(k, v) for k, v in ids.items()}


async def call(client, method: str, url: str, headers: dict[str, str], body: Any = None):
    if isinstance(body, dict) and "__files__" in body:
        return await client.request(method, url, headers=headers, files=body["__files__"])
    if method in ("GET", "DELETE"):
        return await client.request(method, url, headers=headers)
    return await client.request(method, url, headers=headers, json=body if body is not None else {})


def at(days_ago: int) -> str:
    return f"{(TODAY - timedelta(days=days_ago)).isoformat()}T10:00:00+08:00"


async def seed_evaluation(db, evaluation, admin, party_org_id: str) -> dict[str, str]:
    """A template, cycle, approved 1-star assessment (so a rectification), designation, review and
    funding allocation, all of 澧县."""
    from services.evaluation.funding.engine import SEED_RULE_SETS
    from tests.evaluation.factories import fuyang, seed_builtins

    await seed_builtins(db)
    county = await make_user(db, role="admin", region=LIXIAN)
    city = await make_user(db, role="officer", region="430700000000")

    async def made(path: str, body: Any, headers: dict[str, str] = county, method: str = "POST") -> dict[str, Any]:
        response = await evaluation.request(method, path, headers=headers, json=body)
        assert response.status_code in (200, 201), f"{path}: {response.text}"
        return response.json()

    builtin = (await evaluation.get("/v1/templates/fuyang_five_star", headers=admin)).json()
    template = await made(
        "/v1/templates",
        {"code": "lixian_stars", "kind": "star_rating", "name": f"{SECRET}星级", "definition": builtin["definition"]},
    )
    cycle = await made("/v1/cycles", {"name": f"{SECRET}评定", "year": 2027, "template_id": template["id"]})
    assessment = await made(
        f"/v1/cycles/{cycle['id']}/assessments", {"party_org_id": party_org_id, "scores": fuyang(17, 8, 8, 8, 8)}
    )
    await made(f"/v1/assessments/{assessment['id']}:submit", None)
    await made(f"/v1/assessments/{assessment['id']}:approve", None, headers=city)
    rectifications = (await evaluation.get("/v1/rectifications", headers=county)).json()["items"]
    await made(
        "/v1/designation-quotas",
        {"region_code": LIXIAN, "year": 2027, "level": "county", "type": "model", "quota": 3},
        method="PUT",
    )
    designation = await made(
        "/v1/designations",
        {"party_org_id": party_org_id, "year": 2027, "level": "county", "type": "model", "title": f"{SECRET}示范点"},
    )
    report = await made(
        f"/v1/cycles/{cycle['id']}/reviews",
        {
            "party_org_id": party_org_id,
            "secretary_name": f"{SECRET}书记",
            "content": "述职",
            "reported_on": "2027-01-10",
        },
    )
    await made(f"/v1/reviews/{report['id']}/scores", {"evaluator_kind": "member", "score": "90"})
    rule_set = await made(
        "/v1/funding/rule-sets", {**SEED_RULE_SETS["fuyang"], "code": "lixian_fund", "name": f"{SECRET}经费"}
    )
    await made("/v1/funding/allocations:compute", {"year": 2027, "region_code": LIXIAN, "rule_set_code": "lixian_fund"})
    return {
        "template_code": "lixian_stars",
        "version": "1",
        "cycle_id": cycle["id"],
        "assessment_id": assessment["id"],
        "rectification_id": rectifications[0]["id"],
        "designation_id": designation["id"],
        "report_id": report["id"],
        "rule_set_id": str(rule_set["id"]),
    }


async def fail_a_consumption(db, event_type: str) -> str:
    """Mark coverage's consumption of a 澧县 event failed, as its last try would have, for the
    operators' endpoints (`/v1/events/...`)."""
    from shared.events import jurisdiction_of

    async with db.session() as session:
        event_id, payload = (
            await session.execute(text("SELECT id, payload FROM registry_outbox WHERE type = :t"), {"t": event_type})
        ).one()
        await session.execute(
            text(
                "UPDATE coverage_inbox SET status = 'failed', region_code = :region, error = "
                "'QueryCanceledError (57014): canceling statement due to statement timeout' WHERE event_id = :id"
            ),
            {"id": event_id, "region": jurisdiction_of(payload)},
        )
    assert jurisdiction_of(payload).startswith(LIXIAN[:6])
    return str(event_id)


async def seed(db, redis, registry, coverage, admin, evaluation) -> dict[str, str]:
    """One object of every kind in 澧县, and an organization in 武陵区."""
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, name=f"{SECRET}甲公司", formal_members=3),
            org_record(2, name=f"{SECRET}乙公司"),
            org_record(4, name=f"{SECRET}丁公司", formal_members=4),
            org_record(3, credit_code=credit_code(3, "91430702"), name="武陵丙公司", region_code=WULING_TOWN),
        ],
    )

    async def made(client, path: str, body: Any, headers: dict[str, str] = admin) -> dict[str, Any]:
        response = await client.post(path, headers=headers, json=body)
        assert response.status_code in (200, 201, 202), f"{path}: {response.text}"
        return response.json()

    area = await made(registry, "/v1/areas", {"name": f"{SECRET}园区", "kind": "park", "region_code": LIXIAN})
    party = await made(
        registry,
        "/v1/party-orgs",
        {
            "name": f"{SECRET}党支部",
            "level": "branch",
            "formation": "single",
            "region_code": "430723100001",
            "established_on": "2026-03-01",
            "covered_credit_codes": [credit_code(1)],
        },
    )
    instructor = await made(
        registry,
        "/v1/instructors",
        {"name": f"{SECRET}指导员", "kind": "part_time", "source": "retired_official", "region_code": LIXIAN},
    )
    assignment = await made(
        registry,
        f"/v1/instructors/{instructor['id']}/assignments",
        {"credit_code": credit_code(2), "start_date": TODAY.isoformat()},
    )
    recalculation = await made(coverage, "/v1/recalculations", None)
    target = await made(
        coverage,
        "/v1/targets",
        {"name": f"{SECRET}目标", "region_code": LIXIAN, "target_rate": 1.0, "deadline": "2027-06-30"},
    )
    await settle(db, redis)
    tasks = await made(
        coverage,
        "/v1/establishment-tasks:from-gaps",
        {"region_code": LIXIAN, "responsible_unit": f"{SECRET}组织部", "due_date": "2027-03-31"},
    )
    # (Registration events may already have opened tasks for these organizations.)
    listed = (await coverage.get("/v1/establishment-tasks", headers=admin, params={"region": LIXIAN})).json()
    task_id = (tasks["tasks"] or listed["items"])[0]["id"]
    surveyor = await make_user(db, role="surveyor", region=LIXIAN, username=f"surveyor-{uuid.uuid4().hex[:6]}")
    surveyor_id = (await coverage.get("/v1/auth/me", headers=surveyor)).json()
    async with db.session() as session:
        surveyor_uuid = (await session.execute(text("SELECT id FROM staff_user WHERE role = 'surveyor'"))).scalar_one()
    campaign = await made(
        coverage,
        "/v1/campaigns",
        {
            "name": f"{SECRET}摸排",
            "region_code": LIXIAN,
            "kinds": ["enterprise"],
            "rounds": [{"number": 1, "starts_on": at(20)[:10], "ends_on": (TODAY + timedelta(days=9)).isoformat()}],
            "target_rate": 1.0,
        },
    )
    await made(
        coverage,
        f"/v1/campaigns/{campaign['id']}/teams",
        {"name": f"{SECRET}小组", "surveyor_ids": [str(surveyor_uuid)], "townships": ["430723100000"]},
    )
    await made(coverage, f"/v1/campaigns/{campaign['id']}/assignments:generate", {"round": 1})
    form = await coverage.put(
        f"/v1/campaigns/{campaign['id']}/form",
        headers=admin,
        json={
            "title": f"{SECRET}摸排表",
            "questions": [{"name": "has_trade_union", "type": "yes_no", "label": f"{SECRET}是否建立工会"}],
        },
    )
    assert form.status_code == 201, form.text
    await settle(db, redis)
    await feeds_caught_up()
    synced = (await coverage.get("/v1/mobile/sync", headers=surveyor)).json()["items"]
    field_assignment = synced[0]["assignment_id"]
    visit_id = str(uuid.uuid4())
    posted = await made(
        coverage,
        "/v1/mobile/visits",
        {
            "visits": [
                {
                    "id": visit_id,
                    "assignment_id": field_assignment,
                    "visited_at": at(1),
                    "outcome": "operating",
                    "form_version": 1,
                    "answers": {"has_trade_union": True},
                    "location": {"lat": 29.63, "lon": 111.75},
                    "paradata": {"device_id": "seed-phone", "app_version": "1.0"},
                }
            ]
        },
        headers=surveyor,
    )
    assert posted["items"][0]["status"] == "accepted", posted
    photo = await coverage.post(
        f"/v1/mobile/visits/{visit_id}/photos", headers=surveyor, files={"file": ("门头.png", PNG, "image/png")}
    )
    assert photo.status_code == 200, photo.text
    username = (await coverage.get("/v1/auth/me", headers=surveyor)).json()["name"]
    device = await made(
        registry,
        "/v1/auth/device-token",
        {"username": username, "password": "correct-horse-battery", "device_id": "seed-phone", "device_name": SECRET},
    )
    assert surveyor_id["region_code"] == LIXIAN
    evaluation_ids = await seed_evaluation(db, evaluation, admin, party["id"])
    event_id = await fail_a_consumption(db, "registry.party_org.established")
    return {
        **evaluation_ids,
        "event_id": event_id,
        "code": "430723100000",
        "area_id": area["id"],
        "org_id": (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()[
            "id"
        ],
        "credit_code": credit_code(1),
        "party_org_id": party["id"],
        "instructor_id": instructor["id"],
        "assignment_id": assignment["id"],  # an instructor assignment (registry)
        "field_assignment_id": field_assignment,  # a survey assignment (coverage)
        "recalculation_id": recalculation["id"],
        "target_id": target["id"],
        "task_id": task_id,
        "campaign_id": campaign["id"],
        "visit_id": visit_id,
        "photo_hash": photo.json()["sha256"],
        "user_id": str(surveyor_uuid),
        "device_id": device["device"]["id"],
    }


def ids_for(service: str, path: str, ids: dict[str, str]) -> dict[str, str]:
    """`assignment_id` names an instructor assignment in the registry, a survey one in coverage;
    `code` a region in the registry, a template in the evaluation service."""
    if service == "coverage" and "{assignment_id}" in path:
        return {**ids, "assignment_id": ids["field_assignment_id"]}
    if service == "evaluation":
        return {**ids, "code": ids["template_code"]}
    return ids


# Bodies a sibling sends to write to 澧县's objects: valid, so only the jurisdiction can stop them.
def bodies(wuling_code: str, definition: Any) -> dict[tuple[str, str], Any]:
    return {
        ("PATCH", "/v1/areas/{area_id}"): {"name": "改名"},
        ("DELETE", "/v1/areas/{area_id}"): None,
        ("PATCH", "/v1/organizations/{org_id}"): {"name": "改名"},
        ("PATCH", "/v1/party-orgs/{party_org_id}"): {"name": "改名"},
        ("PUT", "/v1/party-orgs/{party_org_id}/covered-organizations"): {"credit_codes": [wuling_code]},
        ("POST", "/v1/party-orgs/{party_org_id}/dissolve"): {"dissolved_on": TODAY.isoformat(), "reason": "撤销测试"},
        ("POST", "/v1/instructors/{instructor_id}/assignments"): {
            "credit_code": wuling_code,
            "start_date": TODAY.isoformat(),
        },
        ("POST", "/v1/instructor-assignments/{assignment_id}/end"): {"end_date": TODAY.isoformat(), "reason": "结束"},
        ("PATCH", "/v1/establishment-tasks/{task_id}"): {"note": "改"},
        ("POST", "/v1/campaigns/{campaign_id}:close"): None,
        ("POST", "/v1/campaigns/{campaign_id}/teams"): {
            "name": "小组",
            "surveyor_ids": [str(uuid.uuid4())],
            "townships": [WULING_TOWN],
        },
        ("POST", "/v1/campaigns/{campaign_id}/assignments:generate"): {"round": 1},
        ("PATCH", "/v1/assignments/{assignment_id}"): {"team_id": str(uuid.uuid4())},
        ("POST", "/v1/mobile/visits/{visit_id}/photos"): {
            "__files__": {"file": ("p.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64, "image/png")}
        },
        ("PUT", "/v1/campaigns/{campaign_id}/form"): FORM,
        ("POST", "/v1/campaigns/{campaign_id}/form:upload"): {"__files__": {"file": ("form.xlsx", b"PK\x03\x04")}},
        ("POST", "/v1/users/{user_id}/devices/{device_id}:revoke"): None,
        ("POST", "/v1/visits/{visit_id}:verify"): None,
        ("POST", "/v1/visits/{visit_id}:reject"): {"reason": "不符合要求"},
        ("POST", "/v1/visits/{visit_id}/registration:confirm"): {},
        ("POST", "/v1/visits/{visit_id}/registration:dismiss"): {"reason": "不是两新组织"},
        ("PUT", "/v1/templates/{code}"): {"definition": definition},
        ("POST", "/v1/cycles/{cycle_id}/assessments"): {"party_org_id": str(uuid.uuid4()), "scores": {}},
        ("POST", "/v1/cycles/{cycle_id}/assessments:generate"): None,
        ("PATCH", "/v1/assessments/{assessment_id}"): {"scores": {"team_score": "10"}},
        ("POST", "/v1/assessments/{assessment_id}:submit"): None,
        ("POST", "/v1/assessments/{assessment_id}:approve"): None,
        ("POST", "/v1/assessments/{assessment_id}:return"): {"reason": "退回重评"},
        ("POST", "/v1/designations/{designation_id}:revoke"): None,
        ("POST", "/v1/cycles/{cycle_id}/reviews"): {
            "party_org_id": str(uuid.uuid4()),
            "secretary_name": "书记",
            "content": "述职",
            "reported_on": "2027-01-10",
        },
        ("POST", "/v1/reviews/{report_id}/scores"): {"evaluator_kind": "member", "score": "90"},
        ("POST", "/v1/events/{event_id}:retry"): None,
    }


async def fingerprint(db) -> str:
    """Every jurisdiction table's rows, hashed: equal before and after means nothing changed."""
    tables = [
        "organization",
        "party_org",
        "area",
        "instructor",
        "instructor_assignment",
        "coverage_target",
        "establishment_task",
        "campaign",
        "campaign_team",
        "assignment",
        "visit",
        "visit_photo",
        "campaign_form",
        "staff_device",
        "evaluation_template",
        "evaluation_cycle",
        "assessment",
        "rectification",
        "designation",
        "designation_quota",
        "review_report",
        "review_score",
        "funding_rule_set",
        "funding_computation",
        "funding_allocation",
        "funding_line",
    ]
    parts = []
    async with db.session() as session:
        for table in tables:
            parts.append(
                (
                    await session.execute(
                        text(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")
                    )
                ).scalar_one()
            )
    return ",".join(parts)


@pytest.fixture
async def clients(registry, coverage, evaluation) -> dict[str, Any]:
    return {"registry": registry, "coverage": coverage, "evaluation": evaluation}


async def test_every_operation_refuses_a_missing_caller_and_a_missing_permission(apps, clients, db, admin) -> None:
    await import_tree(clients["registry"], admin)
    keys: dict[str, dict[str, str]] = {}
    checked = 0
    for service, method, path, op in operations(apps):
        if (method, path) in PUBLIC:
            continue
        url = re.sub(r"\{[a-z_]+\}", lambda m: "430723000000" if m.group(0) == "{code}" else str(uuid.uuid4()), path)
        client = clients[service]
        anonymous = await call(client, method, url, {})
        assert anonymous.status_code == 401, f"{method} {path} without a caller: {anonymous.status_code}"
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        if (method, path) in ANY_CALLER:
            continue
        scopes = op.get("x-required-scopes")
        assert scopes, f"{service} {method} {path} publishes no x-required-scopes: is it checked at all?"
        lacking = ",".join(sorted(PARTNER_SCOPES - set(scopes)))
        if lacking not in keys:
            keys[lacking] = await make_api_key(db, scopes=sorted(PARTNER_SCOPES - set(scopes)), region="000000000000")
        refused = await call(client, method, url, keys[lacking])
        assert refused.status_code == 403, f"{method} {path} without {scopes}: {refused.status_code} {refused.text}"
        assert refused.json()["required_scope"] in scopes
        assert "<" not in refused.json()["detail"], f"{method} {path} shows a Python repr: {refused.json()['detail']}"
        checked += 1
    assert checked >= 60


# Decisions officials make and partners never do: reviewing what the field found, publishing
# rules, approving, designating, funding. The documents must mark at least these.
OFFICIAL_DECISIONS = {
    ("coverage", "POST", "/v1/visits/{visit_id}:verify"),
    ("coverage", "POST", "/v1/visits/{visit_id}:reject"),
    ("coverage", "POST", "/v1/visits/{visit_id}/registration:confirm"),
    ("coverage", "POST", "/v1/visits/{visit_id}/registration:dismiss"),
    ("coverage", "PUT", "/v1/campaigns/{campaign_id}/form"),
    ("coverage", "POST", "/v1/campaigns/{campaign_id}/form:upload"),
    ("registry", "GET", "/v1/users/{user_id}/devices"),
    ("registry", "POST", "/v1/users/{user_id}/devices/{device_id}:revoke"),
    ("evaluation", "POST", "/v1/assessments/{assessment_id}:approve"),
    ("evaluation", "POST", "/v1/assessments/{assessment_id}:return"),
    ("evaluation", "POST", "/v1/designations"),
    ("evaluation", "POST", "/v1/funding/allocations:compute"),
    ("evaluation", "POST", "/v1/funding/allocations:close"),
}


async def test_every_officials_only_operation_refuses_a_partner_key_with_every_permission(
    apps, clients, db, redis, admin
) -> None:
    """`x-officials-only` is a promise: a partner key holding every partner permission at the
    national root is refused (403 officials-only) on each such operation, on real objects with
    valid bodies, and nothing changes."""
    ids = await seed(db, redis, clients["registry"], clients["coverage"], admin, clients["evaluation"])
    partner = await make_api_key(db, scopes=sorted(PARTNER_SCOPES), region="000000000000")
    definition = (await clients["evaluation"].get("/v1/templates/fuyang_five_star", headers=admin)).json()
    writes = bodies(credit_code(3, "91430702"), definition["definition"])
    marked = {(s, m, p) for s, m, p, op in operations(apps) if op.get("x-officials-only")}
    assert OFFICIAL_DECISIONS <= marked, f"not marked officials-only: {sorted(OFFICIAL_DECISIONS - marked)}"
    before = await fingerprint(db)
    for service, method, path, op in operations(apps):
        if not op.get("x-officials-only"):
            continue
        assert set(op["x-required-scopes"]) <= PARTNER_SCOPES, f"{method} {path}: not reachable by a key anyway"
        body = writes.get((method, path), {})
        refused = await call(clients[service], method, fill(path, ids_for(service, path, ids)), partner, body)
        assert refused.status_code == 403, f"{method} {path} as a partner key: {refused.status_code} {refused.text}"
        assert refused.json()["type"].endswith("/officials-only"), refused.text
    assert await fingerprint(db) == before, "a partner key's refused decision changed data"
    # The same verification by an official of the jurisdiction goes through.
    official = await make_user(db, role="officer", region=LIXIAN)
    verified = await clients["coverage"].post(f"/v1/visits/{ids['visit_id']}:verify", headers=official)
    assert verified.status_code == 200, verified.text


async def test_no_edit_takes_if_match_star(apps, clients, db, redis, admin) -> None:
    """`If-Match: *` ("whatever is there") would skip the lost-update check: every operation that
    takes If-Match refuses it (428) on a real object with a valid body, and nothing changes."""
    ids = await seed(db, redis, clients["registry"], clients["coverage"], admin, clients["evaluation"])
    definition = (await clients["evaluation"].get("/v1/templates/fuyang_five_star", headers=admin)).json()
    writes = bodies(credit_code(3, "91430702"), definition["definition"])
    before = await fingerprint(db)
    checked = []
    for service, method, path, op in operations(apps):
        if not any(p["in"] == "header" and p["name"].lower() == "if-match" for p in op.get("parameters", [])):
            continue
        url = fill(path, ids_for(service, path, ids))
        star = await call(clients[service], method, url, {**admin, "If-Match": "*"}, writes.get((method, path), {}))
        assert star.status_code == 428, f"{method} {path} with If-Match: *: {star.status_code} {star.text}"
        assert "If-Match: * is not accepted" in star.json()["detail"]
        checked.append(path)
    assert len(checked) >= 9, checked
    assert await fingerprint(db) == before, "an edit with If-Match: * changed data"


async def test_a_partner_key_cannot_make_an_organization_a_zombie_by_verifying_a_visit(
    clients, db, redis, admin
) -> None:
    ids = await seed(db, redis, clients["registry"], clients["coverage"], admin, clients["evaluation"])
    async with db.session() as session:
        await session.execute(
            text("UPDATE visit SET outcome = 'zombie', observation = jsonb_set(observation, '{outcome}', '\"zombie\"')")
        )
    partner = await make_api_key(db, scopes=["coverage:read", "coverage:write"], region=LIXIAN)
    refused = await clients["coverage"].post(f"/v1/visits/{ids['visit_id']}:verify", headers=partner)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/officials-only"), refused.text
    await settle(db, redis, "coverage", "registry")
    visits = (await clients["coverage"].get("/v1/visits", headers=admin)).json()["items"]
    assert [v["review_status"] for v in visits] == ["pending"]
    statuses = (await clients["registry"].get("/v1/organizations", headers=admin, params={"region": LIXIAN})).json()
    assert {o["status"] for o in statuses["items"]} == {"active"}


async def test_a_sibling_jurisdiction_cannot_see_or_touch_anything(apps, clients, db, redis, admin) -> None:
    ids = await seed(db, redis, clients["registry"], clients["coverage"], admin, clients["evaluation"])
    sibling = await make_user(db, role="admin", region=WULING, username="wuling-admin")  # every permission
    definition = (await clients["evaluation"].get("/v1/templates/fuyang_five_star", headers=sibling)).json()
    writes = bodies(credit_code(3, "91430702"), definition["definition"])
    before = await fingerprint(db)
    probes: list[tuple[str, str]] = []
    for service, method, path, _op in operations(apps):
        if (method, path) in PUBLIC or "{" not in path:
            continue
        real = ids_for(service, path, ids)
        body = None
        if method != "GET":
            if (method, path) not in writes:
                pytest.fail(f"{service} {method} {path}: give the authorization suite a valid body for it")
            body = writes[(method, path)]
        client = clients[service]
        theirs = await call(client, method, fill(path, real), sibling, body)
        absent = nowhere(real)
        missing = await call(client, method, fill(path, absent), sibling, body)
        assert theirs.status_code == missing.status_code, f"{method} {path}: {theirs.text} vs {missing.text}"
        assert theirs.status_code == 404, f"{method} {path} as a sibling: {theirs.status_code} {theirs.text}"
        shown_theirs, shown_missing = theirs.text, missing.text
        for value in sorted({v for v in [*real.values(), *absent.values()] if len(v) > 3}, key=len, reverse=True):
            shown_theirs, shown_missing = shown_theirs.replace(value, "<id>"), shown_missing.replace(value, "<id>")
        assert shown_theirs == shown_missing, f"{method} {path} tells the two apart"
        assert SECRET not in theirs.text
        if service != "coverage" and "{event_id}" in path:
            continue  # the failed consumption is coverage's: the id names nothing in the other inboxes
        probes.append((f"{method} {path}", fill(path, real)))
    assert await fingerprint(db) == before, "a sibling's request changed 澧县's data"

    # Each attempt on an object of 澧县 is in the audit log, once, for the auditors above both
    # counties and those of 澧县; the probes of objects that exist nowhere left no row, and the
    # auditors of 武陵区 (the caller's own) are not told that 澧县's objects exist.
    # (A recount is national: only the national auditors see the attempt on it.)
    for region in ("000000000000", "430000000000", "430700000000", LIXIAN):
        auditor = await make_user(db, role="auditor", region=region)
        found = await clients["registry"].get("/v1/audit", headers=auditor, params={"outcome": "refused", "limit": 500})
        rows = found.json()["items"]
        expected = [a for a, _ in probes if region == "000000000000" or "/recalculations/" not in a]
        assert sorted(r["action"] for r in rows) == sorted(expected), region
        for row in rows:
            assert row["actor"] == "user:wuling-admin", row
            national = row["region_code"] == "000000000000" and "/recalculations/" in row["action"]
            assert row["region_code"].startswith("430723") or national, row
            assert row["object_id"] in next(url for action, url in probes if action == row["action"]), row
            assert WULING in row["detail"], row
    own = await make_user(db, role="auditor", region=WULING)
    unseen = await clients["registry"].get("/v1/audit", headers=own, params={"outcome": "refused"})
    assert unseen.json()["items"] == []


async def test_lists_reports_and_feeds_stay_inside_the_callers_jurisdiction(apps, clients, db, redis, admin) -> None:
    ids = await seed(db, redis, clients["registry"], clients["coverage"], admin, clients["evaluation"])
    await feeds_caught_up()
    sibling = await make_user(db, role="admin", region=WULING)
    leaks = [SECRET, "430723", *[v for k, v in ids.items() if k not in ("recalculation_id", "version")]]
    seen_own = 0
    for service, method, path, op in operations(apps):
        if method != "GET" or "{" in path or (method, path) in PUBLIC:
            continue
        params = {
            p["name"]: WULING if p["name"] == "region" else "enterprise"
            for p in op.get("parameters", [])
            if p.get("required") and p["in"] == "query"
        }
        response = await clients[service].get(path, headers=sibling, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        content_type = response.headers["content-type"]
        if "spreadsheetml" in content_type:
            from openpyxl import load_workbook

            book = load_workbook(io.BytesIO(response.content), read_only=True)
            shown = " ".join(str(c) for s in book.worksheets for row in s.iter_rows(values_only=True) for c in row)
        elif content_type.startswith("image/"):
            continue  # a chart: its figures come from /v1/coverage/history, checked here
        else:
            shown = response.text
        for leak in leaks:
            assert leak not in shown, f"GET {path} shows {leak!r} to a caller in 武陵区"
        seen_own += "武陵" in shown
    assert seen_own >= 3  # the lists do show the caller's own jurisdiction


def test_every_json_request_body_forbids_unknown_fields(apps) -> None:
    """Mass assignment: a field a caller may not set is refused by name, never silently taken."""
    loose, checked = [], 0
    for service, method, path, op in operations(apps):
        components = apps[service].openapi()["components"]["schemas"]
        content = op.get("requestBody", {}).get("content", {})
        for schema in [c["schema"] for t, c in content.items() if t == "application/json"]:
            stack, seen = [schema], set()
            while stack:
                node = stack.pop()
                if "$ref" in node:
                    name = node["$ref"].rsplit("/", 1)[-1]
                    if name not in seen:
                        seen.add(name)
                        stack.append(components[name])
                    continue
                if "properties" in node:
                    checked += 1
                    if node.get("additionalProperties") is not False:
                        loose.append(f"{method} {path}: {node.get('title')}")
                stack.extend(node.get("properties", {}).values())
                stack.extend(s for k in ("anyOf", "oneOf", "allOf") for s in node.get(k, []))
                if isinstance(node.get("items"), dict):
                    stack.append(node["items"])
    assert loose == [] and checked >= 25


async def test_fields_reserved_to_officials_are_refused(db, registry, coverage, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(1)])
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    # Derived fields are the server's: nobody sets them.
    for field, value in (("in_scope", False), ("covered", True), ("version", 9), ("id", str(uuid.uuid4()))):
        refused = await registry.patch(
            f"/v1/organizations/{org['id']}", headers={**admin, "If-Match": f'"v{org["version"]}"'}, json={field: value}
        )
        assert refused.status_code == 422, (field, refused.text)
        assert refused.json()["errors"][0]["field"] == field
    # A partner may not declare an organization a zombie: only officials, after a verified visit.
    partner = await make_api_key(db, scopes=["registry:write", "registry:read"], region=LIXIAN)
    result = await import_orgs(registry, partner, [org_record(1, status="zombie", status_reason="伙伴系统标注")])
    assert result["rejected"] == 1 and result["errors"][0]["field"] == "status"
    assert (await registry.get(f"/v1/organizations/{org['id']}", headers=admin)).json()["status"] == "active"
    # A partner key cannot create accounts or keys, whatever scopes it was given.
    made = await registry.post(
        "/v1/api-keys",
        headers=partner,
        json={"name": "x", "scopes": ["registry:write"], "region_code": "000000000000"},
    )
    assert made.status_code == 403
