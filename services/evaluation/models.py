"""Evaluation tables and I/O schemas: templates, cycles, assessments, rectifications, designations, reviews."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import Column, Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from shared.models import region_code_column, timestamp_column, utcnow
from shared.schemas import RequestModel

# ---- vocabularies -----------------------------------------------------------------------


class TemplateKind(StrEnum):
    star_rating = "star_rating"  # 星级评定
    standardization = "standardization"  # 标准化
    site_standard = "site_standard"  # 阵地 (七有, 六有, 6S)


class AssessmentStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"
    approved = "approved"
    returned = "returned"
    cancelled = "cancelled"


class RectificationStatus(StrEnum):
    open = "open"
    closed = "closed"
    cancelled = "cancelled"


class DesignationLevel(StrEnum):
    province = "province"
    city = "city"
    county = "county"


class DesignationType(StrEnum):
    leading = "leading"  # 领军
    model = "model"  # 示范
    compliant = "compliant"  # 达标


class EvaluatorKind(StrEnum):
    member = "member"  # 党员评议
    public = "public"  # 群众评议
    superior = "superior"  # 上级党组织


# Region level a designation of each level belongs to (province 1, city 2, county 3).
DESIGNATION_REGION_LEVEL = {DesignationLevel.province: 1, DesignationLevel.city: 2, DesignationLevel.county: 3}


def _version_column() -> Any:
    return SQLField(default=1, sa_column_kwargs={"server_default": "1"})


# ---- tables -----------------------------------------------------------------------------


class EvaluationTemplate(SQLModel, table=True):
    """One version of an assessment template; editing publishes a new row with the next version."""

    __tablename__ = "evaluation_template"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    code: str = SQLField(max_length=64, index=True)
    version: int = SQLField(sa_column=Column(Integer, nullable=False))
    kind: str = SQLField(max_length=20)
    name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    definition: dict[str, Any] = SQLField(sa_column=Column(JSONB, nullable=False))
    builtin: bool = SQLField(default=False, sa_column_kwargs={"server_default": "false"})
    created_by: str = SQLField(max_length=120)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class EvaluationCycle(SQLModel, table=True):
    """An assessment round: a year or a quarter, one template version, one jurisdiction."""

    __tablename__ = "evaluation_cycle"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    name: str = SQLField(max_length=200)
    year: int = SQLField(sa_column=Column(Integer, nullable=False, index=True))
    quarter: int | None = SQLField(default=None, sa_column=Column(Integer))
    template_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("evaluation_template.id"), nullable=False))
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    approval_levels: int = SQLField(default=1, sa_column_kwargs={"server_default": "1"})
    status: str = SQLField(default="open", max_length=10)
    created_by: str = SQLField(max_length=120)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class Assessment(SQLModel, table=True):
    """One party organization's assessment in a cycle: draft → submitted → approved (or returned)."""

    __tablename__ = "assessment"
    __table_args__ = (
        UniqueConstraint("cycle_id", "party_org_id"),
        Index("ix_assessment_party_org", "party_org_id", "status"),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    cycle_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("evaluation_cycle.id"), nullable=False))
    party_org_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    party_org_name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    status: str = SQLField(default=AssessmentStatus.draft.value, max_length=10)
    scores: dict[str, Any] = SQLField(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    )
    total: Decimal = SQLField(
        default=Decimal("0"), sa_column=Column(Numeric(10, 2), nullable=False, server_default="0")
    )
    star_level: int | None = SQLField(default=None, sa_column=Column(Integer))
    passed: bool | None = None
    # Approvals recorded so far in this submission: [{step, by, region_code, level, at}].
    approvals: list[dict[str, Any]] = SQLField(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    )
    submitted_by: str | None = SQLField(default=None, max_length=120)
    submitted_level: int | None = None
    submitted_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    approved_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    returned_reason: str | None = SQLField(default=None, sa_column=Column(Text))
    created_by: str = SQLField(max_length=120)
    version: int = _version_column()
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class Rectification(SQLModel, table=True):
    """整转: opened by an approved rating at or below the threshold, closed by a later one above it."""

    __tablename__ = "rectification"
    __table_args__ = (
        # At most one open rectification per party organization.
        Index("uq_rectification_open", "party_org_id", unique=True, postgresql_where=text("status = 'open'")),
        Index("ix_rectification_status_due", "status", "due_on"),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    party_org_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    party_org_name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    assessment_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("assessment.id"), nullable=False))
    star_level: int | None = None
    status: str = SQLField(default=RectificationStatus.open.value, max_length=10)
    due_on: date = SQLField(sa_column=Column(Date, nullable=False))
    opened_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    closed_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))
    closed_by_assessment_id: uuid.UUID | None = SQLField(default=None, sa_column=Column(UUID(as_uuid=True)))
    close_reason: str | None = SQLField(default=None, sa_column=Column(Text))
    reminded_on: date | None = SQLField(default=None, sa_column=Column(Date))
    reminders: int = SQLField(default=0, sa_column_kwargs={"server_default": "0"})


