"""Rectifications (整转): opened by an approved low star rating, closed by a better one, reminded
when overdue, cancelled with their party organization.

Only the rating that stands acts on them (`ratings.py`); the thresholds are settings
(`LIANGXIN_RECTIFICATION_MAX_STARS`, `LIANGXIN_RECTIFICATION_DUE_DAYS`)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.evaluation import ratings
from services.evaluation.common import region_in_jurisdiction
from services.evaluation.models import (
    Assessment,
    EvaluationCycle,
    Rectification,
    RectificationPublic,
    RectificationStatus,
)
from shared import locks, regions
from shared.auth import Caller
from shared.events import RectificationChanged, emit
from shared.locks import Namespace
from shared.pagination import Page, PageParams, trim
from shared.schemas import from_row
from shared.settings import get_settings
from shared.visible import load


async def on_star_rating(session: AsyncSession, a: Assessment, cycle: EvaluationCycle, today: date) -> None:
    """An approved star rating: at or below the threshold it opens one (unless one is open), above
    it it closes the open one."""
    assert a.star_level is not None
    settings = get_settings()
    await locks.lock(session, Namespace.rectification, str(a.party_org_id))
    # Only the rating that stands acts on 整转 (ratings.py): an earlier year or quarter approved late
    # is kept as history and neither opens nor closes one.
    if not await ratings.stands_after_approval(
        session, a.party_org_id, ratings.Rating(a.id, cycle.year, cycle.quarter, a.star_level)
    ):
        return
    current = (
        await session.execute(
            select(Rectification).where(
                col(Rectification.party_org_id) == a.party_org_id,
                col(Rectification.status) == RectificationStatus.open.value,
            )
        )
    ).scalar_one_or_none()
    if a.star_level <= settings.rectification_max_stars:
        if current is not None:
            return
        r = Rectification(
            party_org_id=a.party_org_id,
            party_org_name=a.party_org_name,
            region_code=a.region_code,
            assessment_id=a.id,
            star_level=a.star_level,
            due_on=today + timedelta(days=settings.rectification_due_days),
        )
        session.add(r)
        await session.flush()
        await emit(session, "evaluation.rectification.opened", changed(r))
        return
    if current is None:
        return
    current.status = RectificationStatus.closed.value
    current.closed_at = datetime.now(UTC)
    current.closed_by_assessment_id = a.id
    current.close_reason = f"复评为{a.star_level}星，整转完成"
    await session.flush()
    await emit(session, "evaluation.rectification.closed", changed(current))


def changed(r: Rectification) -> RectificationChanged:
    return RectificationChanged(
        rectification_id=r.id,
        party_org_id=r.party_org_id,
        region_code=r.region_code,
        status=r.status,
        due_on=r.due_on.isoformat(),
        star_level=r.star_level,
        assessment_id=r.assessment_id,
        closed_by_assessment_id=r.closed_by_assessment_id,
    )


def public(r: Rectification, today: date) -> RectificationPublic:
    return from_row(RectificationPublic, r, overdue=r.status == RectificationStatus.open.value and r.due_on < today)


async def get(session: AsyncSession, *, caller: Caller, rectification_id: uuid.UUID) -> Rectification:
    return await load(session, caller, Rectification, rectification_id, what="rectification")


async def list_page(
    session: AsyncSession,
    *,
    caller: Caller,
    region: str | None,
    status: RectificationStatus | None,
    overdue: bool | None,
    page: PageParams,
    today: date,
) -> Page[RectificationPublic]:
    root = await region_in_jurisdiction(session, caller, region)
    query = select(Rectification).where(col(Rectification.region_code).startswith(regions.prefix(root)))
    if status is not None:
        query = query.where(col(Rectification.status) == status.value)
    if overdue is not None:
        late = (col(Rectification.status) == RectificationStatus.open.value) & (col(Rectification.due_on) < today)
        query = query.where(late if overdue else ~late)
    order: list[Any] = [col(Rectification.due_on), col(Rectification.id)]
    if (after := page.after(date, uuid.UUID)) is not None:
        due_on, last_id = after
        query = query.where(
            (col(Rectification.due_on) > due_on)
            | ((col(Rectification.due_on) == due_on) & (col(Rectification.id) > last_id))
        )
    found = list((await session.execute(query.order_by(*order).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda r: (r.due_on.isoformat(), str(r.id)))
    return Page[RectificationPublic](items=[public(r, today) for r in rows], next_cursor=cursor)


async def cancel_for_dissolved(session: AsyncSession, party_org_id: uuid.UUID, now: datetime) -> int:
    """Cancel the open rectification of a dissolved party organization; how many (0 or 1)."""
    found = await session.execute(
        text(
            "UPDATE rectification SET status = 'cancelled', closed_at = :now, close_reason = '党组织已撤销' "
            "WHERE party_org_id = :p AND status = 'open' RETURNING id"
        ),
        {"now": now, "p": party_org_id},
    )
    return len(found.all())


async def remind_overdue(session: AsyncSession, day: date) -> dict[str, int]:
    """Mark every open, overdue rectification not yet reminded on `day`; how many per county."""
    found = await session.execute(
        text(
            "WITH reminded AS (UPDATE rectification SET reminded_on = :day, reminders = reminders + 1 "
            "  WHERE status = 'open' AND due_on < :day AND (reminded_on IS NULL OR reminded_on < :day) "
            "  RETURNING region_code) "
            "SELECT left(region_code, 6) AS county, count(*) AS n FROM reminded GROUP BY 1 ORDER BY 1"
        ),
        {"day": day},
    )
    return {r.county + "000000": int(r.n) for r in found}
