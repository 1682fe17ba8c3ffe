"""Helpers every evaluation module shares: ETags, party organizations, jurisdiction checks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import visible
from shared.auth import Caller
from shared.errors import invalid


@dataclass(frozen=True)
class PartyOrgRef:
    id: uuid.UUID
    name: str
    region_code: str
    active: bool


async def party_org(session: AsyncSession, caller: Caller, party_org_id: uuid.UUID) -> PartyOrgRef:
    """A party organization in the caller's jurisdiction (the registry's table, read only), else 404."""
    row = (
        await session.execute(
            text("SELECT id, name, region_code, active FROM party_org WHERE id = :id"), {"id": party_org_id}
        )
    ).first()
    visible.check(
        caller, row.region_code if row else None, kind="party_org", key=party_org_id, what="party organization"
    )
    assert row is not None
    return PartyOrgRef(id=row.id, name=row.name, region_code=row.region_code, active=row.active)


async def region_in_jurisdiction(session: AsyncSession, caller: Caller, code: str | None) -> str:
    """A region the caller may act in (default: their own); 404 outside it or when it does not exist."""
    return (await visible.load_region(session, caller, code)).code


def require_active(ref: PartyOrgRef) -> None:
    if not ref.active:
        raise invalid("party_org_id", "this party organization is dissolved")