class Designation(SQLModel, table=True):
    """示范点 / 标杆: a party organization designated at a level, of a type, for a year."""

    __tablename__ = "designation"
    __table_args__ = (Index("ix_designation_count", "year", "level", "type", "status"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    party_org_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False, index=True))
    party_org_name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    year: int
    level: str = SQLField(max_length=10)
    type: str = SQLField(max_length=10)
    title: str | None = SQLField(default=None, max_length=200)
    status: str = SQLField(default="active", max_length=10)
    created_by: str = SQLField(max_length=120)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    revoked_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))


class DesignationQuota(SQLModel, table=True):
    """How many designations of a level and type a region may make in a year (泸州: 6 city model sites)."""

    __tablename__ = "designation_quota"

    region_code: str = SQLField(sa_column=region_code_column(primary_key=True))
    year: int = SQLField(sa_column=Column(Integer, primary_key=True))
    level: str = SQLField(sa_column=Column(String(10), primary_key=True))
    type: str = SQLField(sa_column=Column(String(10), primary_key=True))
    quota: int
    updated_by: str = SQLField(max_length=120)
    updated_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class ReviewReport(SQLModel, table=True):
    """双述双评: a secretary's report of a cycle."""

    __tablename__ = "review_report"
    __table_args__ = (UniqueConstraint("cycle_id", "party_org_id"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    cycle_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("evaluation_cycle.id"), nullable=False))
    party_org_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    party_org_name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    secretary_name: str = SQLField(max_length=100)
    content: str = SQLField(sa_column=Column(Text, nullable=False))
    reported_on: date = SQLField(sa_column=Column(Date, nullable=False))
    created_by: str = SQLField(max_length=120)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class ReviewScore(SQLModel, table=True):
    """One evaluator's score (0–100) of a secretary's report."""

    __tablename__ = "review_score"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    report_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("review_report.id"), nullable=False, index=True))
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    evaluator_kind: str = SQLField(max_length=10)
    evaluator: str | None = SQLField(default=None, max_length=100)
    score: Decimal = SQLField(sa_column=Column(Numeric(5, 2), nullable=False))
    comment: str | None = SQLField(default=None, sa_column=Column(Text))
    created_by: str = SQLField(max_length=120)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


# ---- template definitions -----------------------------------------------------------------

Key = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]


class ItemDef(RequestModel):
    key: Key
    label: str = Field(min_length=1, max_length=200)
    max_score: Decimal = Field(gt=0, le=1000)
    placeholder: bool = Field(default=False, description="待补充: an official still has to fill this item in")


class GroupDef(RequestModel):
    """A dimension (维度) or an area (方面) of items."""

    key: Key
    label: str = Field(min_length=1, max_length=200)
    weight: Decimal = Field(default=Decimal(1), gt=0, le=10)
    star_min_ratio: Decimal | None = Field(
        default=None, gt=0, le=1, description="per-dimension stars: this dimension earns its star at this share"
    )
    items: list[ItemDef] = Field(min_length=1, max_length=100)


class StarThreshold(RequestModel):
    stars: int = Field(ge=1, le=5)
    min_total: Decimal = Field(ge=0)


class StarRule(RequestModel):
    """`thresholds`: the highest star whose minimum the total reaches; `dimensions`: one star per
    dimension that reaches its `star_min_ratio` (富阳 五星: 班子建设星, 党员队伍星, …)."""

    method: str = Field(pattern=r"^(thresholds|dimensions)$")
    thresholds: list[StarThreshold] = Field(default_factory=list)
    min_stars: int = Field(default=0, ge=0, le=5, description="floor for the dimensions method")


class PassRule(RequestModel):
    min_total: Decimal | None = Field(default=None, ge=0)
    min_item_ratio: Decimal | None = Field(
        default=None, ge=0, le=1, description="every item must reach this share of its maximum"
    )


class TemplateDefinition(RequestModel):
    description: str | None = None
    source: str | None = Field(default=None, description="where the standard comes from (seed document)")
    groups: list[GroupDef] = Field(min_length=1, max_length=20)
    stars: StarRule | None = None
    pass_rule: PassRule = Field(default_factory=PassRule)

    @field_validator("groups")
    @classmethod
    def _unique_keys(cls, groups: list[GroupDef]) -> list[GroupDef]:
        seen: set[str] = set()
        for group in groups:
            for item in group.items:
                if item.key in seen:
                    raise ValueError(f"item key {item.key!r} is used twice")
                seen.add(item.key)
        if len({g.key for g in groups}) != len(groups):
            raise ValueError("group keys must be unique")
        return groups

    @model_validator(mode="after")
    def _star_rule_is_usable(self) -> "TemplateDefinition":
        if self.stars is None:
            return self
        if self.stars.method == "thresholds" and not self.stars.thresholds:
            raise ValueError("stars: the thresholds method needs at least one threshold")
        if self.stars.method == "dimensions" and not any(g.star_min_ratio is not None for g in self.groups):
            raise ValueError("stars: the dimensions method needs groups with star_min_ratio")
        return self


# ---- I/O schemas --------------------------------------------------------------------------

RegionCode = Annotated[str, Field(pattern=r"^\d{12}$")]


