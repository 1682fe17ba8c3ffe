"""The evaluation worker: `arq services.evaluation.jobs.WorkerSettings`.

Consumes registry events (a dissolved party organization) and, every morning at 07:10, marks the
overdue rectifications (整转) reminded and logs a summary per county for the officials' digest.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from arq import cron

from services.evaluation import rectifications
from services.evaluation.events import HANDLERS
from services.evaluation.funding.jobs import annual_funding, annual_funding_cron
from shared.settings import get_settings
from shared.worker import worker_settings

log = logging.getLogger(__name__)


async def remind_overdue(ctx: dict[str, Any], today: str | None = None) -> dict[str, Any]:
    """Mark every open, overdue rectification not yet reminded today; safe to run more than once a day."""
    day = date.fromisoformat(today) if today else date.today()
    async with ctx["db"].session() as session:
        by_county = await rectifications.remind_overdue(session, day)
    total = sum(by_county.values())
    if total:
        log.warning("overdue rectifications (整转逾期)", extra={"reminded": total, "by_county": by_county})
    return {"reminded": total, "by_county": by_county}


WorkerSettings = worker_settings(
    "evaluation",
    HANDLERS,
    functions=[remind_overdue, annual_funding],
    cron_jobs=[cron(remind_overdue, hour={7}, minute={10}, unique=True), annual_funding_cron()],
    job_timeout_s=get_settings().batch_job_timeout_s,
)
