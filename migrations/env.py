"""Alembic environment: async, one history for the shared schema, with a lock timeout."""

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.sql.sqltypes import AutoString

import migrations.env_models  # noqa: F401 - every table of every service
from shared.db import metadata
from shared.settings import get_settings, to_asyncpg_url

target_metadata = metadata


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise RuntimeError("LIANGXIN_DATABASE_URL is not set")
    return to_asyncpg_url(url)


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render SQLModel's string type as plain SQLAlchemy, so migrations never import sqlmodel."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    # A migration waiting behind a long transaction must fail fast, not stall every query.
    connection.execute(text("SET lock_timeout = '10s'"))
    connection.commit()  # end the implicit transaction, so Alembic's own one commits
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool, hide_parameters=True)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
