"""Coverage tables and schemas."""

from datetime import datetime

from sqlalchemy import BigInteger, Column, String
from sqlmodel import Field, SQLModel

from shared.models import region_code_column, timestamp_column, utcnow

ORG_KINDS = ("enterprise", "social_org", "individual_business")


def _counter(description: str) -> int:
    return Field(default=0, sa_column_kwargs={"server_default": "0"}, sa_type=BigInteger, description=description)


class CoverageFigure(SQLModel, table=True):
    """Counters per region (its whole subtree) and organization kind, kept exact by events."""

    __tablename__ = "coverage_figure"

    region_code: str = Field(sa_column=region_code_column(primary_key=True, fk=False))
    kind: str = Field(sa_column=Column(String(24), primary_key=True))
    registered: int = _counter("organizations registered, any status")
    active: int = _counter("organizations with status active")
    in_scope: int = _counter("active and in scope: the denominator")
    org_covered: int = _counter("in scope and covered by an active party organization")
    work_covered: int = _counter("in scope and organization-covered, instructed or with group organizations")
    single_eligible: int = _counter("in scope with at least 3 formal members")
    single_formed: int = _counter("single-eligible with a single-formation party organization")
    charter_included: int = _counter("in scope with party building written into the charter")
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
