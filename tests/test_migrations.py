"""The one Alembic history: upgrade → downgrade → upgrade on an empty database, and no drift."""

from __future__ import annotations

import asyncio

import asyncpg

from shared.cli import alembic_config, migrate


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_upgrade_downgrade_upgrade_on_an_empty_database(stack) -> None:
    url = await stack.new_database()
    await asyncio.to_thread(migrate, url)
    first = await tables(url)
    assert {"region", "staff_user", "api_key", "registry_outbox", "coverage_inbox", "coverage_figure"} <= first

    await asyncio.to_thread(migrate, url, "base", downgrade=True)
    assert await tables(url) == {"alembic_version"}

    await asyncio.to_thread(migrate, url)
    assert await tables(url) == first
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT name FROM region WHERE code = '000000000000'") == "全国"
    finally:
        await conn.close()


def test_models_and_migrations_agree(stack) -> None:
    """`alembic check`: the models describe exactly the schema the migrations build."""
    from alembic import command

    command.check(alembic_config(stack.database_url))


def test_revisions_are_date_named() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/x"))
    for revision in script.walk_revisions():
        assert revision.revision[:8].isdigit() and revision.revision[8] == "_", revision.revision
