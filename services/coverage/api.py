"""Coverage endpoints: parse, call the service, return the model."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Header, Path, Query, Request, Response, UploadFile

from services.coverage import campaigns, forms, gaps, mobile, reference, reports, reviews, service, targets, tasks
from services.coverage import xlsform as xlsform_reader
from services.coverage.forms import AnswerRow, FormIn, FormPublic
from services.coverage.models import (
    AssignmentMove,
    AssignmentPublic,
    CampaignCreate,
    CampaignProgress,
    CampaignPublic,
    Confirmation,
    CoverageHistory,
    CoverageReport,
    GapPage,
    GenerateAssignments,
    GenerationResult,
    JointGroup,
    Metric,
    PhotoStored,
    RecalculationPublic,
    ReferenceData,
    Rejection,
    SyncPage,
    TargetCreate,
    TargetProgress,
    TargetPublic,
    TaskPublic,
    TasksCreated,
    TasksFromGaps,
    TaskStatus,
    TaskUpdate,
    TeamCreate,
    TeamPublic,
    VisitBatch,
    VisitBatchResult,
    VisitPublic,
)
from shared.auth import Caller, requires
from shared.concurrency import etag
from shared.deps import SessionDep
from shared.errors import PROBLEM_RESPONSES, Problem, ProblemError
from shared.models import Scope
from shared.pagination import Page, PageDep, trim
from shared.rules import SURVEYED_KINDS, one_of
from shared.settings import get_settings

RegionQuery = Annotated[str | None, Query(pattern=r"^\d{12}$", description="Region (default: your jurisdiction)")]
KindQuery = Annotated[str | None, Query(pattern=one_of(SURVEYED_KINDS), description="Default: all kinds")]
Reader = Annotated[Caller, requires(Scope.coverage_read)]
Writer = Annotated[Caller, requires(Scope.coverage_write)]
# Decisions on what the field found are officials' own; a partner key never makes them.
Official = Annotated[Caller, requires(Scope.coverage_write, officials_only=True)]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


@router.get(
    "/coverage",
    response_model=CoverageReport,
    tags=["coverage"],
    summary="Coverage figures of a region and of each child region",
    responses={404: {"model": Problem, "description": "Region (or snapshot) not found"}},
)
async def coverage(
    session: SessionDep,
    caller: Reader,
    region: RegionQuery = None,
    kind: KindQuery = None,
    area: Annotated[uuid.UUID | None, Query(description="Cut by a park, district, building or market")] = None,
    industry: Annotated[
        str | None, Query(pattern=r"^[A-T](\d{2,4})?$", description="Cut by industry code prefix")
    ] = None,
    as_of: Annotated[date | None, Query(description="Figures of the snapshot taken that day")] = None,
) -> CoverageReport:
    return await service.report(
        session, caller=caller, region=region, kind=kind, area_id=area, industry=industry, as_of=as_of
    )


@router.get(
    "/coverage/history",
    response_model=CoverageHistory,
    tags=["coverage"],
    summary="Figures of a region at every snapshot between two dates",
)
async def coverage_history(
    session: SessionDep,
    caller: Reader,
    region: RegionQuery = None,
    kind: KindQuery = None,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> CoverageHistory:
    return await service.history(session, caller=caller, region=region, kind=kind, start=start, end=end)


@router.get(
    "/coverage/gaps",
    response_model=GapPage,
    tags=["gaps"],
    summary="Uncovered in-scope organizations with a recommended formation and its reason",
)
async def coverage_gaps(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    kind: KindQuery = None,
    metric: Metric = Metric.org_coverage,
) -> GapPage:
    return await gaps.gap_page(session, caller=caller, region=region, kind=kind, metric=metric, page=page)


@router.get(
    "/coverage/gaps/joint-groups",
    response_model=list[JointGroup],
    tags=["gaps"],
    summary="Proposed joint party organizations for organizations with 1–2 formal members",
)
async def coverage_joint_groups(
    session: SessionDep, caller: Reader, region: RegionQuery = None, kind: KindQuery = None
) -> list[JointGroup]:
    return await gaps.joint_groups(session, caller=caller, region=region, kind=kind)


@router.post(
    "/recalculations",
    response_model=RecalculationPublic,
    status_code=202,
    tags=["coverage"],
    summary="Recount every figure of the country from the registry (national admins); poll the returned job",
    description="A recount covers the whole country, so only admins of the national jurisdiction start one "
    "(403 `national-only` for anyone else). While one is queued or running, a request gets that job.",
)
async def request_recalculation(
    request: Request, session: SessionDep, caller: Annotated[Caller, requires(Scope.admin)]
) -> RecalculationPublic:
    row = await service.request_recalculation(session, caller=caller, redis=request.app.state.redis)
    return service.recalculation_public(row)


@router.get(
    "/recalculations/{recalculation_id}",
    response_model=RecalculationPublic,
    tags=["coverage"],
    summary="A recount's progress (recounts are national: readable within the national jurisdiction)",
)
async def get_recalculation(recalculation_id: uuid.UUID, session: SessionDep, caller: Reader) -> RecalculationPublic:
    row = await service.get_recalculation(session, caller=caller, recalculation_id=recalculation_id)
    return service.recalculation_public(row)


@router.post(
    "/targets",
    response_model=TargetPublic,
    status_code=201,
    tags=["targets"],
    summary="Set a rate a region must reach by a deadline (挂图作战)",
)
async def create_target(body: TargetCreate, session: SessionDep, caller: Writer) -> TargetPublic:
    return targets.to_public(await targets.create(session, caller=caller, body=body))


@router.get("/targets", response_model=Page[TargetPublic], tags=["targets"])
async def list_targets(
    session: SessionDep, caller: Reader, page: PageDep, region: RegionQuery = None
) -> Page[TargetPublic]:
    return await targets.list_page(session, caller=caller, region=region, page=page)


@router.get(
    "/targets/{target_id}/progress",
    response_model=TargetProgress,
    tags=["targets"],
    summary="Current rate, organizations still to cover, whether it is overdue",
)
async def target_progress(target_id: uuid.UUID, session: SessionDep, caller: Reader) -> TargetProgress:
    return await targets.progress(session, caller=caller, target_id=target_id, today=date.today())


@router.post(
    "/establishment-tasks:from-gaps",
    response_model=TasksCreated,
    status_code=201,
    tags=["establishment tasks"],
    summary="One task per uncovered organization (or per proposed joint group) not yet in a task",
)
async def tasks_from_gaps(body: TasksFromGaps, session: SessionDep, caller: Writer) -> TasksCreated:
    return await tasks.from_gaps(session, caller=caller, body=body, today=date.today())


@router.get("/establishment-tasks", response_model=Page[TaskPublic], tags=["establishment tasks"])
async def list_tasks(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    status: TaskStatus | None = None,
    overdue: bool | None = None,
) -> Page[TaskPublic]:
    return await tasks.list_page(
        session, caller=caller, region=region, status=status, overdue=overdue, page=page, today=date.today()
    )


@router.get("/establishment-tasks/{task_id}", response_model=TaskPublic, tags=["establishment tasks"])
async def get_task(task_id: uuid.UUID, response: Response, session: SessionDep, caller: Reader) -> TaskPublic:
    task = await tasks.get(session, caller=caller, task_id=task_id)
    response.headers["ETag"] = etag(task.version)
    return (await tasks.to_public_many(session, [task], date.today()))[0]


@router.patch(
    "/establishment-tasks/{task_id}",
    response_model=TaskPublic,
    tags=["establishment tasks"],
    responses={409: {"model": Problem}, 412: {"model": Problem}, 428: {"model": Problem}},
)
async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    response: Response,
    session: SessionDep,
    caller: Writer,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> TaskPublic:
    task = await tasks.update(session, caller=caller, task_id=task_id, body=body, if_match=if_match)
    response.headers["ETag"] = etag(task.version)
    return (await tasks.to_public_many(session, [task], date.today()))[0]


@router.get(
    "/reports/coverage.xlsx",
    tags=["reports"],
    response_class=Response,
    summary="Coverage of each child region and the total, Chinese headers, rates as percentages",
    responses={200: {"content": {XLSX: {}}}},
)
async def coverage_workbook(
    session: SessionDep, caller: Reader, region: RegionQuery = None, kind: KindQuery = None
) -> Response:
    report = await service.report(
        session, caller=caller, region=region, kind=kind, area_id=None, industry=None, as_of=None
    )
    return Response(
        reports.coverage_xlsx(report),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="coverage-{report.region.code}.xlsx"'},
    )


@router.get(
    "/reports/coverage-trend.png",
    tags=["reports"],
    response_class=Response,
    summary="Organization and work coverage over the snapshots, as a line chart",
    responses={200: {"content": {"image/png": {}}}},
)
async def coverage_trend(
    session: SessionDep, caller: Reader, region: RegionQuery = None, kind: KindQuery = None
) -> Response:
    history = await service.history(session, caller=caller, region=region, kind=kind, start=None, end=None)
    return Response(reports.trend_png(history), media_type="image/png")


# ---- survey campaigns -------------------------------------------------------------------------

Campaigns = "campaigns"


@router.post(
    "/campaigns",
    response_model=CampaignPublic,
    status_code=201,
    tags=[Campaigns],
    summary="Start a survey campaign (摸底排查): region, kinds, scope criteria, up to three rounds",
)
async def create_campaign(body: CampaignCreate, session: SessionDep, caller: Writer) -> CampaignPublic:
    return await campaigns.public(session, await campaigns.create(session, caller=caller, body=body))


@router.get("/campaigns", response_model=Page[CampaignPublic], tags=[Campaigns])
async def list_campaigns(session: SessionDep, caller: Reader, page: PageDep) -> Page[CampaignPublic]:
    return await campaigns.list_page(session, caller=caller, page=page)


@router.get("/campaigns/{campaign_id}", response_model=CampaignPublic, tags=[Campaigns])
async def get_campaign(campaign_id: uuid.UUID, session: SessionDep, caller: Reader) -> CampaignPublic:
    return await campaigns.public(session, await campaigns.get(session, caller=caller, campaign_id=campaign_id))


@router.post(
    "/campaigns/{campaign_id}:close",
    response_model=CampaignPublic,
    tags=[Campaigns],
    summary="Close the campaign; its assignments leave the phones at their next sync",
)
async def close_campaign(campaign_id: uuid.UUID, session: SessionDep, caller: Writer) -> CampaignPublic:
    return await campaigns.public(session, await campaigns.close(session, caller=caller, campaign_id=campaign_id))


@router.post(
    "/campaigns/{campaign_id}/teams",
    response_model=TeamPublic,
    status_code=201,
    tags=[Campaigns],
    summary="A survey team (摸排小组): surveyors and the townships they cover",
)
async def add_team(campaign_id: uuid.UUID, body: TeamCreate, session: SessionDep, caller: Writer) -> TeamPublic:
    team = await campaigns.add_team(session, caller=caller, campaign_id=campaign_id, body=body)
    return TeamPublic.model_validate(team, from_attributes=True)


@router.get("/campaigns/{campaign_id}/teams", response_model=list[TeamPublic], tags=[Campaigns])
async def list_teams(campaign_id: uuid.UUID, session: SessionDep, caller: Reader) -> list[TeamPublic]:
    return [
        TeamPublic.model_validate(t, from_attributes=True)
        for t in await campaigns.teams_of(session, caller=caller, campaign_id=campaign_id)
    ]


@router.post(
    "/campaigns/{campaign_id}/assignments:generate",
    response_model=GenerationResult,
    tags=[Campaigns],
    summary="Assign every organization in scope (or of unknown scope) to the team of its township",
)
async def generate_assignments(
    campaign_id: uuid.UUID, body: GenerateAssignments, session: SessionDep, caller: Writer
) -> GenerationResult:
    return await campaigns.generate(session, caller=caller, campaign_id=campaign_id, round_no=body.round)


@router.patch(
    "/assignments/{assignment_id}",
    response_model=AssignmentPublic,
    tags=[Campaigns],
    summary="Move an assignment to another team or surveyor (If-Match)",
    responses={412: {"model": Problem}, 428: {"model": Problem}},
)
async def move_assignment(
    assignment_id: uuid.UUID,
    body: AssignmentMove,
    response: Response,
    session: SessionDep,
    caller: Writer,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> AssignmentPublic:
    moved = await campaigns.move(session, caller=caller, assignment_id=assignment_id, body=body, if_match=if_match)
    response.headers["ETag"] = etag(moved.version)
    return AssignmentPublic.model_validate(campaigns.assignment_public(moved))


@router.get("/assignments/{assignment_id}", response_model=AssignmentPublic, tags=[Campaigns])
async def get_assignment(
    assignment_id: uuid.UUID, response: Response, session: SessionDep, caller: Reader
) -> AssignmentPublic:
    found = await campaigns.get_assignment(session, caller=caller, assignment_id=assignment_id)
    response.headers["ETag"] = etag(found.version)
    return AssignmentPublic.model_validate(campaigns.assignment_public(found))


@router.get(
    "/campaigns/{campaign_id}/progress",
    response_model=CampaignProgress,
    tags=[Campaigns],
    summary="By round, team and township: assigned, visited, verified, rejected, remaining; outcomes",
)
async def campaign_progress(campaign_id: uuid.UUID, session: SessionDep, caller: Reader) -> CampaignProgress:
    return await campaigns.progress(session, caller=caller, campaign_id=campaign_id)


FORM_UPLOAD_MAX_BYTES = 2 * 1024 * 1024  # an XLSForm of a few hundred questions is tens of kilobytes
VersionQuery = Annotated[int | None, Query(ge=1, le=100_000, description="A version (default: the latest)")]


@router.put(
    "/campaigns/{campaign_id}/form",
    response_model=FormPublic,
    status_code=201,
    tags=[Campaigns],
    summary="Publish the campaign's next form version: its questions, rules and choice lists",
    description="Each publication adds a version; visits made on earlier versions stay valid against theirs. "
    "`constraint` and `relevant` are XLSForm expressions (see the README's field-app section); every problem "
    "is a 422 naming `questions[i].<attribute>`, and nothing is published.",
    responses={409: {"model": Problem}},
)
async def publish_form(campaign_id: uuid.UUID, body: FormIn, session: SessionDep, caller: Official) -> FormPublic:
    campaign = await campaigns.get(session, caller=caller, campaign_id=campaign_id, lock=True)
    campaigns.check_active(campaign)
    return forms.public(await forms.publish(session, caller=caller, campaign=campaign, form=body))


@router.post(
    "/campaigns/{campaign_id}/form:upload",
    response_model=FormPublic,
    status_code=201,
    tags=[Campaigns],
    summary="Publish the campaign's next form version from an XLSForm workbook (survey and choices sheets)",
    description="Read with pyxform, the reference XLSForm library. Supported: the types text, integer, decimal, "
    "select_one, select_multiple, date, acknowledge, image and geopoint; required; constraint and relevant in the "
    "expression subset. Every problem is a 422 naming its cell (`survey[7].constraint`), and nothing is published.",
    responses={409: {"model": Problem}, 413: {"model": Problem}},
)
async def upload_form(
    campaign_id: uuid.UUID,
    session: SessionDep,
    caller: Official,
    file: Annotated[UploadFile, File(description="An XLSForm workbook (.xlsx)")],
) -> FormPublic:
    campaign = await campaigns.get(session, caller=caller, campaign_id=campaign_id, lock=True)
    campaigns.check_active(campaign)
    data = await file.read(FORM_UPLOAD_MAX_BYTES + 1)
    if len(data) > FORM_UPLOAD_MAX_BYTES:
        raise ProblemError(413, f"an XLSForm may have at most {FORM_UPLOAD_MAX_BYTES} bytes", code="payload-too-large")
    try:
        read = await xlsform_reader.read(
            data, fallback_title=campaign.name, timeout_s=get_settings().upload_parse_timeout_s
        )
    except TimeoutError:
        raise ProblemError(413, "the workbook took too long to read", code="payload-too-large") from None
    if "problems" in read:
        status = read.get("status", 422)
        problems = [(str(f), str(r)) for f, r in read["problems"]]
        if status == 413:
            raise ProblemError(413, problems[0][1], code="payload-too-large")
        raise forms.problem_for_upload(problems)
    form, where = forms.from_workbook(read)
    row = await forms.publish(session, caller=caller, campaign=campaign, form=form, source="xlsform", where=where)
    return forms.public(row)


@router.get(
    "/campaigns/{campaign_id}/form",
    response_model=FormPublic,
    tags=[Campaigns],
    summary="The campaign's form: the latest version, or the one asked for",
)
async def get_form(
    campaign_id: uuid.UUID, session: SessionDep, caller: Reader, version: VersionQuery = None
) -> FormPublic:
    campaign = await campaigns.get(session, caller=caller, campaign_id=campaign_id)
    return await forms.get_public(session, campaign, version)


@router.get(
    "/campaigns/{campaign_id}/answers",
    response_model=Page[AnswerRow],
    tags=[Campaigns],
    summary="The answers of every visit made on the campaign's form, one item per visit",
)
async def list_answers(
    campaign_id: uuid.UUID,
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    form_version: VersionQuery = None,
) -> Page[AnswerRow]:
    campaign = await campaigns.get(session, caller=caller, campaign_id=campaign_id)
    after = page.after(uuid.UUID)
    rows = await forms.answers_page(
        session, campaign=campaign, form_version=form_version, after=after[0] if after else None, limit=page.limit
    )
    items, cursor = trim(rows, page, lambda r: (str(r.visit_id),))
    return Page[AnswerRow](items=items, next_cursor=cursor)


@router.get(
    "/campaigns/{campaign_id}/answers.xlsx",
    tags=[Campaigns],
    response_class=Response,
    summary="The answers as a workbook: one row per visit, the questions as Chinese headers",
    responses={200: {"content": {XLSX: {}}}},
)
async def answers_workbook(campaign_id: uuid.UUID, session: SessionDep, caller: Reader) -> Response:
    campaign = await campaigns.get(session, caller=caller, campaign_id=campaign_id)
    return Response(
        await forms.answers_xlsx(session, campaign=campaign),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="answers-{campaign.id}.xlsx"'},
    )


# ---- the field app --------------------------------------------------------------------------

Mobile = Annotated[Caller, requires(Scope.mobile)]


@router.get(
    "/mobile/sync",
    response_model=SyncPage,
    tags=["mobile"],
    summary="The surveyor's own assignments changed since the cursor, removals included",
)
async def mobile_sync(
    session: SessionDep,
    caller: Mobile,
    after: Annotated[str | None, Query(max_length=200, description="`cursor` of the previous sync")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> SyncPage:
    return await mobile.sync(session, caller=caller, after=after, limit=limit)


@router.get(
    "/mobile/campaigns/{campaign_id}/form",
    response_model=FormPublic,
    tags=["mobile"],
    summary="A form version of the campaign for the phone (sync delivers the latest; this fetches any)",
)
async def mobile_form(
    campaign_id: uuid.UUID, session: SessionDep, caller: Mobile, version: VersionQuery = None
) -> FormPublic:
    mobile.surveyor_of(caller)
    campaign = await campaigns.get(session, caller=caller, campaign_id=campaign_id)
    return await forms.get_public(session, campaign, version)


def _reference_endpoint(kind: str, summary: str) -> None:
    @router.get(
        f"/mobile/reference/{kind}",
        response_model=ReferenceData,
        tags=["mobile"],
        summary=summary,
        description="Send the version you hold as `If-None-Match` (304 when unchanged) and as `since` (only what "
        "changed since; `ids` lists every current key so the phone drops the rest).",
        responses={304: {"description": "Not modified: the phone's copy is current"}},
        operation_id=f"mobile_reference_{kind}",
    )
    async def download(
        response: Response,
        session: SessionDep,
        caller: Mobile,
        since: Annotated[str | None, Query(max_length=100, description="`version` of the copy the phone holds")] = None,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=200)] = None,
    ) -> Response | ReferenceData:
        data = await reference.download(session, caller=caller, kind=kind, since=since)
        tag = reference.etag(data.version)
        headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
        if if_none_match is not None and tag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers=headers)
        response.headers.update(headers)
        return data


_reference_endpoint("regions", "The regions of the surveyor's teams (townships and their communities)")
_reference_endpoint("industries", "Industry codes: GB/T 4754-2017 sections and divisions, with Chinese names")
_reference_endpoint("areas", "Parks, districts, buildings and markets in the surveyor's townships")
_reference_endpoint("choices", "The choice lists of the fixed fields and of the surveyor's current forms")


@router.post(
    "/mobile/visits",
    response_model=VisitBatchResult,
    tags=["mobile"],
    summary="Up to 500 visits; each answered on its own: accepted, duplicate, conflict or invalid",
)
async def mobile_visits(body: VisitBatch, session: SessionDep, caller: Mobile) -> VisitBatchResult:
    return await mobile.submit(session, caller=caller, items=body.visits)


@router.post(
    "/mobile/visits/{visit_id}/photos",
    response_model=PhotoStored,
    tags=["mobile"],
    summary="A JPEG or PNG photo of the visit: re-encoded without its metadata, stored once by content",
    description="Name the file as the photo question's answer names it. Its EXIF (device serials, GPS, owner) "
    "is dropped; the answer gives the stored photo's hash.",
    responses={413: {"model": Problem}, 415: {"model": Problem}, 503: {"model": Problem}},
)
async def mobile_photo(
    visit_id: uuid.UUID,
    session: SessionDep,
    caller: Mobile,
    file: Annotated[UploadFile, File(description="JPEG or PNG")],
) -> PhotoStored:
    data = await file.read(get_settings().photo_max_bytes + 1)
    return await mobile.store_photo(session, caller=caller, visit_id=visit_id, data=data, file_name=file.filename)


# ---- review --------------------------------------------------------------------------------

Visits = "visits"


@router.get(
    "/visits",
    response_model=Page[VisitPublic],
    tags=[Visits],
    summary="Visits to review (or reviewed), inside your jurisdiction",
)
async def list_visits(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    campaign_id: uuid.UUID | None = None,
    review_status: Annotated[str | None, Query(pattern=r"^(pending|verified|rejected)$")] = None,
    registration_status: Annotated[str | None, Query(pattern=r"^(pending|registered|dismissed)$")] = None,
    region: RegionQuery = None,
    flagged: Annotated[bool | None, Query(description="true: only visits with flags; false: only without")] = None,
) -> Page[VisitPublic]:
    return await reviews.list_page(
        session,
        caller=caller,
        campaign_id=campaign_id,
        review_status=review_status,
        region=region,
        registration_status=registration_status,
        page=page,
        flagged=flagged,
    )


@router.get(
    "/visits/{visit_id}/photos/{photo_hash}",
    tags=[Visits],
    response_class=Response,
    summary="A photo of a visit inside your jurisdiction (as listed in the visit's `photos`)",
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, 404: {"model": Problem}, 503: {"model": Problem}},
)
async def visit_photo(
    visit_id: uuid.UUID,
    photo_hash: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="the photo's sha256")],
    session: SessionDep,
    caller: Reader,
) -> Response:
    data, content_type = await reviews.photo(session, caller=caller, visit_id=visit_id, sha256=photo_hash)
    return Response(
        data,
        media_type=content_type,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.post(
    "/visits/{visit_id}:verify",
    response_model=VisitPublic,
    tags=[Visits],
    summary="Accept what the visit found; the registry's ledger follows (source: visit)",
)
async def verify_visit(visit_id: uuid.UUID, session: SessionDep, caller: Official) -> VisitPublic:
    return (await reviews.public_many(session, [await reviews.verify(session, caller=caller, visit_id=visit_id)]))[0]


@router.post(
    "/visits/{visit_id}:reject",
    response_model=VisitPublic,
    tags=[Visits],
    summary="Send the visit back; the surveyor sees the reason at the next sync",
)
async def reject_visit(visit_id: uuid.UUID, body: Rejection, session: SessionDep, caller: Official) -> VisitPublic:
    visit = await reviews.reject(session, caller=caller, visit_id=visit_id, reason=body.reason)
    return (await reviews.public_many(session, [visit]))[0]


@router.post(
    "/visits/{visit_id}/registration:confirm",
    response_model=VisitPublic,
    tags=[Visits],
    summary="Register the organization this verified visit found (fields may be completed first)",
)
async def confirm_registration(
    visit_id: uuid.UUID, body: Confirmation, session: SessionDep, caller: Official
) -> VisitPublic:
    visit = await reviews.confirm(session, caller=caller, visit_id=visit_id, body=body)
    return (await reviews.public_many(session, [visit]))[0]


@router.post("/visits/{visit_id}/registration:dismiss", response_model=VisitPublic, tags=[Visits])
async def dismiss_registration(
    visit_id: uuid.UUID, body: Rejection, session: SessionDep, caller: Official
) -> VisitPublic:
    visit = await reviews.dismiss(session, caller=caller, visit_id=visit_id, reason=body.reason)
    return (await reviews.public_many(session, [visit]))[0]
