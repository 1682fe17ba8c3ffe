"""The arq worker of a service: event consumption with an inbox, cron jobs, JSON on the wire."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from arq import Retry, func
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database, is_transient, set_context, sqlstate_of
from shared.deps import run_after_commit
from shared.events import Event, jurisdiction_of, subscriptions
from shared.logging import configure_logging, describe, request_id_var, service_var
from shared.outbox import OUTBOX_IDS, SERVICE_KEY
from shared.queue import HANDLE_EVENT, job_deserializer, job_serializer, redis_settings
from shared.relay import Publisher
from shared.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A handler's answer when it refuses what an event asks on its merits (retrying gives the same
    answer): its transaction commits (with, say, an event telling the producer why), and the inbox
    records the event `refused` with the reason, for the operators' list."""

    reason: str


EventHandler = Callable[[AsyncSession, Event], Awaitable[Refusal | None]]
JobFunction = Callable[..., Awaitable[Any]]
MAX_TRIES = 8
# Failures a later try can cure, beyond the connection and concurrency ones every caller retries:
# for an event job, a statement timeout (57014) is contention of the moment (a burst of imports),
# not a request that asks too much; every handler's work is bounded.
RETRIED_IN_JOBS = frozenset({"57014"})


async def run_in_session(ctx: dict[str, Any], work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    """A job's unit of work: one transaction, committed here, events relayed after commit."""
    db: Database = ctx["db"]
    service: str = ctx["service"]
    async with db.sessionmaker() as session:
        session.info[SERVICE_KEY] = service
        try:
            await set_context(
                session, actor=f"system:{service}-worker", region_prefix="", request_id=request_id_var.get()
            )
            result = await work(session)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    if ids := session.info.get(OUTBOX_IDS):
        await ctx["publisher"].publish_soon(service, ids)
    await run_after_commit(session)
    return result


def retryable(exc: BaseException) -> bool:
    return (
        is_transient(exc)
        or sqlstate_of(exc) in RETRIED_IN_JOBS
        or isinstance(exc, (RedisConnectionError, RedisTimeoutError))
    )


def _retry_or_raise(exc: Exception, job_try: int) -> None:
    """Transient failures come back later, with a growing delay; anything else, and a transient
    failure on the last try, fails the job for good (recorded `failed`, for an operator: a job
    arq would not run again is never left to fail silently)."""
    if retryable(exc) and job_try < MAX_TRIES:
        raise Retry(defer=min(2**job_try, 60)) from exc


def job_deadline_s(timeout_s: float) -> float:
    """How long an event job's work may take: short of arq's own timeout, which would cancel the job
    without a trace in the inbox, leaving time to roll back and record the failure."""
    return max(timeout_s - 5, timeout_s * 0.8)


Guard = Callable[[AsyncSession], Awaitable[None]]


def make_event_handler(service: str, handlers: Mapping[str, EventHandler], guard: Guard | None = None) -> JobFunction:
    """The arq function consuming a service's events; `guard` runs first in each transaction
    (for a lock every handler must hold, taken before the inbox row to keep one lock order)."""

    async def handle_event(ctx: dict[str, Any], envelope: dict[str, Any]) -> str:
        event = Event.model_validate(envelope)
        token = request_id_var.set(event.correlation_id)
        handler = handlers.get(event.type)
        status = "done" if handler else "ignored"

        async def work(session: AsyncSession) -> str:
            if guard is not None:
                await guard(session)
            claimed = await session.execute(
                text(
                    f"INSERT INTO {service}_inbox (event_id, consumer, event_type, status) "
                    "VALUES (:id, :consumer, :type, :status) ON CONFLICT DO NOTHING RETURNING 1"
                ),
                {"id": event.id, "consumer": service, "type": event.type, "status": status},
            )
            if claimed.first() is None:
                return "duplicate"
            if handler is not None and isinstance(refusal := await handler(session, event), Refusal):
                await session.execute(
                    text(
                        f"UPDATE {service}_inbox SET status = 'refused', error = :error, region_code = :region "
                        "WHERE event_id = :id AND consumer = :consumer"
                    ),
                    {
                        "id": event.id,
                        "consumer": service,
                        "error": refusal.reason[:2000],
                        "region": jurisdiction_of(event.payload),
                    },
                )
                return "refused"
            return status

        timeout = (ctx.get("settings") or get_settings()).event_job_timeout_s
        job_try = ctx.get("job_try", 1)
        try:
            async with asyncio.timeout(job_deadline_s(timeout)):
                outcome: str = await run_in_session(ctx, work)
        except Exception as exc:
            _retry_or_raise(exc, job_try)
            reason = await _record_failure(ctx, service, event, exc)
            # The reason and where it arose, not the traceback: a database error's text carries the
            # statement and its parameters (names, ID numbers), and so would arq's log of it.
            log.error(
                "event handler failed",
                extra={
                    "event_id": str(event.id),
                    "event_type": event.type,
                    "tries": job_try,
                    "reason": reason,
                    "at": _where(exc),
                },
            )
            raise EventFailed(reason) from None
        finally:
            request_id_var.reset(token)
        log_event = log.warning if outcome == "refused" else log.info
        log_event("event consumed", extra={"event_id": str(event.id), "event_type": event.type, "outcome": outcome})
        return outcome

    return handle_event


class EventFailed(Exception):
    """An event consumption that failed for good, recorded in the inbox; its message is the recorded reason."""


def _where(exc: BaseException) -> str | None:
    """The innermost frame of the project's own code the exception passed through."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if "/services/" in frame.filename or "/shared/" in frame.filename:
            module = "/".join(frame.filename.rsplit("/", 2)[-2:])
            found = f"{module}:{frame.lineno} {frame.name}"
    return found


async def _record_failure(ctx: dict[str, Any], service: str, event: Event, exc: Exception) -> str:
    """Keep a failed event visible (and out of automatic re-delivery) for an operator, who can retry it
    (`POST /v1/events/{event_id}:retry`); returns the reason recorded."""
    if isinstance(exc, TimeoutError):
        reason = f"TimeoutError: the event took longer than the job allows ({ctx.get('job_try', 1)} tries)"
    else:
        reason = describe(exc)
    try:
        async with ctx["db"].session() as session:
            await session.execute(
                text(
                    f"INSERT INTO {service}_inbox (event_id, consumer, event_type, status, error, region_code) "
                    "VALUES (:id, :consumer, :type, 'failed', :error, :region) ON CONFLICT DO NOTHING"
                ),
                {
                    "id": event.id,
                    "consumer": service,
                    "type": event.type,
                    "error": reason,
                    "region": jurisdiction_of(event.payload),
                },
            )
    except Exception:
        log.warning("could not record a failed event", extra={"event_id": str(event.id)})
    return reason


def check_subscriptions(service: str, handlers: Mapping[str, EventHandler]) -> None:
    """A service subscribes to exactly the events it has a handler for: an event nobody handles is
    not sent, and a handler nothing sends to is dead code."""
    subscribed, handled = subscriptions(service), set(handlers)
    if handled != subscribed:
        raise RuntimeError(
            f"{service}: subscribed without a handler: {sorted(subscribed - handled)}; "
            f"handled without a subscription: {sorted(handled - subscribed)}"
        )


def worker_settings(
    service: str,
    handlers: Mapping[str, EventHandler],
    *,
    functions: Sequence[JobFunction] = (),
    cron_jobs: Sequence[CronJob] = (),
    job_timeout_s: int | None = None,
    guard: Guard | None = None,
) -> type:
    """Build the `WorkerSettings` class `arq services.<service>.jobs.WorkerSettings` expects."""
    settings = get_settings()
    if not settings.redis_url:
        raise RuntimeError("LIANGXIN_REDIS_URL is not set")
    check_subscriptions(service, handlers)
    event_timeout = settings.event_job_timeout_s
    longest = max(event_timeout, job_timeout_s or 0)

    async def on_startup(ctx: dict[str, Any]) -> None:
        # The settings as they are when the worker starts (the same object in production; a test
        # may have changed them since this module was imported).
        current = get_settings()
        configure_logging(current.log_level, json_output=current.log_json)
        service_var.set(service)
        ctx["service"] = service
        ctx["settings"] = current
        ctx["db"] = Database(current, application_name=f"liangxin-{service}-worker")
        ctx["publisher"] = Publisher(ctx["db"], ctx["redis"], current)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "db" in ctx:
            await ctx["db"].dispose()

    arq_functions = [
        func(
            cast(WorkerCoroutine, make_event_handler(service, handlers, guard)),
            name=HANDLE_EVENT,
            timeout=event_timeout,
            max_tries=MAX_TRIES,
        ),
        *[func(cast(WorkerCoroutine, f), timeout=job_timeout_s or event_timeout, max_tries=3) for f in functions],
    ]
    return type(
        "WorkerSettings",
        (),
        {
            "functions": arq_functions,
            "cron_jobs": list(cron_jobs),
            "queue_name": settings.queue_name(service),
            "redis_settings": redis_settings(settings.redis_url),
            "job_serializer": job_serializer,
            "job_deserializer": job_deserializer,
            "on_startup": on_startup,
            "on_shutdown": on_shutdown,
            # Honest timeouts: a killed worker's job is retried only after the longest
            # timeout plus arq's 10 s margin, so nothing here waits longer than needed.
            "job_timeout": longest,
            "max_jobs": 10,
            "keep_result": 3600,
            "health_check_interval": 10,
            "max_tries": MAX_TRIES,
        },
    )
