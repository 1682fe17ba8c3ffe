"""Organizations: derived values, reads, ledger history and the change feed (writes: merge.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.models import (
    ChangeFeed,
    ChangeItem,
    LedgerEntry,
    Organization,
    OrganizationFields,
    OrganizationPublic,
    OrgKind,
    OrgStatus,
)
from services.registry.queries import list_visible
from shared import regions, rules
from shared.auth import Caller
from shared.db import copy_into, raw_connection
from shared.pagination import Page, PageParams, decode_cursor, encode_cursor, trim
from shared.visible import load_row

FIELDS: tuple[str, ...] = tuple(OrganizationFields.model_fields)
# Column order of the organization table as COPY writes it.
COLUMNS: tuple[str, ...] = (
    "id",
    "credit_code",
    *FIELDS,
    "status_changed_at",
    "in_scope",
    "party_org_id",
    "instructed",
    "version",
    "created_at",
    "updated_at",
)
DEFAULTS: dict[str, Any] = {
    "status": OrgStatus.active.value,
    "formal_members": 0,
    "probationary_members": 0,
    "activists": 0,
    "floating_members": 0,
    "has_trade_union": False,
    "has_youth_league": False,
    "charter_includes_party_building": False,
}


# ---- derived values --------------------------------------------------------------------


def to_public(row: Mapping[str, Any]) -> OrganizationPublic:
    facts = rules.org_facts(row, None)
    return OrganizationPublic.model_validate(
        {**{k: row[k] for k in COLUMNS}, "covered": rules.org_covered(facts), "work_covered": rules.work_covered(facts)}
    )


def jsonable(value: Any) -> Any:
    if isinstance(value, (uuid.UUID, datetime, date)):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


# ---- locking and the ledger -------------------------------------------------------------

_LOCK_SQL = """
SELECT o.*, p.formation AS covering_formation
FROM organization o LEFT JOIN party_org p ON p.id = o.party_org_id
WHERE o.credit_code = ANY(:codes) OR o.id = ANY(:ids)
FOR UPDATE OF o
"""


async def lock_rows(
    session: AsyncSession, *, codes: Sequence[str] = (), ids: Sequence[uuid.UUID] = ()
) -> list[dict[str, Any]]:
    result = await session.execute(text(_LOCK_SQL), {"codes": list(codes), "ids": list(ids)})
    return [dict(r) for r in result.mappings()]


HISTORY_COLUMNS = (
    "entity",
    "entity_id",
    "region_code",
    "action",
    "source",
    "actor",
    "reason",
    "request_id",
    "batch_id",
    "changed_at",
    "before",
    "after",
)


async def write_history(session: AsyncSession, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append ledger lines (tuples in HISTORY_COLUMNS order; before/after as JSON text)."""
    if rows:
        await copy_into(await raw_connection(session), "registry_change", HISTORY_COLUMNS, rows)


# ---- reads -----------------------------------------------------------------------------


async def get_row(
    session: AsyncSession, *, caller: Caller, org_id: uuid.UUID | None = None, credit_code: str | None = None
) -> dict[str, Any]:
    if org_id is not None:
        return await load_row(session, caller, Organization, org_id, what="organization")
    return await load_row(
        session, caller, Organization, credit_code, what="organization", kind="credit_code", column="credit_code"
    )


@dataclass(frozen=True)
class OrgFilter:
    region: str | None = None
    kind: OrgKind | None = None
    status: OrgStatus | None = None
    in_scope: bool | None = None
    area_id: uuid.UUID | None = None
    industry: str | None = None
    covered: bool | None = None


def filter_sql(caller: Caller, flt: OrgFilter, params: dict[str, Any], alias: str = "o") -> list[str]:
    """WHERE clauses (and their parameters) for an organization filter inside the caller's jurisdiction."""
    if flt.region is not None:
        caller.check_region(flt.region)
    params["prefix"] = regions.prefix(flt.region or caller.region_code) + "%"
    return [f"{alias}.region_code LIKE :prefix", *attribute_filters(flt, params, alias)]


