"""Registry endpoints: parse, call the service, return the model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select
from sqlmodel import col

from services.registry import service
from services.registry.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ImportResult,
    RegionImport,
    RegionPublic,
    TokenResponse,
    UserCreate,
    UserPublic,
)
from shared import auth
from shared.auth import Caller, requires
from shared.deps import SessionDep
from shared.errors import PROBLEM_JSON, PROBLEM_RESPONSES, Problem, ProblemError
from shared.models import Role, Scope, StaffUser
from shared.settings import get_settings

RegionCode = Annotated[str, Path(pattern=r"^\d{12}$", examples=["430723000000"])]

auth_router = APIRouter(prefix="/v1/auth", tags=["auth"])
router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


@auth_router.post(
    "/token",
    response_model=TokenResponse,
    summary="Exchange a username and password for an access token (OAuth2 password flow)",
    responses={400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Wrong credentials"}},
)
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep) -> TokenResponse:
    user = (
        await session.execute(select(StaffUser).where(col(StaffUser.username) == form.username))
    ).scalar_one_or_none()
    ok = auth.verify_password(user.password_hash if user else None, form.password)
    if user is None or not ok or not user.is_active:
        # RFC 6749 §5.2: invalid_grant. The same answer whether or not the user exists.
        raise ProblemError(400, "wrong username or password", code="invalid-grant", error="invalid_grant")
    access_token, lifetime = auth.issue_token(user, get_settings())
    return TokenResponse(access_token=access_token, expires_in=lifetime)


@router.post("/regions/import", response_model=ImportResult, tags=["regions"],
             summary="Create or rename regions; each bad record is rejected with its reason")
async def import_regions(
    body: RegionImport, session: SessionDep, caller: Annotated[Caller, requires(Scope.registry_write)]
) -> ImportResult:
    return await service.import_regions(session, caller=caller, records=body.records)


@router.get("/regions/{code}", response_model=RegionPublic, tags=["regions"])
async def get_region(
    code: RegionCode, session: SessionDep, caller: Annotated[Caller, requires(Scope.registry_read)]
) -> RegionPublic:
    return service.to_public(await service.get(session, caller=caller, code=code))


@router.get("/regions/{code}/children", response_model=list[RegionPublic], tags=["regions"])
async def region_children(
    code: RegionCode, session: SessionDep, caller: Annotated[Caller, requires(Scope.registry_read)]
) -> list[RegionPublic]:
    return [service.to_public(r) for r in await service.children(session, caller=caller, code=code)]


@router.post("/users", response_model=UserPublic, status_code=201, tags=["accounts"],
             summary="Create a staff user inside the caller's jurisdiction (admins)")
async def create_user(
    body: UserCreate, session: SessionDep, caller: Annotated[Caller, requires(Scope.admin)]
) -> UserPublic:
    caller.check_region(body.region_code)
    user = await auth.create_user(
        session, username=body.username, password=body.password, role=body.role,
        region_code=body.region_code, display_name=body.display_name,
    )
    return UserPublic(
        id=str(user.id), username=user.username, display_name=user.display_name, role=Role(user.role),
        region_code=user.region_code, is_active=user.is_active,
    )


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["accounts"],
             summary="Create a partner API key inside the caller's jurisdiction (admins)")
async def create_api_key(
    body: ApiKeyCreate, session: SessionDep, caller: Annotated[Caller, requires(Scope.admin)]
) -> ApiKeyCreated:
    caller.check_region(body.region_code)
    row, key = await auth.create_api_key(
        session, name=body.name, scopes=body.scopes, region_code=body.region_code,
        pepper=get_settings().api_key_pepper,
    )
    return ApiKeyCreated(id=str(row.id), name=row.name, scopes=row.scopes, region_code=row.region_code, key=key)
