"""Cycles, assessments and their approval chain; an approved star rating acts on 整转 (rectifications.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.evaluation import rectifications, scoring, templates
from services.evaluation.common import (
    party_org,
    region_in_jurisdiction,
    require_active,
)
from services.evaluation.models import (
    Assessment,
    AssessmentCreate,
    AssessmentEdit,
    AssessmentPublic,
    AssessmentStatus,
    CycleCreate,
    CyclePublic,
    EvaluationCycle,
    EvaluationTemplate,
    GenerateResult,
    TemplateDefinition,
    TemplateKind,
)
from shared import locks, regions
from shared.auth import Caller
from shared.concurrency import check_if_match
from shared.errors import ProblemError, conflict, invalid
from shared.events import AssessmentApproved, emit
from shared.locks import Namespace
from shared.pagination import Page, PageParams, trim
from shared.schemas import from_row
from shared.visible import load

STATUS_LABELS = {
    AssessmentStatus.draft: "草稿",
    AssessmentStatus.submitted: "已提交",
    AssessmentStatus.approved: "已审定",
    AssessmentStatus.returned: "已退回",
    AssessmentStatus.cancelled: "已作废",
}
EDITABLE = (AssessmentStatus.draft.value, AssessmentStatus.returned.value)


# ---- cycles -------------------------------------------------------------------------------


async def cycle_public(session: AsyncSession, c: EvaluationCycle) -> CyclePublic:
    t = await session.get(EvaluationTemplate, c.template_id)
    assert t is not None
    return from_row(CyclePublic, c, template_code=t.code, template_version=t.version, kind=t.kind)


async def create_cycle(session: AsyncSession, *, caller: Caller, body: CycleCreate) -> EvaluationCycle:
    region_code = await region_in_jurisdiction(session, caller, body.region_code)
    t = await session.get(EvaluationTemplate, body.template_id)
    if t is None or not templates.can_read(caller, t.region_code):
        raise invalid("template_id", "no such template")
    if not regions.contains(t.region_code, region_code):
        raise invalid("template_id", "this template belongs to another jurisdiction than the cycle's")
    await _check_one_cycle_per_period(session, t.code, body.year, body.quarter, region_code)
    cycle = EvaluationCycle(
        name=body.name,
        year=body.year,
        quarter=body.quarter,
        template_id=t.id,
        region_code=region_code,
        approval_levels=body.approval_levels,
        created_by=caller.label,
    )
    session.add(cycle)
    await session.flush()
    return cycle


async def _check_one_cycle_per_period(
    session: AsyncSession, template_code: str, year: int, quarter: int | None, region_code: str
) -> None:
    """A party organization is rated at most once per template and period: no second cycle of the same
    template code (any version) and the same year or quarter over the same jurisdiction, above it or
    below it. (A second one would give it a second rating of that period, and the later approval
    would count.)"""
    period = f"{year}Q{quarter}" if quarter else str(year)
    # Two officials opening the same period at once: one gets the 409 below.
    await locks.lock(session, Namespace.cycle_period, f"cycle:{template_code}:{period}")
    found = await session.execute(
        text(
            "SELECT c.id, c.name, c.region_code FROM evaluation_cycle c "
            "JOIN evaluation_template t ON t.id = c.template_id "
            "WHERE t.code = :code AND c.year = :year AND c.quarter IS NOT DISTINCT FROM CAST(:quarter AS integer) "
            "ORDER BY c.created_at, c.id"
        ),
        {"code": template_code, "year": year, "quarter": quarter},
    )
    for other in found:
        if regions.contains(other.region_code, region_code) or regions.contains(region_code, other.region_code):
            raise conflict(
                f"template {template_code!r} already has a cycle for {period} over region {other.region_code} "
                f"({other.name}); a party organization is rated once per template and period",
                cycle_id=str(other.id),
            )


async def get_cycle(session: AsyncSession, *, caller: Caller, cycle_id: uuid.UUID) -> EvaluationCycle:
    """A cycle of the caller's jurisdiction, or one above it that covers the caller's region."""
    return await load(session, caller, EvaluationCycle, cycle_id, what="cycle", kind="cycle")


async def list_cycles(
    session: AsyncSession, *, caller: Caller, year: int | None, page: PageParams
) -> Page[CyclePublic]:
    query = select(EvaluationCycle).where(
        caller.subtree(col(EvaluationCycle.region_code))
        | col(EvaluationCycle.region_code).in_(regions.ancestors(caller.region_code))
    )
    if year is not None:
        query = query.where(col(EvaluationCycle.year) == year)
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(col(EvaluationCycle.id) > after[0])
    found = list((await session.execute(query.order_by(col(EvaluationCycle.id)).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda c: (str(c.id),))
    return Page[CyclePublic](items=[await cycle_public(session, c) for c in rows], next_cursor=cursor)


async def _template_of(session: AsyncSession, cycle: EvaluationCycle) -> tuple[EvaluationTemplate, TemplateDefinition]:
    t = await session.get(EvaluationTemplate, cycle.template_id)
    assert t is not None
    return t, TemplateDefinition.model_validate(t.definition)


# ---- assessments --------------------------------------------------------------------------


def _scores(a: Assessment) -> dict[str, Decimal]:
    return {k: Decimal(str(v)) for k, v in a.scores.items()}


def to_public(a: Assessment, cycle: EvaluationCycle, definition: TemplateDefinition) -> AssessmentPublic:
    result = scoring.compute(definition, "", _scores(a))
    return from_row(
        AssessmentPublic,
        a,
        status_label=STATUS_LABELS[AssessmentStatus(a.status)],
        scores=_scores(a),
        group_totals=result.group_totals,
        approvals_needed=cycle.approval_levels,
    )


async def public(session: AsyncSession, a: Assessment) -> AssessmentPublic:
    cycle = await session.get(EvaluationCycle, a.cycle_id)
    assert cycle is not None
    _, definition = await _template_of(session, cycle)
    return to_public(a, cycle, definition)


def _apply_scores(a: Assessment, kind: str, definition: TemplateDefinition, scores: dict[str, Decimal]) -> None:
    errors = scoring.check(definition, scores)
    if errors:
        raise ProblemError(
            422,
            "; ".join(f"{e.field}: {e.reason}" for e in errors[:5]),
            code="validation-error",
            title="Request validation failed",
            errors=errors,
        )
    merged = {**_scores(a), **scores}
    result = scoring.compute(definition, kind, merged)
    # JSON numbers as strings keep the two decimals exactly as sent.
    a.scores = {k: str(v.quantize(scoring.CENT)) for k, v in sorted(merged.items())}
    a.total, a.star_level, a.passed = result.total, result.star_level, result.passed


async def create(session: AsyncSession, *, caller: Caller, cycle_id: uuid.UUID, body: AssessmentCreate) -> Assessment:
    cycle = await get_cycle(session, caller=caller, cycle_id=cycle_id)
    if cycle.status != "open":
        raise conflict("this cycle is closed")
    ref = await party_org(session, caller, body.party_org_id)
    require_active(ref)
    if not regions.contains(cycle.region_code, ref.region_code):
        raise invalid("party_org_id", "this party organization is outside the cycle's jurisdiction")
    # Two officials starting the same assessment at once: one gets the 409 below, not a 500.
    await locks.lock(session, Namespace.assessment, f"{cycle.id}:{ref.id}")
    exists = await session.execute(
        select(col(Assessment.id)).where(col(Assessment.cycle_id) == cycle.id, col(Assessment.party_org_id) == ref.id)
    )
    if (found := exists.first()) is not None:
        raise conflict("this party organization already has an assessment in this cycle", assessment_id=str(found[0]))
    t, definition = await _template_of(session, cycle)
    a = Assessment(
        cycle_id=cycle.id,
        party_org_id=ref.id,
        party_org_name=ref.name,
        region_code=ref.region_code,
        created_by=caller.label,
    )
    _apply_scores(a, t.kind, definition, body.scores)
    session.add(a)
    await session.flush()
    return a


async def generate(session: AsyncSession, *, caller: Caller, cycle_id: uuid.UUID) -> GenerateResult:
    """A draft for every active party organization of the cycle's region in the caller's jurisdiction."""
    cycle = await get_cycle(session, caller=caller, cycle_id=cycle_id)
    if cycle.status != "open":
        raise conflict("this cycle is closed")
    t, definition = await _template_of(session, cycle)
    empty = scoring.compute(definition, t.kind, {})
    inner = cycle.region_code if caller.can_see(cycle.region_code) else caller.region_code
    made = await session.execute(
        text(
            "INSERT INTO assessment (id, cycle_id, party_org_id, party_org_name, region_code, status, scores, total, "
            "star_level, passed, approvals, created_by, version, created_at, updated_at) "
            "SELECT gen_random_uuid(), :cycle, p.id, p.name, p.region_code, 'draft', '{}'::jsonb, 0, :stars, :passed, "
            "'[]'::jsonb, :by, 1, now(), now() FROM party_org p "
            "WHERE p.active AND p.region_code LIKE :prefix "
            "ON CONFLICT (cycle_id, party_org_id) DO NOTHING RETURNING 1"
        ),
        {
            "cycle": cycle.id,
            "stars": empty.star_level,
            "passed": empty.passed,
            "by": caller.label,
            "prefix": regions.prefix(inner) + "%",
        },
    )
    created = len(made.all())
    total = await session.execute(
        text(
            "SELECT count(*) FROM party_org p WHERE p.active AND p.region_code LIKE :prefix "
            "AND EXISTS (SELECT 1 FROM assessment a WHERE a.cycle_id = :cycle AND a.party_org_id = p.id)"
        ),
        {"cycle": cycle.id, "prefix": regions.prefix(inner) + "%"},
    )
    return GenerateResult(created=created, existing=int(total.scalar_one()) - created)


async def get(session: AsyncSession, *, caller: Caller, assessment_id: uuid.UUID, lock: bool = False) -> Assessment:
    return await load(session, caller, Assessment, assessment_id, what="assessment", lock=lock)


def _not_editable(a: Assessment) -> ProblemError:
    reasons = {
        AssessmentStatus.submitted.value: "the assessment is submitted; an approver must return it before it changes",
        AssessmentStatus.approved.value: "the assessment is approved and locked",
        AssessmentStatus.cancelled.value: "the assessment was cancelled",
    }
    return ProblemError(
        409,
        reasons.get(a.status, f"a {a.status} assessment cannot change"),
        code="assessment-locked",
        status_now=a.status,
    )


async def edit(
    session: AsyncSession, *, caller: Caller, assessment_id: uuid.UUID, body: AssessmentEdit, if_match: str | None
) -> Assessment:
    a = await get(session, caller=caller, assessment_id=assessment_id, lock=True)
    check_if_match(if_match, a.version, what="assessment")
    if a.status not in EDITABLE:
        raise _not_editable(a)
    cycle = await session.get(EvaluationCycle, a.cycle_id)
    assert cycle is not None
    t, definition = await _template_of(session, cycle)
    _apply_scores(a, t.kind, definition, body.scores)
    _touch(a)
    await session.flush()
    return a


def _touch(a: Assessment) -> None:
    a.version += 1
    a.updated_at = datetime.now(UTC)


async def submit(
    session: AsyncSession, *, caller: Caller, assessment_id: uuid.UUID, if_match: str | None
) -> Assessment:
    a = await get(session, caller=caller, assessment_id=assessment_id, lock=True)
    check_if_match(if_match, a.version, what="assessment", required=False)
    if a.status not in EDITABLE:
        raise _not_editable(a)
    cycle = await session.get(EvaluationCycle, a.cycle_id)
    assert cycle is not None
    _, definition = await _template_of(session, cycle)
    errors = scoring.check(definition, _scores(a), complete=True)
    if errors:
        raise ProblemError(
            422,
            f"{len(errors)} item(s) not scored; every item must be scored before submitting",
            code="validation-error",
            title="Request validation failed",
            errors=errors,
        )
    a.status = AssessmentStatus.submitted.value
    a.submitted_by = caller.label
    a.submitted_level = regions.level(caller.region_code)
    a.submitted_at = datetime.now(UTC)
    a.approvals = []
    a.returned_reason = None
    _touch(a)
    await session.flush()
    return a


def _check_above(caller: Caller, below_level: int, action: str) -> int:
    """The caller must sit above `below_level` in the region tree (DHIS2-style approval levels)."""
    mine = regions.level(caller.region_code)
    # Nothing sits above the national level: there, the national level approves its own.
    if mine >= below_level and not (mine == below_level == 0):
        raise ProblemError(
            403,
            f"to {action} this assessment you need a jurisdiction above the {regions.LEVEL_NAMES[below_level]} level",
            code="approval-level",
            required_level_above=below_level,
        )
    return mine


async def approve(
    session: AsyncSession, *, caller: Caller, assessment_id: uuid.UUID, if_match: str | None, today: date
) -> Assessment:
    a = await get(session, caller=caller, assessment_id=assessment_id, lock=True)
    check_if_match(if_match, a.version, what="assessment", required=False)
    if a.status != AssessmentStatus.submitted.value:
        raise ProblemError(409, f"only a submitted assessment can be approved; this one is {a.status}", code="conflict")
    cycle = await session.get(EvaluationCycle, a.cycle_id)
    assert cycle is not None and a.submitted_level is not None
    previous = a.approvals[-1]["level"] if a.approvals else a.submitted_level
    mine = _check_above(caller, previous, "approve")
    now = datetime.now(UTC)
    step = {
        "step": len(a.approvals) + 1,
        "by": caller.label,
        "region_code": caller.region_code,
        "level": mine,
        "at": now.isoformat(),
    }
    a.approvals = [*a.approvals, step]
    # Nobody sits above the national level: its approval ends the chain.
    if len(a.approvals) >= cycle.approval_levels or mine == 0:
        a.status = AssessmentStatus.approved.value
        a.approved_at = now
        await _on_approved(session, a, cycle, today)
    _touch(a)
    await session.flush()
    return a


async def return_(
    session: AsyncSession, *, caller: Caller, assessment_id: uuid.UUID, reason: str, if_match: str | None
) -> Assessment:
    a = await get(session, caller=caller, assessment_id=assessment_id, lock=True)
    check_if_match(if_match, a.version, what="assessment", required=False)
    if a.status != AssessmentStatus.submitted.value:
        raise ProblemError(409, f"only a submitted assessment can be returned; this one is {a.status}", code="conflict")
    assert a.submitted_level is not None
    _check_above(caller, a.submitted_level, "return")
    a.status = AssessmentStatus.returned.value
    a.returned_reason = reason
    a.approvals = []
    _touch(a)
    await session.flush()
    return a


async def list_page(
    session: AsyncSession,
    *,
    caller: Caller,
    cycle_id: uuid.UUID | None,
    party_org_id: uuid.UUID | None,
    status: AssessmentStatus | None,
    page: PageParams,
) -> Page[AssessmentPublic]:
    query = select(Assessment).where(caller.subtree(col(Assessment.region_code)))
    if cycle_id is not None:
        query = query.where(col(Assessment.cycle_id) == cycle_id)
    if party_org_id is not None:
        query = query.where(col(Assessment.party_org_id) == party_org_id)
    if status is not None:
        query = query.where(col(Assessment.status) == status.value)
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(col(Assessment.id) > after[0])
    found = list((await session.execute(query.order_by(col(Assessment.id)).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda a: (str(a.id),))
    return Page[AssessmentPublic](items=[await public(session, a) for a in rows], next_cursor=cursor)


# ---- consequences ----------------------------------------------------------------------------


async def _on_approved(session: AsyncSession, a: Assessment, cycle: EvaluationCycle, today: date) -> None:
    t, _ = await _template_of(session, cycle)
    await emit(
        session,
        "evaluation.assessment.approved",
        AssessmentApproved(
            assessment_id=a.id,
            cycle_id=cycle.id,
            party_org_id=a.party_org_id,
            region_code=a.region_code,
            template_code=t.code,
            template_version=t.version,
            kind=t.kind,
            year=cycle.year,
            quarter=cycle.quarter,
            total=str(Decimal(a.total).quantize(scoring.CENT)),
            star_level=a.star_level,
            passed=a.passed,
        ),
    )
    if t.kind == TemplateKind.star_rating and a.star_level is not None:
        await rectifications.on_star_rating(session, a, cycle, today)


# ---- the registry dissolved a party organization ---------------------------------------------


async def on_party_org_dissolved(session: AsyncSession, party_org_id: uuid.UUID) -> tuple[int, int]:
    """Cancel its open rectification and its unfinished assessments; approved ones stay as history."""
    now = datetime.now(UTC)
    cancelled = await rectifications.cancel_for_dissolved(session, party_org_id, now)
    assessed = await session.execute(
        text(
            "UPDATE assessment SET status = 'cancelled', version = version + 1, updated_at = :now "
            "WHERE party_org_id = :p AND status IN ('draft', 'submitted', 'returned') RETURNING id"
        ),
        {"now": now, "p": party_org_id},
    )
    return cancelled, len(assessed.all())
