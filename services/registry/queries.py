"""Row-at-a-time statements every registry table shares, built on the model's table: a page of
rows inside the jurisdiction (one row: `shared.visible.load_row`) and an insert. Rows are mappings,
like everything the registry's set-based writes produce (see `services/registry/models.py`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import regions
from shared.auth import Caller
from shared.pagination import PageParams, trim


async def insert_row(session: AsyncSession, model: Any, row: dict[str, Any]) -> None:
    """Insert one row (every column given) into `model`'s table."""
    await session.execute(insert(model.__table__).values(row))


async def list_visible(
    session: AsyncSession,
    caller: Caller,
    model: Any,
    *,
    region: str | None,
    page: PageParams,
    clauses: list[str] | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of rows of `model`'s table (by id) within `region`, or the caller's whole jurisdiction;
    `clauses` are further SQL conditions over its columns, with their `params`."""
    table = model.__table__
    if region is not None:
        caller.check_region(region)
    query = select(table).where(regions.subtree_filter(table.c.region_code, region or caller.region_code))
    for clause in clauses or []:
        query = query.where(text(clause))
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(table.c.id > after[0])
    found = await session.execute(query.order_by(table.c.id).limit(page.limit + 1), params or {})
    return trim([dict(r) for r in found.mappings()], page, lambda r: (str(r["id"]),))
