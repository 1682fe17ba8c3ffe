"""Coverage tables and I/O schemas."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Column, Date, Identity, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from shared.models import region_code_column, timestamp_column, utcnow
from shared.rules import FORMATIONS, ORG_KINDS, SURVEYED_KINDS, one_of
from shared.schemas import NullHiddenFromSchema, PerItem, RequestModel

ORG_COUNTERS = (
    "registered",
    "active",
    "in_scope",
    "org_covered",
    "work_covered",
    "single_eligible",
    "single_formed",
    "charter_included",
)
PARTY_COUNTERS = (
    "party_orgs",
    *(f"party_orgs_{f}" for f in FORMATIONS),
    "secretary_in_management",
    "secretary_is_investor",
)
COUNTERS = ORG_COUNTERS + PARTY_COUNTERS


def _counter(description: str) -> Any:
    return SQLField(default=0, sa_column_kwargs={"server_default": "0"}, sa_type=BigInteger, description=description)


class FigureCounters(SQLModel):
    registered: int = _counter("organizations registered, any status")
    active: int = _counter("organizations with status active")
    in_scope: int = _counter("active and in scope: the denominator")
    org_covered: int = _counter("in scope and covered by an active party organization")
    work_covered: int = _counter("in scope and organization-covered, instructed or with group organizations")
    single_eligible: int = _counter("in scope with at least 3 formal members")
    single_formed: int = _counter("single-eligible and covered by a single-formation party organization")
    charter_included: int = _counter("in scope with party building written into the charter")
    party_orgs: int = _counter("active party organizations")
    party_orgs_single: int = _counter("of which single formation (单独组建)")
    party_orgs_joint: int = _counter("of which joint formation (联合组建)")
    party_orgs_industry: int = _counter("of which industry formation (行业统建)")
    party_orgs_regional: int = _counter("of which regional formation (区域联建)")
    party_orgs_affiliated: int = _counter("of which affiliated formation (挂靠组建)")
    secretary_in_management: int = _counter("active party organizations whose secretary is in management")
    secretary_is_investor: int = _counter("active party organizations whose secretary is the investor")


class CoverageFigure(FigureCounters, table=True):
    """Counters per region (its whole subtree) and kind, kept exact by registry events."""

    __tablename__ = "coverage_figure"

    region_code: str = SQLField(sa_column=region_code_column(primary_key=True, fk=False))
    kind: str = SQLField(sa_column=Column(String(24), primary_key=True))
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class CoverageSnapshot(FigureCounters, table=True):
    """The counters as they stood after a full recompute, one set per day."""

    __tablename__ = "coverage_snapshot"

    snapshot_date: date = SQLField(sa_column=Column(Date, primary_key=True))
    region_code: str = SQLField(sa_column=region_code_column(primary_key=True, fk=False))
    kind: str = SQLField(sa_column=Column(String(24), primary_key=True))
    taken_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class RecalculationStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Recalculation(SQLModel, table=True):
    """A full recompute, requested by an official or by the nightly schedule. It counts the whole
    country, so it belongs to the national jurisdiction (`region_code`), and at most one is queued
    or running at a time: requests meanwhile share it."""

    __tablename__ = "coverage_recalculation"
    __table_args__ = (
        Index(
            "uq_coverage_recalculation_active",
            "region_code",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    requested_by: str = SQLField(max_length=120)
    region_code: str = SQLField(sa_column=region_code_column())
    status: str = SQLField(max_length=10, default=RecalculationStatus.queued.value)
    requested_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    started_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    finished_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    figures_changed: int | None = None
    events_absorbed: int | None = None
    snapshot_date: date | None = SQLField(default=None, sa_column=Column(Date))
    error: str | None = SQLField(default=None, sa_column=Column(Text))


class Metric(StrEnum):
    org_coverage = "org_coverage"
    work_coverage = "work_coverage"
    single_formation = "single_formation"


class Target(SQLModel, table=True):
    """挂图作战: a rate a region must reach by a date."""

    __tablename__ = "coverage_target"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    kind: str | None = SQLField(default=None, max_length=24)
    metric: str = SQLField(max_length=24)
    target_rate: float
    deadline: date = SQLField(sa_column=Column(Date, nullable=False))
    created_by: str = SQLField(max_length=120)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class TaskStatus(StrEnum):
    open = "open"
    in_progress = "in_progress"
    completed = "completed"
    cancelled = "cancelled"


class EstablishmentTask(SQLModel, table=True):
    """组建攻坚: establish a party organization for one organization or a proposed joint group."""

    __tablename__ = "establishment_task"
    __table_args__ = (Index("ix_establishment_task_status_due", "status", "due_date"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    title: str = SQLField(max_length=300)
    recommended_formation: str = SQLField(max_length=24)
    reason: str = SQLField(sa_column=Column(Text, nullable=False))
    origin: str = SQLField(max_length=16, description="gap | registration")
    responsible_unit: str | None = SQLField(default=None, max_length=200)
    due_date: date = SQLField(sa_column=Column(Date, nullable=False))
    status: str = SQLField(max_length=12, default=TaskStatus.open.value)
    note: str | None = SQLField(default=None, sa_column=Column(Text))
    completed_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    completed_by_party_org: uuid.UUID | None = SQLField(default=None, sa_column=Column(UUID(as_uuid=True)))
    created_by: str = SQLField(max_length=120)
    version: int = SQLField(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class EstablishmentTaskMember(SQLModel, table=True):
    """An organization a task is for; `active` while its task is open or in progress."""

    __tablename__ = "establishment_task_member"
    __table_args__ = (
        # An organization is in at most one live task at a time.
        Index("uq_establishment_task_member_live", "organization_id", unique=True, postgresql_where=text("active")),
    )

    task_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    organization_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    credit_code: str | None = SQLField(default=None, max_length=18)
    name: str = SQLField(max_length=200)
    covered_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    active: bool = True


# ---- schemas ----------------------------------------------------------------------------


class StrictModel(RequestModel):
    """Request bodies: unknown fields refused, text Postgres can store (shared/schemas.py)."""


RegionCode = Annotated[str, Field(pattern=r"^\d{12}$", examples=["430723000000"])]
Rate = Annotated[
    float | None, Field(ge=0, le=1, description="fraction 0–1 (6 decimals); null when nothing to divide by")
]


class PartyOrgCounts(BaseModel):
    total: int
    single: int
    joint: int
    industry: int
    regional: int
    affiliated: int


class Figures(BaseModel):
    registered: int
    active: int
    in_scope: int
    org_covered: int
    work_covered: int
    org_coverage_rate: Rate
    work_coverage_rate: Rate
    single_formation_eligible: int
    single_formed: int
    single_formation_rate: Rate
    charter_included: int
    charter_rate: Rate
    secretary_in_management_rate: Rate
    secretary_is_investor_rate: Rate
    party_orgs: PartyOrgCounts


class RegionRef(BaseModel):
    code: str
    name: str
    level: int


class RegionFigures(Figures):
    region: RegionRef


class CoverageReport(BaseModel):
    region: RegionRef
    kind: str | None
    area_id: uuid.UUID | None
    industry: str | None
    as_of: date | None = Field(description="snapshot date when figures come from a snapshot")
    source: str = Field(description="`counters` (kept by events), `live` (counted now for a cut), `snapshot`")
    computed_at: datetime | None
    stale: bool = Field(
        default=False,
        description="true when registry changes in this region could not be counted yet (failed event "
        "consumptions): the counters lag until an operator retries them or the nightly recount runs",
    )
    stale_reason: str | None = Field(default=None, description="why the figures are stale")
    total: Figures
    children: list[RegionFigures]


class HistoryPoint(Figures):
    date: date


class CoverageHistory(BaseModel):
    region: RegionRef
    kind: str | None
    points: list[HistoryPoint]


class RecalculationPublic(BaseModel):
    id: uuid.UUID
    status: str
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    figures_changed: int | None
    events_absorbed: int | None
    snapshot_date: date | None
    error: str | None


class Gap(BaseModel):
    organization_id: uuid.UUID
    credit_code: str | None
    name: str
    kind: str
    region_code: str
    area_id: uuid.UUID | None
    industry_code: str | None
    formal_members: int
    instructed: bool
    group_org: bool
    recommended_formation: str = Field(description="single | joint | industry | instructor_first")
    reason: str
    joint_group: str | None = Field(description="key of the proposed joint group (joint recommendations)")


class GapPage(BaseModel):
    items: list[Gap]
    next_cursor: str | None
    summary: dict[str, int] = Field(description="uncovered organizations by recommendation")


class JointGroup(BaseModel):
    key: str
    basis: str = Field(description="area | industry | township")
    label: str
    region_code: str
    organization_ids: list[uuid.UUID]
    names: list[str]


class TargetCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    region_code: RegionCode
    kind: str | None = Field(default=None, pattern=one_of(SURVEYED_KINDS))
    metric: Metric = Metric.org_coverage
    target_rate: Annotated[float, Field(gt=0, le=1)]
    deadline: date


class TargetPublic(BaseModel):
    id: uuid.UUID
    name: str
    region_code: str
    kind: str | None
    metric: Metric
    target_rate: float
    deadline: date


class TargetProgress(BaseModel):
    target: TargetPublic
    current_rate: Rate
    numerator: int
    denominator: int
    gap_organizations: int = Field(description="organizations still to cover to reach the target")
    reached: bool
    overdue: bool
    days_left: int
    remaining: list[Gap] = Field(description="uncovered organizations (first page)")
    remaining_next_cursor: str | None


class TasksFromGaps(StrictModel):
    region_code: RegionCode
    kind: str | None = Field(default=None, pattern=one_of(SURVEYED_KINDS))
    due_date: date
    responsible_unit: Annotated[str, Field(min_length=1, max_length=200)]
    per: str = Field(default="organization", pattern=r"^(organization|joint_group)$")


class TaskUpdate(StrictModel):
    status: TaskStatus | NullHiddenFromSchema = None
    responsible_unit: Annotated[str, Field(min_length=1, max_length=200)] | NullHiddenFromSchema = None
    due_date: date | NullHiddenFromSchema = None
    note: Annotated[str, Field(max_length=2000)] | None = None


class TaskMemberPublic(BaseModel):
    organization_id: uuid.UUID
    credit_code: str | None
    name: str
    covered_at: datetime | None


class TaskPublic(BaseModel):
    id: uuid.UUID
    region_code: str
    title: str
    recommended_formation: str
    reason: str
    origin: str
    responsible_unit: str | None
    due_date: date
    status: str
    overdue: bool
    note: str | None
    completed_at: datetime | None
    completed_by_party_org: uuid.UUID | None
    members: list[TaskMemberPublic]
    version: int


class TasksCreated(BaseModel):
    created: int
    skipped: int = Field(description="organizations already in a live task")
    tasks: list[TaskPublic]


# ---- survey campaigns (摸底排查) and field visits --------------------------------------------


class CampaignStatus(StrEnum):
    draft = "draft"
    active = "active"
    closed = "closed"


class Outcome(StrEnum):
    operating = "operating"
    zombie = "zombie"
    closed = "closed"
    relocated = "relocated"
    not_found = "not_found"
    refused = "refused"


class Campaign(SQLModel, table=True):
    __tablename__ = "campaign"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    kinds: list[str] = SQLField(sa_column=Column(ARRAY(String(24)), nullable=False))
    # Overrides of the scope criteria (see Settings.scope_*), stored as given.
    criteria: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    target_rate: float | None = None
    status: str = SQLField(max_length=10, default=CampaignStatus.draft.value)
    created_by: str = SQLField(max_length=120)
    version: int = SQLField(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class CampaignRound(SQLModel, table=True):
    __tablename__ = "campaign_round"

    campaign_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    number: int = SQLField(sa_column=Column(Integer, primary_key=True))
    starts_on: date = SQLField(sa_column=Column(Date, nullable=False))
    ends_on: date = SQLField(sa_column=Column(Date, nullable=False))


class Team(SQLModel, table=True):
    """A survey team (摸排小组): surveyors responsible for some townships of a campaign."""

    __tablename__ = "campaign_team"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    campaign_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False, index=True))
    name: str = SQLField(max_length=200)
    surveyor_ids: list[uuid.UUID] = SQLField(sa_column=Column(ARRAY(UUID(as_uuid=True)), nullable=False))
    townships: list[str] = SQLField(sa_column=Column(ARRAY(String(12, collation="C")), nullable=False))


class Assignment(SQLModel, table=True):
    """One organization for one surveyor in one round (一企一表 of the campaign)."""

    __tablename__ = "assignment"
    __table_args__ = (
        Index("uq_assignment_campaign_round_org", "campaign_id", "round", "organization_id", unique=True),
        Index("ix_assignment_surveyor", "surveyor_id"),
        Index("ix_assignment_organization", "organization_id"),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    campaign_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    round: int
    organization_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    region_code: str = SQLField(sa_column=region_code_column(fk=False))
    team_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    surveyor_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    # pending → visited → verified | rejected (a rejected one is visited again)
    status: str = SQLField(max_length=10, default="pending")
    version: int = SQLField(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class MobileChange(SQLModel, table=True):
    """What a surveyor's phone must learn at its next sync, in transaction order."""

    __tablename__ = "mobile_change"
    __table_args__ = (Index("ix_mobile_change_feed", "surveyor_id", "txid", "seq"),)

    seq: int | None = SQLField(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    txid: int | None = SQLField(
        default=None,
        sa_column=Column(BigInteger, nullable=False, server_default=text("pg_current_xact_id()::text::bigint")),
    )
    surveyor_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    assignment_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    op: str = SQLField(max_length=8, description="upsert | remove")
    changed_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class Visit(SQLModel, table=True):
    """A field visit as the phone sent it; `id` is generated on the phone."""

    __tablename__ = "visit"
    __table_args__ = (
        Index("ix_visit_assignment", "assignment_id"),
        Index("ix_visit_review", "campaign_id", "review_status"),
        # Many visits from one phone in a few minutes: looked up per device and time at submission.
        Index("ix_visit_device_time", "device_id", "visited_at", postgresql_where=text("device_id IS NOT NULL")),
    )

    id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    content_hash: str = SQLField(max_length=64)
    campaign_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    round: int
    assignment_id: uuid.UUID | None = SQLField(default=None, sa_column=Column(UUID(as_uuid=True)))
    organization_id: uuid.UUID | None = SQLField(default=None, sa_column=Column(UUID(as_uuid=True)))
    region_code: str = SQLField(sa_column=region_code_column(fk=False))
    surveyor_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    visited_at: datetime = SQLField(sa_column=timestamp_column())
    received_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    late: bool = False
    outcome: str = SQLField(max_length=12)
    observation: dict[str, Any] = SQLField(sa_column=Column(JSONB, nullable=False))
    new_organization: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSONB(none_as_null=True)))
    willing_to_establish: bool | None = None
    latitude: float | None = None
    longitude: float | None = None
    review_status: str = SQLField(max_length=10, default="pending")
    reviewed_by: str | None = SQLField(default=None, max_length=120)
    reviewed_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    reject_reason: str | None = SQLField(default=None, sa_column=Column(Text))
    # For an organization found in the field: pending → registered | dismissed, after verification.
    registration_status: str | None = SQLField(default=None, max_length=12)
    registered_organization_id: uuid.UUID | None = SQLField(default=None, sa_column=Column(UUID(as_uuid=True)))
    # What the registry made of what was sent to it: pending → applied | refused (with why).
    ledger_status: str | None = SQLField(default=None, max_length=10)
    ledger_error: str | None = SQLField(default=None, sa_column=Column(Text))
    # The campaign form version the visit was made on, and its answers to the campaign's questions.
    form_version: int | None = None
    answers: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSONB(none_as_null=True)))
    # How the visit was taken (GPS accuracy, fix time, device, app version, form start and end).
    paradata: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSONB(none_as_null=True)))
    device_id: str | None = SQLField(default=None, max_length=100)
    # Why a reviewer should look twice: [{code, reason}], computed at submission; never a refusal.
    flags: list[dict[str, str]] = SQLField(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    )


