"""Faults of the database: a restarted Postgres and an import cut off mid-transaction."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import text

from shared.db import Database
from shared.devstack import EmbeddedPostgres, free_port
from shared.settings import get_settings, to_asyncpg_url
from tests.helpers import credit_code, import_tree, org_record


@pytest.mark.slow
async def test_readiness_follows_a_postgres_restart_and_the_pool_recovers(apps, registry, tmp_path) -> None:
    """A Postgres of its own (pgserver), stopped and started under a live service."""
    pg = EmbeddedPostgres(tmp_path, free_port(), database="postgres")
    pg.start()
    app = apps["registry"]
    healthy = app.state.db
    db = Database(
        get_settings().model_copy(update={"database_url": to_asyncpg_url(pg.url)}), application_name="fault", role=""
    )
    app.state.db = db
    try:
        assert (await registry.get("/readyz")).status_code == 200
        async with db.session() as session:  # a pooled connection that the restart will kill
            await session.execute(text("SELECT 1"))

        pg.stop()
        down = await registry.get("/readyz")
        assert down.status_code == 503 and down.json()["detail"] == "unreachable: postgres"
        assert down.json()["checks"]["redis"] == "ok"

        pg.start()
        deadline = time.monotonic() + 30
        answer = await registry.get("/readyz")
        for _ in range(150):
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
            answer = await registry.get("/readyz")
        assert answer.status_code == 200
        async with db.session() as session:  # the dead pooled connection was replaced, not handed out
            assert (await session.execute(text("SELECT 41 + 1"))).scalar_one() == 42
    finally:
        app.state.db = healthy
        await db.dispose()
        pg.stop()


async def scalar(db: Any, sql: str) -> Any:
    async with db.session() as session:
        return (await session.execute(text(sql))).scalar()


async def test_an_import_cut_off_mid_transaction_applies_nothing(db, registry, admin) -> None:
    """The connection of a running partner import is killed: a 503 to retry, and not one row."""
    await import_tree(registry, admin)
    records = [org_record(n) for n in range(1, 5001)]
    blocker = await db.engine.raw_connection()
    try:
        # Hold the ledger so the import is caught inside its transaction, after its first writes.
        driver = blocker.driver_connection
        await driver.execute("BEGIN; LOCK TABLE registry_change IN ACCESS EXCLUSIVE MODE")
        posted = asyncio.create_task(
            registry.post("/v1/organizations/import", headers=admin, json={"records": records})
        )
        deadline = time.monotonic() + 60
        while True:
            pid = await scalar(
                db,
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'liangxin-registry' "
                "AND wait_event_type = 'Lock' AND datname = current_database()",
            )
            if pid is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert pid is not None, "the import never reached the ledger"
        await scalar(db, f"SELECT pg_terminate_backend({int(pid)})")
        answer = await posted
        await driver.execute("ROLLBACK")
    finally:
        blocker.close()
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] and "changed nothing" in answer.json()["detail"]
    assert await scalar(db, "SELECT count(*) FROM organization") == 0
    assert await scalar(db, "SELECT count(*) FROM registry_change WHERE entity = 'organization'") == 0
    assert await scalar(db, "SELECT count(*) FROM registry_outbox WHERE type LIKE 'registry.organization%'") == 0

    again = await registry.post("/v1/organizations/import", headers=admin, json={"records": records})
    assert again.status_code == 200 and again.json()["created"] == 5000
    found = await registry.get(f"/v1/organizations/by-credit-code/{credit_code(5000)}", headers=admin)
    assert found.status_code == 200


async def test_a_request_over_the_database_time_limits_is_a_503_not_a_500(apps, db, registry, admin) -> None:
    """A request that waits on a lock for longer than the statement (and lock) timeout allows."""
    await import_tree(registry, admin)
    app = apps["registry"]
    settings = get_settings()
    short = Database(settings.model_copy(update={"db_statement_timeout_ms": 400}), application_name="liangxin-registry")
    blocker = await db.engine.raw_connection()
    healthy = app.state.db
    try:
        await blocker.driver_connection.execute("BEGIN; LOCK TABLE area IN ACCESS EXCLUSIVE MODE")
        app.state.db = short
        answer = await registry.get("/v1/areas", headers=admin)
    finally:
        app.state.db = healthy
        await short.dispose()
        await blocker.driver_connection.execute("ROLLBACK")
        blocker.close()
    assert answer.status_code == 503, answer.text
    # Whichever limit fires first: the lock wait (retry soon) or the statement (narrow it or retry later).
    assert answer.json()["type"].rsplit("/", 1)[-1] in {"query-timeout", "temporarily-unavailable"}
    assert int(answer.headers["Retry-After"]) > 0
    assert (await registry.get("/v1/areas", headers=admin)).status_code == 200
