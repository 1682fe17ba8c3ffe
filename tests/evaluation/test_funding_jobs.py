"""The annual funding computation the evaluation worker runs on schedule."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from services.evaluation.funding.jobs import annual_funding, annual_funding_cron
from shared.db import Database
from shared.settings import get_settings
from tests.evaluation.test_funding_api import YEAR, allocations, compute, county, party_org, rule_set

__all__ = ["county"]


async def run_job(**kwargs: Any) -> dict[str, Any]:
    db = Database(get_settings(), application_name="liangxin-tests-funding", pool_size=1)
    try:
        return await annual_funding({"db": db}, **kwargs)
    finally:
        await db.dispose()


async def test_annual_run_computes_every_rule_set_and_logs_a_summary(
    evaluation, registry, admin, county, caplog: pytest.LogCaptureFixture
) -> None:
    await party_org(registry, admin, 1, level="committee", established_on="2019-03-01")
    await party_org(registry, admin, 2, established_on=f"{YEAR}-07-01")
    await rule_set(evaluation, admin, "diqing")
    await rule_set(evaluation, admin, "luzhou")
    with caplog.at_level(logging.INFO, logger="services.evaluation.funding.jobs"):
        summary = await run_job(year=YEAR)
    assert summary["by_rule_set"] == {
        "diqing": {"version": 1, "party_orgs": 2, "total": 29_800, "changed": 2},
        "luzhou": {"version": 1, "party_orgs": 0, "total": 0, "changed": 0},
    }
    [record] = [r for r in caplog.records if r.getMessage().startswith("annual funding computed")]
    assert (record.year, record.party_orgs, record.total) == (YEAR, 2, 29_800)  # type: ignore[attr-defined]
    assert sum(a["total"] for a in await allocations(evaluation, admin, year=YEAR)) == 29_800

    # Jobs may run more than once: the second run changes nothing.
    again = await run_job(year=YEAR)
    assert again["by_rule_set"]["diqing"]["changed"] == 0


async def test_the_schedule_keeps_a_cap_an_official_set(evaluation, registry, admin, county) -> None:
    await party_org(registry, admin, 1, level="committee", established_on="2019-03-01")
    await rule_set(evaluation, admin, "diqing")
    await compute(evaluation, admin, "diqing", budget_cap=15_000)
    summary = await run_job(year=YEAR)
    assert summary["by_rule_set"]["diqing"] == {"version": 1, "party_orgs": 1, "total": 15_000, "changed": 0}


def test_runs_on_the_configured_day() -> None:
    job = annual_funding_cron()
    assert (job.month, job.day, job.hour, job.minute, job.unique) == ({1}, {2}, {3}, {0}, True)