class VisitPhoto(SQLModel, table=True):
    __tablename__ = "visit_photo"

    visit_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    sha256: str = SQLField(sa_column=Column(String(64), primary_key=True))
    content_type: str = SQLField(max_length=20)
    size: int
    # The name the phone gave the file: a photo question's answer names it.
    file_name: str | None = SQLField(default=None, max_length=200)
    uploaded_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class CampaignForm(SQLModel, table=True):
    """One published version of a campaign's form; versions are added, never edited."""

    __tablename__ = "campaign_form"

    campaign_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    version: int = SQLField(sa_column=Column(Integer, primary_key=True))
    region_code: str = SQLField(sa_column=region_code_column(fk=False, index=True))
    title: str = SQLField(max_length=200)
    definition: dict[str, Any] = SQLField(sa_column=Column(JSONB, nullable=False))
    source: str = SQLField(max_length=10, description="json | xlsform")
    published_by: str = SQLField(max_length=120)
    published_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


# ---- campaign schemas ----------------------------------------------------------------------


class Criteria(StrictModel):
    enterprise_min_employees: Annotated[int, Field(ge=0, le=10_000)] | None = None
    social_org_min_staff: Annotated[int, Field(ge=0, le=10_000)] | None = None
    social_org_levels: list[str] | None = None


