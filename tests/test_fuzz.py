"""API fuzzing: schemathesis against the three OpenAPI documents, as a national admin.

Every operation each service publishes (read from its OpenAPI document, so new ones, the
evaluation service's included, are fuzzed without being listed here) gets generated requests,
valid and invalid, against the real apps, Postgres and Redis, with a small region tree and one
object of every kind seeded in 澧县 (half the valid requests to an object's path name a seeded
one). Reads run first, writes after, so writes do not remove what the reads are about. Every
response must pass:
- no 5xx (`not_a_server_error`);
- status, content type, headers and body as documented (`status_code_conformance`,
  `content_type_conformance`, `response_headers_conformance`, `response_schema_conformance`);
- no validation bypass: every invalid request is refused (`negative_data_rejection`), and no
  valid one is refused as malformed (`positive_data_acceptance`; ACCEPTED lists what a valid
  request may still get);
- `sibling_jurisdiction_sees_nothing`, ours: every successful read is sent again by an admin of
  武陵区, next to 澧县; a path naming an object of 澧县 must then answer 403/404, and anything else
  read (lists, reports, feeds, the ledger workbook) must carry nothing of 澧县.

Left out, on purpose:
- schemathesis's coverage, examples and stateful phases: minutes of requests, beyond the CI
  budget; the hypothesis-driven fuzzing phase runs, derandomized, without shrinking;
- `ignored_auth`, `use_after_free`, `ensure_resource_availability`, `object_level_authorization`:
  tests/test_authorization.py proves 401/403/404 per operation and walks every object by hand;
- `missing_required_header`: the only required headers are credentials, covered the same way;
- `max_response_time`: two shared CI cores make timing noise, not findings.
Form bodies (the OAuth2 token form, the import upload) accept unknown fields: RFC 6749 §3.2 says a
token endpoint ignores unrecognized parameters; JSON bodies forbid them
(tests/test_authorization.py::test_every_json_request_body_forbids_unknown_fields).
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import LIXIAN, WULING, feeds_caught_up, make_user
from tests.test_authorization import SECRET, ids_for, seed

# Examples per operation and generation mode: small and derandomized, so a CI run is repeatable.
EXAMPLES = 10
# Statuses a schema-valid request may still get: authorization, absence, conflicts, a stale or missing
# If-Match, limits, and 422 for rules JSON Schema cannot state: check characters of credit codes and ID
# numbers, regions that must exist in the tree, cursors only the API issues, date order, the page-size
# cap (a setting). 400 and 5xx stay failures.
ACCEPTED = ["2xx", "401", "403", "404", "409", "412", "413", "415", "422", "428", "429"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class OnSessionLoop:
    """An ASGI app that hands each request to `app` on the test session's event loop.

    schemathesis serves an ASGI app from an event loop of its own, in a thread; the apps' database
    pools and Redis clients live on the session loop their lifespans were started on, so requests
    are run there. The lifespans themselves belong to the `apps` fixture: this one acknowledges
    schemathesis's lifespan messages and does nothing else.
    """

    def __init__(self, app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.crashes: list[BaseException] = []

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        running = asyncio.run_coroutine_threadsafe(self._serve(dict(scope), body), self.loop)
        for message in await asyncio.wrap_future(running):
            await send(message)

    async def _serve(self, scope: Scope, body: bytes) -> list[Message]:
        sent: list[Message] = []
        done = asyncio.Event()
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # a streaming response listens for a disconnect while it streams
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # the 500 it answered with fails `not_a_server_error`; keep the cause
            self.crashes.append(exc)
            if not sent:
                raise
        return sent


@dataclass
class Jurisdictions:
    """What the sibling check needs: the sibling's credentials and what of 澧县 it must not see."""

    sibling: dict[str, str]
    objects: set[str]  # identifiers of the objects seeded in 澧县
    leaks: list[str]
    replayed: dict[str, int] = field(default_factory=dict)


_ACTIVE: Jurisdictions | None = None
_LOCK = threading.Lock()


def _shown(response: schemathesis.Response) -> str | None:
    content_type = response.headers.get("content-type", [""])[0]
    if "spreadsheetml" in content_type:
        from openpyxl import load_workbook

        book = load_workbook(io.BytesIO(response.content), read_only=True)
        return " ".join(str(c) for s in book.worksheets for row in s.iter_rows(values_only=True) for c in row)
    if content_type.startswith("image/"):
        return None  # a chart: its figures come from the JSON reports, checked as they are read
    return response.content.decode("utf-8", "replace")


@schemathesis.check
def sibling_jurisdiction_sees_nothing(ctx: schemathesis.CheckContext, response: Any, case: Any) -> bool | None:
    """A read that succeeded for a national admin, sent again by an admin of the sibling 武陵区."""
    jurisdictions = _ACTIVE
    if jurisdictions is None or case.method.upper() != "GET" or not 200 <= response.status_code < 300:
        return None
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("authorization", "x-api-key")}
    answer = case.call(headers={**headers, **jurisdictions.sibling})
    with _LOCK:
        jurisdictions.replayed[case.path] = jurisdictions.replayed.get(case.path, 0) + 1
    named = [str(v) for v in (case.path_parameters or {}).values()]
    if any(v in jurisdictions.objects or v.startswith(LIXIAN[:6]) for v in named):
        if answer.status_code not in (403, 404):
            raise Failure(
                operation=case.operation.label,
                title="A sibling jurisdiction reads the object",
                message=f"{case.formatted_path} answered {answer.status_code} to 武陵区's admin:\n{answer.text[:500]}",
            )
        return None
    if not 200 <= answer.status_code < 300:
        return None  # refused (a region outside theirs, say): nothing shown
    # Anything else read successfully (a list, a report, a feed, the sibling's own region) shows nothing of 澧县.
    shown = _shown(answer)
    if shown is None:
        return None
    for leak in jurisdictions.leaks:
        if leak in shown:
            raise Failure(
                operation=case.operation.label,
                title="A sibling jurisdiction's list shows 澧县",
                message=f"{case.formatted_path} {case.query} shows {leak!r} to an admin of 武陵区",
            )
    return None


