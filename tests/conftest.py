"""Test session: real Postgres and Redis, migrated schema, three apps, isolation per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from fastapi import FastAPI
from sqlalchemy import text

from tests.stack import TestStack

_stack: TestStack | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _stack
    if _stack is not None or hasattr(config, "workerinput"):
        return
    _stack = TestStack.start()
    os.environ.update(
        {
            "LIANGXIN_ENV": "test",
            "LIANGXIN_DATABASE_URL": _stack.database_url,
            "LIANGXIN_REDIS_URL": _stack.redis_url,
            "LIANGXIN_QUEUE_PREFIX": _stack.queue_prefix,
            "LIANGXIN_JWT_SECRET": "test-jwt-secret-that-is-long-enough-0123456789",
            "LIANGXIN_API_KEY_PEPPER": "test-api-key-pepper-long-enough-0123456789",
            "LIANGXIN_PII_HASH_KEY": "test-pii-hash-key-long-enough-0123456789",
            "LIANGXIN_DATA_DIR": str(_stack.workdir / "data"),
            "LIANGXIN_EVENT_JOB_TIMEOUT_S": "5",
            "LIANGXIN_LOG_LEVEL": "INFO",
            # Scenario tests send thousands of requests a minute as one user; the limit tests
            # lower these on the settings object for their own duration.
            "LIANGXIN_RATE_LIMIT_PER_MINUTE": "1000000",
            "LIANGXIN_API_KEY_RATE_LIMIT_PER_MINUTE": "1000000",
        }
    )
    from shared.cli import migrate
    from shared.settings import get_settings

    get_settings.cache_clear()
    migrate(_stack.database_url)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _stack
    if _stack is not None:
        _stack.stop()
        _stack = None


@pytest.fixture(scope="session")
def stack() -> TestStack:
    assert _stack is not None
    return _stack


@pytest.fixture(scope="session")
async def apps() -> AsyncIterator[dict[str, FastAPI]]:
    from services.coverage.main import app as coverage_app
    from services.evaluation.main import app as evaluation_app
    from services.registry.main import app as registry_app

    found = {"registry": registry_app, "coverage": coverage_app, "evaluation": evaluation_app}
    async with AsyncExitStack() as stack:
        for app in found.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield found


@pytest.fixture(scope="session")
async def db() -> AsyncIterator[object]:
    from shared.db import Database
    from shared.settings import get_settings

    database = Database(get_settings(), application_name="liangxin-tests", pool_size=4, role="")
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def redis(stack: TestStack) -> AsyncIterator[ArqRedis]:
    from shared.queue import make_redis

    client = make_redis(stack.redis_url)
    yield client
    await client.aclose()


_TABLES: list[str] = []


@pytest.fixture(autouse=True)
async def clean(db: object, redis: ArqRedis, stack: TestStack) -> None:
    """Each test starts from an empty schema (the national root region only) and empty queues."""
    from shared.db import metadata
    from shared.models import ROOT_REGION

    if not _TABLES:
        import migrations.env_models  # noqa: F401 - every table of every service

        _TABLES.extend(t.name for t in metadata.sorted_tables)
    async with db.session() as session:  # type: ignore[attr-defined]
        await session.execute(text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE"))
        await session.execute(text("INSERT INTO region (code, name, level) VALUES (:c, '全国', 0)"), {"c": ROOT_REGION})
    keys = [k async for k in redis.scan_iter(match=f"*{stack.queue_prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)


def _client(app: FastAPI, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=f"http://{name}.test"
    )


@pytest.fixture
async def registry(apps: dict[str, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(apps["registry"], "registry") as client:
        yield client


@pytest.fixture
async def coverage(apps: dict[str, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(apps["coverage"], "coverage") as client:
        yield client


@pytest.fixture
async def evaluation(apps: dict[str, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(apps["evaluation"], "evaluation") as client:
        yield client


@pytest.fixture
async def admin(db: object) -> dict[str, str]:
    """Headers of an admin at the national root."""
    from tests.helpers import make_user

    return await make_user(db, role="admin", region="000000000000")


@pytest.fixture
async def tree(registry: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """The test region tree (tests.helpers.import_tree), imported through the registry."""
    from tests.helpers import import_tree

    await import_tree(registry, admin)


@pytest.fixture
def settings() -> Iterator[Any]:
    """The live settings object; tests lower limits on it and put them back."""
    from shared.settings import get_settings

    current = get_settings()
    saved = current.model_dump()
    yield current
    for key, value in saved.items():
        setattr(current, key, value)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3 server over HTTP in a process of its own (moto's standalone server: no MinIO server
    installs from the package registries; deployments run the real MinIO image). Its endpoint URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)  # noqa: S310 - loopback
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("the S3 server did not start") from None
                time.sleep(0.05)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_photos(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The coverage API keeps photos in the S3 server, in a bucket of this test's own."""
    import uuid

    from services.coverage import photos
    from shared.settings import get_settings

    config = {
        "LIANGXIN_PHOTO_STORE": "s3",
        "LIANGXIN_S3_ENDPOINT_URL": s3_server,
        "LIANGXIN_S3_BUCKET": f"photos-{uuid.uuid4().hex[:12]}",
        "LIANGXIN_S3_ACCESS_KEY_ID": "test-access-key",
        "LIANGXIN_S3_SECRET_ACCESS_KEY": "test-secret-key",
    }
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    photos._store.cache_clear()
    yield config
    monkeypatch.undo()
    get_settings.cache_clear()
    photos._store.cache_clear()
