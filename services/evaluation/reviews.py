"""双述双评: a secretary reports in a cycle; members, the public and the superior score the report."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.evaluation.assessments import get_cycle
from services.evaluation.common import party_org, require_active
from services.evaluation.models import (
    ReviewAggregate,
    ReviewReport,
    ReviewReportCreate,
    ReviewReportPublic,
    ReviewScore,
    ReviewScoreCreate,
    ReviewScorePublic,
)
from shared import locks, regions
from shared.auth import Caller
from shared.errors import conflict, invalid
from shared.locks import Namespace
from shared.visible import load


def report_public(r: ReviewReport) -> ReviewReportPublic:
    return ReviewReportPublic.model_validate(r, from_attributes=True)


def score_public(s: ReviewScore) -> ReviewScorePublic:
    return ReviewScorePublic.model_validate(s, from_attributes=True)


async def create_report(
    session: AsyncSession, *, caller: Caller, cycle_id: uuid.UUID, body: ReviewReportCreate
) -> ReviewReport:
    cycle = await get_cycle(session, caller=caller, cycle_id=cycle_id)
    ref = await party_org(session, caller, body.party_org_id)
    require_active(ref)
    if not regions.contains(cycle.region_code, ref.region_code):
        raise invalid("party_org_id", "this party organization is outside the cycle's jurisdiction")
    await locks.lock(session, Namespace.review_report, f"{cycle.id}:{ref.id}")
    exists = await session.execute(
        select(col(ReviewReport.id)).where(
            col(ReviewReport.cycle_id) == cycle.id, col(ReviewReport.party_org_id) == ref.id
        )
    )
    if (found := exists.first()) is not None:
        raise conflict("this party organization already reported in this cycle", report_id=str(found[0]))
    r = ReviewReport(
        cycle_id=cycle.id,
        party_org_id=ref.id,
        party_org_name=ref.name,
        region_code=ref.region_code,
        secretary_name=body.secretary_name,
        content=body.content,
        reported_on=body.reported_on,
        created_by=caller.label,
    )
    session.add(r)
    await session.flush()
    return r


async def get_report(session: AsyncSession, *, caller: Caller, report_id: uuid.UUID) -> ReviewReport:
    return await load(session, caller, ReviewReport, report_id, what="review report")


async def add_score(
    session: AsyncSession, *, caller: Caller, report_id: uuid.UUID, body: ReviewScoreCreate
) -> ReviewScore:
    r = await get_report(session, caller=caller, report_id=report_id)
    s = ReviewScore(
        report_id=r.id,
        region_code=r.region_code,
        evaluator_kind=body.evaluator_kind.value,
        evaluator=body.evaluator,
        score=body.score,
        comment=body.comment,
        created_by=caller.label,
    )
    session.add(s)
    await session.flush()
    return s


async def scores(session: AsyncSession, *, caller: Caller, report_id: uuid.UUID) -> list[ReviewScore]:
    await get_report(session, caller=caller, report_id=report_id)
    found = await session.execute(
        select(ReviewScore).where(col(ReviewScore.report_id) == report_id).order_by(col(ReviewScore.created_at))
    )
    return list(found.scalars())


async def summary(session: AsyncSession, *, caller: Caller, cycle_id: uuid.UUID) -> list[ReviewAggregate]:
    """Count, average, minimum and maximum score per party organization of the cycle (caller's subtree)."""
    await get_cycle(session, caller=caller, cycle_id=cycle_id)
    found = await session.execute(
        text(
            "SELECT r.id AS report_id, r.party_org_id, r.party_org_name, r.region_code, agg.n, agg.average, "
            "agg.lo, agg.hi, COALESCE(kinds.by_kind, '{}'::jsonb) AS by_kind FROM review_report r "
            "CROSS JOIN LATERAL (SELECT count(*) AS n, round(avg(score), 2) AS average, min(score) AS lo, "
            "  max(score) AS hi FROM review_score WHERE report_id = r.id) agg "
            "CROSS JOIN LATERAL (SELECT jsonb_object_agg(kind, n) AS by_kind FROM (SELECT evaluator_kind AS kind, "
            "  count(*) AS n FROM review_score WHERE report_id = r.id GROUP BY 1) x) kinds "
            "WHERE r.cycle_id = :cycle AND r.region_code LIKE :prefix "
            "ORDER BY r.region_code, r.party_org_name, r.id"
        ),
        {"cycle": cycle_id, "prefix": caller.region_prefix + "%"},
    )
    return [
        ReviewAggregate(
            party_org_id=row.party_org_id,
            party_org_name=row.party_org_name,
            region_code=row.region_code,
            report_id=row.report_id,
            count=row.n,
            average=row.average,
            min=row.lo,
            max=row.hi,
            by_kind={k: int(v) for k, v in row.by_kind.items()},
        )
        for row in found
    ]
