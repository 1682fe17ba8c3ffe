"""Idempotent handlers for the registry events coverage consumes (the inbox makes them once-only)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage import reviews, tasks
from services.coverage.figures import COUNTER_EVENTS, Deltas, apply
from shared.events import (
    Event,
    InstructorChanged,
    OrganizationChanges,
    PartyOrgChanged,
    RegionsImported,
    VisitLedgerOutcome,
)
from shared.rules import FIGURE_KINDS
from shared.worker import EventHandler


async def on_regions_imported(session: AsyncSession, event: Event) -> None:
    """Every region gets a zeroed figure row per kind, so child listings show zeros, not gaps.
    One statement over two arrays, whatever the number of regions (at most REGIONS_PER_EVENT)."""
    payload = RegionsImported.model_validate(event.payload)
    if payload.regions:
        await session.execute(
            text(
                "INSERT INTO coverage_figure (region_code, kind) "
                "SELECT r, k FROM unnest(CAST(:codes AS text[])) r CROSS JOIN unnest(CAST(:kinds AS text[])) k "
                "ORDER BY r, k ON CONFLICT DO NOTHING"
            ),
            {"codes": sorted(r.code for r in payload.regions), "kinds": list(FIGURE_KINDS)},
        )


# The counters are written last in each handler: every event of a burst updates the same rows
# (the country's, the province's, …), and their row locks are held from the update to the commit,
# so that must be the shortest stretch of the transaction.


async def on_organizations(session: AsyncSession, event: Event) -> None:
    payload = OrganizationChanges.model_validate(event.payload)
    deltas = Deltas()
    for change in payload.changes:
        deltas.org(change.before, change.after)
    if event.type == "registry.organization.registered":
        await tasks.on_registered(session, payload.changes, date.today())
    await apply(session, deltas)


async def on_party_org(session: AsyncSession, event: Event) -> None:
    payload = PartyOrgChanged.model_validate(event.payload)
    deltas = Deltas()
    deltas.party(payload.before, payload.after)
    for change in payload.organizations:
        deltas.org(change.before, change.after)
    await tasks.on_covered(session, payload.organizations, payload.party_org_id)
    await apply(session, deltas)


async def on_instructor(session: AsyncSession, event: Event) -> None:
    payload = InstructorChanged.model_validate(event.payload)
    deltas = Deltas()
    for change in payload.organizations:
        deltas.org(change.before, change.after)
    await apply(session, deltas)


async def on_visit_applied(session: AsyncSession, event: Event) -> None:
    await reviews.on_ledger_outcome(session, VisitLedgerOutcome.model_validate(event.payload), applied=True)


async def on_visit_refused(session: AsyncSession, event: Event) -> None:
    await reviews.on_ledger_outcome(session, VisitLedgerOutcome.model_validate(event.payload), applied=False)


HANDLERS: dict[str, EventHandler] = {
    "registry.region.imported": on_regions_imported,
    "registry.organization.registered": on_organizations,
    "registry.organization.updated": on_organizations,
    "registry.organization.status_changed": on_organizations,
    "registry.party_org.established": on_party_org,
    "registry.party_org.updated": on_party_org,
    "registry.party_org.coverage_changed": on_party_org,
    "registry.party_org.dissolved": on_party_org,
    "registry.instructor.assigned": on_instructor,
    "registry.instructor.unassigned": on_instructor,
    "registry.visit.applied": on_visit_applied,
    "registry.visit.refused": on_visit_refused,
}
assert COUNTER_EVENTS <= set(HANDLERS), "every counter event has a handler"
