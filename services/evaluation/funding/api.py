"""Funding endpoints (经费): rule sets, the computation, allocations and their workbook."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.evaluation.funding import reports, service
from services.evaluation.funding.models import (
    AllocationPublic,
    CloseRequest,
    ComputationPublic,
    ComputeRequest,
    ComputeResult,
    RuleSetCreate,
    RuleSetPublic,
)
from services.evaluation.funding.service import AllocationFilter
from shared.auth import Caller, requires
from shared.deps import SessionDep
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.models import Scope
from shared.pagination import Page, PageDep

Reader = Annotated[Caller, requires(Scope.evaluation_read)]
# Funding rules and allocations are officials' decisions, never a partner key's.
Official = Annotated[Caller, requires(Scope.evaluation_write, officials_only=True)]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXPORT_MAX_LINES = 200_000
TAG = "funding"
RegionQuery = Annotated[str | None, Query(pattern=r"^\d{12}$", description="Default: your jurisdiction")]
YearQuery = Annotated[int | None, Query(ge=2000, le=2100)]
RuleSetQuery = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="Rule set code")]
ScopeQuery = Annotated[
    str | None,
    Query(
        pattern=r"^\d{12}$",
        description="Only allocations computed over this jurisdiction (`region_code` of the computation)",
    ),
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "Not found in your jurisdiction"}}

router = APIRouter(prefix="/v1/funding", tags=[TAG], responses=PROBLEM_RESPONSES)


@router.post(
    "/rule-sets",
    response_model=RuleSetPublic,
    status_code=201,
    summary="Create a rule set, or the next version of one (same code); versions are never edited",
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "The code belongs to another jurisdiction"}},
)
async def create_rule_set(body: RuleSetCreate, session: SessionDep, caller: Official) -> RuleSetPublic:
    return service.rule_set_public(await service.create_rule_set(session, caller=caller, body=body))


@router.get(
    "/rule-sets",
    response_model=Page[RuleSetPublic],
    summary="Rule sets of your jurisdiction and those issued above it, every version",
)
async def list_rule_sets(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    code: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_-]{0,39}$")] = None,
) -> Page[RuleSetPublic]:
    return await service.list_rule_sets(session, caller=caller, code=code, page=page)


@router.get("/rule-sets/{rule_set_id}", response_model=RuleSetPublic, responses=NOT_FOUND)
async def get_rule_set(rule_set_id: uuid.UUID, session: SessionDep, caller: Reader) -> RuleSetPublic:
    return service.rule_set_public(await service.get_rule_set(session, caller=caller, rule_set_id=rule_set_id))


@router.post(
    "/allocations:compute",
    response_model=ComputeResult,
    summary="Compute a year's allocation of a jurisdiction under a rule set; the same inputs change nothing",
    description="A past year reads the registry as it stood at the end of 31 December (Beijing time) unless "
    "`facts` says `current`. Without `budget_cap` the previous computation's cap is kept (`null` removes it; "
    "`0` needs `confirm_zero_budget`). The answer lists the `assumptions` the figures rest on. A computation "
    "an official closed is a 409 and changes nothing.",
    responses={
        **NOT_FOUND,
        409: {"model": Problem, "description": "An official closed this year's computation (`funding-closed`)"},
    },
)
async def compute_allocations(body: ComputeRequest, session: SessionDep, caller: Official) -> ComputeResult:
    return await service.compute(session, caller=caller, body=body)


@router.post(
    "/allocations:close",
    response_model=ComputationPublic,
    summary="Close a year's computation: its allocations and totals are final and never computed again",
    description="The official confirms the figures and the assumptions listed with them. Only a year that is "
    "over can be closed; closing is final (a second close is a 409 naming the first).",
    responses={
        404: {"model": Problem, "description": "No computation of that year, rule set and jurisdiction of yours"},
        409: {"model": Problem, "description": "Already closed, or the year is not over"},
    },
)
async def close_allocations(body: CloseRequest, session: SessionDep, caller: Official) -> ComputationPublic:
    return service.computation_public(await service.close(session, caller=caller, body=body))


@router.get(
    "/computations",
    response_model=Page[ComputationPublic],
    summary="Computations of your jurisdiction: cap, assumptions, totals, and whether an official closed them",
    responses=NOT_FOUND,
)
async def list_computations(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    year: YearQuery = None,
    rule_set: RuleSetQuery = None,
) -> Page[ComputationPublic]:
    return await service.list_computations(
        session, caller=caller, region=region, year=year, rule_set_code=rule_set, page=page
    )


@router.get(
    "/allocations",
    response_model=Page[AllocationPublic],
    summary="Allocations, each with its lines and the rule behind every line",
    responses=NOT_FOUND,
)
async def list_allocations(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    year: YearQuery = None,
    rule_set: RuleSetQuery = None,
    party_org_id: uuid.UUID | None = None,
    level: Annotated[str | None, Query(pattern=r"^(committee|general_branch|branch)$")] = None,
    scope: ScopeQuery = None,
) -> Page[AllocationPublic]:
    flt = AllocationFilter(
        region=region, year=year, rule_set_code=rule_set, party_org_id=party_org_id, level=level, scope_code=scope
    )
    return await service.list_page(session, caller=caller, flt=flt, page=page)


@router.get(
    "/allocations.xlsx",
    response_class=Response,
    summary="The allocations as a workbook with Chinese headers: one row per line and a total",
    responses={200: {"content": {XLSX: {}}}, **NOT_FOUND},
)
async def allocations_workbook(
    session: SessionDep,
    caller: Reader,
    region: RegionQuery = None,
    year: YearQuery = None,
    rule_set: RuleSetQuery = None,
    level: Annotated[str | None, Query(pattern=r"^(committee|general_branch|branch)$")] = None,
    scope: ScopeQuery = None,
) -> Response:
    flt = AllocationFilter(region=region, year=year, rule_set_code=rule_set, level=level, scope_code=scope)
    rows = await service.export_rows(session, caller=caller, flt=flt, max_lines=EXPORT_MAX_LINES)
    name = f"funding-{region or caller.region_code}{f'-{year}' if year else ''}.xlsx"
    return Response(
        reports.allocations_xlsx(rows),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
