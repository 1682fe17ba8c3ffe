"""Events the registry consumes: what officials verified in the field reaches the ledger (source: visit)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.registry import merge
from services.registry.models import ChangeSource
from shared.auth import Caller, system_caller
from shared.events import Event, Observation, RegistrationConfirmed, VisitVerified
from shared.worker import EventHandler

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


def _reviewer(name: str) -> Caller:
    # The reviewer's jurisdiction was checked by coverage when the visit was verified.
    return system_caller(f"visit verified by {name}")


async def on_visit_verified(session: AsyncSession, event: Event) -> None:
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
    await merge.merge(
        session,
        caller=_reviewer(payload.verified_by),
        source=ChangeSource.visit,
        reason=reason,
        incoming=[merge.Incoming(row=0, values=values, org_id=payload.organization_id)],
    )


async def on_registration_confirmed(session: AsyncSession, event: Event) -> None:
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
    result = await merge.merge(
        session,
        caller=_reviewer(payload.confirmed_by),
        source=ChangeSource.visit,
        reason=reason,
        incoming=[
            merge.Incoming(
                row=0, values=values, credit_code=payload.credit_code, new_id=uuid.UUID(str(payload.organization_id))
            )
        ],
    )
    if result.errors:
        err = result.errors[0]
        raise ValueError(f"registration refused: {err.field}: {err.reason}")


HANDLERS: dict[str, EventHandler] = {
    "coverage.visit.verified": on_visit_verified,
    "coverage.registration.confirmed": on_registration_confirmed,
}