def attribute_filters(flt: OrgFilter, params: dict[str, Any], alias: str) -> list[str]:
    """The filter's clauses other than the region."""
    clauses = []
    if flt.kind is not None:
        clauses.append(f"{alias}.kind = :kind")
        params["kind"] = flt.kind.value
    if flt.status is not None:
        clauses.append(f"{alias}.status = :status")
        params["status"] = flt.status.value
    if flt.in_scope is not None:
        clauses.append(f"{alias}.in_scope IS {'TRUE' if flt.in_scope else 'FALSE'}")
    if flt.area_id is not None:
        clauses.append(f"{alias}.area_id = :area_id")
        params["area_id"] = flt.area_id
    if flt.industry is not None:
        # An industry filter matches the code and everything below it (C → C13 → C131 → C1310).
        clauses.append(f"{alias}.industry_code LIKE :industry")
        params["industry"] = flt.industry + "%"
    if flt.covered is not None:
        covered = rules.org_covered_sql(f"{alias}.")
        clauses.append(covered if flt.covered else f"NOT {covered}")
    return clauses


async def list_page(
    session: AsyncSession, *, caller: Caller, flt: OrgFilter, page: PageParams
) -> Page[OrganizationPublic]:
    params: dict[str, Any] = {}
    clauses = attribute_filters(flt, params, "organization")
    rows, cursor = await list_visible(
        session, caller, Organization, region=flt.region, page=page, clauses=clauses, params=params
    )
    return Page[OrganizationPublic](items=[to_public(r) for r in rows], next_cursor=cursor)


async def history(session: AsyncSession, *, caller: Caller, org_id: uuid.UUID, page: PageParams) -> Page[LedgerEntry]:
    (after,) = page.after(int) or (0,)  # checked first: a forged cursor is a 422 whether or not the org exists
    await get_row(session, caller=caller, org_id=org_id)
    found = await session.execute(
        text("SELECT * FROM registry_change WHERE entity_id = :id AND seq > :after ORDER BY seq LIMIT :limit"),
        {"id": org_id, "after": after, "limit": page.limit + 1},
    )
    rows, cursor = trim([dict(r) for r in found.mappings()], page, lambda r: (r["seq"],))
    return Page[LedgerEntry](items=[LedgerEntry.model_validate(r) for r in rows], next_cursor=cursor)


async def changes(session: AsyncSession, *, caller: Caller, after: str | None, limit: int) -> ChangeFeed:
    """Organization and party-org changes in transaction order, without gaps or repeats.

    Only rows written by transactions older than the oldest one still running are served,
    so a transaction that started earlier but commits later can never be skipped.
    """
    txid, seq = decode_cursor(after, int, int, field="after") if after else (0, 0)
    params: dict[str, Any] = {"txid": txid, "seq": seq, "limit": limit}
    region_clause = ""
    if prefix := caller.region_prefix:
        region_clause = "AND region_code LIKE :prefix"
        params["prefix"] = prefix + "%"
    found = await session.execute(
        text(
            "SELECT * FROM registry_change "
            "WHERE txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
            f"AND (txid, seq) > (:txid, :seq) {region_clause} ORDER BY txid, seq LIMIT :limit"
        ),
        params,
    )
    rows = [dict(r) for r in found.mappings()]
    items = [
        ChangeItem(
            cursor=encode_cursor(r["txid"], r["seq"]),
            entity=r["entity"],
            id=r["entity_id"],
            region_code=r["region_code"],
            action=r["action"],
            source=r["source"],
            changed_at=r["changed_at"],
            before=r["before"],
            after=r["after"],
        )
        for r in rows
    ]
    next_cursor = items[-1].cursor if items else encode_cursor(txid, seq)
    return ChangeFeed(items=items, next_cursor=next_cursor)
