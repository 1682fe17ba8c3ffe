"""Registry logic for regions and areas. Never imports FastAPI; never commits."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.registry.models import (
    Area,
    AreaCreate,
    AreaKind,
    AreaPublic,
    AreaUpdate,
    ImportResult,
    RegionPublic,
    RegionRecord,
    RowError,
)
from shared import regions
from shared.auth import Caller
from shared.errors import conflict, invalid
from shared.events import REGIONS_PER_EVENT, RegionRef, RegionsImported, emit_many
from shared.models import Region
from shared.pagination import Page, PageParams, trim
from shared.schemas import sent_fields
from shared.visible import load, load_region, refused_row


def to_public(region: Region) -> RegionPublic:
    return RegionPublic(code=region.code, name=region.name, level=region.level, parent_code=region.parent_code)


async def get(session: AsyncSession, *, caller: Caller, code: str) -> Region:
    return await load_region(session, caller, code)


async def children(session: AsyncSession, *, caller: Caller, code: str) -> list[Region]:
    await get(session, caller=caller, code=code)
    rows = await session.execute(select(Region).where(col(Region.parent_code) == code).order_by(col(Region.code)))
    return list(rows.scalars())


async def import_regions(session: AsyncSession, *, caller: Caller, records: list[RegionRecord]) -> ImportResult:
    """Upsert regions by code; a record is rejected (with its reason) rather than the batch.

    Set-based whatever the batch size (up to a province's tree, 20,000 records): the rules are
    checked in Python without a query per record, the parents looked up in one query, the rows
    written in one statement over arrays (never one bind parameter per value: Postgres takes at
    most 32,767), and the regions created are announced in events of at most
    `REGIONS_PER_EVENT`, so no consumer's job grows with the batch."""
    errors: list[RowError] = []
    counts = Counter(r.code for r in records)
    candidates: list[tuple[int, RegionRecord, int]] = []
    for row, rec in enumerate(records):
        if not regions.is_valid_code(rec.code):
            errors.append(RowError(row=row, field="code", reason="must be 12 digits"))
        elif counts[rec.code] > 1:
            errors.append(RowError(row=row, field="code", reason=f"{rec.code} appears more than once in this batch"))
        elif (lvl := regions.level(rec.code)) == 0:
            errors.append(RowError(row=row, field="code", reason="the national root cannot be imported"))
        elif refused_row(caller, rec.code, kind="region", key=rec.code) or rec.code == caller.region_code:
            errors.append(RowError(row=row, field="code", reason="outside your jurisdiction"))
        else:
            candidates.append((row, rec, lvl))

    parents = sorted({p for _, rec, _ in candidates if (p := regions.parent(rec.code)) is not None})
    found = await session.execute(
        text("SELECT code FROM region WHERE code = ANY(CAST(:codes AS text[]))"), {"codes": parents}
    )
    known = set(found.scalars())
    accepted: dict[str, RegionRecord] = {}
    # Parents before children, so a parent accepted earlier in the batch counts.
    for row, rec, _ in sorted(candidates, key=lambda c: c[2]):
        parent = regions.parent(rec.code)
        if parent in known or parent in accepted:
            accepted[rec.code] = rec
        else:
            in_batch = parent in counts
            reason = (
                f"parent region {parent} was rejected in this batch"
                if in_batch
                else f"parent region {parent} is neither in this batch nor registered"
            )
            errors.append(RowError(row=row, field="code", reason=reason))

    created: list[RegionRef] = []
    updated = 0
    if accepted:
        codes = list(accepted)
        written = await session.execute(
            text(
                "INSERT INTO region (code, name, level, parent_code, created_at, updated_at) "
                "SELECT c, n, l, p, now(), now() FROM unnest(CAST(:codes AS text[]), CAST(:names AS text[]), "
                "CAST(:levels AS int[]), CAST(:parents AS text[])) AS t(c, n, l, p) "
                "ON CONFLICT (code) DO UPDATE SET name = excluded.name, updated_at = now() "
                "WHERE region.name IS DISTINCT FROM excluded.name "
                "RETURNING code, level, parent_code, (xmax = 0) AS inserted"
            ),
            {
                "codes": codes,
                "names": [accepted[c].name for c in codes],
                "levels": [regions.level(c) for c in codes],
                "parents": [regions.parent(c) for c in codes],
            },
        )
        for code, level, parent_code, inserted in written.all():
            if inserted:
                created.append(RegionRef(code=code, parent_code=parent_code, level=level))
            else:
                updated += 1
    if created:
        created.sort(key=lambda r: r.code)
        await emit_many(
            session,
            [
                ("registry.region.imported", RegionsImported(regions=created[i : i + REGIONS_PER_EVENT]))
                for i in range(0, len(created), REGIONS_PER_EVENT)
            ],
        )
    errors.sort(key=lambda e: e.row)
    return ImportResult(
        created=len(created),
        updated=updated,
        unchanged=len(accepted) - len(created) - updated,
        rejected=len(records) - len(accepted),
        errors=errors,
    )


# ---- areas -----------------------------------------------------------------------------


def area_public(row: Any) -> AreaPublic:
    return AreaPublic(id=row.id, name=row.name, kind=row.kind, region_code=row.region_code)


async def create_area(session: AsyncSession, *, caller: Caller, body: AreaCreate) -> Area:
    caller.check_region(body.region_code)
    if await session.get(Region, body.region_code) is None:
        raise invalid("region_code", f"region {body.region_code} is not registered")
    area = Area(name=body.name, kind=body.kind, region_code=body.region_code)
    session.add(area)
    await session.flush()
    return area


async def get_area(session: AsyncSession, *, caller: Caller, area_id: uuid.UUID, lock: bool = False) -> Area:
    return await load(session, caller, Area, area_id, what="area", lock=lock)


async def list_areas(
    session: AsyncSession, *, caller: Caller, region: str | None, kind: AreaKind | None, page: PageParams
) -> Page[AreaPublic]:
    if region is not None:
        caller.check_region(region)
    query = select(Area).where(regions.subtree_filter(col(Area.region_code), region or caller.region_code))
    if kind is not None:
        query = query.where(col(Area.kind) == kind)
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(col(Area.id) > after[0])
    found = list((await session.execute(query.order_by(col(Area.id)).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda a: (str(a.id),))
    return Page[AreaPublic](items=[area_public(a) for a in rows], next_cursor=cursor)


async def update_area(session: AsyncSession, *, caller: Caller, area_id: uuid.UUID, body: AreaUpdate) -> Area:
    area = await get_area(session, caller=caller, area_id=area_id, lock=True)
    for key, value in sent_fields(body).items():
        setattr(area, key, value)
    area.updated_at = datetime.now(UTC)
    await session.flush()
    return area


async def delete_area(session: AsyncSession, *, caller: Caller, area_id: uuid.UUID) -> None:
    area = await get_area(session, caller=caller, area_id=area_id, lock=True)
    used = await session.execute(text("SELECT count(*) FROM organization WHERE area_id = :a"), {"a": area_id})
    if (n := used.scalar_one()) > 0:
        raise conflict(f"{n} organization(s) are in this area; move them before deleting it")
    await session.delete(area)
