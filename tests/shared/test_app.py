"""Health, readiness, metrics, request ids and the error shape, on all three services."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from shared.app import create_service_app
from shared.queue import make_redis
from tests.helpers import import_tree

SERVICES = ("registry", "coverage", "evaluation")


@pytest.fixture
def clients(registry: httpx.AsyncClient, coverage: httpx.AsyncClient, evaluation: httpx.AsyncClient):
    return {"registry": registry, "coverage": coverage, "evaluation": evaluation}


@pytest.mark.parametrize("service", SERVICES)
async def test_health_and_readiness_answer_without_credentials(clients, service: str) -> None:
    client = clients[service]
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok", "events": "ok"}}


@pytest.mark.parametrize("service", SERVICES)
async def test_openapi_document_is_titled_and_versioned(clients, service: str) -> None:
    doc = (await clients[service].get("/openapi.json")).json()
    assert doc["info"]["title"] == f"Liangxin {service.capitalize()} API"
    assert doc["info"]["version"] == "0.1.0"
    schemes = doc["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    assert (await clients[service].get("/docs")).status_code == 200


async def test_readyz_names_redis_when_it_is_down(apps, registry: httpx.AsyncClient) -> None:
    app = apps["registry"]
    healthy = app.state.redis
    app.state.redis = make_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        response = await registry.get("/readyz")
    finally:
        await app.state.redis.aclose()
        app.state.redis = healthy
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["detail"] == "unreachable: redis"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"].startswith("down")


async def test_request_id_is_echoed_or_minted(registry: httpx.AsyncClient) -> None:
    echoed = await registry.get("/healthz", headers={"X-Request-ID": "trace-abc-123"})
    assert echoed.headers["x-request-id"] == "trace-abc-123"
    minted = await registry.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(minted.headers["x-request-id"]) == 32
    assert minted.headers["x-request-id"] != "bad id with spaces"


async def test_metrics_count_requests_by_route_template(registry: httpx.AsyncClient, admin) -> None:
    await import_tree(registry, admin)
    await registry.get("/v1/regions/430723000000", headers=admin)
    text = (await registry.get("/metrics")).text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("liangxin_http_requests_total{")
        and 'route="/v1/regions/{code}",service="registry",status="200"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1  # (the apps, and their counters, live for the whole session)
    assert "430723000000" not in text  # paths never become label values


async def test_logs_are_json_with_the_request_id(registry: httpx.AsyncClient, caplog) -> None:
    from shared.logging import JsonFormatter

    with caplog.at_level(logging.INFO, logger="liangxin.http"):
        await registry.get("/healthz", headers={"X-Request-ID": "log-check-1"})
    record = next(r for r in caplog.records if r.name == "liangxin.http")
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "log-check-1"
    assert entry["route"] == "/healthz" and entry["status"] == 200


async def test_validation_errors_are_problem_json_with_fields(registry: httpx.AsyncClient, admin) -> None:
    response = await registry.post(
        "/v1/regions/import", json={"records": [{"code": "430000000000"}], "extra": 1}, headers=admin
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422 and body["title"] == "Request validation failed"
    fields = {e["field"]: e["reason"] for e in body["errors"]}
    assert fields["records[0].name"] == "Field required"
    assert fields["extra"] == "Extra inputs are not permitted"


async def test_unknown_route_is_problem_json(registry: httpx.AsyncClient) -> None:
    response = await registry.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Not Found"


async def test_unexpected_error_is_a_500_without_traceback() -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app: FastAPI = create_service_app(service="registry", title="t", description="d", version="1", routers=[router])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert response.json()["title"] == "Internal Server Error"


async def test_text_postgres_cannot_store_is_refused_as_invalid_not_a_500(db, registry, admin) -> None:
    """Found by the fuzzer: a NUL character (U+0000) in a string reached Postgres and answered 500."""
    from sqlalchemy import text

    from tests.helpers import LIXIAN, org_record

    await import_tree(registry, admin)
    area = await registry.post(
        "/v1/areas", headers=admin, json={"name": "澧县\u0000园区", "kind": "park", "region_code": LIXIAN}
    )
    imported = await registry.post(
        "/v1/organizations/import", headers=admin, json={"records": [org_record(1, **{"no\u0000te": "x"})]}
    )
    listed = await registry.get("/v1/audit", headers=admin, params={"actor": "user:\u0000"})
    for response, field in ((area, "name"), (listed, "actor")):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["title"] == "Request validation failed"
        assert [e["field"] for e in response.json()["errors"]] == [field]
    # In a batch only the record is refused, named as sent (escaped: it is stored with the batch).
    assert imported.status_code == 200, imported.text
    assert imported.json()["errors"] == [{"row": 0, "field": "no\\u0000te", "reason": "Extra inputs are not permitted"}]
    async with db.session() as session:
        assert (await session.execute(text("SELECT count(*) FROM area"))).scalar_one() == 0
        assert (await session.execute(text("SELECT count(*) FROM organization"))).scalar_one() == 0


@pytest.mark.parametrize("service", SERVICES)
async def test_every_error_answer_is_documented_as_problem_json(clients, service: str) -> None:
    """Found by the fuzzer: 404, 409, 412, 428 and 429 answers were undocumented, and errors were
    documented as application/json (FastAPI's own 422 shape) while they are problem+json."""
    doc = (await clients[service].get("/openapi.json")).json()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "Problem" in doc["components"]["schemas"] and "HTTPValidationError" not in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            for status, response in responses.items():
                if status[0] in "45":
                    assert response["content"] == problem, (method, path, status)
            if op.get("security"):
                assert {"401", "403", "404", "429"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(responses), (method, path)
            if any(p["name"] == "If-Match" for p in op.get("parameters", [])):
                assert {"412", "428"} <= set(responses), (method, path)


@pytest.mark.slow
async def test_an_unexpected_error_answers_problem_json_and_keeps_the_connection(db, registry, admin) -> None:
    """Through a real uvicorn: a 500 (a database rule the code does not know) is problem+json, the
    connection stays open and the next request on it is answered (it used to be reset)."""
    import asyncio
    import http.client
    import os
    import subprocess
    import sys
    import time

    from sqlalchemy import text

    from shared.devstack import free_port, wait_for_port
    from tests.helpers import LIXIAN

    await import_tree(registry, admin)
    port = free_port()
    server = subprocess.Popen(  # noqa: ASYNC220 - the server runs for the whole test
        [sys.executable, "-m", "uvicorn", "services.registry.main:app", "--port", str(port), "--log-level", "warning"],
        env=os.environ.copy(),
        stderr=subprocess.PIPE,
    )
    async with db.session() as session:
        await session.execute(text("CREATE UNIQUE INDEX test_keepalive_area ON area (name)"))
    try:
        await asyncio.to_thread(wait_for_port, port, 30)

        def exchange() -> list[tuple[int, str, str | None, object]]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = json.dumps({"name": "保活园区", "kind": "park", "region_code": LIXIAN})
            headers = {**admin, "Content-Type": "application/json"}
            seen = []
            for method, path, payload in (
                ("POST", "/v1/areas", body),
                ("POST", "/v1/areas", body),
                ("GET", "/healthz", None),
            ):
                conn.request(method, path, body=payload, headers=headers)
                answer = conn.getresponse()
                answer.read()
                seen.append(
                    (answer.status, answer.getheader("content-type", ""), answer.getheader("connection"), conn.sock)
                )
            conn.close()
            return seen

        deadline = time.monotonic() + 20
        while True:  # the API answers /readyz once its lifespan has started
            try:
                first, failed, after = await asyncio.to_thread(exchange)
                break
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        async with db.session() as session:
            await session.execute(text("DROP INDEX test_keepalive_area"))
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert first[0] == 201
    assert failed[0] == 500 and failed[1] == "application/problem+json" and failed[2] != "close"
    assert after[0] == 200
    assert first[3] is failed[3] is after[3], "the connection was closed after the 500"
    assert b"Exception in ASGI application" not in stderr, stderr.decode()[-2000:]
