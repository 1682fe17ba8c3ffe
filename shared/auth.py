"""Who is calling and what they may touch: passwords, tokens, API keys, the caller dependency."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from shared import refusals, regions
from shared.db import set_context
from shared.deps import SessionDep
from shared.errors import PROBLEM_RESPONSES, ProblemError, invalid
from shared.limits import check_rate
from shared.logging import request_id_var
from shared.models import (
    PARTNER_SCOPES,
    ROLE_SCOPES,
    ApiKey,
    Region,
    Role,
    StaffDevice,
    StaffUser,
    utcnow,
)
from shared.settings import Settings, get_settings

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "liangxin"
JWT_AUDIENCE = "liangxin"
# Clock difference tolerated between the services when checking a token's dates.
CLOCK_LEEWAY_S = 60

_hasher = PasswordHasher()
# Verifying against this when a username is unknown keeps login timing uniform.
_DUMMY_HASH = _hasher.hash("liangxin-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        ok = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


def hash_api_secret(secret: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def split_api_key(key: str) -> tuple[str, str] | None:
    """`lx_<prefix>_<secret>` → (prefix, secret)."""
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != "lx" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def issue_token(user: StaffUser, settings: Settings, *, device: uuid.UUID | None = None) -> tuple[str, int]:
    """A signed access token for a staff user and its lifetime in seconds; `device` binds it to a
    registered phone (`staff_device.id`), which is checked on every request."""
    lifetime = settings.access_token_minutes * 60
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "name": user.username,
        "role": str(user.role),
        "region": user.region_code,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + timedelta(seconds=lifetime),
        "jti": uuid.uuid4().hex,
    }
    if device is not None:
        claims["dev"] = str(device)
    return jwt.encode(claims, settings.jwt_secret, algorithm=JWT_ALGORITHM), lifetime


REFRESH_PREFIX = "lxr"


def issue_refresh(device: uuid.UUID, pepper: str) -> tuple[str, str]:
    """A refresh token for a registered device (`lxr_<device>_<secret>`) and the HMAC to store."""
    secret = secrets.token_urlsafe(32).replace("_", "-")
    return f"{REFRESH_PREFIX}_{device.hex}_{secret}", hash_api_secret(secret, pepper)


def split_refresh(token: str) -> tuple[uuid.UUID, str] | None:
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != REFRESH_PREFIX or not parts[2]:
        return None
    try:
        return uuid.UUID(hex=parts[1]), parts[2]
    except ValueError:
        return None


def device_revoked() -> ProblemError:
    """What a phone hears once an official revoked it: sign in again (its unsent visits are safe)."""
    return ProblemError(
        401,
        "此设备已被停用，请重新登录；尚未上传的走访记录保留在手机上，重新登录后再上传。"
        " This device was revoked: sign in again; visits not yet sent stay on the phone and are accepted after "
        "you sign in.",
        code="device-revoked",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a request and the region subtree it may touch."""

    kind: Literal["user", "api_key", "system"]
    id: uuid.UUID
    name: str
    region_code: str
    scopes: frozenset[str]
    role: Role | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def region_prefix(self) -> str:
        return regions.prefix(self.region_code)

    def can_see(self, region_code: str | None) -> bool:
        return region_code is not None and regions.contains(self.region_code, region_code)

    def subtree(self, column: Any) -> Any:
        """SQL condition confining `column` (a region code) to this caller's jurisdiction."""
        return regions.subtree_filter(column, self.region_code)

    def check_region(self, region_code: str, *, what: str = "region") -> None:
        """404 for anything outside the jurisdiction (or not a region code): never confirm that it
        exists. The attempt is noted for the audit log (`shared.refusals`)."""
        if not regions.is_valid_code(region_code) or not self.can_see(region_code):
            refusals.suspect("region", region_code)
            raise ProblemError(404, f"{what} not found", code="not-found")

    @property
    def label(self) -> str:
        """What audit rows and ledger history record as the actor."""
        return f"{self.kind}:{self.name}"


