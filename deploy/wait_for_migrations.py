"""Wait until the database is at the latest Alembic revision this image knows, then exit 0.

Kubernetes has no `depends_on`: every API, worker and relay pod runs this as an init container,
so a pod of a new release starts only after the release's migration Job has finished. It never
migrates anything itself (several pods at once must not). Exit 1 when `--timeout` runs out.

A database at a revision this image does not know is taken as ahead of it (a newer release has
migrated; migrations are additive first, so an older pod that restarts mid-rollout still runs).

    python wait_for_migrations.py [--timeout SECONDS] [--interval SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import asyncpg
from alembic.script import ScriptDirectory

from shared.cli import alembic_config
from shared.settings import get_settings, to_libpq_url


async def database_heads(url: str) -> set[str]:
    """The revisions recorded in the database; empty when it was never migrated."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not exists:
            return set()
        return {row["version_num"] for row in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait (default 600)")
    parser.add_argument("--interval", type=float, default=3, help="seconds between checks (default 3)")
    args = parser.parse_args(argv)

    settings = get_settings()
    if not settings.database_url:
        print("LIANGXIN_DATABASE_URL is not set", file=sys.stderr)
        return 2
    url = to_libpq_url(settings.database_url)
    script = ScriptDirectory.from_config(alembic_config(url))
    expected = set(script.get_heads())
    known = {revision.revision for revision in script.walk_revisions()}
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            found = asyncio.run(database_heads(url))
            state = f"database at {sorted(found) or 'no revision'}, expected {sorted(expected)}"
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            found, state = set(), f"database unreachable ({type(exc).__name__})"
        if found == expected:
            print(f"migrations done: {state}", flush=True)
            return 0
        if found and not found <= known:
            print(f"database is ahead of this image: {state}", flush=True)
            return 0
        if time.monotonic() >= deadline:
            print(f"gave up waiting for migrations: {state}", file=sys.stderr, flush=True)
            return 1
        print(f"waiting for migrations: {state}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
