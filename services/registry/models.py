"""Registry tables and I/O schemas.

How the registry reads and writes (chosen, not drifted into): organizations, party organizations,
instructors and the ledger are written set-based (the merge's staging table and one statement for
10,000 imported rows, COPY for ledger lines, coverage changes over arrays), and the same rows, as
mappings, feed their facts, events and ledger lines; so their logic works on mappings, and its
reads are built on these classes' tables (`select(Organization.__table__)`: `shared.visible.load_row`,
`queries.list_visible`) or, where the work is set-based, in SQL. Regions, areas, accounts and import
batches are single objects: the ORM loads and saves them. Every table class here is the schema's one
definition (Alembic's metadata: `alembic check` compares the migrations with it), including those
no query names."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import JSON, BigInteger, Column, Date, ForeignKey, Identity, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from shared.codes import citizen_id_problem, credit_code_problem
from shared.models import Region, Role, region_code_column, timestamp_column, utcnow
from shared.rules import Formation, OrgKind
from shared.schemas import NullHiddenFromSchema, PerItem, RequestModel

__all__ = ["Formation", "OrgKind", "Region"]


# ---- vocabularies -----------------------------------------------------------------------


class OrgStatus(StrEnum):
    active = "active"
    zombie = "zombie"
    closed = "closed"
    deregistered = "deregistered"
    relocated = "relocated"


class RegistrationAuthority(StrEnum):
    market_regulation = "market_regulation"
    civil_affairs = "civil_affairs"
    justice = "justice"
    education = "education"
    health = "health"
    other = "other"


class Sector(StrEnum):
    """Sectors with a supervising department: their party organizations are built by industry."""

    private_school = "private_school"
    private_hospital = "private_hospital"
    law_firm = "law_firm"
    accounting_firm = "accounting_firm"


class SocialOrgLevel(StrEnum):
    national = "national"
    province = "province"
    city = "city"
    county = "county"


class PoliticalStatus(StrEnum):
    party_member = "party_member"
    probationary_member = "probationary_member"
    masses = "masses"
    other = "other"


class AreaKind(StrEnum):
    park = "park"
    business_district = "business_district"
    building = "building"
    market = "market"


class PartyOrgLevel(StrEnum):
    committee = "committee"
    general_branch = "general_branch"
    branch = "branch"


class InstructorKind(StrEnum):
    full_time = "full_time"
    part_time = "part_time"


class InstructorSource(StrEnum):
    dispatched_official = "dispatched_official"
    retired_official = "retired_official"
    public_recruitment = "public_recruitment"


class ChangeSource(StrEnum):
    partner_import = "partner_import"
    visit = "visit"
    manual = "manual"
    system = "system"


def _enum_column(enum: type[StrEnum], *, nullable: bool = False, default: str | None = None) -> Any:
    width = max(len(m.value) for m in enum)
    return Column(String(max(width, 8)), nullable=nullable, server_default=default)


# ---- tables ----------------------------------------------------------------------------


class Area(SQLModel, table=True):
    """A park, business district, building or market (园区 / 商圈 / 楼宇 / 专业市场)."""

    __tablename__ = "area"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    name: str = SQLField(max_length=200)
    kind: AreaKind = SQLField(sa_column=_enum_column(AreaKind))
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class Organization(SQLModel, table=True):
    """A two-new organization (两新组织): one row per organization, one ledger line (一企一表)."""

    __tablename__ = "organization"
    __table_args__ = (
        Index(
            "uq_organization_credit_code", "credit_code", unique=True, postgresql_where=text("credit_code IS NOT NULL")
        ),
        Index("ix_organization_region_kind", "region_code", "kind"),
        Index("ix_organization_party_org_id", "party_org_id", postgresql_where=text("party_org_id IS NOT NULL")),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    credit_code: str | None = SQLField(default=None, sa_column=Column(String(18, collation="C")))
    name: str = SQLField(max_length=200)
    kind: OrgKind = SQLField(sa_column=_enum_column(OrgKind))
    region_code: str = SQLField(sa_column=region_code_column())
    area_id: uuid.UUID | None = SQLField(default=None, sa_column=Column(ForeignKey("area.id"), index=True))
    industry_code: str | None = SQLField(default=None, max_length=5, index=True)
    registration_authority: RegistrationAuthority | None = SQLField(
        default=None, sa_column=_enum_column(RegistrationAuthority, nullable=True)
    )
    sector: Sector | None = SQLField(default=None, sa_column=_enum_column(Sector, nullable=True))
    address: str | None = SQLField(default=None, max_length=300)
    status: OrgStatus = SQLField(sa_column=_enum_column(OrgStatus, default="active"))
    status_reason: str | None = SQLField(default=None, sa_column=Column(Text))
    status_changed_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    employees: int | None = None
    has_fixed_premises: bool | None = None
    has_business_activity: bool | None = None
    social_org_level: SocialOrgLevel | None = SQLField(
        default=None, sa_column=_enum_column(SocialOrgLevel, nullable=True)
    )
    formal_members: int = SQLField(default=0, sa_column_kwargs={"server_default": "0"})
    probationary_members: int = SQLField(default=0, sa_column_kwargs={"server_default": "0"})
    activists: int = SQLField(default=0, sa_column_kwargs={"server_default": "0"})
    floating_members: int = SQLField(default=0, sa_column_kwargs={"server_default": "0"})
    has_trade_union: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    has_youth_league: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    leader_political_status: PoliticalStatus | None = SQLField(
        default=None, sa_column=_enum_column(PoliticalStatus, nullable=True)
    )
    investor_is_party_member: bool | None = None
    charter_includes_party_building: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    # Where it is, from the last verified field visit that carried a GPS fix (WGS 84).
    latitude: float | None = None
    longitude: float | None = None
    # Derived and kept by the registry itself (never written by callers):
    in_scope: bool | None = SQLField(default=None, index=True)
    party_org_id: uuid.UUID | None = SQLField(default=None, sa_column=Column(ForeignKey("party_org.id")))
    instructed: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    version: int = SQLField(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class PartyOrg(SQLModel, table=True):
    """A party organization (党组织) and how it was formed; it covers one or more organizations."""

    __tablename__ = "party_org"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    name: str = SQLField(max_length=200)
    level: PartyOrgLevel = SQLField(sa_column=_enum_column(PartyOrgLevel))
    formation: Formation = SQLField(sa_column=_enum_column(Formation))
    functional: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    superior_id: uuid.UUID | None = SQLField(default=None, sa_column=Column(ForeignKey("party_org.id")))
    # Kind of the organizations it covers, or `mixed` when they differ.
    kind: str = SQLField(max_length=24)
    established_on: date = SQLField(sa_column=Column(Date, nullable=False))
    dissolved_on: date | None = SQLField(default=None, sa_column=Column(Date))
    dissolution_reason: str | None = SQLField(default=None, sa_column=Column(Text))
    secretary_in_management: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    secretary_is_investor: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    active: bool = SQLField(default=True, sa_column_kwargs={"server_default": "true"}, index=True)
    version: int = SQLField(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class Instructor(SQLModel, table=True):
    """A party-building instructor (党建指导员). The phone number is personal data."""

    __tablename__ = "instructor"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    name: str = SQLField(max_length=100)
    kind: InstructorKind = SQLField(sa_column=_enum_column(InstructorKind))
    source: InstructorSource = SQLField(sa_column=_enum_column(InstructorSource))
    phone: str | None = SQLField(default=None, max_length=20)
    # Citizen ID number (PIPL): only a keyed hash, to find the person again, and the last four.
    citizen_id_hash: str | None = SQLField(default=None, max_length=64, index=True)
    citizen_id_last4: str | None = SQLField(default=None, max_length=4)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class InstructorAssignment(SQLModel, table=True):
    __tablename__ = "instructor_assignment"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    instructor_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("instructor.id"), nullable=False, index=True))
    organization_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("organization.id"), nullable=False, index=True))
    start_date: date = SQLField(sa_column=Column(Date, nullable=False))
    end_date: date | None = SQLField(default=None, sa_column=Column(Date))
    end_reason: str | None = SQLField(default=None, sa_column=Column(Text))
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class RegistryChange(SQLModel, table=True):
    """The ledger (台账) and change feed: every change to an organization or party organization.

    `txid` is the writing transaction's id: the feed only serves rows of transactions older
    than every transaction still running, so a reader never skips a row that commits later.
    """

    __tablename__ = "registry_change"
    __table_args__ = (
        Index("ix_registry_change_feed", "txid", "seq"),
        Index("ix_registry_change_entity", "entity_id", "seq"),
    )

    seq: int | None = SQLField(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    txid: int | None = SQLField(
        default=None,
        sa_column=Column(BigInteger, nullable=False, server_default=text("pg_current_xact_id()::text::bigint")),
    )
    entity: str = SQLField(max_length=16)
    entity_id: uuid.UUID
    region_code: str = SQLField(sa_column=region_code_column(fk=False))
    action: str = SQLField(max_length=32)
    source: str = SQLField(max_length=16)
    actor: str = SQLField(max_length=120)
    reason: str | None = SQLField(default=None, sa_column=Column(Text))
    request_id: str | None = SQLField(default=None, max_length=64)
    batch_id: uuid.UUID | None = None
    changed_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    # json, not jsonb: written far more often than searched, and jsonb costs a parse per line.
    before: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON))
    after: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON))


class ImportBatch(SQLModel, table=True):
    """A partner import's answer, kept so an `Idempotency-Key` replays it."""

    __tablename__ = "import_batch"
    __table_args__ = (
        Index(
            "uq_import_batch_idempotency",
            "caller",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    caller: str = SQLField(max_length=120)
    idempotency_key: str | None = SQLField(default=None, max_length=200)
    request_hash: str = SQLField(max_length=64)
    dry_run: bool = False
    result: dict[str, Any] = SQLField(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


# ---- schemas ---------------------------------------------------------------------------


class StrictModel(RequestModel):
    """Request bodies: unknown fields refused, text Postgres can store (shared/schemas.py)."""


CreditCode = Annotated[str, Field(min_length=18, max_length=18, examples=["91430723MA4L0XXXX0"])]
IndustryCode = Annotated[str, Field(pattern=r"^[A-T](\d{2}|\d{3}|\d{4})?$", examples=["C1310"])]
RegionCode = Annotated[str, Field(pattern=r"^\d{12}$", examples=["430723100001"])]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


def check_credit_code(value: str) -> str:
    if (problem := credit_code_problem(value)) is not None:
        raise ValueError(problem)
    return value


class RowError(BaseModel):
    row: int = Field(description="0-based index of the record in the request (data row for files)")
    field: str
    reason: str


class RegionRecord(StrictModel):
    # Checked per record, so one malformed code rejects its row, not the batch.
    code: Annotated[str, Field(max_length=20, examples=["430723000000"])]
    name: Annotated[str, Field(min_length=1, max_length=100, examples=["澧县"])]


class RegionImport(StrictModel):
    records: Annotated[list[RegionRecord], Field(min_length=1, max_length=20_000)]


class ImportResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[RowError]


class RegionPublic(BaseModel):
    code: str
    name: str
    level: int
    parent_code: str | None


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreate(StrictModel):
    username: Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    password: Annotated[str, Field(min_length=10, max_length=200)]
    role: Role
    region_code: RegionCode
    display_name: Annotated[str, Field(max_length=100)] = ""


class DeviceLogin(StrictModel):
    """A surveyor signs in on a phone: the phone is registered (or registered again) for the user."""

    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=200)]
    device_id: Annotated[str, Field(min_length=1, max_length=100, description="the phone's own stable id")]
    device_name: Annotated[str, Field(max_length=100, examples=["华为 Mate 60（李四）"])] = ""


class RefreshRequest(StrictModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class DevicePublic(BaseModel):
    id: uuid.UUID = Field(description="the registration's id (what revoking names)")
    user_id: uuid.UUID
    device_id: str
    name: str
    registered_at: datetime
    last_refreshed_at: datetime | None
    refresh_expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None


class DeviceTokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds the access token lives (short: refresh it)")
    refresh_token: str = Field(description="exchange at POST /v1/auth/refresh; bound to this device")
    refresh_expires_in: int
    device: DevicePublic


class UserPublic(BaseModel):
    id: str
    username: str
    display_name: str
    role: Role
    region_code: str
    is_active: bool


class ApiKeyCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[str], Field(min_length=1, max_length=10)]
    region_code: RegionCode


class ApiKeyCreated(BaseModel):
    id: str
    name: str
    scopes: list[str]
    region_code: str
    key: str = Field(description="The full key. Shown once: only a hash is stored.")


# Areas


class AreaCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: AreaKind
    region_code: RegionCode


class AreaUpdate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)] | NullHiddenFromSchema = None
    kind: AreaKind | NullHiddenFromSchema = None


