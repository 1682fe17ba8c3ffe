"""Events the registry consumes: what officials verified in the field reaches the ledger (source: visit).

Each answers back (`registry.visit.applied` or `registry.visit.refused` with the reasons), so the
reviewer sees on the visit whether the ledger changed; a refusal is also kept in the inbox for operators."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry import merge
from services.registry.models import ChangeSource, RowError
from shared.auth import Caller, system_caller
from shared.events import (
    Event,
    Observation,
    RegistrationConfirmed,
    RowReason,
    VisitLedgerOutcome,
    VisitVerified,
    emit,
)
from shared.worker import EventHandler, Refusal

# A visit's outcome as the organization's status; not found and refused leave the status alone
# (one visit is not enough to close an organization's record).
STATUS_OF_OUTCOME = {"operating": "active", "zombie": "zombie", "closed": "closed", "relocated": "relocated"}
OUTCOME_LABELS = {
    "operating": "正常经营",
    "zombie": "僵尸企业（空壳）",
    "closed": "停业",
    "relocated": "迁出",
    "not_found": "未找到",
    "refused": "拒绝配合",
}
OBSERVED_FIELDS = tuple(f for f in Observation.model_fields if f not in ("outcome", "notes"))


def _values(observation: Observation) -> dict[str, Any]:
    values = {k: getattr(observation, k) for k in OBSERVED_FIELDS if getattr(observation, k) is not None}
    if (status := STATUS_OF_OUTCOME.get(observation.outcome)) is not None:
        values["status"] = status
    return values


def _reviewer(name: str, region_code: str | None = None) -> Caller:
    """Who the ledger names; the change is confined to the verifier's jurisdiction when the event
    carries it (an organization may have moved elsewhere between the visit and its verification)."""
    caller = system_caller(f"visit verified by {name}")
    return replace(caller, region_code=region_code) if region_code else caller


# The merge's reasons, said for a visit: it names the organization by id, not by credit code.
_VISIT_REASONS = {
    ("name", "Field required"): ("organization_id", "the organization is not in the registry"),
    ("credit_code", "not within your jurisdiction"): (
        "organization_id",
        "the organization is no longer within the verifier's jurisdiction (it moved after the visit was assigned)",
    ),
}


def _reasons(errors: list[RowError]) -> list[RowReason]:
    out = []
    for err in errors:
        field, reason = _VISIT_REASONS.get((err.field, err.reason), (err.field, err.reason))
        out.append(RowReason(field=field, reason=reason))
    return out


async def _apply(
    session: AsyncSession,
    visit: VisitVerified | RegistrationConfirmed,
    request: str,
    incoming: merge.Incoming,
    *,
    caller: Caller,
    reason: str,
) -> Refusal | None:
    """Write what the visit asks to the ledger (source: visit) and tell coverage what became of it;
    a refusal is also recorded in the inbox, with why."""
    result = await merge.merge(session, caller=caller, source=ChangeSource.visit, reason=reason, incoming=[incoming])
    outcome = VisitLedgerOutcome(
        visit_id=visit.visit_id, organization_id=visit.organization_id, request=request, errors=_reasons(result.errors)
    )
    if not result.errors:
        await emit(session, "registry.visit.applied", outcome)
        return None
    await emit(session, "registry.visit.refused", outcome)
    return Refusal("; ".join(f"{e.field}: {e.reason}" for e in outcome.errors))


async def on_visit_verified(session: AsyncSession, event: Event) -> Refusal | None:
    payload = VisitVerified.model_validate(event.payload)
    reason = (
        f"摸排走访核实（第{payload.round}轮，{payload.visited_at:%Y-%m-%d}）："
        f"{OUTCOME_LABELS.get(payload.observation.outcome, payload.observation.outcome)}"
    )
    if payload.observation.notes:
        reason += f"；{payload.observation.notes}"
    values = _values(payload.observation)
    if "status" in values:
        values["status_reason"] = reason
    incoming = merge.Incoming(row=0, values=values, org_id=payload.organization_id)
    caller = _reviewer(payload.verified_by, payload.verified_in)
    refused = await _apply(session, payload, "observation", incoming, caller=caller, reason=reason)
    if refused is None and payload.latitude is not None and payload.longitude is not None:
        # A verified visit's GPS fix is where the organization is: the next visit is checked against it.
        await session.execute(
            text("UPDATE organization SET latitude = :lat, longitude = :lon WHERE id = :id"),
            {"lat": payload.latitude, "lon": payload.longitude, "id": payload.organization_id},
        )
    return refused


async def on_registration_confirmed(session: AsyncSession, event: Event) -> Refusal | None:
    payload = RegistrationConfirmed.model_validate(event.payload)
    values: dict[str, Any] = {
        **_values(payload.observation),
        "name": payload.name,
        "kind": payload.kind,
        "region_code": payload.region_code,
    }
    for key in ("address", "industry_code"):
        if getattr(payload, key):
            values[key] = getattr(payload, key)
    reason = f"摸排发现的新组织（走访记录 {payload.visit_id}），经 {payload.confirmed_by} 确认登记"
    if values.get("status", "active") != "active":
        values["status_reason"] = reason
    incoming = merge.Incoming(
        row=0, values=values, credit_code=payload.credit_code, new_id=uuid.UUID(str(payload.organization_id))
    )
    return await _apply(
        session, payload, "registration", incoming, caller=_reviewer(payload.confirmed_by), reason=reason
    )


HANDLERS: dict[str, EventHandler] = {
    "coverage.visit.verified": on_visit_verified,
    "coverage.registration.confirmed": on_registration_confirmed,
}
