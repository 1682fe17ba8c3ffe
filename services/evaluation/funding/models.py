"""Funding tables (rule sets, computations, allocations, their lines) and I/O schemas."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from services.evaluation.funding.engine import MAX_YUAN, FundingOptions, Rule, check_rules
from shared.models import region_code_column, timestamp_column, utcnow
from shared.schemas import RequestModel

RegionCode = Annotated[str, Field(pattern=r"^\d{12}$", examples=["430723000000"])]
RuleSetCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$", examples=["fuyang"])]
Year = Annotated[int, Field(ge=2000, le=2100)]


class FundingRuleSet(SQLModel, table=True):
    """A version of a rule set. Versions are never edited: a change is a new version."""

    __tablename__ = "funding_rule_set"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    code: str = SQLField(max_length=40)
    version: int = SQLField(sa_column=Column(Integer, nullable=False))
    name: str = SQLField(max_length=200)
    region_code: str = SQLField(sa_column=region_code_column(index=True))
    rules: list[dict[str, Any]] = SQLField(sa_column=Column(JSONB, nullable=False))
    # FundingOptions as published ({} before options existed: the defaults).
    options: dict[str, Any] = SQLField(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=sql_text("'{}'::jsonb"))
    )
    created_by: str = SQLField(max_length=120)
    created_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class FundingComputation(SQLModel, table=True):
    """One computation of a year's allocation under a rule set over a jurisdiction: the inputs an
    official chose (the budget cap), the readings it rests on (assumptions), its totals, and whether
    an official closed it. A closed computation is never computed again."""

    __tablename__ = "funding_computation"
    __table_args__ = (UniqueConstraint("year", "rule_set_code", "scope_code", name="uq_funding_computation_key"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    year: int = SQLField(sa_column=Column(Integer, nullable=False))
    rule_set_code: str = SQLField(max_length=40)
    scope_code: str = SQLField(sa_column=region_code_column(fk=False))
    # The jurisdiction again, under the name row-level security reads.
    region_code: str = SQLField(sa_column=region_code_column(fk=False, index=True))
    rule_set_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("funding_rule_set.id"), nullable=False))
    rule_set_version: int = SQLField(sa_column=Column(Integer, nullable=False))
    budget_cap: int | None = SQLField(default=None, sa_column=Column(BigInteger))
    facts: str = SQLField(max_length=16)
    assumptions: list[dict[str, Any]] = SQLField(sa_column=Column(JSONB, nullable=False))
    party_orgs: int = SQLField(sa_column=Column(Integer, nullable=False))
    lines: int = SQLField(sa_column=Column(Integer, nullable=False))
    uncapped_total: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    total: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    computed_by: str = SQLField(max_length=120)
    computed_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())
    closed_by: str | None = SQLField(default=None, max_length=120)
    closed_at: datetime | None = SQLField(default=None, sa_column=timestamp_column(nullable=True))


class FundingAllocation(SQLModel, table=True):
    """What a rule set gives one party organization for a year, computed over a jurisdiction.

    The id is derived from (year, rule set code, jurisdiction, party organization), so computing
    the same allocation again finds the same row."""

    __tablename__ = "funding_allocation"
    __table_args__ = (
        UniqueConstraint("year", "rule_set_code", "scope_code", "party_org_id", name="uq_funding_allocation_key"),
        Index("ix_funding_allocation_region", "region_code", "year", "id"),
    )

    id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    year: int = SQLField(sa_column=Column(Integer, nullable=False))
    rule_set_code: str = SQLField(max_length=40)
    scope_code: str = SQLField(sa_column=region_code_column(fk=False))
    party_org_id: uuid.UUID = SQLField(sa_column=Column(UUID(as_uuid=True), nullable=False))
    region_code: str = SQLField(sa_column=region_code_column(fk=False))
    party_org_name: str = SQLField(max_length=200)
    party_org_level: str = SQLField(max_length=16)
    rule_set_id: uuid.UUID = SQLField(sa_column=Column(ForeignKey("funding_rule_set.id"), nullable=False))
    rule_set_version: int = SQLField(sa_column=Column(Integer, nullable=False))
    budget_cap: int | None = SQLField(default=None, sa_column=Column(BigInteger))
    uncapped_total: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    total: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    computed_at: datetime = SQLField(default_factory=utcnow, sa_column=timestamp_column())


class FundingLine(SQLModel, table=True):
    """One item of an allocation, naming the rule that produced it."""

    __tablename__ = "funding_line"

    allocation_id: uuid.UUID = SQLField(
        sa_column=Column(ForeignKey("funding_allocation.id", ondelete="CASCADE"), primary_key=True)
    )
    rule_code: str = SQLField(sa_column=Column(String(40), primary_key=True))
    region_code: str = SQLField(sa_column=region_code_column(fk=False))
    position: int = SQLField(sa_column=Column(SmallInteger, nullable=False))
    rule_kind: str = SQLField(max_length=24)
    rule_name: str = SQLField(max_length=100)
    quantity: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    unit_amount: int | None = SQLField(default=None, sa_column=Column(BigInteger))
    uncapped_amount: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    amount: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    basis: str = SQLField(sa_column=Column(Text, nullable=False))


# ---- schemas ------------------------------------------------------------------------------------


class RuleSetCreate(RequestModel):
    """A new rule set, or the next version of one (same code)."""

    code: RuleSetCode
    name: Annotated[str, Field(min_length=1, max_length=200)]
    region_code: RegionCode | None = Field(default=None, description="where it applies (default: your jurisdiction)")
    rules: Annotated[list[Rule], Field(min_length=1, max_length=50)]
    options: FundingOptions = Field(
        default_factory=FundingOptions, description="readings of what the seeds leave open (each has a default)"
    )

    @field_validator("rules")
    @classmethod
    def _consistent(cls, rules: list[Rule]) -> list[Rule]:
        check_rules(rules)
        return rules


class RuleSetPublic(BaseModel):
    id: uuid.UUID
    code: str
    version: int
    name: str
    region_code: str
    rules: list[dict[str, Any]]
    options: FundingOptions
    created_by: str
    created_at: datetime

    @field_validator("options", mode="before")
    @classmethod
    def _stored(cls, value: Any) -> Any:
        return value or {}


Facts = Literal["year_end", "current"]


class ComputeRequest(RequestModel):
    year: Year
    region_code: RegionCode | None = Field(default=None, description="the jurisdiction (default: yours)")
    rule_set_code: RuleSetCode
    rule_set_version: Annotated[int, Field(ge=1, le=2_147_483_647)] | None = Field(
        default=None, description="default: the latest"
    )
    budget_cap: Annotated[int, Field(ge=0, le=MAX_YUAN * 1000)] | None = Field(
        default=None,
        description="yuan; scales every line down to sum exactly to it (never up). Omitted: the cap of the "
        "previous computation of this year, rule set and jurisdiction is kept; `null` removes it; `0` needs "
        "`confirm_zero_budget`",
    )
    confirm_zero_budget: bool = Field(
        default=False, description="true to confirm a `budget_cap` of 0, which zeroes every allocation"
    )
    facts: Facts | None = Field(
        default=None,
        description="`year_end`: party organizations and members as the registry recorded them at the end of "
        "31 December (Beijing time), undoing later changes from its ledger; `current`: as the registry holds "
        "them now. Default: `year_end` once the year is over, else `current`",
    )


class Assumption(BaseModel):
    """A reading the computation rests on, for the official who checks it before closing the year."""

    code: str = Field(examples=["months"])
    value: str = Field(examples=["any_day"])
    text: str = Field(description="the reading in Chinese", examples=["不足一个月的按整月计（成立、撤销当月均计入）"])


class ComputeResult(BaseModel):
    year: int
    region_code: str
    rule_set_code: str
    rule_set_version: int
    budget_cap: int | None
    budget_cap_source: Literal["request", "kept", "none"] = Field(
        description="`kept`: the request sent no cap and the previous computation's cap was kept"
    )
    facts: Facts
    facts_as_of: datetime = Field(description="the moment the registry facts were read as of")
    assumptions: list[Assumption]
    party_orgs: int = Field(description="party organizations given at least one line")
    lines: int
    uncapped_total: int
    total: int
    scaled: bool = Field(description="true when the cap scaled the lines down")
    created: int
    updated: int
    unchanged: int
    removed: int


class CloseRequest(RequestModel):
    """The computation to close: a year, a rule set and the jurisdiction it was computed over."""

    year: Year
    region_code: RegionCode | None = Field(default=None, description="the jurisdiction (default: yours)")
    rule_set_code: RuleSetCode


class ComputationPublic(BaseModel):
    id: uuid.UUID
    year: int
    rule_set_code: str
    rule_set_version: int
    region_code: str = Field(description="the jurisdiction computed over")
    budget_cap: int | None
    facts: Facts
    assumptions: list[Assumption]
    party_orgs: int
    lines: int
    uncapped_total: int
    total: int
    computed_by: str
    computed_at: datetime = Field(description="when its result last changed")
    closed: bool
    closed_by: str | None
    closed_at: datetime | None


class LinePublic(BaseModel):
    rule_code: str
    rule_kind: str
    rule_name: str
    quantity: int
    unit_amount: int | None
    basis: str
    uncapped_amount: int
    amount: int


class AllocationPublic(BaseModel):
    id: uuid.UUID
    year: int
    rule_set_code: str
    rule_set_version: int
    scope_code: str
    party_org_id: uuid.UUID
    party_org_name: str
    party_org_level: str
    region_code: str
    budget_cap: int | None
    uncapped_total: int
    total: int
    computed_at: datetime
    lines: list[LinePublic]