class RoundIn(StrictModel):
    number: Annotated[int, Field(ge=1, le=3)]
    starts_on: date
    ends_on: date


class CampaignCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    region_code: RegionCode
    kinds: Annotated[list[str], Field(min_length=1, max_length=2)] = Field(default=list(SURVEYED_KINDS))
    criteria: Criteria = Criteria()
    rounds: Annotated[list[RoundIn], Field(min_length=1, max_length=3)]
    target_rate: Annotated[float, Field(gt=0, le=1)] | None = None


class CampaignPublic(BaseModel):
    id: uuid.UUID
    name: str
    region_code: str
    kinds: list[str]
    criteria: dict[str, Any]
    target_rate: float | None
    status: str
    rounds: list[RoundIn]
    version: int


class TeamCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    surveyor_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=50)]
    townships: Annotated[list[Annotated[str, Field(pattern=r"^\d{12}$")]], Field(min_length=1, max_length=100)]


class TeamPublic(BaseModel):
    id: uuid.UUID
    campaign_id: uuid.UUID
    name: str
    surveyor_ids: list[uuid.UUID]
    townships: list[str]


class GenerateAssignments(StrictModel):
    round: Annotated[int, Field(ge=1, le=3)] = 1


class GenerationResult(BaseModel):
    round: int
    assigned: int = Field(description="assignments created now")
    already_assigned: int
    unassigned: int = Field(description="organizations in townships no team covers")
    townships_without_team: list[str]
    by_team: dict[str, int]


