"""The event contract between the services: envelope, catalog, subscriptions, `emit`.

An event is written to its producer's outbox in the same transaction as the change it
describes, relayed to the arq queue of every subscribing service after commit, and
consumed at most once in effect (the consumer's inbox row shares the effect's transaction).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import regions
from shared.logging import request_id_var
from shared.outbox import OUTBOX_IDS, SERVICE_KEY, SERVICES, outbox_table

__all__ = ["CATALOG", "SERVICES", "Event", "EventSpec", "emit", "emit_many", "emit_sql"]

# Every event is bounded work for its consumers: a producer with more to say splits it into
# events of at most this many organization changes, or this many regions.
CHANGES_PER_EVENT = 500
REGIONS_PER_EVENT = 1_000


class Event(BaseModel):
    """The envelope every event travels in, JSON on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    type: str = Field(pattern=r"^[a-z]+\.[a-z_]+\.[a-z_]+$", examples=["registry.organization.registered"])
    version: int = Field(default=1, ge=1)
    occurred_at: datetime
    producer: str
    correlation_id: str | None = None
    payload: dict[str, Any]


@dataclass(frozen=True)
class EventSpec:
    type: str
    producer: str
    consumers: tuple[str, ...]
    description: str
    payload: builtins.type[BaseModel] | None = None
    version: int = 1


# ---- payloads -------------------------------------------------------------------------


class RegionRef(BaseModel):
    code: str
    parent_code: str | None
    level: int


class RegionsImported(BaseModel):
    regions: list[RegionRef] = Field(description=f"at most {REGIONS_PER_EVENT}; a larger import sends several events")


class OrgFacts(BaseModel):
    """What coverage figures depend on, for one organization at one moment."""

    region_code: str
    kind: str
    area_id: uuid.UUID | None
    industry_code: str | None
    sector: str | None
    status: str
    in_scope: bool | None
    formal_members: int
    covered: bool = Field(description="covered by an active party organization")
    formation: str | None = Field(description="formation of the covering party organization")
    instructed: bool = Field(description="an instructor is assigned today")
    group_org: bool = Field(description="has a trade union or a youth league organization")
    charter: bool = Field(description="party building is written into the charter")


class OrgChange(BaseModel):
    organization_id: uuid.UUID
    credit_code: str | None
    name: str
    before: OrgFacts | None = Field(description="null when the organization is new")
    after: OrgFacts


class OrganizationChanges(BaseModel):
    """One or more organizations changed (an import sends up to 500 per event)."""

    source: str
    changes: list[OrgChange]


class PartyOrgFacts(BaseModel):
    region_code: str
    kind: str
    formation: str
    level: str
    active: bool
    functional: bool
    secretary_in_management: bool
    secretary_is_investor: bool


class PartyOrgChanged(BaseModel):
    party_org_id: uuid.UUID
    name: str
    before: PartyOrgFacts | None
    after: PartyOrgFacts
    organizations: list[OrgChange] = Field(description="organizations whose coverage this changed")


class Observation(BaseModel):
    """What a surveyor saw on a visit; unset fields were not observed."""

    outcome: str = Field(description="operating | zombie | closed | relocated | not_found | refused")
    employees: int | None = None
    formal_members: int | None = None
    probationary_members: int | None = None
    activists: int | None = None
    floating_members: int | None = None
    has_fixed_premises: bool | None = None
    has_business_activity: bool | None = None
    leader_political_status: str | None = None
    notes: str | None = None


class VisitVerified(BaseModel):
    visit_id: uuid.UUID
    organization_id: uuid.UUID
    campaign_id: uuid.UUID
    round: int
    visited_at: datetime
    verified_by: str
    verified_in: str | None = Field(
        default=None,
        description="the verifier's jurisdiction: the registry applies the visit only to an organization inside it "
        "(null in events sent before this field existed: the whole country)",
    )
    region_code: str | None = Field(default=None, description="the region the visit was made in")
    observation: Observation
    latitude: float | None = Field(
        default=None, description="where the visit was taken (WGS 84), if the phone had a fix"
    )
    longitude: float | None = None


class RegistrationConfirmed(BaseModel):
    visit_id: uuid.UUID
    organization_id: uuid.UUID = Field(description="the id the registry gives the new organization")
    campaign_id: uuid.UUID
    confirmed_by: str
    name: str
    kind: str
    region_code: str
    address: str | None
    credit_code: str | None
    industry_code: str | None
    observation: Observation


class RowReason(BaseModel):
    field: str
    reason: str


class VisitLedgerOutcome(BaseModel):
    """What the registry made of a verified visit (or of a confirmed registration) it was sent."""

    visit_id: uuid.UUID
    organization_id: uuid.UUID
    request: str = Field(description="observation (a verified visit) | registration (a confirmed new organization)")
    errors: list[RowReason] = Field(default_factory=list, description="why the registry refused it; empty when applied")


