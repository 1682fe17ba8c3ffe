"""Registry endpoints: parse, call the service, return the model."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, Path, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from fastapi.security import OAuth2PasswordRequestForm

from services.registry import accounts, editing, importing, instructors, ledger, organizations, party_orgs, service
from services.registry.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    AreaCreate,
    AreaKind,
    AreaPublic,
    AreaUpdate,
    AssignmentCreate,
    AssignmentEnd,
    AssignmentPublic,
    ChangeFeed,
    CoveredOrganizations,
    DeviceLogin,
    DevicePublic,
    DeviceTokenResponse,
    Dissolution,
    Formation,
    ImportResult,
    InstructorCreate,
    InstructorPublic,
    LedgerEntry,
    OrganizationCreate,
    OrganizationImport,
    OrganizationImportResult,
    OrganizationPublic,
    OrganizationUpdate,
    OrgKind,
    OrgStatus,
    PartyOrgCreate,
    PartyOrgPublic,
    PartyOrgUpdate,
    RefreshRequest,
    RegionImport,
    RegionPublic,
    TokenResponse,
    UserCreate,
    UserPublic,
)
from services.registry.organizations import OrgFilter
from shared import auth
from shared.auth import Caller, requires
from shared.concurrency import etag
from shared.deps import SessionDep
from shared.errors import PROBLEM_JSON, PROBLEM_RESPONSES, Problem
from shared.models import Scope
from shared.pagination import Page, PageDep
from shared.settings import get_settings

RegionCode = Annotated[str, Path(pattern=r"^\d{12}$", examples=["430723000000"])]
RegionQuery = Annotated[str | None, Query(pattern=r"^\d{12}$", description="Region subtree (default: yours)")]
Reader = Annotated[Caller, requires(Scope.registry_read)]
Writer = Annotated[Caller, requires(Scope.registry_write)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", max_length=200, description="Replays the stored answer when the same batch is re-sent"
    ),
]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag of the version you edited")]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

auth_router = APIRouter(prefix="/v1/auth", tags=["auth"])
router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


@auth_router.post(
    "/token",
    response_model=TokenResponse,
    summary="Exchange a username and password for an access token (OAuth2 password flow)",
    responses={
        400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Wrong credentials"},
        429: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Too many failed logins"},
    },
)
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep
) -> TokenResponse:
    return await accounts.login(
        session,
        db=request.app.state.db,
        redis=request.app.state.redis,
        username=form.username,
        password=form.password,
        client=auth.client_address(request),
    )


@auth_router.post(
    "/device-token",
    response_model=DeviceTokenResponse,
    summary="Sign in on a phone: a short access token and a refresh token bound to the registered device",
    description="The password login (same throttle and answers), then the phone (`device_id`, its own stable id) "
    "is registered for the user, or registered again after an official revoked it. Access tokens issued for a "
    "device are refused from the first request after it is revoked (401 `device-revoked`).",
    responses={
        400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Wrong credentials"},
        429: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Too many failed logins"},
    },
)
async def device_token(request: Request, body: DeviceLogin, session: SessionDep) -> DeviceTokenResponse:
    return await accounts.device_login(
        session, db=request.app.state.db, redis=request.app.state.redis, body=body, client=auth.client_address(request)
    )


@auth_router.post(
    "/refresh",
    response_model=DeviceTokenResponse,
    summary="Exchange a device's refresh token for a new access token and a new refresh token",
    description="Each refresh token works once (the answer carries the next). A revoked device gets 401 "
    "`device-revoked`: the phone must sign in again; its unsent visits stay on it.",
    responses={
        400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Not a current refresh token"},
        401: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "The device was revoked"},
    },
)
async def refresh_token(body: RefreshRequest, session: SessionDep) -> DeviceTokenResponse:
    return await accounts.refresh(session, token=body.refresh_token)


# ---- regions and areas -----------------------------------------------------------------


@router.post(
    "/regions/import",
    response_model=ImportResult,
    tags=["regions"],
    summary="Create or rename regions; each bad record is rejected with its reason",
)
async def import_regions(body: RegionImport, session: SessionDep, caller: Writer) -> ImportResult:
    return await service.import_regions(session, caller=caller, records=body.records)


@router.get("/regions/{code}", response_model=RegionPublic, tags=["regions"])
async def get_region(code: RegionCode, session: SessionDep, caller: Reader) -> RegionPublic:
    return service.to_public(await service.get(session, caller=caller, code=code))


@router.get("/regions/{code}/children", response_model=list[RegionPublic], tags=["regions"])
async def region_children(code: RegionCode, session: SessionDep, caller: Reader) -> list[RegionPublic]:
    return [service.to_public(r) for r in await service.children(session, caller=caller, code=code)]


@router.post(
    "/areas",
    response_model=AreaPublic,
    status_code=201,
    tags=["areas"],
    summary="Register a park, business district, building or market",
)
async def create_area(body: AreaCreate, session: SessionDep, caller: Writer) -> AreaPublic:
    return service.area_public(await service.create_area(session, caller=caller, body=body))


@router.get("/areas", response_model=Page[AreaPublic], tags=["areas"])
async def list_areas(
    session: SessionDep, caller: Reader, page: PageDep, region: RegionQuery = None, kind: AreaKind | None = None
) -> Page[AreaPublic]:
    return await service.list_areas(session, caller=caller, region=region, kind=kind, page=page)


@router.get("/areas/{area_id}", response_model=AreaPublic, tags=["areas"])
async def get_area(area_id: uuid.UUID, session: SessionDep, caller: Reader) -> AreaPublic:
    return service.area_public(await service.get_area(session, caller=caller, area_id=area_id))


@router.patch("/areas/{area_id}", response_model=AreaPublic, tags=["areas"])
async def update_area(area_id: uuid.UUID, body: AreaUpdate, session: SessionDep, caller: Writer) -> AreaPublic:
    return service.area_public(await service.update_area(session, caller=caller, area_id=area_id, body=body))


@router.delete(
    "/areas/{area_id}",
    status_code=204,
    tags=["areas"],
    responses={409: {"model": Problem, "description": "Organizations are still in the area"}},
)
async def delete_area(area_id: uuid.UUID, session: SessionDep, caller: Writer) -> Response:
    await service.delete_area(session, caller=caller, area_id=area_id)
    return Response(status_code=204)


# ---- organizations ---------------------------------------------------------------------


def _with_etag(response: Response, row: dict[str, Any]) -> OrganizationPublic:
    response.headers["ETag"] = etag(row["version"])
    return organizations.to_public(row)


@router.post(
    "/organizations",
    response_model=OrganizationPublic,
    status_code=201,
    tags=["organizations"],
    summary="Register one organization (source: manual)",
    responses={409: {"model": Problem, "description": "The credit code is already registered"}},
)
async def create_organization(
    body: OrganizationCreate, response: Response, session: SessionDep, caller: Writer
) -> OrganizationPublic:
    return _with_etag(response, await editing.create(session, caller=caller, body=body))


@router.get("/organizations", response_model=Page[OrganizationPublic], tags=["organizations"])
async def list_organizations(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    kind: OrgKind | None = None,
    status: OrgStatus | None = None,
    in_scope: bool | None = None,
    area_id: uuid.UUID | None = None,
    industry: Annotated[str | None, Query(pattern=r"^[A-T](\d{2,4})?$")] = None,
    covered: bool | None = None,
) -> Page[OrganizationPublic]:
    flt = OrgFilter(
        region=region, kind=kind, status=status, in_scope=in_scope, area_id=area_id, industry=industry, covered=covered
    )
    return await organizations.list_page(session, caller=caller, flt=flt, page=page)


@router.get("/organizations/by-credit-code/{credit_code}", response_model=OrganizationPublic, tags=["organizations"])
async def get_by_credit_code(
    credit_code: Annotated[str, Path(min_length=18, max_length=18)],
    response: Response,
    session: SessionDep,
    caller: Reader,
) -> OrganizationPublic:
    return _with_etag(response, await organizations.get_row(session, caller=caller, credit_code=credit_code.upper()))


@router.get(
    "/organizations/{org_id}",
    response_model=OrganizationPublic,
    tags=["organizations"],
    summary="One organization; its ETag header is what PATCH needs in If-Match",
)
async def get_organization(
    org_id: uuid.UUID, response: Response, session: SessionDep, caller: Reader
) -> OrganizationPublic:
    return _with_etag(response, await organizations.get_row(session, caller=caller, org_id=org_id))


@router.patch(
    "/organizations/{org_id}",
    response_model=OrganizationPublic,
    tags=["organizations"],
    summary="Change the fields sent; needs If-Match, and a status change needs status_reason",
    responses={
        412: {"model": Problem, "description": "Changed by someone else since you read it"},
        428: {"model": Problem, "description": "If-Match missing, or `*`"},
    },
)
async def update_organization(
    org_id: uuid.UUID,
    body: OrganizationUpdate,
    response: Response,
    session: SessionDep,
    caller: Writer,
    if_match: IfMatch = None,
) -> OrganizationPublic:
    row = await editing.update(session, caller=caller, org_id=org_id, body=body, if_match=if_match)
    return _with_etag(response, row)


@router.get(
    "/organizations/{org_id}/history",
    response_model=Page[LedgerEntry],
    tags=["organizations"],
    summary="Every change to the organization: source, caller, time, fields before and after",
)
async def organization_history(
    org_id: uuid.UUID, session: SessionDep, caller: Reader, page: PageDep
) -> Page[LedgerEntry]:
    return await organizations.history(session, caller=caller, org_id=org_id, page=page)


@router.post(
    "/organizations/import",
    response_model=OrganizationImportResult,
    tags=["imports"],
    summary="Upsert up to 10,000 organizations by credit code; bad rows are rejected one by one",
)
async def import_organizations(
    request: Request,
    body: OrganizationImport,
    session: SessionDep,
    caller: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrganizationImportResult:
    digest = importing.request_hash(await request.body(), dry_run=body.dry_run)
    result, replayed = await importing.run_import(
        session,
        caller=caller,
        records=body.records,
        dry_run=body.dry_run,
        idempotency_key=idempotency_key,
        digest=digest,
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.post(
    "/organizations/import/file",
    tags=["imports"],
    summary="The same import from a CSV or XLSX file (field names or Chinese labels as headers)",
    response_model=OrganizationImportResult,
    responses={
        200: {"content": {XLSX: {}}, "description": "JSON answer, or the annotated workbook when asked"},
        413: {
            "model": Problem,
            "description": "File too large, unpacking to too much, or taking longer than the time limit to read",
        },
        415: {"model": Problem, "description": "Not a CSV or XLSX file"},
    },
)
async def import_organizations_file(
    session: SessionDep,
    caller: Writer,
    file: Annotated[UploadFile, File(description=".csv or .xlsx")],
    dry_run: Annotated[bool, Form()] = False,
    annotate: Annotated[bool, Form(description="Answer with the workbook, errors marked in Chinese")] = False,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    result, replayed, workbook = await importing.run_file_import(
        session,
        caller=caller,
        filename=file.filename or "",
        content_type=file.content_type,
        data=await file.read(get_settings().upload_max_bytes + 1),
        dry_run=dry_run,
        annotate=annotate,
        idempotency_key=idempotency_key,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if workbook is not None:
        headers.update(
            {
                "Content-Disposition": f'attachment; filename="import-{result.batch_id}.xlsx"',
                "X-Import-Created": str(result.created),
                "X-Import-Updated": str(result.updated),
                "X-Import-Unchanged": str(result.unchanged),
                "X-Import-Rejected": str(result.rejected),
            }
        )
        return Response(content=workbook, media_type=XLSX, headers=headers)
    return Response(content=result.model_dump_json(), media_type="application/json", headers=headers)


# ---- change feed and ledger ------------------------------------------------------------


@router.get(
    "/changes",
    response_model=ChangeFeed,
    tags=["changes"],
    summary="Organization and party-org changes in commit order, without gaps or repeats",
)
async def change_feed(
    session: SessionDep,
    caller: Reader,
    after: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the last call")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangeFeed:
    return await organizations.changes(session, caller=caller, after=after, limit=limit)


@router.get(
    "/ledger.xlsx",
    tags=["ledger"],
    response_class=StreamingResponse,
    summary="The ledger (台账): one row per organization, Chinese headers, filters on",
    responses={200: {"content": {XLSX: {}}}, 413: {"model": Problem}},
)
async def ledger_xlsx(
    session: SessionDep, caller: Reader, region: RegionQuery = None, kind: OrgKind | None = None
) -> StreamingResponse:
    out = await ledger.xlsx(session, caller=caller, region=region, kind=kind)
    name = f"ledger-{region or caller.region_code}.xlsx"
    return StreamingResponse(out, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get(
    "/ledger.csv",
    tags=["ledger"],
    response_class=StreamingResponse,
    summary="The same ledger as CSV (UTF-8 with BOM)",
    responses={200: {"content": {"text/csv": {}}}},
)
async def ledger_csv(
    session: SessionDep, caller: Reader, region: RegionQuery = None, kind: OrgKind | None = None
) -> StreamingResponse:
    out = await ledger.csv_file(session, caller=caller, region=region, kind=kind)
    name = f"ledger-{region or caller.region_code}.csv"
    return StreamingResponse(
        out, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


# ---- party organizations ---------------------------------------------------------------


@router.post(
    "/party-orgs",
    response_model=PartyOrgPublic,
    status_code=201,
    tags=["party organizations"],
    responses={409: {"model": Problem, "description": "An organization is covered by another party org"}},
)
async def establish_party_org(
    body: PartyOrgCreate, response: Response, session: SessionDep, caller: Writer
) -> PartyOrgPublic:
    row = await party_orgs.establish(session, caller=caller, body=body)
    response.headers["ETag"] = etag(row["version"])
    return await party_orgs.to_public(session, row)


@router.get("/party-orgs", response_model=Page[PartyOrgPublic], tags=["party organizations"])
async def list_party_orgs(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    formation: Formation | None = None,
    active: bool | None = None,
) -> Page[PartyOrgPublic]:
    return await party_orgs.list_page(
        session, caller=caller, region=region, formation=formation, active=active, page=page
    )


@router.get("/party-orgs/{party_org_id}", response_model=PartyOrgPublic, tags=["party organizations"])
async def get_party_org(
    party_org_id: uuid.UUID, response: Response, session: SessionDep, caller: Reader
) -> PartyOrgPublic:
    row = await party_orgs.get(session, caller=caller, party_org_id=party_org_id)
    response.headers["ETag"] = etag(row["version"])
    return await party_orgs.to_public(session, row)


@router.patch(
    "/party-orgs/{party_org_id}",
    response_model=PartyOrgPublic,
    tags=["party organizations"],
    responses={412: {"model": Problem}, 428: {"model": Problem}},
)
async def update_party_org(
    party_org_id: uuid.UUID,
    body: PartyOrgUpdate,
    response: Response,
    session: SessionDep,
    caller: Writer,
    if_match: IfMatch = None,
) -> PartyOrgPublic:
    row = await party_orgs.update(session, caller=caller, party_org_id=party_org_id, body=body, if_match=if_match)
    response.headers["ETag"] = etag(row["version"])
    return await party_orgs.to_public(session, row)


@router.put(
    "/party-orgs/{party_org_id}/covered-organizations",
    response_model=PartyOrgPublic,
    tags=["party organizations"],
    summary="Replace the organizations the party organization covers",
)
async def set_covered(
    party_org_id: uuid.UUID, body: CoveredOrganizations, session: SessionDep, caller: Writer
) -> PartyOrgPublic:
    row = await party_orgs.change_coverage(session, caller=caller, party_org_id=party_org_id, body=body)
    return await party_orgs.to_public(session, row)


@router.post("/party-orgs/{party_org_id}/dissolve", response_model=PartyOrgPublic, tags=["party organizations"])
async def dissolve_party_org(
    party_org_id: uuid.UUID, body: Dissolution, session: SessionDep, caller: Writer
) -> PartyOrgPublic:
    row = await party_orgs.dissolve(session, caller=caller, party_org_id=party_org_id, body=body)
    return await party_orgs.to_public(session, row)


# ---- instructors -----------------------------------------------------------------------


@router.post("/instructors", response_model=InstructorPublic, status_code=201, tags=["instructors"])
async def create_instructor(body: InstructorCreate, session: SessionDep, caller: Writer) -> InstructorPublic:
    return instructors.to_public(await instructors.create(session, caller=caller, body=body), caller)


@router.get("/instructors", response_model=Page[InstructorPublic], tags=["instructors"])
async def list_instructors(
    session: SessionDep,
    caller: Reader,
    page: PageDep,
    region: RegionQuery = None,
    citizen_id: Annotated[str | None, Query(min_length=18, max_length=18, description="find by ID number")] = None,
) -> Page[InstructorPublic]:
    found = await instructors.list_page(session, caller=caller, region=region, page=page, citizen_id=citizen_id)
    return Page[InstructorPublic](
        items=[instructors.to_public(r, caller) for r in found.items], next_cursor=found.next_cursor
    )


@router.get("/instructors/{instructor_id}", response_model=InstructorPublic, tags=["instructors"])
async def get_instructor(instructor_id: uuid.UUID, session: SessionDep, caller: Reader) -> InstructorPublic:
    return instructors.to_public(await instructors.get(session, caller=caller, instructor_id=instructor_id), caller)


@router.post(
    "/instructors/{instructor_id}/assignments",
    response_model=AssignmentPublic,
    status_code=201,
    tags=["instructors"],
    summary="Assign the instructor to an organization from a start date",
)
async def assign_instructor(
    instructor_id: uuid.UUID, body: AssignmentCreate, session: SessionDep, caller: Writer
) -> AssignmentPublic:
    row = await instructors.assign(session, caller=caller, instructor_id=instructor_id, body=body)
    return AssignmentPublic.model_validate(row)


@router.post("/instructor-assignments/{assignment_id}/end", response_model=AssignmentPublic, tags=["instructors"])
async def end_assignment(
    assignment_id: uuid.UUID, body: AssignmentEnd, session: SessionDep, caller: Writer
) -> AssignmentPublic:
    return AssignmentPublic.model_validate(
        await instructors.end(session, caller=caller, assignment_id=assignment_id, body=body)
    )


# ---- accounts --------------------------------------------------------------------------


@router.post(
    "/users",
    response_model=UserPublic,
    status_code=201,
    tags=["accounts"],
    summary="Create a staff user inside the caller's jurisdiction (admins)",
)
async def create_user(
    body: UserCreate, session: SessionDep, caller: Annotated[Caller, requires(Scope.admin)]
) -> UserPublic:
    return await accounts.create_user(session, caller=caller, body=body)


@router.get(
    "/users/{user_id}/devices",
    response_model=list[DevicePublic],
    tags=["accounts"],
    summary="The phones a user signed in on, revoked ones included (officials)",
)
async def list_devices(
    user_id: uuid.UUID,
    session: SessionDep,
    caller: Annotated[Caller, requires(Scope.registry_read, officials_only=True)],
) -> list[DevicePublic]:
    return await accounts.devices_of(session, caller=caller, user_id=user_id)


@router.post(
    "/users/{user_id}/devices/{device_id}:revoke",
    response_model=DevicePublic,
    tags=["accounts"],
    summary="Cut a lost phone off: its next request is refused and it must sign in again (officials)",
)
async def revoke_device(
    user_id: uuid.UUID,
    device_id: uuid.UUID,
    session: SessionDep,
    caller: Annotated[Caller, requires(Scope.registry_write, officials_only=True)],
) -> DevicePublic:
    return await accounts.revoke_device(session, caller=caller, user_id=user_id, device_id=device_id)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    tags=["accounts"],
    summary="Create a partner API key inside the caller's jurisdiction (admins)",
)
async def create_api_key(
    body: ApiKeyCreate, session: SessionDep, caller: Annotated[Caller, requires(Scope.admin)]
) -> ApiKeyCreated:
    return await accounts.create_api_key(session, caller=caller, body=body)
