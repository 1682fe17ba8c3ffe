"""Events over real Redis and real arq workers: outbox, relay, inbox de-duplication, faults."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any, cast

import asyncpg
import pytest
from arq import func
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.typing import WorkerCoroutine
from sqlalchemy import text

from shared import worker
from shared.devstack import EmbeddedRedis, free_port
from shared.events import Event
from shared.queue import HANDLE_EVENT, job_deserializer, make_redis, redis_settings
from shared.relay import Publisher, envelope, job_id
from shared.rules import FIGURE_KINDS
from shared.settings import get_settings, to_libpq_url
from shared.worker import make_event_handler
from tests.helpers import TREE, drain, import_tree

KINDS = len(FIGURE_KINDS)  # a zeroed figure row per kind for every imported region


async def scalar(db: Any, sql: str, **params: Any) -> Any:
    async with db.session() as session:
        return (await session.execute(text(sql), params)).scalar()


async def outbox_rows(db: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.execute(text("SELECT * FROM registry_outbox ORDER BY seq"))).all())


async def test_a_registry_change_reaches_the_coverage_consumer(db, registry, admin) -> None:
    await import_tree(registry, {**admin, "X-Request-ID": "import-lixian-1"})
    [row] = await outbox_rows(db)
    assert row.type == "registry.region.imported"
    assert row.correlation_id == "import-lixian-1"
    assert row.published_at is not None  # sent right after commit

    await drain("coverage")
    figures = await scalar(db, "SELECT count(*) FROM coverage_figure")
    assert figures == len(TREE) * KINDS
    status = await scalar(db, "SELECT status FROM coverage_inbox WHERE event_id = :id", id=row.id)
    assert status == "done"

    publisher = Publisher(
        db, make_redis(get_settings().redis_url or ""), get_settings().model_copy(update={"redelivery_after_s": 0})
    )
    assert await publisher.redeliver("registry") == (1, 0)  # delivered everywhere: completed, nothing re-sent
    assert (await outbox_rows(db))[0].completed_at is not None


async def test_nothing_is_emitted_when_nothing_changed(db, registry, admin) -> None:
    await import_tree(registry, admin)
    again = await import_tree(registry, admin)
    assert again["unchanged"] == len(TREE) and again["created"] == 0
    assert len(await outbox_rows(db)) == 1


def counting_worker_functions() -> list[Any]:
    """A consumer whose effect is not idempotent by itself: it adds to a counter."""

    async def count_regions(session: Any, event: Event) -> None:
        await session.execute(
            text(
                "INSERT INTO coverage_figure (region_code, kind, registered) VALUES ('000000000000', 'enterprise', :n) "
                "ON CONFLICT (region_code, kind) DO UPDATE SET registered = coverage_figure.registered + :n"
            ),
            {"n": len(event.payload["regions"])},
        )

    handler = make_event_handler("coverage", {"registry.region.imported": count_regions})
    return [func(cast(WorkerCoroutine, handler), name=HANDLE_EVENT, max_tries=3)]


async def test_a_duplicate_delivery_has_no_second_effect(db, registry, admin, redis: ArqRedis) -> None:
    await import_tree(registry, admin)
    functions = counting_worker_functions()
    await drain("coverage", functions=functions)
    counted = "SELECT registered FROM coverage_figure WHERE region_code = '000000000000' AND kind = 'enterprise'"
    assert await scalar(db, counted) == len(TREE)

    [row] = await outbox_rows(db)
    publisher = Publisher(db, redis, get_settings())
    # Deliver it again, past arq's own de-duplication, as a crash-and-retry would.
    assert await publisher.enqueue([("coverage", envelope("registry", row))], force=True) == [1]
    await drain("coverage", functions=functions)

    assert await scalar(db, counted) == len(TREE)
    assert await scalar(db, "SELECT count(*) FROM coverage_inbox") == 1
    job = Job(job_id(row.id, get_settings().queue_name("coverage")), redis, _deserializer=job_deserializer)
    assert await job.result(timeout=1) == "duplicate"


async def test_a_failing_handler_fails_for_good_and_is_kept_visible(db, registry, admin) -> None:
    await import_tree(registry, admin)

    async def broken(session: Any, event: Event) -> None:
        raise ValueError("payload makes no sense")

    handler = cast(WorkerCoroutine, make_event_handler("coverage", {"registry.region.imported": broken}))
    functions = [func(handler, name=HANDLE_EVENT)]
    await drain("coverage", functions=functions)
    async with db.session() as session:
        status, error = (await session.execute(text("SELECT status, error FROM coverage_inbox"))).one()
    assert status == "failed" and error == "ValueError: payload makes no sense"
    assert await scalar(db, "SELECT count(*) FROM coverage_figure") == 0
    # Failed is final: the relay completes it instead of re-sending it forever.
    publisher = Publisher(
        db, make_redis(get_settings().redis_url or ""), get_settings().model_copy(update={"redelivery_after_s": 0})
    )
    assert await publisher.redeliver("registry") == (1, 0)


async def test_an_event_nobody_consumed_is_sent_again(db, registry, admin, redis: ArqRedis) -> None:
    """Transient failures until arq gives up: arq keeps the failed result, so only a forced re-send works."""
    await import_tree(registry, admin)

    async def db_unreachable(session: Any, event: Event) -> None:
        raise ConnectionRefusedError("postgres is restarting")

    handler = cast(WorkerCoroutine, make_event_handler("coverage", {"registry.region.imported": db_unreachable}))
    functions = [func(handler, name=HANDLE_EVENT, max_tries=1)]
    await drain("coverage", functions=functions)
    [row] = await outbox_rows(db)
    jid = job_id(row.id, get_settings().queue_name("coverage"))
    assert await Job(jid, redis, _deserializer=job_deserializer).status() == JobStatus.complete
    assert await scalar(db, "SELECT count(*) FROM coverage_inbox") == 0
    # A plain arq enqueue with the same job id is silently dropped while the result is kept.
    queue = get_settings().queue_name("coverage")
    assert await redis.enqueue_job(HANDLE_EVENT, {}, _job_id=jid, _queue_name=queue) is None

    publisher = Publisher(db, redis, get_settings().model_copy(update={"redelivery_after_s": 0}))
    assert await publisher.redeliver("registry") == (0, 1)
    await drain("coverage")
    assert await scalar(db, "SELECT count(*) FROM coverage_figure") == len(TREE) * KINDS
    assert (await outbox_rows(db))[0].redeliveries == 1


async def test_jobs_lost_by_redis_are_redelivered(db, registry, admin, redis: ArqRedis, stack) -> None:
    await import_tree(registry, admin)
    keys = [k async for k in redis.scan_iter(match=f"*{stack.queue_prefix}*")]
    await redis.delete(*keys)  # a Redis restarted without persistence
    await drain("coverage")
    assert await scalar(db, "SELECT count(*) FROM coverage_figure") == 0

    publisher = Publisher(db, redis, get_settings().model_copy(update={"redelivery_after_s": 0}))
    assert await publisher.redeliver("registry") == (0, 1)
    await drain("coverage")
    assert await scalar(db, "SELECT count(*) FROM coverage_figure") == len(TREE) * KINDS


@pytest.fixture
async def private_redis(stack) -> Any:
    """A Redis of this test's own, so it can be stopped without disturbing anything else."""
    server = EmbeddedRedis(stack.workdir / f"redis-{free_port()}", free_port(), persistent=False)
    server.start()
    yield server
    server.stop()