class InstructorChanged(BaseModel):
    instructor_id: uuid.UUID | None = Field(description="null for the daily pass over starting and ending assignments")
    assignment_id: uuid.UUID | None
    organizations: list[OrgChange]


class AssessmentApproved(BaseModel):
    """The final approval of an assessment: its figures are now locked."""

    assessment_id: uuid.UUID
    cycle_id: uuid.UUID
    party_org_id: uuid.UUID
    region_code: str
    template_code: str
    template_version: int
    kind: str = Field(description="star_rating | standardization | site_standard")
    year: int
    quarter: int | None
    total: str = Field(description="decimal as a string, two places")
    star_level: int | None
    passed: bool | None


class RectificationChanged(BaseModel):
    rectification_id: uuid.UUID
    party_org_id: uuid.UUID
    region_code: str
    status: str = Field(description="open | closed")
    due_on: str = Field(description="ISO date the rectification is due")
    star_level: int | None = Field(description="the rating that opened it")
    assessment_id: uuid.UUID = Field(description="the assessment that opened it")
    closed_by_assessment_id: uuid.UUID | None = None


# ---- catalog --------------------------------------------------------------------------

# A service is a consumer of an event only when its handler acts on it (a worker refuses to start
# otherwise). An event no service consumes yet stays in its producer's outbox, marked complete by
# the relay: the record of what happened, for a consumer to come.
_SPECS = [
    EventSpec(
        "registry.region.imported",
        "registry",
        ("coverage",),
        "Regions were created by an import; consumers extend their per-region tables.",
        RegionsImported,
    ),
    EventSpec(
        "registry.organization.registered",
        "registry",
        ("coverage",),
        "Organizations were registered (created).",
        OrganizationChanges,
    ),
    EventSpec(
        "registry.organization.updated",
        "registry",
        ("coverage",),
        "Organizations changed (anything but their status).",
        OrganizationChanges,
    ),
    EventSpec(
        "registry.organization.status_changed",
        "registry",
        ("coverage",),
        "Organizations changed status (and perhaps more).",
        OrganizationChanges,
    ),
    EventSpec(
        "registry.party_org.established",
        "registry",
        ("coverage",),
        "A party organization was established, covering organizations.",
        PartyOrgChanged,
    ),
    EventSpec(
        "registry.party_org.updated",
        "registry",
        ("coverage",),
        "A party organization's attributes changed (level, secretary, superior).",
        PartyOrgChanged,
    ),
    EventSpec(
        "registry.party_org.coverage_changed",
        "registry",
        ("coverage",),
        "The organizations a party organization covers changed.",
        PartyOrgChanged,
    ),
    EventSpec(
        "registry.party_org.dissolved",
        "registry",
        ("coverage", "evaluation"),
        "A party organization was dissolved; its organizations are no longer covered by it.",
        PartyOrgChanged,
    ),
    EventSpec(
        "coverage.visit.verified",
        "coverage",
        ("registry",),
        "An official verified a field visit; the registry applies what was observed (source: visit).",
        VisitVerified,
    ),
    EventSpec(
        "coverage.registration.confirmed",
        "coverage",
        ("registry",),
        "An official confirmed an organization found in the field; the registry registers it.",
        RegistrationConfirmed,
    ),
    EventSpec(
        "registry.visit.applied",
        "registry",
        ("coverage",),
        "The registry's ledger took what a verified visit observed, or registered the organization it found.",
        VisitLedgerOutcome,
    ),
    EventSpec(
        "registry.visit.refused",
        "registry",
        ("coverage",),
        "The registry refused what a verified visit observed (or a confirmed registration): nothing changed; "
        "the reasons travel back to the visit.",
        VisitLedgerOutcome,
    ),
    EventSpec(
        "registry.instructor.assigned",
        "registry",
        ("coverage",),
        "An instructor assignment began (today or on its start date).",
        InstructorChanged,
    ),
    EventSpec(
        "registry.instructor.unassigned",
        "registry",
        ("coverage",),
        "An instructor assignment ended.",
        InstructorChanged,
    ),
    EventSpec(
        "evaluation.assessment.approved",
        "evaluation",
        (),
        "An assessment received its last approval: total, star level and pass are final.",
        AssessmentApproved,
    ),
    EventSpec(
        "evaluation.rectification.opened",
        "evaluation",
        (),
        "An approved rating at or below the threshold opened a rectification (整转) for a party organization.",
        RectificationChanged,
    ),
    EventSpec(
        "evaluation.rectification.closed",
        "evaluation",
        (),
        "A later approved rating above the threshold closed a party organization's rectification.",
        RectificationChanged,
    ),
]
# The whole contract lives here, so the relay (which imports no service) knows every route.
CATALOG: dict[str, EventSpec] = {spec.type: spec for spec in _SPECS}


