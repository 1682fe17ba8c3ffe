"""Idempotent handlers for the registry events coverage consumes."""

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage.models import ORG_KINDS, CoverageFigure
from shared.events import Event, RegionsImported
from shared.worker import EventHandler


async def on_regions_imported(session: AsyncSession, event: Event) -> None:
    """Every region gets a zeroed figure row per kind, so child listings show zeros, not gaps."""
    payload = RegionsImported.model_validate(event.payload)
    rows = [{"region_code": r.code, "kind": kind} for r in payload.regions for kind in ORG_KINDS]
    if rows:
        await session.execute(insert(CoverageFigure).values(rows).on_conflict_do_nothing())


HANDLERS: dict[str, EventHandler] = {
    "registry.region.imported": on_regions_imported,
}