async def test_an_event_committed_while_redis_is_down_arrives_after_it_returns(
    apps, db, registry, admin, private_redis: EmbeddedRedis
) -> None:
    app = apps["registry"]
    saved = app.state.redis, app.state.publisher
    client = make_redis(private_redis.url)
    app.state.redis = client
    app.state.publisher = Publisher(app.state.db, client, get_settings())
    private_redis.stop()
    try:
        started = time.monotonic()
        result = await import_tree(registry, admin)
        assert result["created"] == len(TREE)
        assert time.monotonic() - started < 5  # the request does not hang on Redis
        assert (await registry.get("/readyz")).status_code == 503
    finally:
        app.state.redis, app.state.publisher = saved
    [row] = await outbox_rows(db)
    assert row.published_at is None

    private_redis.start()
    relay = Publisher(db, client, get_settings())
    assert await relay.run_once() == 1
    assert (await outbox_rows(db))[0].published_at is not None
    await drain("coverage", redis_settings=redis_settings(private_redis.url))
    assert await scalar(db, "SELECT count(*) FROM coverage_figure") == len(TREE) * KINDS
    await client.aclose()


def _worker_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "arq", "services.coverage.jobs.WorkerSettings"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def _wait_for(probe: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := await probe():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_a_worker_killed_mid_job_leaves_the_state_of_a_clean_run(db, registry, admin, stack) -> None:
    # arq brings a killed worker's job back after the worker's longest timeout plus 10 s.
    env = {**os.environ, "LIANGXIN_EVENT_JOB_TIMEOUT_S": "5", "LIANGXIN_BATCH_JOB_TIMEOUT_S": "5"}
    blocker = await asyncpg.connect(to_libpq_url(stack.database_url))
    worker = None
    try:
        # Hold the table the handler writes, so the job is caught mid-transaction.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE coverage_figure IN ACCESS EXCLUSIVE MODE")
        await import_tree(registry, admin)
        worker = _worker_process(env)

        async def handler_is_waiting() -> bool:
            # From another connection: inside a transaction pg_stat_activity is a frozen snapshot.
            return bool(
                await scalar(
                    db,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'liangxin-coverage-worker' "
                    "AND wait_event_type = 'Lock'",
                )
            )

        await _wait_for(handler_is_waiting, 30, "the worker to block inside the handler")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        await tx.rollback()
        assert await scalar(db, "SELECT count(*) FROM coverage_inbox") == 0
        assert await scalar(db, "SELECT count(*) FROM coverage_figure") == 0

        worker = _worker_process(env)

        async def consumed() -> bool:
            return bool(await scalar(db, "SELECT count(*) FROM coverage_inbox WHERE status = 'done'"))

        # arq hands the job to another worker once its in-progress key expires (timeout + 10 s).
        await _wait_for(consumed, 60, "the job to be redelivered")
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(10)
        await blocker.close()

    async with db.session() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT region_code, count(*) AS kinds, sum(registered + in_scope) AS total "
                    "FROM coverage_figure GROUP BY region_code ORDER BY region_code"
                )
            )
        ).all()
    assert [r.region_code for r in rows] == sorted(r["code"] for r in TREE)
    assert all(r.kinds == KINDS and r.total == 0 for r in rows)
    assert await scalar(db, "SELECT count(*) FROM coverage_inbox") == 1


