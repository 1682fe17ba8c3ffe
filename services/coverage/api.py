"""Coverage endpoints: parse, call the service, return the model."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from services.coverage import gaps, reports, service, targets, tasks
from services.coverage.models import (
    CoverageHistory,
    CoverageReport,
    GapPage,
    JointGroup,
    Metric,
    Recalculation,
    RecalculationPublic,
    TargetCreate,
    TargetProgress,
    TargetPublic,
    TaskPublic,
    TasksCreated,
    TasksFromGaps,
    TaskStatus,
    TaskUpdate,
)
from services.coverage.service import RECOMPUTE
from shared.auth import Caller, requires
from shared.deps import SessionDep
from shared.errors import PROBLEM_RESPONSES, Problem, not_found
from shared.models import Scope
from shared.outbox import AFTER_COMMIT
from shared.pagination import Page, PageDep

RegionQuery = Annotated[str | None, Query(pattern=r"^\d{12}$", description="Region (default: your jurisdiction)")]
KindQuery = Annotated[str | None, Query(pattern=r"^(enterprise|social_org)$", description="Default: all kinds")]
Reader = Annotated[Caller, requires(Scope.coverage_read)]
Writer = Annotated[Caller, requires(Scope.coverage_write)]
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
    summary="Recount every figure of the country from the registry (admins); poll the returned job",
)
async def request_recalculation(
    request: Request, session: SessionDep, caller: Annotated[Caller, requires(Scope.admin)]
) -> RecalculationPublic:
    row = Recalculation(requested_by=caller.label)
    session.add(row)
    await session.flush()
    redis, queue = request.app.state.redis, request.app.state.settings.queue_name("coverage")

    async def enqueue() -> None:
        await redis.enqueue_job(RECOMPUTE, str(row.id), _job_id=f"recalculation:{row.id}", _queue_name=queue)

    session.info.setdefault(AFTER_COMMIT, []).append(enqueue)
    return service.recalculation_public(row)


@router.get("/recalculations/{recalculation_id}", response_model=RecalculationPublic, tags=["coverage"])
async def get_recalculation(recalculation_id: uuid.UUID, session: SessionDep, caller: Reader) -> RecalculationPublic:
    row = await session.get(Recalculation, recalculation_id)
    if row is None:
        raise not_found("recalculation")
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
    response.headers["ETag"] = tasks.etag(task.version)
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
    response.headers["ETag"] = tasks.etag(task.version)
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
