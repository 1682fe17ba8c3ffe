"""The annual funding computation, run by the evaluation worker (by default on 2 January, for the
year just ended). Each rule set is computed in its own transaction, so one failing leaves the
others done; running it again changes nothing (the computation is idempotent)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from arq import cron
from arq.cron import CronJob

from services.evaluation.funding import service
from shared.settings import get_settings

log = logging.getLogger(__name__)


async def annual_funding(ctx: dict[str, Any], year: int | None = None) -> dict[str, Any]:
    """Compute every rule set's latest version over its own region for `year` (default: last year),
    except those whose computation of that year an official closed (listed as `closed`)."""
    year = year or date.today().year - 1
    async with ctx["db"].session() as session:
        rule_sets = await service.latest_rule_sets(session)
    by_rule_set: dict[str, dict[str, int]] = {}
    failed: list[str] = []
    closed: list[str] = []
    for rule_set in rule_sets:
        try:
            async with ctx["db"].session() as session:
                result = await service.compute_annual(session, rule_set=rule_set, year=year)
        except Exception:
            log.exception("annual funding failed", extra={"rule_set": rule_set.code, "year": year})
            failed.append(rule_set.code)
            continue
        if result is None:
            # An official closed this year's computation: it is never rewritten.
            closed.append(rule_set.code)
            continue
        by_rule_set[rule_set.code] = {
            "version": result.rule_set_version,
            "party_orgs": result.party_orgs,
            "total": result.total,
            "changed": result.created + result.updated + result.removed,
        }
    summary = {
        "year": year,
        "rule_sets": len(by_rule_set),
        "party_orgs": sum(r["party_orgs"] for r in by_rule_set.values()),
        "total": sum(r["total"] for r in by_rule_set.values()),
        "by_rule_set": by_rule_set,
        "closed": closed,
        "failed": failed,
    }
    log.info("annual funding computed (年度经费核算)", extra=summary)
    if failed:
        # arq marks the job failed; the rule sets that went through stay computed.
        raise RuntimeError(f"annual funding failed for {', '.join(failed)}")
    return summary


def annual_funding_cron() -> CronJob:
    settings = get_settings()
    return cron(
        annual_funding,
        month={settings.funding_annual_month},
        day={settings.funding_annual_day},
        hour={settings.funding_annual_hour},
        minute={0},
        unique=True,
        timeout=settings.batch_job_timeout_s,
    )
