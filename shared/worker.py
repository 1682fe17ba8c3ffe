"""The arq worker of a service: event consumption with an inbox, cron jobs, JSON on the wire."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from arq import Retry, func
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database, is_transient, set_context
from shared.deps import run_after_commit
from shared.events import Event
from shared.logging import configure_logging, describe, request_id_var, service_var
from shared.outbox import OUTBOX_IDS, SERVICE_KEY
from shared.queue import HANDLE_EVENT, job_deserializer, job_serializer, redis_settings
from shared.relay import Publisher
from shared.settings import get_settings

log = logging.getLogger(__name__)

EventHandler = Callable[[AsyncSession, Event], Awaitable[None]]
JobFunction = Callable[..., Awaitable[Any]]
MAX_TRIES = 8


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


def _retry_or_raise(exc: Exception, job_try: int) -> None:
    """Transient failures come back later; anything else fails the job for good (arq's rule)."""
    if is_transient(exc) or isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        raise Retry(defer=min(2**job_try, 60)) from exc


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
            if handler is not None:
                await handler(session, event)
            return status

        try:
            outcome: str = await run_in_session(ctx, work)
        except Exception as exc:
            _retry_or_raise(exc, ctx.get("job_try", 1))
            log.exception("event handler failed", extra={"event_id": str(event.id), "event_type": event.type})
            await _record_failure(ctx, service, event, exc)
            raise
        finally:
            request_id_var.reset(token)
        log.info("event consumed", extra={"event_id": str(event.id), "event_type": event.type, "outcome": outcome})
        return outcome

    return handle_event


async def _record_failure(ctx: dict[str, Any], service: str, event: Event, exc: Exception) -> None:
    """Keep a failed event visible (and out of automatic re-delivery) for an operator."""
    try:
        async with ctx["db"].session() as session:
            await session.execute(
                text(
                    f"INSERT INTO {service}_inbox (event_id, consumer, event_type, status, error) "
                    "VALUES (:id, :consumer, :type, 'failed', :error) ON CONFLICT DO NOTHING"
                ),
                {
                    "id": event.id,
                    "consumer": service,
                    "type": event.type,
                    "error": describe(exc),
                },
            )
    except Exception:
        log.warning("could not record a failed event", extra={"event_id": str(event.id)})


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
    event_timeout = settings.event_job_timeout_s
    longest = max(event_timeout, job_timeout_s or 0)

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings.log_level, json_output=settings.log_json)
        service_var.set(service)
        ctx["service"] = service
        ctx["settings"] = settings
        ctx["db"] = Database(settings, application_name=f"liangxin-{service}-worker")
        ctx["publisher"] = Publisher(ctx["db"], ctx["redis"], settings)

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