def _named_regions(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and (key == "code" or key.endswith("region_code")):
                yield item
            else:
                yield from _named_regions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _named_regions(item)


def jurisdiction_of(payload: Mapping[str, Any]) -> str:
    """The smallest region containing every region an event's payload names (the national root when
    it names none): whose operators see the event when its consumption fails."""
    found = {c for c in _named_regions(payload) if regions.is_valid_code(c)}
    if not found:
        return regions.ROOT_CODE
    chains = [regions.ancestors(c)[::-1] for c in found]
    common = regions.ROOT_CODE
    for step in zip(*chains, strict=False):
        if len(set(step)) > 1:
            break
        common = step[0]
    return common


def consumers_of(event_type: str) -> tuple[str, ...]:
    spec = CATALOG.get(event_type)
    return spec.consumers if spec else ()


def subscriptions(service: str) -> frozenset[str]:
    return frozenset(t for t, spec in CATALOG.items() if service in spec.consumers)


def _spec(event_type: str, producer: str | None) -> EventSpec:
    """The catalog's entry for an event `producer` is about to write (an unknown type, or another
    service's, is a programming error)."""
    spec = CATALOG.get(event_type)
    if spec is None:
        raise ValueError(f"unknown event type {event_type}; add it to the catalog")
    if producer != spec.producer:
        raise RuntimeError(f"{event_type} is produced by {spec.producer}, not by {producer}")
    return spec


def _build(session: AsyncSession, event_type: str, payload: BaseModel | Mapping[str, Any]) -> Event:
    producer = session.info.get(SERVICE_KEY)
    spec = _spec(event_type, producer)
    if isinstance(payload, BaseModel):
        data = payload.model_dump(mode="json")
    elif spec.payload is not None:
        data = spec.payload.model_validate(payload).model_dump(mode="json")
    else:
        data = dict(payload)
    return Event(
        id=uuid.uuid4(),
        type=event_type,
        version=spec.version,
        occurred_at=datetime.now(UTC),
        producer=producer,
        correlation_id=request_id_var.get(),
        payload=data,
    )


async def emit_many(session: AsyncSession, items: Iterable[tuple[str, BaseModel | Mapping[str, Any]]]) -> list[Event]:
    """Write events to the producer's outbox inside the caller's transaction."""
    events = [_build(session, event_type, payload) for event_type, payload in items]
    if not events:
        return []
    table = outbox_table(events[0].producer)
    await session.execute(
        insert(table),
        [
            {
                "id": e.id,
                "type": e.type,
                "version": e.version,
                "occurred_at": e.occurred_at,
                "correlation_id": e.correlation_id,
                "payload": e.payload,
            }
            for e in events
        ],
    )
    session.info.setdefault(OUTBOX_IDS, []).extend(e.id for e in events)
    return events


async def emit(session: AsyncSession, event_type: str, payload: BaseModel | Mapping[str, Any]) -> Event:
    return (await emit_many(session, [(event_type, payload)]))[0]


def outbox_insert_sql(producer: str, event_types: Iterable[str], select: str) -> str:
    """The INSERT writing events that SQL builds (a bulk write, too large to build in Python) to
    `producer`'s outbox. `select` yields a `type` and a json `payload` per event; every type it
    may yield is named in `event_types`, each in the catalog and produced by `producer`. A row of a
    type not named gets no version, which the outbox refuses (NOT NULL): the statement fails whole.
    Parameter `:correlation_id`; returns the events' ids."""
    versions = " ".join(f"WHEN '{t}' THEN {_spec(t, producer).version}" for t in event_types)
    if not versions:
        raise ValueError("name the event types the statement writes")
    return (
        f"INSERT INTO {outbox_table(producer).name} (id, type, version, occurred_at, correlation_id, payload) "
        f"SELECT gen_random_uuid(), e.type, CASE e.type {versions} END, now(), :correlation_id, e.payload "
        f"FROM ({select}) e RETURNING id"
    )


async def emit_sql(
    session: AsyncSession, event_types: Iterable[str], select: str, params: Mapping[str, Any] | None = None
) -> int:
    """`emit_many` for events built in SQL (see `outbox_insert_sql`); returns how many were written.
    tests/shared/test_events_catalog.py checks such payloads against the catalog's models."""
    producer = session.info.get(SERVICE_KEY)
    if producer is None:
        raise RuntimeError("a session writing events names its service")
    written = await session.execute(
        text(outbox_insert_sql(producer, event_types, select)),
        {**(params or {}), "correlation_id": request_id_var.get()},
    )
    ids = [r.id for r in written]
    session.info.setdefault(OUTBOX_IDS, []).extend(ids)
    return len(ids)