class AssignmentMove(StrictModel):
    team_id: uuid.UUID | None = None
    surveyor_id: uuid.UUID | None = None


class AssignmentPublic(BaseModel):
    id: uuid.UUID
    campaign_id: uuid.UUID
    round: int
    organization_id: uuid.UUID
    region_code: str
    team_id: uuid.UUID
    surveyor_id: uuid.UUID
    status: str
    version: int


class ProgressCounts(BaseModel):
    assigned: int = 0
    visited: int = 0
    verified: int = 0
    rejected: int = 0
    remaining: int = 0


class CampaignProgress(BaseModel):
    campaign_id: uuid.UUID
    by_round: dict[str, ProgressCounts]
    by_team: dict[str, ProgressCounts]
    by_township: dict[str, ProgressCounts]
    outcomes: dict[str, int] = Field(description="verified visits by outcome")
    zombies_cleared: int
    closed: int
    new_found: int = Field(description="organizations found in the field")
    new_registered: int = Field(description="of which confirmed into the registry")
    registered: int = Field(description="organizations of the campaign's kinds registered in its region")
    in_scope: int = Field(description="of which active and in scope by the campaign's criteria")
    scope_unknown: int


# ---- mobile schemas ------------------------------------------------------------------------


class NewOrganization(StrictModel):
    name: Annotated[str, Field(min_length=2, max_length=200)]
    address: Annotated[str, Field(max_length=300)] | None = None
    region_code: RegionCode
    credit_code: Annotated[str, Field(min_length=18, max_length=18)] | None = None
    kind: str = Field(default="enterprise", pattern=one_of(ORG_KINDS))


