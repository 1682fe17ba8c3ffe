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
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.logging import request_id_var
from shared.outbox import OUTBOX_IDS, SERVICE_KEY, SERVICES, outbox_table

__all__ = ["CATALOG", "SERVICES", "Event", "EventSpec", "emit", "emit_many"]


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
    regions: list[RegionRef]


# ---- catalog --------------------------------------------------------------------------

_SPECS = [
    EventSpec(
        "registry.region.imported", "registry", ("coverage",),
        "Regions were created or renamed by an import; consumers extend their per-region tables.",
        RegionsImported,
    ),
]
# The whole contract lives here, so the relay (which imports no service) knows every route.
CATALOG: dict[str, EventSpec] = {spec.type: spec for spec in _SPECS}


def consumers_of(event_type: str) -> tuple[str, ...]:
    spec = CATALOG.get(event_type)
    return spec.consumers if spec else ()


def subscriptions(service: str) -> frozenset[str]:
    return frozenset(t for t, spec in CATALOG.items() if service in spec.consumers)


def _build(session: AsyncSession, event_type: str, payload: BaseModel | Mapping[str, Any]) -> Event:
    spec = CATALOG.get(event_type)
    if spec is None:
        raise ValueError(f"unknown event type {event_type}; add it to the catalog")
    producer = session.info.get(SERVICE_KEY)
    if producer != spec.producer:
        raise RuntimeError(f"{event_type} is produced by {spec.producer}, not by {producer}")
    if isinstance(payload, BaseModel):
        data = payload.model_dump(mode="json")
    elif spec.payload is not None:
        data = spec.payload.model_validate(payload).model_dump(mode="json")
    else:
        data = dict(payload)
    return Event(
        id=uuid.uuid4(), type=event_type, version=spec.version, occurred_at=datetime.now(UTC),
        producer=producer, correlation_id=request_id_var.get(), payload=data,
    )


async def emit_many(
    session: AsyncSession, items: Iterable[tuple[str, BaseModel | Mapping[str, Any]]]
) -> list[Event]:
    """Write events to the producer's outbox inside the caller's transaction."""
    events = [_build(session, event_type, payload) for event_type, payload in items]
    if not events:
        return []
    table = outbox_table(events[0].producer)
    await session.execute(
        insert(table),
        [
            {
                "id": e.id, "type": e.type, "version": e.version, "occurred_at": e.occurred_at,
                "correlation_id": e.correlation_id, "payload": e.payload,
            }
            for e in events
        ],
    )
    session.info.setdefault(OUTBOX_IDS, []).extend(e.id for e in events)
    return events


async def emit(session: AsyncSession, event_type: str, payload: BaseModel | Mapping[str, Any]) -> Event:
    return (await emit_many(session, [(event_type, payload)]))[0]
