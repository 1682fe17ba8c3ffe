"""The registry worker: `arq services.registry.jobs.WorkerSettings`."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from arq import cron
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry import instructors, merge
from services.registry.events import HANDLERS
from services.registry.models import ChangeSource
from shared.auth import system_caller
from shared.scope import ScopeCriteria, derive_in_scope
from shared.settings import get_settings
from shared.worker import run_in_session, worker_settings

log = logging.getLogger(__name__)
RESCOPE_CHUNK = 5_000


async def refresh_instructed(ctx: dict[str, Any]) -> int:
    """Assignments that start or end today change work coverage without anyone calling the API."""

    async def work(session: AsyncSession) -> int:
        changes = await instructors.sync_instructed(
            session, org_ids=None, today=date.today(), actor="system:refresh_instructed", source=ChangeSource.system
        )
        return len(changes)

    flipped: int = await run_in_session(ctx, work)
    log.info("instructed flags refreshed", extra={"organizations": flipped})
    return flipped


async def rescope(ctx: dict[str, Any]) -> int:
    """Re-derive `in_scope` after the scope criteria changed; each correction is a ledger line and an event."""
    criteria = ScopeCriteria.from_settings(get_settings())
    caller = system_caller("rescope")
    fixed, last = 0, "00000000-0000-0000-0000-000000000000"
    while True:

        async def work(session: AsyncSession, after: str = last) -> tuple[int, str | None]:
            found = await session.execute(
                text(
                    "SELECT id, kind, employees, has_fixed_premises, has_business_activity, social_org_level, in_scope "
                    "FROM organization WHERE id > CAST(:after AS uuid) ORDER BY id LIMIT :n"
                ),
                {"after": after, "n": RESCOPE_CHUNK},
            )
            rows = [dict(r) for r in found.mappings()]
            stale = [r["id"] for r in rows if derive_in_scope(r, criteria) != r["in_scope"]]
            if stale:
                await merge.merge(
                    session,
                    caller=caller,
                    source=ChangeSource.system,
                    reason="摸排范围标准调整",
                    incoming=[merge.Incoming(row=i, values={}, org_id=org_id) for i, org_id in enumerate(stale)],
                )
            return len(stale), (str(rows[-1]["id"]) if len(rows) == RESCOPE_CHUNK else None)

        count, cursor = await run_in_session(ctx, work)
        fixed += count
        if cursor is None:
            break
        last = cursor
    log.info("scope re-derived", extra={"organizations": fixed})
    return fixed


async def purge_audit(ctx: dict[str, Any]) -> int:
    """Remove audit rows older than the retention (at least 180 days, which the database enforces)."""
    days = get_settings().audit_retention_days

    async def work(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT liangxin_purge_audit(:d)"), {"d": days})).scalar_one())

    removed: int = await run_in_session(ctx, work)
    log.info("audit log purged", extra={"removed": removed, "retention_days": days})
    return removed


WorkerSettings = worker_settings(
    "registry",
    HANDLERS,
    functions=[refresh_instructed, rescope, purge_audit],
    job_timeout_s=get_settings().batch_job_timeout_s,
    cron_jobs=[
        cron(refresh_instructed, hour={0}, minute={5}, unique=True, timeout=get_settings().batch_job_timeout_s),
        cron(rescope, hour={0}, minute={20}, unique=True, timeout=get_settings().batch_job_timeout_s),
        cron(purge_audit, hour={3}, minute={30}, unique=True, timeout=get_settings().batch_job_timeout_s),
    ],
)
