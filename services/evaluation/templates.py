"""Assessment templates as versioned data: a code has versions 1, 2, …; an edit publishes the next."""

from __future__ import annotations

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.evaluation import scoring
from services.evaluation.common import region_in_jurisdiction
from services.evaluation.models import (
    EvaluationTemplate,
    TemplateCreate,
    TemplateDefinition,
    TemplateEdit,
    TemplateKind,
    TemplatePublic,
)
from shared import locks, refusals, regions
from shared.auth import Caller
from shared.concurrency import check_if_match
from shared.db import add_unique
from shared.errors import ProblemError, conflict, invalid
from shared.locks import Namespace
from shared.schemas import from_row
from shared.visible import check as check_visible


def to_public(t: EvaluationTemplate) -> TemplatePublic:
    definition = TemplateDefinition.model_validate(t.definition)
    return from_row(TemplatePublic, t, max_total=scoring.max_total(definition))


def visible(caller: Caller) -> object:
    """Templates of the caller's jurisdiction, of anything above it (national built-ins), or below it."""
    return or_(
        col(EvaluationTemplate.region_code).in_(regions.ancestors(caller.region_code)),
        caller.subtree(col(EvaluationTemplate.region_code)),
    )


def can_read(caller: Caller, region_code: str) -> bool:
    """Templates issued above the caller are readable as well as its own."""
    return not refusals.outside(caller, "template", region_code)


async def get(
    session: AsyncSession, *, caller: Caller, code: str, version: int | None = None, lock: bool = False
) -> EvaluationTemplate:
    query = select(EvaluationTemplate).where(col(EvaluationTemplate.code) == code)
    if version is not None:
        query = query.where(col(EvaluationTemplate.version) == version)
    query = query.order_by(col(EvaluationTemplate.version).desc()).limit(1)
    if lock:
        query = query.with_for_update()
    t = (await session.execute(query)).scalar_one_or_none()
    check_visible(caller, t.region_code if t else None, kind="template", key=code, what="template")
    assert t is not None
    return t


async def list_latest(session: AsyncSession, *, caller: Caller, kind: TemplateKind | None) -> list[EvaluationTemplate]:
    query = (
        select(EvaluationTemplate)
        .where(visible(caller))  # type: ignore[arg-type]
        .ext(distinct_on(col(EvaluationTemplate.code)))
        .order_by(col(EvaluationTemplate.code), col(EvaluationTemplate.version).desc())
    )
    if kind is not None:
        query = query.where(col(EvaluationTemplate.kind) == kind.value)
    return list((await session.execute(query)).scalars())


async def versions(session: AsyncSession, *, caller: Caller, code: str) -> list[EvaluationTemplate]:
    await get(session, caller=caller, code=code)
    found = await session.execute(
        select(EvaluationTemplate).where(col(EvaluationTemplate.code) == code).order_by(col(EvaluationTemplate.version))
    )
    return list(found.scalars())


async def create(session: AsyncSession, *, caller: Caller, body: TemplateCreate) -> EvaluationTemplate:
    region_code = await region_in_jurisdiction(session, caller, body.region_code)
    if body.kind == TemplateKind.star_rating and body.definition.stars is None:
        raise invalid("definition.stars", "a star rating template needs a star rule")
    # One code, one history: serialize creators of the same code.
    await locks.lock(session, Namespace.template_code, body.code)
    exists = await session.execute(
        select(col(EvaluationTemplate.id)).where(col(EvaluationTemplate.code) == body.code).limit(1)
    )
    if exists.first() is not None:
        raise _code_taken(body.code)
    t = EvaluationTemplate(
        code=body.code,
        version=1,
        kind=body.kind.value,
        name=body.name,
        region_code=region_code,
        definition=body.definition.model_dump(mode="json", exclude_none=True),
        created_by=caller.label,
    )
    # Taken by a jurisdiction the caller cannot see (row-level security hid it above): the insert says so.
    await add_unique(session, t, constraint="uq_evaluation_template_code_version", taken=_code_taken(body.code))
    return t


def _code_taken(code: str) -> ProblemError:
    """Template codes are national: the same answer whoever holds the code, naming no jurisdiction."""
    return conflict(f"the template code {code!r} is taken; choose another (to publish a new version of yours, edit it)")


async def edit(
    session: AsyncSession, *, caller: Caller, code: str, body: TemplateEdit, if_match: str | None
) -> EvaluationTemplate:
    """Publish the next version; cycles (and so assessments) keep the version they were made with."""
    await locks.lock(session, Namespace.template_code, code)
    current = await get(session, caller=caller, code=code)
    if not caller.can_see(current.region_code):
        raise ProblemError(
            403,
            "this template belongs to a higher jurisdiction; create a template of your own from it",
            code="forbidden",
        )
    check_if_match(if_match, current.version, what="template")
    if current.kind == TemplateKind.star_rating and body.definition.stars is None:
        raise invalid("definition.stars", "a star rating template needs a star rule")
    t = EvaluationTemplate(
        code=code,
        version=current.version + 1,
        kind=current.kind,
        name=body.name or current.name,
        region_code=current.region_code,
        definition=body.definition.model_dump(mode="json", exclude_none=True),
        created_by=caller.label,
    )
    session.add(t)
    await session.flush()
    return t
