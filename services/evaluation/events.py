"""Idempotent handlers for the events the evaluation service consumes (the inbox makes them once-only)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from services.evaluation import assessments
from shared.events import Event, PartyOrgChanged
from shared.worker import EventHandler

log = logging.getLogger(__name__)


async def on_party_org_dissolved(session: AsyncSession, event: Event) -> None:
    """A dissolved party organization is no longer rated: cancel its open 整转 and unfinished assessments."""
    payload = PartyOrgChanged.model_validate(event.payload)
    rectifications, drafts = await assessments.on_party_org_dissolved(session, payload.party_org_id)
    log.info(
        "party organization dissolved",
        extra={
            "party_org_id": str(payload.party_org_id),
            "rectifications_cancelled": rectifications,
            "assessments_cancelled": drafts,
        },
    )


HANDLERS: dict[str, EventHandler] = {
    "registry.party_org.dissolved": on_party_org_dissolved,
}
