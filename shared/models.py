"""Reference tables every service reads: the region tree, staff users and partner API keys.

The registry owns and writes them (it imports regions, issues tokens, and creates users and
keys through its endpoints or the `liangxin` CLI); the other services only read them, to
resolve jurisdictions and to check that a caller still exists and is active.
"""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from shared.db import metadata
from shared.regions import ROOT_CODE

ROOT_REGION = ROOT_CODE

# Region codes compare byte-wise, so `LIKE '4307%'` subtree filters can use btree indexes.
RegionCodeType = String(12, collation="C")


def region_code_column(
    *, primary_key: bool = False, nullable: bool = False, fk: bool = True, index: bool = False
) -> Any:
    args = [ForeignKey("region.code")] if fk else []
    return Column(RegionCodeType, *args, primary_key=primary_key, nullable=nullable, index=index)


def timestamp_column(*, nullable: bool = False) -> Any:
    """A timestamptz; one that must always hold a time defaults to now()."""
    return Column(DateTime(timezone=True), nullable=nullable, server_default=None if nullable else func.now())


__all__ = ["metadata"]


class Role(StrEnum):
    admin = "admin"
    officer = "officer"
    surveyor = "surveyor"
    auditor = "auditor"


class Scope(StrEnum):
    registry_read = "registry:read"
    registry_write = "registry:write"
    coverage_read = "coverage:read"
    coverage_write = "coverage:write"
    evaluation_read = "evaluation:read"
    evaluation_write = "evaluation:write"
    mobile = "mobile"
    # Held by staff roles only; never granted to partner keys.
    audit_read = "audit:read"
    pii_read = "pii:read"
    admin = "admin"


PARTNER_SCOPES = frozenset(
    {
        Scope.registry_read,
        Scope.registry_write,
        Scope.coverage_read,
        Scope.coverage_write,
        Scope.evaluation_read,
        Scope.evaluation_write,
        Scope.mobile,
    }
)
_READ = {Scope.registry_read, Scope.coverage_read, Scope.evaluation_read}
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.admin: frozenset(Scope),
    Role.officer: frozenset(_READ | {Scope.registry_write, Scope.coverage_write, Scope.evaluation_write}),
    Role.surveyor: frozenset({Scope.mobile}),
    Role.auditor: frozenset(_READ | {Scope.audit_read}),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Region(SQLModel, table=True):
    """The region tree (行政区划). Written by the registry, read by every service."""

    __tablename__ = "region"

    code: str = Field(sa_column=region_code_column(primary_key=True, fk=False))
    name: str = Field(max_length=100)
    level: int = Field(ge=0, le=5)
    parent_code: str | None = Field(default=None, sa_column=region_code_column(nullable=True, index=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_user"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(default="", max_length=100)
    password_hash: str = Field(max_length=200)
    role: Role = Field(sa_column=Column(String(16), nullable=False))
    region_code: str = Field(sa_column=region_code_column())
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100)
    # The public part of the key, used to find the row; only an HMAC of the secret is kept.
    key_prefix: str = Field(max_length=16, unique=True)
    key_hash: str = Field(max_length=64)
    scopes: list[str] = Field(sa_column=Column(ARRAY(String(32)), nullable=False))
    region_code: str = Field(sa_column=region_code_column())
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class StaffDevice(SQLModel, table=True):
    """A phone a staff user signed in on: its refresh token (an HMAC of it) and whether an official
    revoked it. Access tokens issued for it name it (`dev`), so a revoked phone is refused at once."""

    __tablename__ = "staff_device"
    __table_args__ = (
        # One live registration per user and phone; a revoked one stays, for the record.
        Index("uq_staff_device_live", "user_id", "device_id", unique=True, postgresql_where=text("revoked_at IS NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(sa_column=Column(ForeignKey("staff_user.id"), nullable=False, index=True))
    device_id: str = Field(max_length=100, description="the phone's own id")
    name: str = Field(default="", max_length=100)
    # The user's jurisdiction when the phone signed in: who may list and revoke it, and the audit row's region.
    region_code: str = Field(sa_column=region_code_column())
    refresh_hash: str = Field(max_length=64)
    refresh_expires_at: datetime = Field(sa_column=timestamp_column())
    registered_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    last_refreshed_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    revoked_by: str | None = Field(default=None, max_length=120)
