"""Reads every registry table does the same way: one row inside the jurisdiction, a page of rows."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import refusals, regions
from shared.auth import Caller
from shared.errors import not_found
from shared.pagination import PageParams, trim

# Tables these helpers may name (never built from input).
_TABLES = frozenset({"organization", "party_org", "instructor"})


async def fetch_visible(
    session: AsyncSession,
    caller: Caller,
    table: str,
    what: str,
    *,
    value: Any,
    column: str = "id",
    lock: bool = False,
) -> dict[str, Any]:
    """The row, or 404 when it does not exist or lies outside the caller's jurisdiction."""
    assert table in _TABLES
    found = await session.execute(
        text(f"SELECT * FROM {table} WHERE {column} = :v{' FOR UPDATE' if lock else ''}"), {"v": value}
    )
    row = found.mappings().first()
    if row is None or not caller.can_see(row["region_code"]):
        refusals.suspect("credit_code" if column == "credit_code" else table, value)
        raise not_found(what)
    return dict(row)


async def list_visible(
    session: AsyncSession,
    caller: Caller,
    table: str,
    *,
    region: str | None,
    page: PageParams,
    clauses: list[str] | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of rows (by id) within `region`, or the caller's whole jurisdiction."""
    assert table in _TABLES
    if region is not None:
        caller.check_region(region)
    where = ["region_code LIKE :prefix", *(clauses or [])]
    values = {**(params or {}), "prefix": regions.prefix(region or caller.region_code) + "%", "limit": page.limit + 1}
    if (after := page.after(uuid.UUID)) is not None:
        values["after"] = after[0]
        where.append("id > :after")
    found = await session.execute(
        text(f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit"), values
    )
    return trim([dict(r) for r in found.mappings()], page, lambda r: (str(r["id"]),))
