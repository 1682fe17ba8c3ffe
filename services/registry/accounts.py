"""Staff logins and accounts: the password login (throttled, audited), users and partner API keys.

The password, token and key primitives are `shared.auth` (the CLI creates accounts with them too);
this module adds what the registry's endpoints decide: the login throttle and its audit rows, and
that an admin creates accounts only inside its own jurisdiction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.registry.models import ApiKeyCreate, ApiKeyCreated, TokenResponse, UserCreate, UserPublic
from shared import audit, auth
from shared.auth import Caller
from shared.db import Database
from shared.errors import ProblemError
from shared.limits import check_login, record_login
from shared.models import Role, StaffUser
from shared.settings import get_settings


async def login(
    session: AsyncSession, *, db: Database, redis: Any, username: str, password: str, client: str
) -> TokenResponse:
    """An access token for a right username and password, else 400 `invalid_grant`: the same answer,
    in the same time, for an unknown name, a wrong password and an inactive account. Counted per
    account and address before the password is checked; a failure is audited in a transaction of its
    own (the request's is rolled back), a success in the request's."""
    settings = get_settings()
    await check_login(
        redis, username=username, client=client, max_failures=settings.login_max_failures, lock_s=settings.login_lock_s
    )
    user = (await session.execute(select(StaffUser).where(col(StaffUser.username) == username))).scalar_one_or_none()
    ok = auth.verify_password(user.password_hash if user else None, password)
    succeeded = user is not None and ok and user.is_active
    await record_login(redis, username=username, client=client, succeeded=succeeded, lock_s=settings.login_lock_s)
    if not succeeded or user is None:
        await audit.record_apart(
            db,
            service="registry",
            actor=f"user:{username[:64]}",
            action="login",
            outcome="failed",
            # The account's jurisdiction, so its own auditors see attacks on it; none for an unknown name.
            region_code=user.region_code if user is not None else None,
            client_addr=client,
            detail="no such active user" if user is None or not user.is_active else "wrong password",
        )
        # RFC 6749 §5.2: invalid_grant. The same answer whether or not the user exists.
        raise ProblemError(400, "wrong username or password", code="invalid-grant", error="invalid_grant")
    await audit.record(
        session,
        service="registry",
        actor=f"user:{user.username}",
        action="login",
        object_type="staff_user",
        object_id=str(user.id),
        region_code=user.region_code,
        client_addr=client,
    )
    access_token, lifetime = auth.issue_token(user, settings)
    return TokenResponse(access_token=access_token, expires_in=lifetime)


async def create_user(session: AsyncSession, *, caller: Caller, body: UserCreate) -> UserPublic:
    caller.check_region(body.region_code)
    user = await auth.create_user(
        session,
        username=body.username,
        password=body.password,
        role=body.role,
        region_code=body.region_code,
        display_name=body.display_name,
    )
    return UserPublic(
        id=str(user.id),
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        region_code=user.region_code,
        is_active=user.is_active,
    )


async def create_api_key(session: AsyncSession, *, caller: Caller, body: ApiKeyCreate) -> ApiKeyCreated:
    """The key is in this answer only: the table keeps an HMAC of it."""
    caller.check_region(body.region_code)
    row, key = await auth.create_api_key(
        session, name=body.name, scopes=body.scopes, region_code=body.region_code, pepper=get_settings().api_key_pepper
    )
    return ApiKeyCreated(id=str(row.id), name=row.name, scopes=row.scopes, region_code=row.region_code, key=key)