class AreaPublic(BaseModel):
    id: uuid.UUID
    name: str
    kind: AreaKind
    region_code: str


# Organizations


class OrganizationFields(StrictModel):
    """The columns a caller may set; partners send them in imports, officials in edits."""

    # Plain strings for enum fields: these values go straight into SQL.
    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    kind: OrgKind | None = None
    region_code: RegionCode | None = None
    area_id: uuid.UUID | None = None
    industry_code: IndustryCode | None = None
    registration_authority: RegistrationAuthority | None = None
    sector: Sector | None = None
    address: Annotated[str, Field(max_length=300)] | None = None
    status: OrgStatus | None = None
    status_reason: Annotated[str, Field(min_length=2, max_length=500)] | None = None
    employees: Count | None = None
    has_fixed_premises: bool | None = None
    has_business_activity: bool | None = None
    social_org_level: SocialOrgLevel | None = None
    formal_members: Count | None = None
    probationary_members: Count | None = None
    activists: Count | None = None
    floating_members: Count | None = None
    has_trade_union: bool | None = None
    has_youth_league: bool | None = None
    leader_political_status: PoliticalStatus | None = None
    investor_is_party_member: bool | None = None
    charter_includes_party_building: bool | None = None


class OrganizationRecord(OrganizationFields):
    """One organization in a partner import or a manual registration."""

    credit_code: CreditCode
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: OrgKind
    region_code: RegionCode

    _check_code = field_validator("credit_code")(check_credit_code)