class Location(StrictModel):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


Count = Annotated[int, Field(ge=0, le=1_000_000)]


class Paradata(StrictModel):
    """How the visit was taken, as the phone recorded it (all optional)."""

    gps_accuracy_m: Annotated[float, Field(ge=0, le=100_000)] | None = Field(
        default=None, description="accuracy of `location`, in metres"
    )
    fix_time: datetime | None = Field(default=None, description="when the GPS fix of `location` was taken")
    device_id: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="the phone's own id (the one it registered at sign-in)"
    )
    app_version: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    started_at: datetime | None = Field(default=None, description="when the surveyor opened the form")
    ended_at: datetime | None = Field(default=None, description="when the surveyor finished it")


class VisitIn(StrictModel):
    """One visit as the phone recorded it."""

    id: uuid.UUID
    assignment_id: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = Field(default=None, description="required with new_organization")
    new_organization: NewOrganization | None = None
    visited_at: datetime
    outcome: Outcome
    employees: Count | None = None
    formal_members: Count | None = None
    probationary_members: Count | None = None
    activists: Count | None = None
    floating_members: Count | None = None
    has_fixed_premises: bool | None = None
    has_business_activity: bool | None = None
    leader_political_status: str | None = Field(
        default=None, pattern=r"^(party_member|probationary_member|masses|other)$"
    )
    willing_to_establish: bool | None = None
    notes: Annotated[str, Field(max_length=2000)] | None = None
    location: Location | None = None
    form_version: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None, description="the campaign form version the visit was made on (required once it has a form)"
    )
    answers: Annotated[dict[str, Any], Field(max_length=200)] | None = Field(
        default=None, description="answers to the campaign's own questions, by question name"
    )
    paradata: Paradata | None = None


