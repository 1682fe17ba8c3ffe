"""Small factories and the real arq worker, run in burst mode, for tests."""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import httpx
from arq.worker import Worker, get_kwargs

from shared.auth import create_api_key, create_user, issue_token
from shared.models import Role
from shared.outbox import SERVICE_KEY
from shared.settings import get_settings

ROOT = "000000000000"
# A small real tree: 湖南省 / 常德市 / 澧县 (two townships, a community) and a sibling county.
TREE = [
    {"code": "430000000000", "name": "湖南省"},
    {"code": "430700000000", "name": "常德市"},
    {"code": "430723000000", "name": "澧县"},
    {"code": "430723100000", "name": "澧阳街道"},
    {"code": "430723100001", "name": "澧州社区"},
    {"code": "430723101000", "name": "小渡口镇"},
    {"code": "430702000000", "name": "武陵区"},
    {"code": "430702001000", "name": "南坪街道"},
]
LIXIAN = "430723000000"
WULING = "430702000000"


async def make_user(db: Any, *, role: str, region: str, username: str | None = None) -> dict[str, str]:
    """Create a staff user directly and return bearer headers for it."""
    async with db.session() as session:
        session.info[SERVICE_KEY] = "registry"
        user = await create_user(
            session,
            username=username or f"{role}-{uuid.uuid4().hex[:8]}",
            password="correct-horse-battery",
            role=Role(role),
            region_code=region,
        )
    token, _ = issue_token(user, get_settings())
    return {"Authorization": f"Bearer {token}"}


async def make_api_key(db: Any, *, scopes: list[str], region: str) -> dict[str, str]:
    async with db.session() as session:
        session.info[SERVICE_KEY] = "registry"
        _, key = await create_api_key(
            session,
            name=f"partner-{uuid.uuid4().hex[:6]}",
            scopes=scopes,
            region_code=region,
            pepper=get_settings().api_key_pepper,
        )
    return {"X-API-Key": key}


async def import_tree(
    registry: httpx.AsyncClient, headers: dict[str, str], records: list[dict[str, str]] = TREE
) -> Any:
    response = await registry.post("/v1/regions/import", json={"records": records}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def worker_for(service: str, **overrides: Any) -> Worker:
    """The service's real arq worker, configured as `arq services.<service>.jobs.WorkerSettings`."""
    module = importlib.import_module(f"services.{service}.jobs")
    kwargs: dict[str, Any] = {
        **get_kwargs(module.WorkerSettings),
        "burst": True,
        "poll_delay": 0.02,
        "handle_signals": False,
        # No cron jobs: a burst run would start one when the minute matches and cancel it on exit.
        "cron_jobs": [],
        **overrides,
    }
    return Worker(**kwargs)


async def drain(service: str, **overrides: Any) -> Worker:
    """Run the service's worker until its queue is empty."""
    worker = worker_for(service, **overrides)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


def credit_code(n: int, prefix: str = "91430723") -> str:
    """A valid credit code (GB 32100 check character) numbered n."""
    from shared.codes import make_credit_code

    return make_credit_code(prefix + f"{n:09d}")


def org_record(n: int, **overrides: Any) -> dict[str, Any]:
    """An in-scope enterprise in 澧州社区 unless overridden."""
    return {
        "credit_code": credit_code(n),
        "name": f"澧县测试企业{n}号有限公司",
        "kind": "enterprise",
        "region_code": "430723100001",
        "industry_code": "C1310",
        "registration_authority": "market_regulation",
        "employees": 25,
        "has_fixed_premises": True,
        "has_business_activity": True,
        "formal_members": 0,
        **overrides,
    }


async def import_orgs(
    registry: httpx.AsyncClient, headers: dict[str, str], records: list[dict[str, Any]], **extra: Any
) -> Any:
    response = await registry.post("/v1/organizations/import", json={"records": records, **extra}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def settle(db: Any, redis: Any, *services: str) -> None:
    """Relay every committed event (as the relay process would) and let the services' workers consume them."""
    from shared.relay import Publisher

    publisher = Publisher(db, redis, get_settings())
    while await publisher.run_once():
        pass
    for service in services or ("coverage",):
        await drain(service)


async def recompute(**kwargs: Any) -> dict[str, Any]:
    """Run the coverage worker's full recompute once, as the nightly job does (without a snapshot unless asked)."""
    from services.coverage.jobs import recompute as job
    from shared.db import Database

    db = Database(get_settings(), application_name="liangxin-tests-recompute", pool_size=1)
    try:
        result: dict[str, Any] = await job({"db": db}, **kwargs)
    finally:
        await db.dispose()
    return result


async def figure_rows(db: Any) -> dict[tuple[str, str], tuple[int, ...]]:
    """Every non-zero coverage counter row, for comparing two ways of keeping them."""
    from sqlalchemy import text

    from services.coverage.models import COUNTERS

    async with db.session() as session:
        found = await session.execute(text(f"SELECT region_code, kind, {', '.join(COUNTERS)} FROM coverage_figure"))
        return {(r[0], r[1]): tuple(r[2:]) for r in found if any(r[2:])}


async def feeds_caught_up(timeout_s: float = 30.0) -> None:
    """Wait until every transaction that started before now has ended, so the change feeds (which
    serve only rows older than the oldest running transaction in the cluster) show all writes so
    far. Other databases' long transactions on a shared server (a benchmark) would otherwise hold
    a feed back, as a phone would see until it syncs again."""
    import asyncio
    import time

    from shared.db import connect_raw

    conn = await connect_raw(get_settings().database_url or "")
    try:
        mark = await conn.fetchval("SELECT pg_current_xact_id()::text::bigint")
        deadline = time.monotonic() + timeout_s
        while await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint") <= mark:
            if time.monotonic() > deadline:
                raise AssertionError("a transaction older than the test's writes is still running")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
