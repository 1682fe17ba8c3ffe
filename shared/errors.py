"""RFC 9457 problem details: the one error shape of every Liangxin endpoint."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://liangxin.example.gov.cn/problems/"


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    reason: str


class Problem(BaseModel):
    """Error body (RFC 9457)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise from anywhere below an endpoint to answer with problem+json."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        code: str | None = None,
        title: str | None = None,
        errors: Sequence[FieldError | dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title or str(status))
        self.status = status
        self.detail = detail
        self.code = code or _slug(HTTPStatus(status).phrase)
        self.title = title or HTTPStatus(status).phrase
        self.errors = [e if isinstance(e, FieldError) else FieldError(**e) for e in errors or []]
        self.headers = headers
        self.extra = extra


# Problem types that keep one name whichever layer answers (the services raise payload-too-large).
PROBLEM_CODES = {413: "payload-too-large"}


def not_found(what: str) -> ProblemError:
    return ProblemError(404, f"{what} not found", code="not-found")


def conflict(detail: str, **extra: Any) -> ProblemError:
    return ProblemError(409, detail, code="conflict", **extra)


def invalid(field: str, reason: str, *, detail: str | None = None) -> ProblemError:
    """A 422 naming one field, for checks done after schema validation."""
    return ProblemError(
        422,
        detail or f"{field}: {reason}",
        code="validation-error",
        title="Request validation failed",
        errors=[FieldError(field=field, reason=reason)],
    )


def _route(request: Request) -> str:
    """The route template: raw paths can carry identifiers that do not belong in logs."""
    return getattr(request.scope.get("route"), "path", "unmatched")


def _slug(text: str) -> str:
    return text.lower().replace(" ", "-").replace("'", "")


def problem_response(
    status: int,
    *,
    code: str,
    title: str,
    detail: str | None,
    request: Request | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def printable(name: str) -> str:
    """A field name out of a request, safe to show and to store: a NUL or an unpaired surrogate in
    an unknown field's name is escaped (Postgres and UTF-8 refuse them)."""
    return name.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()


def _field_path(loc: Sequence[str | int]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + printable(str(part))
    return out or str(loc[0] if loc else "body")


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors():
        reason = str(err.get("msg", "invalid value"))
        if reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        errors.append(FieldError(field=_field_path(err.get("loc", ())), reason=printable(reason)))
    return errors


async def _audit_denied(request: Request, detail: str | None) -> None:
    """A refused operation, in the audit log under the caller's jurisdiction."""
    caller = getattr(request.state, "caller", None)
    if caller is None:
        return
    from shared.audit import record_apart

    await record_apart(
        request.app.state.db,
        service=request.app.state.service,
        actor=caller.label,
        action=f"{request.method} {_route(request)}",
        outcome="denied",
        region_code=caller.region_code,
        detail=detail,
        client_addr=request.client.host if request.client else None,
    )


def _out_of_range(exc: BaseException) -> bool:
    import asyncpg

    cause = getattr(getattr(exc, "orig", None), "__cause__", None)
    return isinstance(cause, asyncpg.exceptions.DataError) and "out of int" in str(cause)


def install_error_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        if exc.status == 403:
            await _audit_denied(request, exc.detail)
        return problem_response(
            exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            request=request,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc)
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
        return problem_response(
            422,
            code="validation-error",
            title="Request validation failed",
            detail=detail,
            request=request,
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
        return problem_response(
            status,
            code=PROBLEM_CODES.get(status, _slug(phrase)),
            title=phrase,
            detail=detail,
            request=request,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        from shared.db import is_transient, sqlstate_of

        if sqlstate_of(exc) == "57014":
            # The statement timeout: the request asked for more than the server allows at once.
            log.error("statement timeout", extra={"route": _route(request)})
            return problem_response(
                503,
                code="query-timeout",
                title="Service Unavailable",
                detail="The request took longer than the server allows and changed nothing; "
                "narrow it (a smaller region, batch or page) or retry later.",
                request=request,
                headers={"Retry-After": "30"},
            )
        if sqlstate_of(exc) == "42501":
            # Row-level security refused a row outside the caller's jurisdiction: a query that
            # missed its jurisdiction check. Nothing was written; say no, and log it to be fixed.
            # (The database's message names the table and the policy or privilege, never row values.)
            reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
            log.error("refused by the database", extra={"route": _route(request), "reason": reason})
            await _audit_denied(request, f"refused by the database: {reason}")
            return problem_response(
                403,
                code="forbidden",
                title="Forbidden",
                detail="outside your jurisdiction",
                request=request,
            )

        if _out_of_range(exc):
            # A number the database column cannot hold (asyncpg refuses it before sending): the
            # request's own data, nothing written. Models bound their integers; this is the net.
            log.error("value out of range reached the database", extra={"route": _route(request)})
            return problem_response(
                422,
                code="validation-error",
                title="Request validation failed",
                detail="a number is out of the range the field can hold",
                request=request,
            )

        if sqlstate_of(exc) in ("22P05", "22021"):
            # Text Postgres cannot store (a NUL character, `\\u0000`, in a string or a JSON value): the
            # request's own data, refused with its transaction rolled back, so nothing was written.
            return problem_response(
                422,
                code="validation-error",
                title="Request validation failed",
                detail="text must not contain NUL (U+0000) characters",
                request=request,
            )

        if is_transient(exc):
            # A deadlock, a lost connection, a restarting database: nothing was applied; retrying helps.
            log.warning("transient failure", extra={"route": _route(request), "reason": type(exc).__name__})
            return problem_response(
                503,
                code="temporarily-unavailable",
                title="Service Unavailable",
                detail="The request could not be completed this time and changed nothing; retry it shortly.",
                request=request,
                headers={"Retry-After": "2"},
            )
        log.exception("unhandled error", extra={"route": _route(request)})
        return problem_response(
            500,
            code="internal-error",
            title="Internal Server Error",
            detail="The server could not complete the request; it has been logged.",
            request=request,
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
    app.state.on_unexpected = on_unexpected


class UnexpectedErrorMiddleware:
    """Answers an exception no handler took with the `Exception` handler's problem, and stops there.

    Starlette runs that handler in its outermost middleware, which sends the answer and then
    re-raises: uvicorn logs a second traceback (with the exception's text) and closes the
    connection, so a client's next request on it was reset. Caught here, inside, the answer is the
    same and the connection stays usable."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise  # half a response is out: nothing better than closing the connection
            request = Request(scope, receive)
            response = await request.app.state.on_unexpected(request, exc)
            await response(scope, receive, send)


# Documented in every operation so partners can code against the error shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": HTTPStatus(code).phrase}
    for code in (401, 403, 422)
}
