"""Evaluation endpoints: parse, call the service, return the model."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from services.evaluation import assessments, designations, rectifications, reviews, templates
from services.evaluation.models import (
    AssessmentCreate,
    AssessmentEdit,
    AssessmentPublic,
    AssessmentStatus,
    CycleCreate,
    CyclePublic,
    DesignationCreate,
    DesignationLevel,
    DesignationPublic,
    DesignationType,
    GenerateResult,
    QuotaPublic,
    QuotaSet,
    RectificationPublic,
    RectificationStatus,
    ReturnBody,
    ReviewAggregate,
    ReviewReportCreate,
    ReviewReportPublic,
    ReviewScoreCreate,
    ReviewScorePublic,
    TemplateCreate,
    TemplateEdit,
    TemplateKind,
    TemplatePublic,
)
from shared.auth import Caller, requires
from shared.concurrency import etag
from shared.deps import SessionDep
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.models import Scope
from shared.pagination import Page, PageDep

Reader = Annotated[Caller, requires(Scope.evaluation_read)]
Writer = Annotated[Caller, requires(Scope.evaluation_write)]
# Publishing rules, approving, designating: decisions of officials, never of a partner key.
Official = Annotated[Caller, requires(Scope.evaluation_write, officials_only=True)]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag of the version you read")]
Code = Annotated[str, Path(pattern=r"^[a-z0-9_]{2,64}$")]
RegionQuery = Annotated[str | None, Query(pattern=r"^\d{12}$", description="Region (default: your jurisdiction)")]
YearQuery = Annotated[int | None, Query(ge=2000, le=2100)]

EDIT_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "Not found (or outside your jurisdiction)"},
    409: {"model": Problem, "description": "The object's state does not allow it"},
    412: {"model": Problem, "description": "If-Match names an older version"},
    428: {"model": Problem, "description": "If-Match is required"},
}

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


# ---- templates ------------------------------------------------------------------------------


@router.get(
    "/templates",
    response_model=list[TemplatePublic],
    tags=["templates"],
    summary="Latest version of every template you can use (built-ins included)",
)
async def list_templates(session: SessionDep, caller: Reader, kind: TemplateKind | None = None) -> list[TemplatePublic]:
    return [templates.to_public(t) for t in await templates.list_latest(session, caller=caller, kind=kind)]


@router.post(
    "/templates", response_model=TemplatePublic, status_code=201, tags=["templates"], summary="Create a template"
)
async def create_template(
    body: TemplateCreate, response: Response, session: SessionDep, caller: Official
) -> TemplatePublic:
    t = await templates.create(session, caller=caller, body=body)
    response.headers["ETag"] = etag(t.version)
    return templates.to_public(t)


@router.get(
    "/templates/{code}",
    response_model=TemplatePublic,
    tags=["templates"],
    summary="Latest version of a template (ETag: its version)",
)
async def get_template(code: Code, response: Response, session: SessionDep, caller: Reader) -> TemplatePublic:
    t = await templates.get(session, caller=caller, code=code)
    response.headers["ETag"] = etag(t.version)
    return templates.to_public(t)


@router.put(
    "/templates/{code}",
    response_model=TemplatePublic,
    status_code=201,
    tags=["templates"],
    summary="Edit a template: publishes the next version (If-Match); earlier assessments keep theirs",
    responses=EDIT_RESPONSES,
)
async def edit_template(
    code: Code, body: TemplateEdit, response: Response, session: SessionDep, caller: Official, if_match: IfMatch = None
) -> TemplatePublic:
    t = await templates.edit(session, caller=caller, code=code, body=body, if_match=if_match)
    response.headers["ETag"] = etag(t.version)
    return templates.to_public(t)


@router.get(
    "/templates/{code}/versions",
    response_model=list[TemplatePublic],
    tags=["templates"],
    summary="Every version of a template, oldest first",
)
async def template_versions(code: Code, session: SessionDep, caller: Reader) -> list[TemplatePublic]:
    return [templates.to_public(t) for t in await templates.versions(session, caller=caller, code=code)]


@router.get(
    "/templates/{code}/versions/{version}",
    response_model=TemplatePublic,
    tags=["templates"],
    summary="One version of a template",
)
async def template_version(
    code: Code, version: Annotated[int, Path(ge=1, le=2_147_483_647)], session: SessionDep, caller: Reader
) -> TemplatePublic:
    return templates.to_public(await templates.get(session, caller=caller, code=code, version=version))


# ---- cycles and assessments -------------------------------------------------------------------


@router.post(
    "/cycles",
    response_model=CyclePublic,
    status_code=201,
    tags=["cycles"],
    summary="Open an assessment cycle: a year or quarter, a template version, a jurisdiction",
    description="One cycle per template code and period (a year, or a quarter): a second one of the same "
    "template and period over the same jurisdiction, or one above or below it, is a 409 naming the first.",
    responses={409: {"model": Problem, "description": "The template already has a cycle of that period here"}},
)
async def create_cycle(body: CycleCreate, session: SessionDep, caller: Official) -> CyclePublic:
    cycle = await assessments.create_cycle(session, caller=caller, body=body)
    return await assessments.cycle_public(session, cycle)


@router.get("/cycles", response_model=Page[CyclePublic], tags=["cycles"], summary="Cycles of your jurisdiction")
async def list_cycles(session: SessionDep, caller: Reader, page: PageDep, year: YearQuery = None) -> Page[CyclePublic]:
    return await assessments.list_cycles(session, caller=caller, year=year, page=page)


@router.get("/cycles/{cycle_id}", response_model=CyclePublic, tags=["cycles"], summary="One cycle")
async def get_cycle(cycle_id: uuid.UUID, session: SessionDep, caller: Reader) -> CyclePublic:
    return await assessments.cycle_public(
        session, await assessments.get_cycle(session, caller=caller, cycle_id=cycle_id)
    )


@router.post(
    "/cycles/{cycle_id}/assessments",
    response_model=AssessmentPublic,
    status_code=201,
    tags=["assessments"],
    summary="Start the assessment of one party organization (a draft, scores optional)",
)
async def create_assessment(
    cycle_id: uuid.UUID, body: AssessmentCreate, response: Response, session: SessionDep, caller: Writer
) -> AssessmentPublic:
    a = await assessments.create(session, caller=caller, cycle_id=cycle_id, body=body)
    response.headers["ETag"] = etag(a.version)
    return await assessments.public(session, a)


@router.post(
    "/cycles/{cycle_id}/assessments:generate",
    response_model=GenerateResult,
    tags=["assessments"],
    summary="A draft for every active party organization of the cycle in your jurisdiction",
)
async def generate_assessments(cycle_id: uuid.UUID, session: SessionDep, caller: Writer) -> GenerateResult:
    return await assessments.generate(session, caller=caller, cycle_id=cycle_id)


@router.get(
    "/assessments", response_model=Page[AssessmentPublic], tags=["assessments"], summary="Assessments, filtered"
)
async def list_assessments(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    cycle_id: uuid.UUID | None = None,
    party_org_id: uuid.UUID | None = None,
    status: AssessmentStatus | None = None,
) -> Page[AssessmentPublic]:
    return await assessments.list_page(
        session, caller=caller, cycle_id=cycle_id, party_org_id=party_org_id, status=status, page=page
    )


@router.get(
    "/assessments/{assessment_id}",
    response_model=AssessmentPublic,
    tags=["assessments"],
    summary="One assessment (ETag: its version)",
)
async def get_assessment(
    assessment_id: uuid.UUID, response: Response, session: SessionDep, caller: Reader
) -> AssessmentPublic:
    a = await assessments.get(session, caller=caller, assessment_id=assessment_id)
    response.headers["ETag"] = etag(a.version)
    return await assessments.public(session, a)


@router.patch(
    "/assessments/{assessment_id}",
    response_model=AssessmentPublic,
    tags=["assessments"],
    summary="Score items (If-Match); the server computes total, star level and pass",
    responses=EDIT_RESPONSES,
)
async def edit_assessment(
    assessment_id: uuid.UUID,
    body: AssessmentEdit,
    response: Response,
    session: SessionDep,
    caller: Writer,
    if_match: IfMatch = None,
) -> AssessmentPublic:
    a = await assessments.edit(session, caller=caller, assessment_id=assessment_id, body=body, if_match=if_match)
    response.headers["ETag"] = etag(a.version)
    return await assessments.public(session, a)


@router.post(
    "/assessments/{assessment_id}:submit",
    response_model=AssessmentPublic,
    tags=["assessments"],
    summary="Submit for approval (every item must be scored)",
    responses=EDIT_RESPONSES,
)
async def submit_assessment(
    assessment_id: uuid.UUID, response: Response, session: SessionDep, caller: Writer, if_match: IfMatch = None
) -> AssessmentPublic:
    a = await assessments.submit(session, caller=caller, assessment_id=assessment_id, if_match=if_match)
    response.headers["ETag"] = etag(a.version)
    return await assessments.public(session, a)


@router.post(
    "/assessments/{assessment_id}:approve",
    response_model=AssessmentPublic,
    tags=["assessments"],
    summary="Approve at a level above the last one; the last approval locks it and acts on the rating",
    responses={**EDIT_RESPONSES, 403: {"model": Problem, "description": "Your level may not approve it"}},
)
async def approve_assessment(
    assessment_id: uuid.UUID, response: Response, session: SessionDep, caller: Official, if_match: IfMatch = None
) -> AssessmentPublic:
    a = await assessments.approve(
        session, caller=caller, assessment_id=assessment_id, if_match=if_match, today=date.today()
    )
    response.headers["ETag"] = etag(a.version)
    return await assessments.public(session, a)


@router.post(
    "/assessments/{assessment_id}:return",
    response_model=AssessmentPublic,
    tags=["assessments"],
    summary="Return a submitted assessment to its assessor with a reason",
    responses={**EDIT_RESPONSES, 403: {"model": Problem, "description": "Your level may not return it"}},
)
async def return_assessment(
    assessment_id: uuid.UUID,
    body: ReturnBody,
    response: Response,
    session: SessionDep,
    caller: Official,
    if_match: IfMatch = None,
) -> AssessmentPublic:
    a = await assessments.return_(
        session, caller=caller, assessment_id=assessment_id, reason=body.reason, if_match=if_match
    )
    response.headers["ETag"] = etag(a.version)
    return await assessments.public(session, a)


# ---- rectifications (整转) ----------------------------------------------------------------------


@router.get(
    "/rectifications",
    response_model=Page[RectificationPublic],
    tags=["rectifications"],
    summary="Rectifications (整转) by due date; overdue=true lists the overdue ones",
)
async def list_rectifications(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    status: RectificationStatus | None = None,
    overdue: bool | None = None,
) -> Page[RectificationPublic]:
    return await rectifications.list_page(
        session, caller=caller, region=region, status=status, overdue=overdue, page=page, today=date.today()
    )


@router.get(
    "/rectifications/{rectification_id}",
    response_model=RectificationPublic,
    tags=["rectifications"],
    summary="One rectification",
)
async def get_rectification(rectification_id: uuid.UUID, session: SessionDep, caller: Reader) -> RectificationPublic:
    r = await rectifications.get(session, caller=caller, rectification_id=rectification_id)
    return rectifications.public(r, date.today())


# ---- designations (示范点 / 标杆) -----------------------------------------------------------------


@router.put(
    "/designation-quotas",
    response_model=QuotaPublic,
    tags=["designations"],
    summary="Set a region's yearly quota of designations of one level and type",
)
async def set_quota(body: QuotaSet, session: SessionDep, caller: Official) -> QuotaPublic:
    return await designations.set_quota(session, caller=caller, body=body)


@router.get(
    "/designation-quotas",
    response_model=list[QuotaPublic],
    tags=["designations"],
    summary="Quotas of your jurisdiction and above, with used and remaining places",
)
async def list_quotas(session: SessionDep, caller: Reader, year: YearQuery = None) -> list[QuotaPublic]:
    return await designations.list_quotas(session, caller=caller, year=year)


@router.post(
    "/designations",
    response_model=DesignationPublic,
    status_code=201,
    tags=["designations"],
    summary="Designate a party organization (409 quota-exceeded when the year's places are taken)",
    responses={409: {"model": Problem, "description": "quota-exceeded (names quota and used) or a duplicate"}},
)
async def create_designation(body: DesignationCreate, session: SessionDep, caller: Official) -> DesignationPublic:
    return designations.to_public(await designations.create(session, caller=caller, body=body))


@router.get(
    "/designations", response_model=Page[DesignationPublic], tags=["designations"], summary="Designations, filtered"
)
async def list_designations(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    year: YearQuery = None,
    level: DesignationLevel | None = None,
    type: DesignationType | None = None,
) -> Page[DesignationPublic]:
    return await designations.list_page(session, caller=caller, year=year, level=level, type_=type, page=page)


@router.post(
    "/designations/{designation_id}:revoke",
    response_model=DesignationPublic,
    tags=["designations"],
    summary="Revoke a designation (its place in the quota is freed)",
)
async def revoke_designation(designation_id: uuid.UUID, session: SessionDep, caller: Official) -> DesignationPublic:
    return designations.to_public(await designations.revoke(session, caller=caller, designation_id=designation_id))


# ---- reviews (双述双评) ---------------------------------------------------------------------------


@router.post(
    "/cycles/{cycle_id}/reviews",
    response_model=ReviewReportPublic,
    status_code=201,
    tags=["reviews"],
    summary="Record a secretary's report of the cycle (述职)",
)
async def create_review(
    cycle_id: uuid.UUID, body: ReviewReportCreate, session: SessionDep, caller: Writer
) -> ReviewReportPublic:
    return reviews.report_public(await reviews.create_report(session, caller=caller, cycle_id=cycle_id, body=body))


@router.get(
    "/cycles/{cycle_id}/reviews/summary",
    response_model=list[ReviewAggregate],
    tags=["reviews"],
    summary="Per party organization: count, average, minimum and maximum of the scores (评议)",
)
async def review_summary(cycle_id: uuid.UUID, session: SessionDep, caller: Reader) -> list[ReviewAggregate]:
    return await reviews.summary(session, caller=caller, cycle_id=cycle_id)


@router.get("/reviews/{report_id}", response_model=ReviewReportPublic, tags=["reviews"], summary="One report")
async def get_review(report_id: uuid.UUID, session: SessionDep, caller: Reader) -> ReviewReportPublic:
    return reviews.report_public(await reviews.get_report(session, caller=caller, report_id=report_id))


@router.post(
    "/reviews/{report_id}/scores",
    response_model=ReviewScorePublic,
    status_code=201,
    tags=["reviews"],
    summary="An evaluator's score (0–100) of a report",
)
async def add_review_score(
    report_id: uuid.UUID, body: ReviewScoreCreate, session: SessionDep, caller: Writer
) -> ReviewScorePublic:
    return reviews.score_public(await reviews.add_score(session, caller=caller, report_id=report_id, body=body))


@router.get(
    "/reviews/{report_id}/scores",
    response_model=list[ReviewScorePublic],
    tags=["reviews"],
    summary="Every score of a report",
)
async def list_review_scores(report_id: uuid.UUID, session: SessionDep, caller: Reader) -> list[ReviewScorePublic]:
    return [reviews.score_public(s) for s in await reviews.scores(session, caller=caller, report_id=report_id)]
