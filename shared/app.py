"""What every Liangxin API shares: lifespan, request ids, logs, metrics, health, errors."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import failures, refusals
from shared.db import Database
from shared.errors import (
    PROBLEM_CODES,
    PROBLEM_JSON,
    Problem,
    UnexpectedErrorMiddleware,
    install_error_handlers,
    problem_response,
)
from shared.limits import FAIL_OPEN
from shared.logging import configure_logging, new_request_id, request_id_var, service_var
from shared.outbox import ATTENTION
from shared.queue import make_redis
from shared.relay import Publisher
from shared.schemas import storable_parameters
from shared.settings import Environment, get_settings

log = logging.getLogger("liangxin.http")


class Metrics:
    def __init__(self, service: str):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "liangxin_http_requests_total",
            "HTTP requests",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "liangxin_http_request_duration_seconds",
            "HTTP request latency",
            ["service", "method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        # Read from the service's inbox at each scrape (the workers serve no metrics of their own).
        self.events = {
            status: Gauge(
                f"liangxin_events_{status}",
                f"Events this service's consumer {status} (see GET /v1/events/failed)",
                ["service"],
                registry=self.registry,
            )
            for status in ATTENTION
        }
        self.service = service
        # Kept by shared.limits for the whole process; each service's /metrics shows it.
        self.registry.register(FAIL_OPEN)


class RequestContextMiddleware:
    """Request id in, request id out (`X-Request-ID`), one log line and metrics per request, and
    after the response, the request's attempts on other jurisdictions in the audit log
    (`shared.refusals`; `path_kinds` says which kind of object each path parameter names)."""

    def __init__(self, app: ASGIApp, *, service: str, metrics: Metrics, path_kinds: Mapping[str, str]):
        self.app = app
        self.service = service
        self.metrics = metrics
        self.path_kinds = path_kinds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = new_request_id(incoming)
        token = request_id_var.set(request_id)
        service_token = service_var.set(self.service)
        started = time.perf_counter()
        status = 500
        noted, noting = refusals.begin()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        answered = False
        try:
            await self.app(scope, receive, send_with_id)
            answered = True
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # The route template, never the raw path: paths and query strings can carry
            # credit codes or names, and a template keeps metric cardinality bounded.
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(self.service, method, template, str(status)).inc()
            self.metrics.latency.labels(self.service, method, template).observe(elapsed)
            log.info(
                "request",
                extra={"method": method, "route": template, "status": status, "duration_ms": round(elapsed * 1000, 1)},
            )
            if answered:
                await refusals.record(scope, status=status, noted=noted, path_kinds=self.path_kinds)
            refusals.end(noting)
            request_id_var.reset(token)
            service_var.reset(service_token)


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit} bytes this server accepts")


class BodyLimitMiddleware:
    """413 as problem+json for a body over `LIANGXIN_MAX_BODY_BYTES`, whatever the endpoint: a declared
    Content-Length over the limit is refused before anything is read; a body that grows past it
    while read (chunked) stops there. (Starlette's own limiter answers text/plain, and replaces any
    response to a request whose declared length is over the limit.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_body_bytes
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem_response(
                413,
                code=PROBLEM_CODES[413],
                title=HTTPStatus(413).phrase,
                detail=_BodyTooLarge(limit).detail,
                request=Request(scope),
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)  # an HTTPException: answered by the problem handlers
            return message

        await self.app(scope, counted, send)


def _ops_router(metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: Postgres and Redis are reachable; failed event consumptions say degraded",
        responses={503: {"description": "A dependency is down", "content": {PROBLEM_JSON: {}}}},
    )
    async def readyz(request: Request) -> Any:
        state = request.app.state
        checks: dict[str, str] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                await asyncio.wait_for(probe(), timeout=2)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"down: {type(exc).__name__}"

        await asyncio.gather(check("postgres", state.db.ping), check("redis", state.redis.ping))
        down = [name for name, result in checks.items() if result != "ok"]
        failed = 0
        if checks["postgres"] == "ok":
            # Failed event consumptions degrade the service without taking it out of rotation: its
            # API still answers, but figures may lag until an operator retries them.
            try:
                failed = (await asyncio.wait_for(failures.count(state.db, state.service), timeout=2))["failed"]
                checks["events"] = f"degraded: {failed} failed, see GET /v1/events/failed" if failed else "ok"
            except Exception as exc:
                checks["events"] = f"unknown: {type(exc).__name__}"
        if down:
            return JSONResponse(
                {
                    "type": "https://liangxin.example.gov.cn/problems/not-ready",
                    "title": "Service Unavailable",
                    "status": 503,
                    "detail": f"unreachable: {', '.join(down)}",
                    "checks": checks,
                },
                status_code=503,
                media_type=PROBLEM_JSON,
            )
        return {"status": "degraded" if failed else "ready", "checks": checks}

    @router.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        # Request counts and latencies by route tell an outsider what the service does and when:
        # a scraper shows the token; without one, only a development or test process shows them.
        settings = get_settings()
        if settings.metrics_token:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {settings.metrics_token}".encode()):
                return problem_response(
                    401,
                    code="unauthorized",
                    title="Unauthorized",
                    detail="send the metrics token (LIANGXIN_METRICS_TOKEN) as a bearer token",
                    request=request,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif settings.env is Environment.production:
            return problem_response(
                404,
                code="not-found",
                title="Not Found",
                detail="metrics are off: set LIANGXIN_METRICS_TOKEN to scrape them",
                request=request,
            )
        try:
            counted = await asyncio.wait_for(failures.count(request.app.state.db, metrics.service), timeout=2)
            for status, gauge in metrics.events.items():
                gauge.labels(metrics.service).set(counted[status])
        except Exception as exc:
            log.warning("event failures not counted", extra={"reason": type(exc).__name__})
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _publish_required_scopes(router: APIRouter) -> None:
    """Each operation names the permission it needs (`x-required-scopes`) and whether only officials
    may call it (`x-officials-only`), so partners can see it and the authorization suite can prove
    it: an operation without a permission fails that suite."""
    from fastapi.routing import APIRoute

    from shared.auth import officials_only, required_scopes

    for route in router.routes:
        if isinstance(route, APIRoute) and (scopes := required_scopes(route.dependant)):
            extra: dict[str, Any] = {"x-required-scopes": scopes}
            if officials_only(route.dependant):
                extra["x-officials-only"] = True
            route.openapi_extra = {**(route.openapi_extra or {}), **extra}


# Statuses any operation of a kind can answer, beyond those it declares itself.
_AUTHENTICATED = {
    401: "Missing or invalid credentials",
    403: "The credentials lack the permission (`x-required-scopes`)",
    404: "Not found, or outside your jurisdiction (answered the same way)",
    429: "Rate limit reached; see Retry-After",
}
_WITH_INPUT = {422: "Request validation failed"}
_WRITE_TO_OBJECT = {409: "Conflicts with the object's current state"}
_IF_MATCH = {
    412: "Changed by someone else since you read it",
    428: "If-Match missing, or `*`: send the ETag you read",
}
_WITH_BODY = {
    400: "The body could not be parsed",
    413: "The body is larger than the server accepts",
}


def _document_problems(app: FastAPI) -> None:
    """Every error a Liangxin endpoint answers is problem+json (shared.errors): each operation's
    OpenAPI says so, with the Problem schema, and declares the statuses every operation of its kind
    can answer (credentials, jurisdiction, rate limit, validation, body limits), so the document
    matches what clients get."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components.setdefault("Problem", problem)
        ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                responses = op.setdefault("responses", {})
                extra: dict[int, str] = {}
                if method != "get" and "{" in path:
                    extra |= _WRITE_TO_OBJECT
                if any(p.get("in") == "header" and p["name"].lower() == "if-match" for p in op.get("parameters", [])):
                    extra |= _IF_MATCH
                if op.get("security"):
                    extra |= _AUTHENTICATED
                if op.get("parameters") or "requestBody" in op:
                    extra |= _WITH_INPUT
                if "requestBody" in op:
                    extra |= _WITH_BODY
                for status, description in extra.items():
                    responses.setdefault(str(status), {"description": description})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = {PROBLEM_JSON: ref}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_service_app(
    *,
    service: str,
    title: str,
    description: str,
    version: str,
    routers: Sequence[APIRouter],
    openapi_tags: list[dict[str, Any]] | None = None,
    path_kinds: Mapping[str, str] | None = None,
) -> FastAPI:
    """`path_kinds`: the kind of object (`shared.refusals.KINDS`) each path parameter names, so a
    404 for another jurisdiction's object is audited."""
    metrics = Metrics(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = get_settings()
        configure_logging(settings.log_level, json_output=settings.log_json)
        if not settings.redis_url:
            raise RuntimeError("LIANGXIN_REDIS_URL is not set")
        app.state.settings = settings
        app.state.db = Database(settings, application_name=f"liangxin-{service}")
        app.state.redis = make_redis(settings.redis_url)
        app.state.publisher = Publisher(app.state.db, app.state.redis, settings)
        log.info("service started", extra={"service": service})
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.db.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(storable_parameters)],
    )
    app.state.service = service
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(_ops_router(metrics))
    for router in [*routers, failures.events_router(service)]:
        _publish_required_scopes(router)
        app.include_router(router)
    # Every service has the operators' list of failed events (`shared.failures`).
    path_kinds = {**(path_kinds or {}), "event_id": f"{service}_event"}
    assert set(path_kinds.values()) <= set(refusals.KINDS), path_kinds
    # Innermost: an unexpected error becomes its problem answer here, not in Starlette's outer layer.
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestContextMiddleware, service=service, metrics=metrics, path_kinds=path_kinds or {})
    _document_problems(app)
    return app