def _summary(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        found = [f"{getattr(e, 'title', type(e).__name__)}: {getattr(e, 'message', e)}" for e in exc.exceptions]
        reproduce = str(exc).rsplit("Reproduce with:", 1)[-1].strip().splitlines()[0]
        return "\n  ".join([*found, reproduce])
    return f"{type(exc).__name__}: {str(exc)[:1500]}"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    sibling_jurisdiction_sees_nothing,
]


def load(app: FastAPI, loop: asyncio.AbstractEventLoop) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
            "operations": [
                {
                    # Well-formed but wrong credentials: 400 invalid_grant (RFC 6749 §5.2), also for a
                    # phone's sign-in and a refresh token that is not the device's current one.
                    "include-path": path,
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
                }
                for path in ("/v1/auth/token", "/v1/auth/device-token", "/v1/auth/refresh")
            ],
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", OnSessionLoop(app, loop), config=config)
    return schema


CURRENT_ETAG = "<the object's current ETag>"
_LOCKED_EDITS: list[str] = []  # edits of seeded objects sent with the ETag just read


def current_etag(case: Any, admin: dict[str, str]) -> str:
    """The ETag an edit must send (`If-Match: *` is refused): read the object it edits."""
    path = case.operation.path.split(":", 1)[0]  # `/v1/assessments/{assessment_id}:submit` edits the assessment
    read = case.operation.schema[path]["GET"].Case(path_parameters=case.path_parameters, headers=admin).call()
    assert read.status_code == 200 and "etag" in read.headers, f"GET {path}: {read.status_code}"
    _LOCKED_EDITS.append(case.operation.label)
    return str(read.headers["etag"][0])


def fuzz(
    apps: dict[str, FastAPI], loop: asyncio.AbstractEventLoop, admin: dict[str, str], ids: dict[str, str]
) -> tuple[list[str], int]:
    """Run every operation of every service; reads first, so writes do not remove what they read."""
    operations = []
    for service, app in apps.items():
        schema = load(app, loop)
        for result in schema.get_all_operations():
            operations.append((service, schema, result.ok()))
    operations.sort(key=lambda found: found[2].method.upper() != "GET")
    failures: list[str] = []
    for service, schema, operation in operations:
        real = ids_for(service, operation.path, ids)
        names = re.findall(r"\{([a-z_]+)\}", operation.path)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            if names and mode is schemathesis.GenerationMode.POSITIVE and all(n in real for n in names):
                # Half the valid requests name the seeded objects, so reads succeed and writes reach real
                # rows, past the optimistic lock where there is one (the object's ETag, read just before).
                headers = {"If-Match": CURRENT_ETAG} if operation.get_parameter("If-Match", "header") else None
                seeded = operation.as_strategy(
                    generation_mode=mode, path_parameters={n: real[n] for n in names}, headers=headers
                )
                strategy = st.one_of(seeded, strategy)

            @hypothesis.settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
                report_multiple_bugs=False,
                print_blob=False,
            )
            @hypothesis.given(case=strategy)
            def run(case: Any) -> None:
                if case.headers and case.headers.get("If-Match") == CURRENT_ETAG:
                    case.headers["If-Match"] = current_etag(case, admin)
                case.call_and_validate(headers=admin, checks=CHECKS)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing invalid to send (no parameters, no body)
            except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
                crashes = schema.app.crashes
                cause = f"\n  caused by {crashes[-1]!r}" if crashes else ""
                failures.append(f"{service} {operation.label} ({mode.value}): {_summary(exc)}{cause}")
            schema.app.crashes.clear()
    return failures, len(operations)


async def test_schemathesis_finds_nothing(apps, db, redis, registry, coverage, evaluation, admin) -> None:
    global _ACTIVE
    ids = await seed(db, redis, registry, coverage, admin, evaluation)
    await feeds_caught_up()
    sibling = await make_user(db, role="admin", region=WULING)
    leaks = [SECRET, "430723", *[v for k, v in ids.items() if k not in {"recalculation_id", "code", "version"}]]
    objects = {v for k, v in ids.items() if k != "version"}  # a recount is national: 武陵区 reads none
    _ACTIVE = Jurisdictions(sibling=sibling, objects=objects, leaks=leaks)
    started = time.monotonic()
    try:
        failures, operations = await asyncio.to_thread(fuzz, apps, asyncio.get_running_loop(), admin, ids)
    finally:
        replayed, _ACTIVE = _ACTIVE.replayed, None
    print(f"fuzzed {operations} operations in {time.monotonic() - started:.0f}s; sibling replays: {replayed}")
    print(f"edits past the optimistic lock: {len(_LOCKED_EDITS)} over {len(set(_LOCKED_EDITS))} operations")
    assert not failures, "\n\n".join(failures)
    assert operations >= 60
    assert len(replayed) >= 20  # the sibling check did run, on reads of objects and on lists
    assert len(set(_LOCKED_EDITS)) >= 5  # edits reached real rows with their current ETag
