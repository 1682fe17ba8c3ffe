"""Moves committed outbox events onto the arq queues of their subscribers.

Three paths share this code:
- right after a commit (API request or job), the events it wrote are sent at once;
- the relay process sends whatever is still unpublished (Redis was down, a process died);
- the relay process re-sends, to each subscriber without an inbox row, events published
  long ago whose job is neither queued nor running (Redis lost its data, a job failed on
  transient errors until arq gave up and kept its result, which would make arq silently
  drop a plain re-enqueue of the same `_job_id`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.events import SERVICES, Event, consumers_of
from shared.queue import HANDLE_EVENT, job_serializer
from shared.settings import Settings

log = logging.getLogger(__name__)

# arq's enqueue semantics in one script, so a batch costs one round trip. With `force`,
# a kept result (and try counter) of a finished job no longer blocks a re-send.
_ENQUEUE_LUA = """
if ARGV[5] == '1' then
  if redis.call('exists', KEYS[1], KEYS[3]) > 0 then return 0 end
  redis.call('del', KEYS[2], KEYS[5])
elseif redis.call('exists', KEYS[1], KEYS[2]) > 0 then
  return 0
end
redis.call('psetex', KEYS[1], ARGV[2], ARGV[1])
redis.call('zadd', KEYS[4], ARGV[3], ARGV[4])
return 1
"""
JOB_EXPIRES_MS = 7 * 86_400_000
FAST_PATH_MAX_EVENTS = 8


# What an outbox row holds of its event's envelope (all of it but the producer, its table's).
ENVELOPE_FIELDS = ("id", "type", "version", "occurred_at", "correlation_id", "payload")
ENVELOPE_COLUMNS = ", ".join(ENVELOPE_FIELDS)


def job_id(event_id: Any, queue: str) -> str:
    return f"{event_id}:{queue}"


def envelope(producer: str, row: Any) -> dict[str, Any]:
    """The event of an outbox row, as it travels."""
    fields = {name: getattr(row, name) for name in ENVELOPE_FIELDS}
    return Event.model_validate({**fields, "producer": producer}).model_dump(mode="json")


async def reopen(session: AsyncSession, producer: str, event_id: Any) -> dict[str, Any] | None:
    """An event to deliver again (an operator's retry): its envelope, with its outbox row marked not
    completed, so the relay re-sends it should the re-send after commit be lost. None if not kept."""
    row = (
        await session.execute(
            text(
                f"UPDATE {producer}_outbox SET completed_at = NULL, published_at = now() WHERE id = :id "
                f"RETURNING {ENVELOPE_COLUMNS}"
            ),
            {"id": event_id},
        )
    ).first()
    return None if row is None else envelope(producer, row)


async def _claim(session: AsyncSession, table: str, where: str, order: str, params: dict[str, Any]) -> list[Any]:
    """Up to `:limit` outbox rows for this pass, locked; rows another pass holds are skipped."""
    found = await session.execute(
        text(
            f"SELECT {ENVELOPE_COLUMNS} FROM {table} WHERE {where} ORDER BY {order} LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        params,
    )
    return list(found.all())


async def _complete(session: AsyncSession, table: str, ids: Sequence[Any]) -> None:
    """Nothing left to deliver of these events."""
    if ids:
        await session.execute(text(f"UPDATE {table} SET completed_at = now() WHERE id = ANY(:ids)"), {"ids": list(ids)})


class Publisher:
    def __init__(self, db: Database, redis: ArqRedis, settings: Settings):
        self.db = db
        self.redis = redis
        self.settings = settings
        self._script = redis.register_script(_ENQUEUE_LUA)
        self._breaker_until = 0.0

    async def enqueue(self, deliveries: Sequence[tuple[str, dict[str, Any]]], *, force: bool = False) -> list[int]:
        """Put (consumer, envelope) pairs on the consumers' queues; 1 for each new job, else 0."""
        if not deliveries:
            return []
        now = timestamp_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for consumer, envelope in deliveries:
                queue = self.settings.queue_name(consumer)
                jid = job_id(envelope["id"], queue)
                job = serialize_job(HANDLE_EVENT, (envelope,), {}, None, now, serializer=job_serializer)
                await self._script(
                    keys=[
                        job_key_prefix + jid,
                        result_key_prefix + jid,
                        in_progress_key_prefix + jid,
                        queue,
                        retry_key_prefix + jid,
                    ],
                    args=[job, JOB_EXPIRES_MS, now, jid, "1" if force else "0"],
                    client=pipe,
                )
            results = await pipe.execute()
        return [int(r) for r in results]

    async def publish_soon(self, service: str, ids: Sequence[Any]) -> None:
        """Fast path after a commit. Never fails the caller: the relay process catches up.

        A large batch (a bulk import) is left to the relay process, so the partner's request
        does not wait for it.
        """
        if time.monotonic() < self._breaker_until or len(ids) > FAST_PATH_MAX_EVENTS:
            return
        try:
            await asyncio.wait_for(self.publish_ids(service, ids), timeout=3)
        except Exception as exc:
            self._breaker_until = time.monotonic() + 5
            log.warning("event relay deferred", extra={"reason": type(exc).__name__, "events": len(ids)})

    async def publish_ids(self, service: str, ids: Sequence[Any]) -> int:
        return await self._publish(service, "id = ANY(:ids)", {"ids": list(ids)}, limit=len(ids))

    async def publish_pending(self, service: str) -> int:
        return await self._publish(service, "TRUE", {}, limit=self.settings.relay_batch_size)

    async def _publish(self, service: str, where: str, params: dict[str, Any], *, limit: int) -> int:
        table = f"{service}_outbox"
        async with self.db.session() as session:
            rows = await _claim(session, table, f"published_at IS NULL AND {where}", "seq", {**params, "limit": limit})
            if not rows:
                return 0
            deliveries = []
            orphans = []
            for row in rows:
                consumers = consumers_of(row.type)
                if not consumers:
                    orphans.append(row.id)
                deliveries += [(c, envelope(service, row)) for c in consumers]
            await self.enqueue(deliveries)
            await session.execute(
                text(f"UPDATE {table} SET published_at = now() WHERE id = ANY(:ids)"),
                {"ids": [r.id for r in rows]},
            )
            await _complete(session, table, orphans)
        return len(rows)

    async def redeliver(self, service: str) -> tuple[int, int]:
        """Re-send stale undelivered events; returns (events completed, deliveries re-sent)."""
        table = f"{service}_outbox"
        async with self.db.session() as session:
            rows = await _claim(
                session,
                table,
                "completed_at IS NULL AND published_at IS NOT NULL "
                "AND published_at < now() - make_interval(secs => :age)",
                "published_at",
                {"age": self.settings.redelivery_after_s, "limit": self.settings.relay_batch_size},
            )
            if not rows:
                return 0, 0
            by_consumer: dict[str, list[Any]] = defaultdict(list)
            for row in rows:
                for consumer in consumers_of(row.type):
                    by_consumer[consumer].append(row.id)
            done: set[tuple[Any, str]] = set()
            for consumer, ids in by_consumer.items():
                found = await session.execute(
                    text(f"SELECT event_id FROM {consumer}_inbox WHERE event_id = ANY(:ids)"),
                    {"ids": ids},
                )
                done |= {(r.event_id, consumer) for r in found}
            complete, waiting, resend = [], [], []
            for row in rows:
                pending = [c for c in consumers_of(row.type) if (row.id, c) not in done]
                if not pending:
                    complete.append(row.id)
                else:
                    waiting.append(row.id)
                    resend += [(c, envelope(service, row)) for c in pending]
            results = await self.enqueue(resend, force=True)
            resent_ids = list({env["id"] for (_, env), new in zip(resend, results, strict=True) if new})
            sent = sum(results)
            await _complete(session, table, complete)
            if waiting:
                # Queued or running jobs were left alone; look again after another interval.
                await session.execute(
                    text(
                        f"UPDATE {table} SET published_at = now(), "
                        "redeliveries = redeliveries + (id::text = ANY(:resent))::int "
                        "WHERE id = ANY(:ids)"
                    ),
                    {"ids": waiting, "resent": resent_ids},
                )
        if sent:
            log.warning("events re-sent", extra={"producer": service, "deliveries": sent})
        return len(complete), sent

    async def run_once(self) -> int:
        """One relay pass over every outbox; returns the number of events published."""
        published = 0
        for service in SERVICES:
            while (n := await self.publish_pending(service)) > 0:
                published += n
                if n < self.settings.relay_batch_size:
                    break
            await self.redeliver(service)
        return published


async def run_relay(db: Database, redis: ArqRedis, settings: Settings, *, stop: asyncio.Event) -> None:
    """The relay process: poll the outboxes until `stop` is set, surviving Redis and Postgres outages."""
    publisher = Publisher(db, redis, settings)
    backoff = settings.relay_interval_s
    log.info("relay started", extra={"interval_s": settings.relay_interval_s})
    while not stop.is_set():
        try:
            published = await publisher.run_once()
            if published:
                log.info("events relayed", extra={"events": published})
            backoff = settings.relay_interval_s
        except Exception as exc:
            backoff = min(backoff * 2, 30.0)
            log.warning("relay pass failed", extra={"reason": type(exc).__name__, "retry_in_s": backoff})
        try:
            await asyncio.wait_for(stop.wait(), timeout=backoff)
        except TimeoutError:
            pass
