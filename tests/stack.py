"""The real Postgres and Redis a test session runs against.

`LIANGXIN_TEST_DATABASE_URL` / `LIANGXIN_TEST_REDIS_URL` name servers to use (CI points them
at the machine's own); otherwise an embedded Postgres and Redis are started for the session.
Either way the session gets a database of its own, created and migrated here and dropped at
the end, and a queue prefix of its own, so runs never see each other's rows or jobs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.devstack import EmbeddedPostgres, EmbeddedRedis, free_port
from shared.settings import to_libpq_url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(to_libpq_url(url))
    return urlunsplit(parts._replace(path="/" + name))


async def _on_server(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(with_database(admin_url, "postgres"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(admin_url: str, name: str) -> None:
    await _on_server(admin_url, f'CREATE DATABASE "{name}"')


async def drop_database(admin_url: str, name: str) -> None:
    await _on_server(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class TestStack:
    workdir: Path
    admin_url: str = ""
    redis_url: str = ""
    database: str = field(default_factory=lambda: f"lxtest_{uuid.uuid4().hex[:10]}")
    queue_prefix: str = field(default_factory=lambda: f"lxtest-{uuid.uuid4().hex[:10]}")
    pg: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    extra_databases: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return with_database(self.admin_url, self.database)

    @classmethod
    def start(cls) -> TestStack:
        stack = cls(workdir=Path(tempfile.mkdtemp(prefix="liangxin-test-")))
        stack.workdir.chmod(0o755)
        stack.admin_url = os.environ.get("LIANGXIN_TEST_DATABASE_URL", "")
        if not stack.admin_url:
            stack.pg = EmbeddedPostgres(stack.workdir, free_port(), database="postgres")
            stack.pg.start()
            stack.admin_url = stack.pg.url
        stack.redis_url = os.environ.get("LIANGXIN_TEST_REDIS_URL", "")
        if not stack.redis_url:
            stack.redis = EmbeddedRedis(stack.workdir, free_port(), persistent=False)
            stack.redis.start()
            stack.redis_url = stack.redis.url
        asyncio.run(create_database(stack.admin_url, stack.database))
        return stack

    async def new_database(self) -> str:
        """An extra empty database on the same server (dropped with the session)."""
        name = f"lxtest_{uuid.uuid4().hex[:10]}"
        await create_database(self.admin_url, name)
        self.extra_databases.append(name)
        return with_database(self.admin_url, name)

    def stop(self) -> None:
        for name in [self.database, *self.extra_databases]:
            try:
                asyncio.run(drop_database(self.admin_url, name))
            except (OSError, asyncpg.PostgresError):
                pass
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
