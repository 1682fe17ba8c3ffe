"""挂图作战: a rate each region must reach by a deadline, and how far it still is."""

from __future__ import annotations

import math
import uuid
from datetime import date
from fractions import Fraction

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage.figures import rate
from services.coverage.gaps import recommend, uncovered
from services.coverage.models import Metric, Target, TargetCreate, TargetProgress, TargetPublic
from services.coverage.service import region_ref
from shared import regions
from shared.auth import Caller
from shared.pagination import Page, PageParams, encode_cursor, trim
from shared.schemas import from_row
from shared.visible import load

REMAINING_PAGE = 50
_TERMS = {
    Metric.org_coverage: ("org_covered", "in_scope"),
    Metric.work_coverage: ("work_covered", "in_scope"),
    Metric.single_formation: ("single_formed", "single_eligible"),
}


def to_public(row: Target) -> TargetPublic:
    return from_row(TargetPublic, row)


async def create(session: AsyncSession, *, caller: Caller, body: TargetCreate) -> Target:
    await region_ref(session, caller, body.region_code)
    target = Target(
        name=body.name,
        region_code=body.region_code,
        kind=body.kind,
        metric=body.metric.value,
        target_rate=body.target_rate,
        deadline=body.deadline,
        created_by=caller.label,
    )
    session.add(target)
    await session.flush()
    return target


async def get(session: AsyncSession, *, caller: Caller, target_id: uuid.UUID) -> Target:
    return await load(session, caller, Target, target_id, what="target", kind="target")


async def list_page(
    session: AsyncSession, *, caller: Caller, region: str | None, page: PageParams
) -> Page[TargetPublic]:
    root = await region_ref(session, caller, region)
    params = {"prefix": regions.prefix(root.code) + "%", "limit": page.limit + 1, "after": None}
    if (after := page.after(uuid.UUID)) is not None:
        params["after"] = str(after[0])
    found = await session.execute(
        text(
            "SELECT * FROM coverage_target WHERE region_code LIKE :prefix "
            "AND (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid)) ORDER BY id LIMIT :limit"
        ),
        params,
    )
    rows, cursor = trim([Target(**dict(r)) for r in found.mappings()], page, lambda t: (str(t.id),))
    return Page[TargetPublic](items=[to_public(t) for t in rows], next_cursor=cursor)


async def progress(session: AsyncSession, *, caller: Caller, target_id: uuid.UUID, today: date) -> TargetProgress:
    target = await get(session, caller=caller, target_id=target_id)
    metric = Metric(target.metric)
    numerator_name, denominator_name = _TERMS[metric]
    found = await session.execute(
        text(
            f"SELECT coalesce(sum({numerator_name}), 0) AS n, coalesce(sum({denominator_name}), 0) AS d "
            "FROM coverage_figure WHERE region_code = :r AND (CAST(:k AS text) IS NULL OR kind = :k)"
        ),
        {"r": target.region_code, "k": target.kind},
    )
    row = found.one()
    numerator, denominator = int(row.n), int(row.d)
    # The fewest organizations whose coverage lifts numerator/denominator to the target rate.
    wanted = math.ceil(Fraction(str(target.target_rate)) * denominator)
    gap = max(0, wanted - numerator)
    rows = await uncovered(session, region_code=target.region_code, kind=target.kind, metric=metric)
    gaps, _ = recommend(rows)
    first = gaps[:REMAINING_PAGE]
    cursor = (
        encode_cursor(first[-1].region_code, str(first[-1].organization_id)) if len(gaps) > REMAINING_PAGE else None
    )
    reached = denominator > 0 and gap == 0
    return TargetProgress(
        target=to_public(target),
        current_rate=rate(numerator, denominator),
        numerator=numerator,
        denominator=denominator,
        gap_organizations=gap,
        reached=reached,
        overdue=today > target.deadline and not reached,
        days_left=(target.deadline - today).days,
        remaining=first,
        remaining_next_cursor=cursor,
    )