class TemplateCreate(RequestModel):
    code: str = Field(pattern=r"^[a-z0-9_]{2,64}$")
    kind: TemplateKind
    name: str = Field(min_length=1, max_length=200)
    region_code: RegionCode | None = Field(default=None, description="default: your jurisdiction")
    definition: TemplateDefinition


class TemplateEdit(RequestModel):
    """Publishes a new version; assessments keep the version their cycle uses."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    definition: TemplateDefinition


class TemplatePublic(BaseModel):
    id: uuid.UUID
    code: str
    version: int
    kind: str
    name: str
    region_code: str
    builtin: bool
    definition: dict[str, Any]
    max_total: Decimal
    created_by: str
    created_at: datetime


class CycleCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    year: int = Field(ge=2000, le=2100)
    quarter: int | None = Field(default=None, ge=1, le=4)
    template_id: uuid.UUID
    region_code: RegionCode | None = Field(default=None, description="default: your jurisdiction")
    approval_levels: int = Field(default=1, ge=1, le=4, description="approvals above the assessor's level (≤ 4)")


class CyclePublic(BaseModel):
    id: uuid.UUID
    name: str
    year: int
    quarter: int | None
    template_id: uuid.UUID
    template_code: str
    template_version: int
    kind: str
    region_code: str
    approval_levels: int
    status: str
    created_at: datetime


class AssessmentCreate(RequestModel):
    party_org_id: uuid.UUID
    scores: dict[str, Decimal] = Field(default_factory=dict, max_length=2000)


class AssessmentEdit(RequestModel):
    scores: dict[str, Decimal] = Field(description="item key → score; items not sent keep their score", max_length=2000)


class ReturnBody(RequestModel):
    reason: str = Field(min_length=1, max_length=2000)


class ApprovalPublic(BaseModel):
    step: int
    by: str
    region_code: str
    level: int
    at: datetime


class AssessmentPublic(BaseModel):
    id: uuid.UUID
    cycle_id: uuid.UUID
    party_org_id: uuid.UUID
    party_org_name: str
    region_code: str
    status: str
    status_label: str
    scores: dict[str, Decimal]
    group_totals: dict[str, Decimal]
    total: Decimal
    star_level: int | None
    passed: bool | None
    approvals: list[ApprovalPublic]
    approvals_needed: int
    submitted_by: str | None
    submitted_at: datetime | None
    approved_at: datetime | None
    returned_reason: str | None
    version: int


class GenerateResult(BaseModel):
    created: int
    existing: int


class RectificationPublic(BaseModel):
    id: uuid.UUID
    party_org_id: uuid.UUID
    party_org_name: str
    region_code: str
    assessment_id: uuid.UUID
    star_level: int | None
    status: str
    due_on: date
    overdue: bool
    opened_at: datetime
    closed_at: datetime | None
    closed_by_assessment_id: uuid.UUID | None
    close_reason: str | None
    reminded_on: date | None


class DesignationCreate(RequestModel):
    party_org_id: uuid.UUID
    year: int = Field(ge=2000, le=2100)
    level: DesignationLevel
    type: DesignationType
    title: str | None = Field(default=None, max_length=200)


class DesignationPublic(BaseModel):
    id: uuid.UUID
    party_org_id: uuid.UUID
    party_org_name: str
    region_code: str
    year: int
    level: str
    type: str
    label: str
    title: str | None
    status: str
    created_at: datetime
    revoked_at: datetime | None


class QuotaSet(RequestModel):
    region_code: RegionCode
    year: int = Field(ge=2000, le=2100)
    level: DesignationLevel
    type: DesignationType
    quota: int = Field(ge=0, le=100_000)


class QuotaPublic(BaseModel):
    region_code: str
    year: int
    level: str
    type: str
    label: str
    quota: int
    used: int
    remaining: int


class ReviewReportCreate(RequestModel):
    party_org_id: uuid.UUID
    secretary_name: str = Field(min_length=1, max_length=100)
    content: str = Field(min_length=1, max_length=20_000)
    reported_on: date


class ReviewReportPublic(BaseModel):
    id: uuid.UUID
    cycle_id: uuid.UUID
    party_org_id: uuid.UUID
    party_org_name: str
    region_code: str
    secretary_name: str
    content: str
    reported_on: date
    created_at: datetime


class ReviewScoreCreate(RequestModel):
    evaluator_kind: EvaluatorKind
    evaluator: str | None = Field(default=None, max_length=100)
    score: Decimal = Field(ge=0, le=100, decimal_places=2)
    comment: str | None = Field(default=None, max_length=2000)


class ReviewScorePublic(BaseModel):
    id: uuid.UUID
    report_id: uuid.UUID
    evaluator_kind: str
    evaluator: str | None
    score: Decimal
    comment: str | None
    created_at: datetime


class ReviewAggregate(BaseModel):
    party_org_id: uuid.UUID
    party_org_name: str
    region_code: str
    report_id: uuid.UUID
    count: int
    average: Decimal | None
    min: Decimal | None
    max: Decimal | None
    by_kind: dict[str, int]
