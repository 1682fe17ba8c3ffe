"""A page of rows inside the jurisdiction, read the same way for every registry table (one row:
`shared.visible.load_row`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import regions
from shared.auth import Caller
from shared.pagination import PageParams, trim

# Tables these helpers may name (never built from input).
_TABLES = frozenset({"organization", "party_org", "instructor"})


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