def statement_timeouts(failing_tries: int, tries: list[int]) -> list[Any]:
    """A consumer whose first `failing_tries` tries hit the real statement timeout (57014), as a
    counter update stuck behind a burst would; it records each try in `tries`."""

    async def slow_then_fine(session: Any, event: Event) -> None:
        tries.append(len(tries) + 1)
        if len(tries) <= failing_tries:
            await session.execute(text("SET LOCAL statement_timeout = '50ms'"))
            await session.execute(text("SELECT pg_sleep(1)"))
        await session.execute(
            text("INSERT INTO coverage_figure (region_code, kind, registered) VALUES ('000000000000', 'enterprise', 1)")
        )

    handler = make_event_handler("coverage", {"registry.region.imported": slow_then_fine})
    return [func(cast(WorkerCoroutine, handler), name=HANDLE_EVENT, max_tries=worker.MAX_TRIES)]


async def test_a_statement_timeout_in_an_event_job_is_retried_with_backoff(db, registry, admin) -> None:
    await import_tree(registry, admin)
    tries: list[int] = []
    started = time.monotonic()
    await drain("coverage", functions=statement_timeouts(1, tries))
    assert tries == [1, 2]
    assert time.monotonic() - started >= 2  # the second try waited (2 s after the first)
    assert await scalar(db, "SELECT status FROM coverage_inbox") == "done"
    assert await scalar(db, "SELECT registered FROM coverage_figure") == 1


async def test_an_event_that_keeps_timing_out_lands_failed_after_the_last_try(db, registry, admin, monkeypatch) -> None:
    """No endless retries: after the last try the failure is recorded (for the operators' list), with
    the database's reason and nothing of the statement."""
    monkeypatch.setattr(worker, "MAX_TRIES", 2)
    await import_tree(registry, admin)
    tries: list[int] = []
    await drain("coverage", functions=statement_timeouts(99, tries))
    assert tries == [1, 2]
    async with db.session() as session:
        status, error, region = (
            await session.execute(text("SELECT status, error, region_code FROM coverage_inbox"))
        ).one()
    assert status == "failed" and region == "430000000000"  # the smallest region holding the regions imported
    assert error == "QueryCanceledError (57014): canceling statement due to statement timeout"


async def test_a_job_past_its_deadline_is_cut_short_retried_then_recorded(db, registry, admin, monkeypatch) -> None:
    """arq's own timeout would cancel the job without a trace; the consumer's shorter deadline turns an
    overlong job into a retry, and at the last try into a recorded failure."""
    monkeypatch.setattr(worker, "MAX_TRIES", 2)
    monkeypatch.setattr(get_settings(), "event_job_timeout_s", 2)  # a deadline of 1.6 s
    await import_tree(registry, admin)
    tries: list[int] = []

    async def too_slow(session: Any, event: Event) -> None:
        tries.append(1)
        await session.execute(text("SELECT pg_sleep(3)"))

    handler = cast(WorkerCoroutine, make_event_handler("coverage", {"registry.region.imported": too_slow}))
    await drain("coverage", functions=[func(handler, name=HANDLE_EVENT, max_tries=2, timeout=5)])
    assert len(tries) == 2
    async with db.session() as session:
        status, error = (await session.execute(text("SELECT status, error FROM coverage_inbox"))).one()
    assert status == "failed" and error.startswith("TimeoutError: the event took longer than the job allows")
    assert await scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(3)%'") == 0
