"""Registry logic for regions and areas. Never imports FastAPI; never commits."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
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
from shared import refusals, regions
from shared.auth import Caller
from shared.errors import conflict, invalid, not_found
from shared.events import RegionRef, RegionsImported, emit
from shared.models import Region
from shared.pagination import Page, PageParams, trim


def to_public(region: Region) -> RegionPublic:
    return RegionPublic(code=region.code, name=region.name, level=region.level, parent_code=region.parent_code)


async def get(session: AsyncSession, *, caller: Caller, code: str) -> Region:
    region = await session.get(Region, code) if regions.is_valid_code(code) else None
    if region is None or not caller.can_see(code):
        raise not_found("region")
    return region


async def children(session: AsyncSession, *, caller: Caller, code: str) -> list[Region]:
    await get(session, caller=caller, code=code)
    rows = await session.execute(select(Region).where(col(Region.parent_code) == code).order_by(col(Region.code)))
    return list(rows.scalars())


async def import_regions(session: AsyncSession, *, caller: Caller, records: list[RegionRecord]) -> ImportResult:
    """Upsert regions by code; a record is rejected (with its reason) rather than the batch."""
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
        elif not caller.can_see(rec.code) or rec.code == caller.region_code:
            refusals.suspect("region", rec.code)
            errors.append(RowError(row=row, field="code", reason="outside your jurisdiction"))
        else:
            candidates.append((row, rec, lvl))

    parents = {regions.parent(rec.code) for _, rec, _ in candidates}
    found = await session.execute(select(col(Region.code)).where(col(Region.code).in_(parents)))
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
        values = [
            {"code": code, "name": rec.name, "level": regions.level(code), "parent_code": regions.parent(code)}
            for code, rec in accepted.items()
        ]
        upsert = insert(Region).values(values)
        stmt = upsert.on_conflict_do_update(
            index_elements=["code"],
            set_={"name": upsert.excluded.name, "updated_at": func.now()},
            where=col(Region.name).is_distinct_from(upsert.excluded.name),
        ).returning(col(Region.code), col(Region.level), col(Region.parent_code), text("(xmax = 0) AS inserted"))
        for code, level, parent_code, inserted in (await session.execute(stmt)).all():
            if inserted:
                created.append(RegionRef(code=code, parent_code=parent_code, level=level))
            else:
                updated += 1
    if created:
        await emit(session, "registry.region.imported", RegionsImported(regions=created))
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
    area = await session.get(Area, area_id, with_for_update=lock)
    if area is None or not caller.can_see(area.region_code):
        raise not_found("area")
    return area


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
    for key, value in body.model_dump(exclude_unset=True).items():
        if value is None:
            raise invalid(key, "cannot be null")
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
