"""Staff logins and accounts: the password login (throttled, audited), users and partner API keys.

The password, token and key primitives are `shared.auth` (the CLI creates accounts with them too);
this module adds what the registry's endpoints decide: the login throttle and its audit rows, and
that an admin creates accounts only inside its own jurisdiction."""

from __future__ import annotations

import hmac
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.registry.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    DeviceLogin,
    DevicePublic,
    DeviceTokenResponse,
    TokenResponse,
    UserCreate,
    UserPublic,
)
from shared import audit, auth
from shared.auth import Caller
from shared.db import Database
from shared.errors import ProblemError, not_found
from shared.limits import check_login, record_login
from shared.models import Role, StaffDevice, StaffUser, utcnow
from shared.settings import get_settings
from shared.visible import load


async def login(
    session: AsyncSession, *, db: Database, redis: Any, username: str, password: str, client: str
) -> TokenResponse:
    """An access token for a right username and password, else 400 `invalid_grant`: the same answer,
    in the same time, for an unknown name, a wrong password and an inactive account. Counted per
    account and address before the password is checked; a failure is audited in a transaction of its
    own (the request's is rolled back), a success in the request's."""
    user = await authenticate(session, db=db, redis=redis, username=username, password=password, client=client)
    access_token, lifetime = auth.issue_token(user, get_settings())
    return TokenResponse(access_token=access_token, expires_in=lifetime)


async def authenticate(
    session: AsyncSession, *, db: Database, redis: Any, username: str, password: str, client: str
) -> StaffUser:
    """The user a right username and password name (throttled and audited as `login` says)."""
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
    return user


# ---- phones: refresh tokens bound to a registered device -----------------------------------------


def device_public(row: StaffDevice) -> DevicePublic:
    return DevicePublic.model_validate(row, from_attributes=True)


async def _tokens(session: AsyncSession, user: StaffUser, device: StaffDevice) -> DeviceTokenResponse:
    """A new access token and a new refresh token for the device (the previous refresh token dies)."""
    settings = get_settings()
    refresh, digest = auth.issue_refresh(device.id, settings.api_key_pepper)
    lifetime = settings.refresh_token_days * 86400
    device.refresh_hash = digest
    device.refresh_expires_at = utcnow() + timedelta(seconds=lifetime)
    await session.flush()
    access, expires_in = auth.issue_token(user, settings, device=device.id)
    return DeviceTokenResponse(
        access_token=access,
        expires_in=expires_in,
        refresh_token=refresh,
        refresh_expires_in=lifetime,
        device=device_public(device),
    )


async def device_login(
    session: AsyncSession, *, db: Database, redis: Any, body: DeviceLogin, client: str
) -> DeviceTokenResponse:
    """Sign in on a phone: the password login, then the phone registered for the user (again, after a
    revocation: a new registration) and tokens bound to it."""
    user = await authenticate(
        session, db=db, redis=redis, username=body.username, password=body.password, client=client
    )
    found = await session.execute(
        select(StaffDevice)
        .where(
            col(StaffDevice.user_id) == user.id,
            col(StaffDevice.device_id) == body.device_id,
            col(StaffDevice.revoked_at).is_(None),
        )
        .with_for_update()
    )
    device = found.scalar_one_or_none()
    if device is None:
        device = StaffDevice(
            user_id=user.id,
            device_id=body.device_id,
            name=body.device_name,
            region_code=user.region_code,
            refresh_hash="",
            refresh_expires_at=utcnow(),
        )
        session.add(device)
    else:
        device.name = body.device_name or device.name
    return await _tokens(session, user, device)


async def refresh(session: AsyncSession, *, token: str) -> DeviceTokenResponse:
    """A new pair for a live device's current refresh token; 401 `device-revoked` for a revoked phone,
    400 `invalid_grant` for anything else (a used, expired or made-up token)."""
    settings = get_settings()
    parts = auth.split_refresh(token)
    device = await session.get(StaffDevice, parts[0], with_for_update=True) if parts else None
    expected = device.refresh_hash if device else auth.hash_api_secret("x", settings.api_key_pepper)
    given = auth.hash_api_secret(parts[1] if parts else token, settings.api_key_pepper)
    matches = hmac.compare_digest(expected, given)
    if device is not None and matches and device.revoked_at is not None:
        raise auth.device_revoked()
    user = await session.get(StaffUser, device.user_id) if device is not None else None
    if device is None or user is None or not user.is_active or not matches or device.refresh_expires_at < utcnow():
        raise ProblemError(
            400, "the refresh token is not valid: sign in again", code="invalid-grant", error="invalid_grant"
        )
    device.last_refreshed_at = utcnow()
    return await _tokens(session, user, device)


async def _user(session: AsyncSession, caller: Caller, user_id: uuid.UUID) -> StaffUser:
    return await load(session, caller, StaffUser, user_id, what="user")


async def devices_of(session: AsyncSession, *, caller: Caller, user_id: uuid.UUID) -> list[DevicePublic]:
    user = await _user(session, caller, user_id)
    found = await session.execute(
        select(StaffDevice)
        .where(col(StaffDevice.user_id) == user.id)
        .order_by(col(StaffDevice.registered_at).desc(), col(StaffDevice.id))
    )
    return [device_public(d) for d in found.scalars()]


async def revoke_device(
    session: AsyncSession, *, caller: Caller, user_id: uuid.UUID, device_id: uuid.UUID
) -> DevicePublic:
    """Cut a phone off: its refresh token dies and its access tokens are refused from the next
    request. Revoking again changes nothing."""
    user = await _user(session, caller, user_id)
    device = await session.get(StaffDevice, device_id, with_for_update=True)
    if device is None or device.user_id != user.id:
        raise not_found("device")
    if device.revoked_at is None:
        device.revoked_at, device.revoked_by = utcnow(), caller.label
        await session.flush()
    return device_public(device)


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
