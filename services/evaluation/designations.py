"""示范点 / 标杆: designations by level and type, within yearly quotas per region."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.evaluation.common import party_org, region_in_jurisdiction, require_active
from services.evaluation.models import (
    DESIGNATION_REGION_LEVEL,
    Designation,
    DesignationCreate,
    DesignationLevel,
    DesignationPublic,
    DesignationQuota,
    DesignationType,
    QuotaPublic,
    QuotaSet,
)
from shared import locks, regions
from shared.auth import Caller
from shared.errors import ProblemError, conflict, invalid
from shared.locks import Namespace
from shared.pagination import Page, PageParams, trim
from shared.schemas import from_row
from shared.visible import load

LEVEL_LABELS = {"province": "省级", "city": "市级", "county": "县级"}
TYPE_LABELS = {"leading": "领军型", "model": "示范型", "compliant": "达标型"}


def label(level: str, type_: str) -> str:
    return f"{LEVEL_LABELS[level]}{TYPE_LABELS[type_]}"


def to_public(d: Designation) -> DesignationPublic:
    return from_row(DesignationPublic, d, label=label(d.level, d.type))


async def _used(session: AsyncSession, *, region_code: str, year: int, level: str, type_: str) -> int:
    found = await session.execute(
        select(func.count())
        .select_from(Designation)
        .where(
            col(Designation.region_code).startswith(regions.prefix(region_code)),
            col(Designation.year) == year,
            col(Designation.level) == level,
            col(Designation.type) == type_,
            col(Designation.status) == "active",
        )
    )
    return int(found.scalar_one())


async def set_quota(session: AsyncSession, *, caller: Caller, body: QuotaSet) -> QuotaPublic:
    region_code = await region_in_jurisdiction(session, caller, body.region_code)
    if regions.level(region_code) > DESIGNATION_REGION_LEVEL[body.level]:
        raise invalid(
            "region_code",
            f"a {LEVEL_LABELS[body.level]} quota belongs to a region at that level or above, "
            f"not to a {regions.LEVEL_NAMES[regions.level(region_code)]} one",
        )
    values = {
        "region_code": region_code,
        "year": body.year,
        "level": body.level.value,
        "type": body.type.value,
        "quota": body.quota,
        "updated_by": caller.label,
        "updated_at": datetime.now(UTC),
    }
    await session.execute(
        insert(DesignationQuota)
        .values(values)
        .on_conflict_do_update(
            index_elements=["region_code", "year", "level", "type"],
            set_={"quota": body.quota, "updated_by": caller.label, "updated_at": values["updated_at"]},
        )
    )
    used = await _used(session, region_code=region_code, year=body.year, level=body.level, type_=body.type)
    return QuotaPublic(
        region_code=region_code,
        year=body.year,
        level=body.level.value,
        type=body.type.value,
        label=label(body.level, body.type),
        quota=body.quota,
        used=used,
        remaining=max(0, body.quota - used),
    )


async def list_quotas(session: AsyncSession, *, caller: Caller, year: int | None) -> list[QuotaPublic]:
    query = select(DesignationQuota).where(
        caller.subtree(col(DesignationQuota.region_code))
        | col(DesignationQuota.region_code).in_(regions.ancestors(caller.region_code))
    )
    if year is not None:
        query = query.where(col(DesignationQuota.year) == year)
    query = query.order_by(
        col(DesignationQuota.region_code),
        col(DesignationQuota.year),
        col(DesignationQuota.level),
        col(DesignationQuota.type),
    )
    out = []
    for q in (await session.execute(query)).scalars():
        used = await _used(session, region_code=q.region_code, year=q.year, level=q.level, type_=q.type)
        out.append(
            QuotaPublic(
                region_code=q.region_code,
                year=q.year,
                level=q.level,
                type=q.type,
                label=label(q.level, q.type),
                quota=q.quota,
                used=used,
                remaining=max(0, q.quota - used),
            )
        )
    return out


async def create(session: AsyncSession, *, caller: Caller, body: DesignationCreate) -> Designation:
    ref = await party_org(session, caller, body.party_org_id)
    require_active(ref)
    level, type_ = body.level.value, body.type.value
    if regions.level(caller.region_code) > DESIGNATION_REGION_LEVEL[body.level]:
        raise ProblemError(
            403,
            f"a {LEVEL_LABELS[level]} designation is made at the {LEVEL_LABELS[level]} level or above",
            code="forbidden",
        )
    ancestors = regions.ancestors(ref.region_code)
    # Serialize designations counted against the same quotas, in one order, so two officials cannot
    # both take the last place.
    await locks.lock_all(session, Namespace.designation_quota, (f"{c}:{body.year}:{level}:{type_}" for c in ancestors))
    duplicate = await session.execute(
        select(col(Designation.id)).where(
            col(Designation.party_org_id) == ref.id,
            col(Designation.year) == body.year,
            col(Designation.level) == level,
            col(Designation.type) == type_,
            col(Designation.status) == "active",
        )
    )
    if duplicate.first() is not None:
        raise conflict(f"this party organization is already a {label(level, type_)} designation of {body.year}")
    quotas = await session.execute(
        select(DesignationQuota)
        .where(
            col(DesignationQuota.region_code).in_(ancestors),
            col(DesignationQuota.year) == body.year,
            col(DesignationQuota.level) == level,
            col(DesignationQuota.type) == type_,
        )
        .order_by(col(DesignationQuota.region_code))
    )
    for q in quotas.scalars():
        used = await _used(session, region_code=q.region_code, year=q.year, level=level, type_=type_)
        if used >= q.quota:
            name = (
                await session.execute(text("SELECT name FROM region WHERE code = :c"), {"c": q.region_code})
            ).scalar_one_or_none() or q.region_code
            raise ProblemError(
                409,
                f"{name} {q.year}年{label(level, type_)}名额已满：名额 {q.quota}，已用 {used}",
                code="quota-exceeded",
                title="Quota exceeded",
                quota={
                    "region_code": q.region_code,
                    "year": q.year,
                    "level": level,
                    "type": type_,
                    "label": label(level, type_),
                    "quota": q.quota,
                },
                used=used,
            )
    d = Designation(
        party_org_id=ref.id,
        party_org_name=ref.name,
        region_code=ref.region_code,
        year=body.year,
        level=level,
        type=type_,
        title=body.title,
        created_by=caller.label,
    )
    session.add(d)
    await session.flush()
    return d


async def revoke(session: AsyncSession, *, caller: Caller, designation_id: uuid.UUID) -> Designation:
    d = await load(session, caller, Designation, designation_id, what="designation", lock=True)
    if d.status != "active":
        raise conflict("this designation is already revoked")
    d.status, d.revoked_at = "revoked", datetime.now(UTC)
    await session.flush()
    return d


async def list_page(
    session: AsyncSession,
    *,
    caller: Caller,
    year: int | None,
    level: DesignationLevel | None,
    type_: DesignationType | None,
    page: PageParams,
) -> Page[DesignationPublic]:
    query = select(Designation).where(caller.subtree(col(Designation.region_code)))
    if year is not None:
        query = query.where(col(Designation.year) == year)
    if level is not None:
        query = query.where(col(Designation.level) == level.value)
    if type_ is not None:
        query = query.where(col(Designation.type) == type_.value)
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(col(Designation.id) > after[0])
    found = list((await session.execute(query.order_by(col(Designation.id)).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda d: (str(d.id),))
    return Page[DesignationPublic](items=[to_public(d) for d in rows], next_cursor=cursor)
