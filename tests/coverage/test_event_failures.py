"""Bursts of registry events keep the counters exact; a consumption that fails anyway is loud
(readiness, metrics, the operators' list), the figures it touches say they are stale, and an
operator's retry (or the nightly recount) makes them exact again."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from shared import worker
from shared.relay import Publisher
from shared.settings import get_settings, to_libpq_url
from tests.helpers import (
    LIXIAN,
    WULING,
    credit_code,
    drain,
    figure_rows,
    import_orgs,
    import_tree,
    make_user,
    org_record,
    recompute,
    settle,
)

WULING_TOWN = "430702001000"


async def relay(db: Any, redis: Any) -> None:
    publisher = Publisher(db, redis, get_settings())
    while await publisher.run_once():
        pass


async def scalar(db: Any, sql: str, **params: Any) -> Any:
    async with db.session() as session:
        return (await session.execute(text(sql), params)).scalar()


async def test_a_burst_of_imports_is_counted_exactly_without_a_recount(db, redis, registry, admin) -> None:
    """Three imports of 10,000 organizations back to back, then the real coverage worker with its
    concurrent jobs: every event consumed once, the counters equal to a full recount (which then
    changes nothing), and every new in-scope organization has its 双落地 task."""
    await import_tree(registry, admin)
    for batch in range(3):
        await import_orgs(registry, admin, [org_record(batch * 10_000 + n) for n in range(10_000)])
    await relay(db, redis)
    worker_run = await drain("coverage")
    assert worker_run.jobs_failed == 0
    statuses = await scalar(
        db, "SELECT json_object_agg(status, n) FROM (SELECT status, count(*) n FROM coverage_inbox GROUP BY 1) s"
    )
    assert statuses == {"done": 61}  # the regions, and 3 × 20 events of 500 registrations
    kept = await figure_rows(db)
    assert kept[("000000000000", "enterprise")][:3] == (30_000, 30_000, 30_000)  # registered, active, in scope
    assert (await recompute())["figures_changed"] == 0
    assert await figure_rows(db) == kept
    assert await scalar(db, "SELECT count(*) FROM establishment_task WHERE origin = 'registration'") == 30_000


@pytest.fixture
async def county(db, redis, registry, admin) -> dict[str, Any]:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(n) for n in range(1, 21)])
    await import_orgs(
        registry, admin, [org_record(100, credit_code=credit_code(100, "91430702"), region_code=WULING_TOWN)]
    )
    await settle(db, redis)
    return {
        "lixian": await make_user(db, role="admin", region=LIXIAN),
        "wuling": await make_user(db, role="admin", region=WULING),
    }


async def fail_next_registrations(db, redis, registry, admin, monkeypatch, records: list[dict[str, Any]]) -> None:
    """Import `records` and consume their event while another transaction holds the figures table:
    every try meets the lock timeout, and the last try records the failure."""
    monkeypatch.setattr(worker, "MAX_TRIES", 1)
    monkeypatch.setattr(get_settings(), "db_statement_timeout_ms", 1_000)  # lock timeout 1 s
    await import_orgs(registry, admin, records)
    await relay(db, redis)
    blocker = await asyncpg.connect(to_libpq_url(get_settings().database_url or ""))
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE coverage_figure IN EXCLUSIVE MODE")
            await drain("coverage")
    finally:
        await blocker.close()
    monkeypatch.setattr(worker, "MAX_TRIES", 8)


async def test_a_failed_consumption_is_loud_and_an_operator_retry_makes_the_figures_exact(
    db, redis, registry, coverage, admin, county, monkeypatch
) -> None:
    await fail_next_registrations(db, redis, registry, admin, monkeypatch, [org_record(n) for n in range(21, 26)])

    figures = (await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=admin)).json()
    assert figures["total"]["in_scope"] == 20  # the 5 new ones are missing …
    assert figures["stale"] is True and "could not be counted yet" in figures["stale_reason"]  # … and it says so
    wuling = (await coverage.get("/v1/coverage", params={"region": WULING}, headers=admin)).json()
    assert wuling["stale"] is False and wuling["stale_reason"] is None  # untouched by the failure
    country = (await coverage.get("/v1/coverage", headers=admin)).json()
    assert country["stale"] is True

    ready = await coverage.get("/readyz")
    assert ready.status_code == 200  # degraded, still serving
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["events"] == "degraded: 1 failed, see GET /v1/events/failed"
    assert 'liangxin_events_failed{service="coverage"} 1.0' in (await coverage.get("/metrics")).text
    assert (await registry.get("/readyz")).json()["status"] == "ready"  # the registry consumed all it got

    listed = (await coverage.get("/v1/events/failed", headers=county["lixian"])).json()
    [failure] = listed["items"]
    assert failure["event_type"] == "registry.organization.registered" and failure["status"] == "failed"
    assert failure["producer"] == "registry" and failure["consumer"] == "coverage"
    assert failure["region_code"] == "430723100001"
    # Whichever of the lock timeout and the statement timeout (both 1 s here) fires first.
    assert failure["reason"].startswith(("LockNotAvailableError (55P03)", "QueryCanceledError (57014)"))
    assert "INSERT" not in failure["reason"] and credit_code(21) not in failure["reason"]  # no statement, no data
    assert (await coverage.get("/v1/events/failed", headers=county["wuling"])).json()["items"] == []
    refused = (await coverage.get("/v1/events/failed", params={"status": "refused"}, headers=admin)).json()
    assert refused["items"] == []

    # The relay counts it delivered (failed is final): nothing re-sends it behind the operator's back.
    publisher = Publisher(db, redis, get_settings().model_copy(update={"redelivery_after_s": 0}))
    await publisher.redeliver("registry")
    await drain("coverage")
    assert (await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=admin)).json()["stale"] is True

    event_id = failure["event_id"]
    other_county = await coverage.post(f"/v1/events/{event_id}:retry", headers=county["wuling"])
    assert other_county.status_code == 404
    officer = await make_user(db, role="officer", region=LIXIAN)
    assert (await coverage.post(f"/v1/events/{event_id}:retry", headers=officer)).status_code == 403
    queued = await coverage.post(f"/v1/events/{event_id}:retry", headers=county["lixian"])
    assert queued.status_code == 202, queued.text
    assert queued.json() == {
        "event_id": event_id,
        "event_type": "registry.organization.registered",
        "consumer": "coverage",
        "status": "queued",
    }
    assert (await coverage.post(f"/v1/events/{event_id}:retry", headers=county["lixian"])).status_code == 404
    await drain("coverage")

    figures = (await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=admin)).json()
    assert figures["total"]["in_scope"] == 25 and figures["stale"] is False
    assert (await coverage.get("/readyz")).json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "redis": "ok", "events": "ok"},
    }
    assert 'liangxin_events_failed{service="coverage"} 0.0' in (await coverage.get("/metrics")).text
    assert (await coverage.get("/v1/events/failed", headers=admin)).json()["items"] == []
    # Its 双落地 tasks were made on the retry, and the counters equal a full recount.
    assert await scalar(db, "SELECT count(*) FROM establishment_task WHERE origin = 'registration'") == 26
    kept = await figure_rows(db)
    assert (await recompute())["figures_changed"] == 0
    assert await figure_rows(db) == kept


async def test_the_nightly_recount_absorbs_a_failed_consumption(
    db, redis, registry, coverage, admin, county, monkeypatch
) -> None:
    """The recount counts what the failed event described, so the event must not be applied again."""
    await fail_next_registrations(db, redis, registry, admin, monkeypatch, [org_record(n) for n in range(21, 24)])
    [failure] = (await coverage.get("/v1/events/failed", headers=admin)).json()["items"]
    assert (await recompute())["events_absorbed"] >= 1
    figures = (await coverage.get("/v1/coverage", params={"region": LIXIAN}, headers=admin)).json()
    assert (figures["total"]["in_scope"], figures["stale"]) == (23, False)
    assert (await coverage.get("/v1/events/failed", headers=admin)).json()["items"] == []
    assert (await coverage.post(f"/v1/events/{failure['event_id']}:retry", headers=admin)).status_code == 404
    assert (await coverage.get("/readyz")).json()["status"] == "ready"


async def test_an_event_spanning_two_counties_makes_both_stale_and_belongs_to_their_city(
    db, redis, registry, coverage, admin, county, monkeypatch
) -> None:
    """The failed event names both counties: each county's figures say stale (though the event, the
    city's, is not the county's to see or retry), and the city's admin handles it."""
    wuling_org = org_record(101, credit_code=credit_code(101, "91430702"), region_code=WULING_TOWN)
    await fail_next_registrations(db, redis, registry, admin, monkeypatch, [org_record(21), wuling_org])
    for headers, region in ((county["lixian"], LIXIAN), (county["wuling"], WULING)):
        figures = (await coverage.get("/v1/coverage", params={"region": region}, headers=headers)).json()
        assert figures["stale"] is True, region
        assert (await coverage.get("/v1/events/failed", headers=headers)).json()["items"] == []
    city = await make_user(db, role="admin", region="430700000000")
    [failure] = (await coverage.get("/v1/events/failed", headers=city)).json()["items"]
    assert failure["region_code"] == "430700000000"
    assert (await coverage.post(f"/v1/events/{failure['event_id']}:retry", headers=county["lixian"])).status_code == 404
    assert (await coverage.post(f"/v1/events/{failure['event_id']}:retry", headers=city)).status_code == 202
    await drain("coverage")
    for region in (LIXIAN, WULING):
        figures = (await coverage.get("/v1/coverage", params={"region": region}, headers=admin)).json()
        assert figures["stale"] is False
    assert (await coverage.get("/v1/coverage", params={"region": WULING}, headers=admin)).json()["total"][
        "in_scope"
    ] == 2
