"""Coverage tables and I/O schemas."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Column, Date, Index, String, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from shared.models import region_code_column, timestamp_column, utcnow

# Kinds of figure rows; `mixed` holds party organizations that cover organizations of several kinds.
ORG_KINDS = ("enterprise", "social_org", "individual_business", "mixed")
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
FORMATIONS = ("single", "joint", "industry", "regional", "affiliated")
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
    """A full recompute, requested by an official or by the nightly schedule."""

    __tablename__ = "coverage_recalculation"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    requested_by: str = SQLField(max_length=120)
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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    kind: str | None = Field(default=None, pattern=r"^(enterprise|social_org)$")
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
    kind: str | None = Field(default=None, pattern=r"^(enterprise|social_org)$")
    due_date: date
    responsible_unit: Annotated[str, Field(min_length=1, max_length=200)]
    per: str = Field(default="organization", pattern=r"^(organization|joint_group)$")


class TaskUpdate(StrictModel):
    status: TaskStatus | None = None
    responsible_unit: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    due_date: date | None = None
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