class OrganizationCreate(OrganizationRecord):
    pass


class OrganizationUpdate(OrganizationFields):
    """PATCH body: only the fields sent change. A status change needs `status_reason`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | NullHiddenFromSchema = None
    kind: OrgKind | NullHiddenFromSchema = None
    region_code: RegionCode | NullHiddenFromSchema = None
    status: OrgStatus | NullHiddenFromSchema = None
    formal_members: Count | NullHiddenFromSchema = None
    probationary_members: Count | NullHiddenFromSchema = None
    activists: Count | NullHiddenFromSchema = None
    floating_members: Count | NullHiddenFromSchema = None
    has_trade_union: bool | NullHiddenFromSchema = None
    has_youth_league: bool | NullHiddenFromSchema = None
    charter_includes_party_building: bool | NullHiddenFromSchema = None


class OrganizationImport(StrictModel):
    records: Annotated[list[dict[str, Any]], PerItem()] = Field(
        description="Organizations (see OrganizationRecord), up to the import batch limit; "
        "each bad record is rejected on its own"
    )
    dry_run: bool = False


class OrganizationImportResult(ImportResult):
    batch_id: uuid.UUID
    dry_run: bool


class OrganizationPublic(BaseModel):
    id: uuid.UUID
    credit_code: str | None
    name: str
    kind: OrgKind
    region_code: str
    area_id: uuid.UUID | None
    industry_code: str | None
    registration_authority: RegistrationAuthority | None
    sector: Sector | None
    address: str | None
    status: OrgStatus
    status_reason: str | None
    status_changed_at: datetime | None
    employees: int | None
    has_fixed_premises: bool | None
    has_business_activity: bool | None
    social_org_level: SocialOrgLevel | None
    formal_members: int
    probationary_members: int
    activists: int
    floating_members: int
    has_trade_union: bool
    has_youth_league: bool
    leader_political_status: PoliticalStatus | None
    investor_is_party_member: bool | None
    charter_includes_party_building: bool
    in_scope: bool | None = Field(description="Derived from the scope criteria; null when not yet known")
    covered: bool = Field(description="Covered by an active party organization (组织覆盖)")
    party_org_id: uuid.UUID | None
    instructed: bool = Field(description="Has an instructor assigned today")
    work_covered: bool = Field(description="Covered, instructed, or with a trade union or youth league (工作覆盖)")
    version: int
    created_at: datetime
    updated_at: datetime


class LedgerEntry(BaseModel):
    seq: int
    action: str
    source: str
    actor: str
    reason: str | None
    request_id: str | None
    batch_id: uuid.UUID | None
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ChangeItem(BaseModel):
    cursor: str
    entity: str
    id: uuid.UUID
    region_code: str
    action: str
    source: str
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ChangeFeed(BaseModel):
    items: list[ChangeItem]
    next_cursor: str = Field(description="Pass as `after` to continue; returned even when no change is new")


# Party organizations


class PartyOrgCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    level: PartyOrgLevel
    formation: Formation
    region_code: RegionCode
    superior_id: uuid.UUID | None = None
    covered_credit_codes: Annotated[list[CreditCode], Field(min_length=1, max_length=500)]
    established_on: date
    secretary_in_management: bool = False
    secretary_is_investor: bool = False
    functional: bool = False
    transfer: bool = Field(
        default=False,
        description="Move organizations already covered by another party organization (转出) instead of refusing",
    )


class PartyOrgUpdate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)] | NullHiddenFromSchema = None
    level: PartyOrgLevel | NullHiddenFromSchema = None
    superior_id: uuid.UUID | None = Field(default=None, description="null: no superior")
    secretary_in_management: bool | NullHiddenFromSchema = None
    secretary_is_investor: bool | NullHiddenFromSchema = None
    functional: bool | NullHiddenFromSchema = None


class CoveredOrganizations(StrictModel):
    credit_codes: Annotated[list[CreditCode], Field(min_length=1, max_length=500)]
    transfer: bool = False


class Dissolution(StrictModel):
    dissolved_on: date
    reason: Annotated[str, Field(min_length=2, max_length=500)]


class PartyOrgPublic(BaseModel):
    id: uuid.UUID
    name: str
    level: PartyOrgLevel
    formation: Formation
    functional: bool
    region_code: str
    superior_id: uuid.UUID | None
    kind: str
    established_on: date
    dissolved_on: date | None
    dissolution_reason: str | None
    secretary_in_management: bool
    secretary_is_investor: bool
    active: bool
    covered_credit_codes: list[str | None]
    version: int


# Instructors


class InstructorCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    kind: InstructorKind
    source: InstructorSource
    phone: Annotated[str, Field(pattern=r"^\+?\d{7,15}$")] | None = None
    citizen_id: (
        Annotated[str, Field(min_length=18, max_length=18, description="kept only as a hash and the last four")] | None
    ) = None
    region_code: RegionCode

    @field_validator("citizen_id")
    @classmethod
    def _valid_citizen_id(cls, value: str | None) -> str | None:
        if value is not None and (problem := citizen_id_problem(value.upper())) is not None:
            raise ValueError(problem)
        return None if value is None else value.upper()


class InstructorPublic(BaseModel):
    id: uuid.UUID
    name: str
    kind: InstructorKind
    source: InstructorSource
    phone: str | None = Field(description="masked unless the caller holds pii:read")
    citizen_id: str | None = Field(description="always masked: only the last four characters are kept")
    region_code: str


class AssignmentCreate(StrictModel):
    credit_code: CreditCode
    start_date: date
    end_date: date | None = None


class AssignmentEnd(StrictModel):
    end_date: date
    reason: Annotated[str, Field(min_length=2, max_length=500)]


class AssignmentPublic(BaseModel):
    id: uuid.UUID
    instructor_id: uuid.UUID
    organization_id: uuid.UUID
    start_date: date
    end_date: date | None
    end_reason: str | None