def system_caller(job: str) -> Caller:
    """The caller scheduled jobs act as: the whole country, every permission."""
    return Caller(
        kind="system",
        id=uuid.UUID(int=0),
        name=job,
        region_code=regions.ROOT_CODE,
        scopes=ROLE_SCOPES[Role.admin],
        role=None,
    )


_bearer = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Partner API key (lx_<prefix>_<secret>)")


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, code="unauthorized", headers={"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'}
    )


async def get_caller(
    request: Request,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Caller:
    settings = get_settings()
    if bearer is not None and bearer.credentials:
        caller = await _caller_from_token(session, bearer.credentials, settings)
    elif api_key:
        caller = await _caller_from_api_key(session, api_key, settings)
    else:
        raise _unauthorized("authentication required: send a bearer token or an X-API-Key header")
    request.state.caller = caller
    limit = settings.api_key_rate_limit_per_minute if caller.kind == "api_key" else settings.rate_limit_per_minute
    await check_rate(request.app.state.redis, f"{caller.kind}:{caller.id}", limit)
    await set_context(
        session,
        actor=caller.label,
        region_prefix=caller.region_prefix,
        request_id=request_id_var.get(),
        client_addr=client_address(request),
    )
    return caller


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _caller_from_token(session: SessionDep, token: str, settings: Settings) -> Caller:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            options={"require": ["exp", "sub", "iat"]},
        )
        user_id = uuid.UUID(claims["sub"])
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the access token has expired") from None
    except (jwt.InvalidTokenError, ValueError, KeyError):
        raise _unauthorized("the access token is not valid") from None
    # The lifetime is the server's to decide: a token signed to live longer than the configured
    # lifetime (or dated in the future) was not issued here, whoever holds the key.
    now = utcnow().timestamp()
    if claims["exp"] - claims["iat"] > settings.access_token_minutes * 60 + CLOCK_LEEWAY_S or (
        claims["iat"] > now + CLOCK_LEEWAY_S
    ):
        raise _unauthorized("the access token is not valid")
    # Role, jurisdiction and deactivation take effect at once, not at token expiry.
    user = await session.get(StaffUser, user_id)
    if user is None or not user.is_active:
        raise _unauthorized("the account behind this token is not active")
    extra: dict[str, Any] = {}
    if "dev" in claims:
        # A phone's token: refused from the first request after an official revoked the phone.
        try:
            device = await session.get(StaffDevice, uuid.UUID(str(claims["dev"])))
        except ValueError:
            raise _unauthorized("the access token is not valid") from None
        if device is None or device.user_id != user.id or device.revoked_at is not None:
            raise device_revoked()
        extra = {"device": device.id, "device_id": device.device_id}
    return Caller(
        kind="user",
        id=user.id,
        name=user.username,
        region_code=user.region_code,
        scopes=ROLE_SCOPES[Role(user.role)],
        role=Role(user.role),
        extra=extra,
    )


async def _caller_from_api_key(session: SessionDep, key: str, settings: Settings) -> Caller:
    parts = split_api_key(key)
    if parts is None:
        raise _unauthorized("the API key is not valid")
    row = (
        await session.execute(select(ApiKey).where(ApiKey.key_prefix == parts[0]))  # type: ignore[arg-type]
    ).scalar_one_or_none()
    expected = row.key_hash if row else hash_api_secret("x", settings.api_key_pepper)
    given = hash_api_secret(parts[1], settings.api_key_pepper)
    if row is None or not hmac.compare_digest(expected, given) or not row.is_active:
        raise _unauthorized("the API key is not valid")
    return Caller(
        kind="api_key",
        id=row.id,
        name=row.name,
        region_code=row.region_code,
        scopes=frozenset(row.scopes) & frozenset(PARTNER_SCOPES),
    )


CallerDep = Annotated[Caller, Depends(get_caller)]


