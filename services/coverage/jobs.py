"""The coverage worker: `arq services.coverage.jobs.WorkerSettings`.

Consumes registry events, and runs the full recompute on request and every night at 01:30,
each writing that day's snapshot. Recalculations still queued after ten minutes (their enqueue after
commit failed, or Redis lost them) are sent again every five minutes.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime
from typing import Any

from arq import cron
from sqlalchemy import text

from services.coverage import figures
from services.coverage.events import HANDLERS
from services.coverage.figures import hold_shared
from services.coverage.models import Recalculation, RecalculationStatus
from services.coverage.service import enqueue_recount, start_recalculation
from shared import locks
from shared.db import connect_raw
from shared.events import subscriptions
from shared.logging import describe
from shared.regions import ROOT_CODE
from shared.settings import get_settings
from shared.worker import worker_settings

log = logging.getLogger(__name__)


async def recompute(ctx: dict[str, Any], recalculation_id: str | None = None, snapshot: bool = False) -> dict[str, Any]:
    """Rebuild every figure from the registry, exclusive of event handlers (see figures.recompute).

    A recalculation someone asked for writes the day's snapshot, as the nightly one does, so the
    history and the trend chart have today's point at once instead of after the next 01:30."""
    db = ctx["db"]
    rid = uuid.UUID(recalculation_id) if recalculation_id else None
    if rid is not None:
        async with db.session() as session:
            row = await session.get(Recalculation, rid)
            if row is None or row.status not in (RecalculationStatus.queued, RecalculationStatus.running):
                return {"skipped": True}
            row.status, row.started_at = RecalculationStatus.running.value, datetime.now(UTC)
    day = date.today() if snapshot or rid is not None else None
    conn = await connect_raw(db.url)
    try:
        await conn.execute("SET statement_timeout = 0")
        # Session-level lock first, then a REPEATABLE READ transaction whose snapshot is taken after
        # the lock is granted: every event committed before it is in the count, none after it.
        await conn.execute("SELECT pg_advisory_lock($1)", locks.FIGURES)
        try:
            async with conn.transaction(isolation="repeatable_read"):
                changed, absorbed = await figures.recompute(conn, subscribed=subscriptions("coverage"), snapshot=day)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", locks.FIGURES)
    except Exception as exc:
        if rid is not None:
            async with db.session() as session:
                await session.execute(
                    text(
                        "UPDATE coverage_recalculation SET status = 'failed', finished_at = now(), error = :e "
                        "WHERE id = :id"
                    ),
                    {"e": describe(exc), "id": rid},
                )
        raise
    finally:
        await conn.close()
    if rid is not None:
        async with db.session() as session:
            await session.execute(
                text(
                    "UPDATE coverage_recalculation SET status = 'done', finished_at = now(), figures_changed = :c, "
                    "events_absorbed = :a, snapshot_date = :d WHERE id = :id"
                ),
                {"c": changed, "a": absorbed, "d": day, "id": rid},
            )
    log.info(
        "coverage recomputed",
        extra={"figures_changed": changed, "events_absorbed": absorbed, "snapshot": str(day) if day else None},
    )
    return {"figures_changed": changed, "events_absorbed": absorbed}


async def nightly(ctx: dict[str, Any]) -> dict[str, Any]:
    async with ctx["db"].session() as session:
        row, created = await start_recalculation(session, requested_by="system:nightly", region_code=ROOT_CODE)
    # A requested recount under way keeps its row; the nightly one still takes the day's snapshot.
    return await recompute(ctx, str(row.id) if created else None, snapshot=True)


async def requeue_stale(ctx: dict[str, Any]) -> int:
    async with ctx["db"].session() as session:
        found = await session.execute(
            text(
                "SELECT id FROM coverage_recalculation WHERE status = 'queued' "
                "AND requested_at < now() - interval '10 minutes'"
            )
        )
        stale = [r.id for r in found]
    for rid in stale:
        await enqueue_recount(ctx["redis"], rid)
    return len(stale)


WorkerSettings = worker_settings(
    "coverage",
    HANDLERS,
    guard=hold_shared,
    functions=[recompute, requeue_stale],
    job_timeout_s=get_settings().batch_job_timeout_s,
    cron_jobs=[
        cron(nightly, hour={1}, minute={30}, unique=True, timeout=get_settings().batch_job_timeout_s),
        cron(requeue_stale, minute=set(range(0, 60, 5)), unique=True),
    ],
)
