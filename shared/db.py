"""Async engine and sessions. Engines are built in a lifespan or worker start-up, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import MetaData, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel

from shared.settings import Settings, to_libpq_url

# Constraint names Alembic can find again (zhanymkanov/fastapi-best-practices).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata
metadata.naming_convention = NAMING_CONVENTION


class Database:
    """One engine and session factory per process."""

    def __init__(
        self, settings: Settings, *, application_name: str, pool_size: int | None = None, role: str | None = None
    ):
        """`role`: the database role to act as (default: `settings.db_role`, "" for the login role itself).
        The services act as a role that owns nothing, so row-level security applies to them."""
        if not settings.database_url:
            raise RuntimeError("LIANGXIN_DATABASE_URL is not set")
        self.url = settings.database_url
        self.application_name = application_name
        role = settings.db_role if role is None else role
        server_settings = {
            "application_name": application_name,
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "lock_timeout": str(min(settings.db_statement_timeout_ms, 10_000)),
            "idle_in_transaction_session_timeout": "60000",
        }
        if role:
            server_settings["role"] = role
        self.engine: AsyncEngine = create_async_engine(
            settings.database_url,
            pool_size=pool_size or settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            # A restarted Postgres leaves dead connections in the pool; check before use.
            pool_pre_ping=True,
            pool_recycle=1800,
            # An error's text must never carry the statement's values (request bodies, personal data,
            # a 10,000-row import): they would reach the logs and the stored error columns.
            hide_parameters=True,
            connect_args={"server_settings": server_settings, "timeout": 5},
        )
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False, autoflush=False
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block ends without error, acting for the system (jobs,
        the CLI): the whole country, named after the process in the audit log."""
        async with self.sessionmaker() as session:
            try:
                await set_context(session, actor=f"system:{self.application_name}", region_prefix="")
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def set_context(
    session: AsyncSession,
    *,
    actor: str,
    region_prefix: str,
    request_id: str | None = None,
    client_addr: str | None = None,
) -> None:
    """Who acts in this transaction and what it may see: read by row-level security (region
    prefix; "*" stands for everything, unset for nothing) and by the audit triggers."""
    await session.execute(
        text(
            "SELECT set_config('liangxin.region_prefix', :p, true), set_config('liangxin.actor', :a, true), "
            "set_config('liangxin.request_id', :r, true), set_config('liangxin.client_addr', :c, true)"
        ),
        {"p": region_prefix or "*", "a": actor, "r": request_id or "", "c": client_addr or ""},
    )


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session, for COPY and other bulk work in its transaction."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    return driver


async def connect_raw(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection (benchmarks, test set-up, the dev stack)."""
    return await asyncpg.connect(to_libpq_url(url))


async def copy_into(conn: asyncpg.Connection, table: str, columns: Sequence[str], records: Sequence[Any]) -> None:
    """COPY rows into `table` through a private staging table, then INSERT: COPY cannot write a
    table under row-level security, INSERT can, and the policy checks every row."""
    names = ", ".join(columns)
    stage = f"{table}_copy_stage"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS SELECT {names} FROM {table} WITH NO DATA"
    )
    await conn.copy_records_to_table(stage, columns=list(columns), records=records)
    await conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}; TRUNCATE {stage}")


async def add_unique(session: AsyncSession, row: Any, *, constraint: str, taken: Exception) -> None:
    """Insert `row`; raise `taken` instead when it breaks the unique `constraint`, leaving the
    transaction usable (a savepoint). For keys that row-level security may hide from the caller:
    a holder in another jurisdiction is found only by the insert."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        if not violates(exc, constraint):
            raise
        raise taken from None


def violates(exc: BaseException, constraint: str) -> bool:
    """True when a database error is a violation of the named constraint."""
    orig = getattr(exc, "orig", None)
    cause = getattr(orig, "__cause__", None)
    return getattr(cause, "constraint_name", None) == constraint


def sqlstate_of(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)


def _connection_lost(exc: BaseException) -> bool:
    """The driver's interface errors that mean the connection is gone (asyncpg raises the same class
    for statements it refuses to send, such as one with more than 32,767 parameters: retrying
    sends the same statement again)."""
    message = str(getattr(exc, "orig", None) or exc)
    return "closed" in message or "connection" in message


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: lost connections, deadlocks, serialization, timeouts."""
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, OperationalError)):
        return True
    if isinstance(exc, InterfaceError | asyncpg.InterfaceError):
        return bool(getattr(exc, "connection_invalidated", False)) or _connection_lost(exc)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = sqlstate_of(exc)
        # 40001 serialization, 40P01 deadlock, 55P03 lock timeout, 57P0x admin shutdown,
        # 08xxx connection exceptions, 53xxx insufficient resources.
        if sqlstate and (
            sqlstate in {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"} or sqlstate.startswith(("08", "53"))
        ):
            return True
    if isinstance(exc, asyncpg.PostgresConnectionError):
        return True
    return isinstance(exc, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError))