def requires(scope: str, *, officials_only: bool = False) -> Any:
    """Dependency: an authenticated caller holding `scope`, else 401 / 403.

    `officials_only`: a decision reserved to staff accounts (verifying a field visit, approving
    an assessment, …); a partner API key is refused whatever scopes it holds. Published as
    `x-officials-only: true` so partners see it and the authorization suite proves it."""

    async def check(caller: CallerDep) -> Caller:
        if scope not in caller.scopes:
            raise ProblemError(
                403,
                f"this operation needs the {scope} permission",
                code="forbidden",
                required_scope=scope,
            )
        if officials_only and caller.kind != "user":
            raise ProblemError(
                403,
                "only officials may do this (a staff account's bearer token); partner API keys may not",
                code="officials-only",
                required_scope=scope,
            )
        return caller

    check.__name__ = f"requires_{scope.replace(':', '_')}" + ("_official" if officials_only else "")
    check.required_scope = scope  # type: ignore[attr-defined]  # published as x-required-scopes
    check.officials_only = officials_only  # type: ignore[attr-defined]  # published as x-officials-only
    return Depends(check)


def officials_only(dependant: Any) -> bool:
    """Whether a route's dependencies reserve it to officials (see `requires`)."""
    return any(getattr(sub.call, "officials_only", False) or officials_only(sub) for sub in dependant.dependencies)


def required_scopes(dependant: Any) -> list[str]:
    """The scopes a route's dependencies demand (see `requires`), for its OpenAPI operation."""
    found = []
    for sub in dependant.dependencies:
        if (scope := getattr(sub.call, "required_scope", None)) is not None:
            found.append(scope)
        found.extend(required_scopes(sub))
    return sorted(set(found))


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: Role,
    region_code: str,
    display_name: str = "",
) -> StaffUser:
    await _check_region(session, region_code)
    existing = await session.execute(select(StaffUser).where(col(StaffUser.username) == username))
    if existing.first() is not None:
        raise invalid("username", f"a user named {username!r} already exists")
    if len(password) < 10:
        raise invalid("password", "must be at least 10 characters")
    user = StaffUser(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        region_code=region_code,
    )
    session.add(user)
    await session.flush()
    return user


async def create_api_key(
    session: AsyncSession, *, name: str, scopes: list[str], region_code: str, pepper: str
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is shown once and never stored."""
    unknown = sorted(set(scopes) - {s.value for s in PARTNER_SCOPES})
    if unknown or not scopes:
        raise invalid("scopes", f"unknown or staff-only scopes: {', '.join(unknown) or '(none given)'}")
    await _check_region(session, region_code)
    key_prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    row = ApiKey(
        name=name,
        key_prefix=key_prefix,
        key_hash=hash_api_secret(secret, pepper),
        scopes=sorted(set(scopes)),
        region_code=region_code,
    )
    session.add(row)
    await session.flush()
    return row, f"lx_{key_prefix}_{secret}"


async def _check_region(session: AsyncSession, region_code: str) -> None:
    if not regions.is_valid_code(region_code):
        raise invalid("region_code", "must be a 12-digit region code")
    if await session.get(Region, region_code) is None:
        raise invalid("region_code", f"region {region_code} does not exist; import it first")


class CallerPublic(BaseModel):
    kind: Literal["user", "api_key", "system"]
    name: str
    role: Role | None
    region_code: str
    scopes: list[str]


def whoami_router() -> APIRouter:
    """`GET /v1/auth/me` on every service: proves the service accepts the credentials."""
    router = APIRouter(prefix="/v1/auth", tags=["auth"])

    @router.get(
        "/me", response_model=CallerPublic, summary="Who the credentials belong to", responses=PROBLEM_RESPONSES
    )
    async def me(caller: CallerDep) -> CallerPublic:
        return CallerPublic(
            kind=caller.kind,
            name=caller.name,
            role=caller.role,
            region_code=caller.region_code,
            scopes=sorted(caller.scopes),
        )

    return router