class VisitBatch(StrictModel):
    visits: Annotated[list[dict[str, Any]], PerItem(), Field(min_length=1, description="up to the batch limit (500)")]


class ItemResult(BaseModel):
    id: str | None
    status: str = Field(description="accepted | duplicate | conflict | invalid")
    reasons: list[dict[str, str]] = Field(default_factory=list)
    duplicate_of: uuid.UUID | None = None
    late: bool | None = None
    received_at: datetime | None = None


class VisitBatchResult(BaseModel):
    accepted: int
    duplicate: int
    conflict: int
    invalid: int
    items: list[ItemResult]


class PhotoStored(BaseModel):
    visit_id: uuid.UUID
    sha256: str = Field(description="hash of the stored photo (re-encoded, without metadata)")
    size: int
    content_type: str
    file_name: str | None
    new: bool = Field(description="false when this photo was already stored for the visit")


class PhotoRef(BaseModel):
    sha256: str
    content_type: str
    size: int
    file_name: str | None = Field(description="the name a photo question's answer gives")
    href: str = Field(description="where a reviewer of the visit's jurisdiction reads it")


class Flag(BaseModel):
    code: str = Field(
        description="far_from_organization | too_short | many_from_device | dated_in_future | before_round"
    )
    reason: str = Field(description="why, in Chinese, for the reviewer")


class SyncItem(BaseModel):
    op: str = Field(description="upsert | remove")
    assignment_id: uuid.UUID
    assignment: dict[str, Any] | None = None


class SyncPage(BaseModel):
    items: list[SyncItem]
    cursor: str = Field(description="pass as `after` next time; returned even when nothing is new")
    more: bool
    forms: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the current form (see GET /v1/campaigns/{id}/form) of each active campaign the surveyor has "
        "assignments in and that has one; a visit names the version it was made on",
    )


class ReferenceData(BaseModel):
    kind: str = Field(description="regions | industries | areas | choices")
    version: str = Field(description="pass as `since` next time (the ETag carries it too)")
    since: str | None = Field(description="the version this delta starts from; null: everything")
    items: list[dict[str, Any]] = Field(description="entries added or changed since `since` (all without it)")
    ids: list[str] = Field(description="every entry's key now: a phone drops what is not listed")


class VisitPublic(BaseModel):
    id: uuid.UUID
    campaign_id: uuid.UUID
    round: int
    assignment_id: uuid.UUID | None
    organization_id: uuid.UUID | None
    region_code: str
    surveyor_id: uuid.UUID
    visited_at: datetime
    received_at: datetime
    late: bool
    outcome: str
    observation: dict[str, Any]
    new_organization: dict[str, Any] | None
    willing_to_establish: bool | None
    review_status: str
    reviewed_by: str | None
    reviewed_at: datetime | None
    reject_reason: str | None
    registration_status: str | None
    registered_organization_id: uuid.UUID | None
    ledger_status: str | None = Field(
        description="what the registry made of the verified observation or the confirmed registration: "
        "pending (sent), applied, or refused (then `ledger_error` says why and nothing changed); "
        "null until something is sent"
    )
    ledger_error: str | None = Field(description="why the registry refused it")
    photos: list[PhotoRef] = Field(default_factory=list)
    form_version: int | None
    answers: dict[str, Any] | None
    paradata: dict[str, Any] | None
    location: dict[str, float] | None = Field(description="{lat, lon} where the visit was taken")
    flags: list[Flag] = Field(description="why a reviewer should look twice (never a refusal)")


class Rejection(StrictModel):
    reason: Annotated[str, Field(min_length=2, max_length=500)]


class Confirmation(StrictModel):
    """An official completes what the surveyor could not know before registering the organization."""

    name: Annotated[str, Field(min_length=2, max_length=200)] | None = None
    kind: str | None = Field(default=None, pattern=one_of(ORG_KINDS))
    credit_code: Annotated[str, Field(min_length=18, max_length=18)] | None = None
    industry_code: Annotated[str, Field(pattern=r"^[A-T](\d{2}|\d{3}|\d{4})?$")] | None = None
    region_code: RegionCode | None = None
