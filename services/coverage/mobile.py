"""The field app's API: sync down (deltas and removals), visits up (idempotent batches), photos.

The bar is ODK Central / DHIS2 Android: a phone that is offline for days, resends whole batches,
and reorders them, never creates a second row, never loses a visit because a neighbour in its
batch was bad, and hears through the next sync what an official decided.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage.models import ItemResult, PhotoStored, SyncItem, SyncPage, Visit, VisitBatchResult, VisitIn
from shared import regions
from shared.auth import Caller
from shared.db import raw_connection
from shared.errors import ProblemError, invalid, not_found, printable
from shared.events import Observation
from shared.pagination import decode_cursor, encode_cursor
from shared.settings import get_settings
from shared.visible import refused_row

FUTURE_TOLERANCE = timedelta(minutes=10)  # phones' clocks drift
OBSERVED = tuple(f for f in Observation.model_fields if f != "outcome")  # the event contract
IMAGE_TYPES = {b"\xff\xd8\xff": ("image/jpeg", "jpg"), b"\x89PNG\r\n\x1a\n": ("image/png", "png")}


def surveyor_of(caller: Caller) -> uuid.UUID:
    if caller.kind != "user":
        raise ProblemError(403, "the field app needs a surveyor's account, not an API key", code="forbidden")
    return caller.id


# ---- sync down ------------------------------------------------------------------------------


async def sync(session: AsyncSession, *, caller: Caller, after: str | None, limit: int) -> SyncPage:
    surveyor = surveyor_of(caller)
    txid, seq = decode_cursor(after, int, int, field="after") if after else (0, 0)
    # Only changes of transactions older than every one still running, as the registry's feed.
    found = await session.execute(
        text(
            "SELECT txid, seq, assignment_id, op FROM mobile_change WHERE surveyor_id = :s "
            "AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint AND (txid, seq) > (:t, :q) "
            "ORDER BY txid, seq LIMIT :n"
        ),
        {"s": surveyor, "t": txid, "q": seq, "n": limit + 1},
    )
    rows = list(found)
    more = len(rows) > limit
    rows = rows[:limit]
    latest: dict[uuid.UUID, str] = {}
    for r in rows:
        latest.pop(r.assignment_id, None)  # the last change of an assignment decides, in order
        latest[r.assignment_id] = r.op
    upserts = [a for a, op in latest.items() if op == "upsert"]
    snapshots = await assignment_snapshots(session, upserts, surveyor)
    items = []
    for assignment_id, op in latest.items():
        snapshot = snapshots.get(assignment_id)
        if op == "upsert" and snapshot is not None:
            items.append(SyncItem(op="upsert", assignment_id=assignment_id, assignment=snapshot))
        else:
            items.append(SyncItem(op="remove", assignment_id=assignment_id))
    cursor = encode_cursor(rows[-1].txid, rows[-1].seq) if rows else encode_cursor(txid, seq)
    return SyncPage(items=items, cursor=cursor, more=more)


async def assignment_snapshots(
    session: AsyncSession, ids: Sequence[uuid.UUID], surveyor: uuid.UUID
) -> dict[uuid.UUID, dict[str, Any]]:
    """What the phone needs for each assignment still the surveyor's: the organization, the last
    visit and its review, the reasons earlier visits were rejected."""
    if not ids:
        return {}
    found = await session.execute(
        text("""
      SELECT a.id, a.campaign_id, c.name AS campaign_name, a.round, a.status, a.version, r.ends_on,
             o.id AS org_id, o.credit_code, o.name, o.kind, o.region_code, reg.name AS region_name, o.address,
             o.status AS org_status, o.employees, o.formal_members, o.probationary_members, o.has_fixed_premises,
             o.has_business_activity, o.party_org_id IS NOT NULL AS covered
      FROM assignment a
      JOIN campaign c ON c.id = a.campaign_id
      JOIN campaign_round r ON r.campaign_id = a.campaign_id AND r.number = a.round
      JOIN organization o ON o.id = a.organization_id
      JOIN region reg ON reg.code = o.region_code
      WHERE a.id = ANY(:ids) AND a.surveyor_id = :s AND c.status = 'active'"""),
        {"ids": list(ids), "s": surveyor},
    )
    out: dict[uuid.UUID, dict[str, Any]] = {}
    for r in found.mappings():
        out[r["id"]] = {
            "id": str(r["id"]),
            "campaign_id": str(r["campaign_id"]),
            "campaign_name": r["campaign_name"],
            "round": r["round"],
            "round_ends_on": r["ends_on"].isoformat(),
            "status": r["status"],
            "version": r["version"],
            "organization": {
                "id": str(r["org_id"]),
                "credit_code": r["credit_code"],
                "name": r["name"],
                "kind": r["kind"],
                "region_code": r["region_code"],
                "region_name": r["region_name"],
                "address": r["address"],
                "status": r["org_status"],
                "employees": r["employees"],
                "formal_members": r["formal_members"],
                "probationary_members": r["probationary_members"],
                "has_fixed_premises": r["has_fixed_premises"],
                "has_business_activity": r["has_business_activity"],
                "covered": r["covered"],
            },
            "previous_visit": None,
            "rejections": [],
        }
    visits = await session.execute(
        text(
            "SELECT id, assignment_id, visited_at, outcome, review_status, reject_reason, reviewed_at FROM visit "
            "WHERE assignment_id = ANY(:ids) ORDER BY visited_at"
        ),
        {"ids": list(out)},
    )
    for v in visits.mappings():
        snapshot = out[v["assignment_id"]]
        snapshot["previous_visit"] = {
            "id": str(v["id"]),
            "visited_at": v["visited_at"].isoformat(),
            "outcome": v["outcome"],
            "review_status": v["review_status"],
        }
        if v["review_status"] == "rejected":
            snapshot["rejections"].append(
                {"visit_id": str(v["id"]), "reason": v["reject_reason"], "rejected_at": v["reviewed_at"].isoformat()}
            )
    return out


# ---- visits up ------------------------------------------------------------------------------


def content_hash(visit: VisitIn) -> str:
    """The visit's content, id aside, in one canonical form."""
    body = visit.model_dump(mode="json", exclude={"id"})
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _reasons(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": printable(".".join(str(p) for p in e["loc"])) or "visit",
            "reason": printable(str(e["msg"]).removeprefix("Value error, ")),
        }
        for e in exc.errors()
    ]


async def submit(session: AsyncSession, *, caller: Caller, items: list[dict[str, Any]]) -> VisitBatchResult:
    surveyor = surveyor_of(caller)
    limit = get_settings().visit_batch_max
    if len(items) > limit:
        raise invalid("visits", f"at most {limit} visits per batch (got {len(items)})")
    now = datetime.now(UTC)
    results: list[ItemResult] = []
    parsed: dict[int, tuple[VisitIn, str]] = {}
    for i, raw in enumerate(items):
        try:
            visit = VisitIn.model_validate(raw)
        except ValidationError as exc:
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            echoed = printable(str(raw_id)) if raw_id else None  # as sent, but showable
            results.append(ItemResult(id=echoed, status="invalid", reasons=_reasons(exc)))
            continue
        results.append(ItemResult(id=str(visit.id), status="pending"))
        parsed[i] = (visit, content_hash(visit))

    contexts = await _contexts(session, [v for v, _ in parsed.values()])
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    first_of: dict[uuid.UUID, int] = {}
    for i, (visit, digest) in parsed.items():
        if visit.id in first_of:
            continue  # a repeat inside the batch answers as its first occurrence, below
        problem, row = _check(visit, digest, contexts, surveyor, caller, now)
        if problem:
            results[i] = ItemResult(id=str(visit.id), status="invalid", reasons=[problem])
            continue
        first_of[visit.id] = i
        rows[visit.id] = row

    # A second copy of one visit under a new id (the phone recorded it twice): same assignment,
    # same time, same content.
    copies: dict[tuple[Any, ...], uuid.UUID] = {}
    if rows:
        keys = [(r["assignment_id"], r["visited_at"], r["content_hash"]) for r in rows.values() if r["assignment_id"]]
        if keys:
            found = await session.execute(
                text(
                    "SELECT id, assignment_id, visited_at, content_hash FROM visit "
                    "WHERE (assignment_id, visited_at, content_hash) IN "
                    "(SELECT * FROM unnest(CAST(:a AS uuid[]), CAST(:t AS timestamptz[]), CAST(:h AS text[])))"
                ),
                {"a": [k[0] for k in keys], "t": [k[1] for k in keys], "h": [k[2] for k in keys]},
            )
            copies = {(r.assignment_id, r.visited_at, r.content_hash): r.id for r in found}
        seen: dict[tuple[Any, ...], uuid.UUID] = {}
        for vid, row in list(rows.items()):
            key = (row["assignment_id"], row["visited_at"], row["content_hash"])
            original = copies.get(key) or (seen.get(key) if row["assignment_id"] else None)
            if row["assignment_id"] and original is not None and original != vid:
                results[first_of[vid]] = ItemResult(id=str(vid), status="duplicate", duplicate_of=original)
                del rows[vid]
            elif row["assignment_id"]:
                seen[key] = vid

    inserted = await _insert(session, list(rows.values()))
    existing: dict[uuid.UUID, Any] = {
        vid: _Stored(rows[vid]["content_hash"], rows[vid]["received_at"], rows[vid]["late"]) for vid in inserted
    }
    if set(rows) - inserted:  # ids that were there before: compare with what was stored then
        stored = await session.execute(
            text("SELECT id, content_hash, received_at, late FROM visit WHERE id = ANY(:ids)"),
            {"ids": list(set(rows) - inserted)},
        )
        existing |= {r.id: _Stored(r.content_hash, r.received_at, r.late) for r in stored}
    for vid, i in first_of.items():
        if vid not in rows:
            continue
        have = existing[vid]
        if have.content_hash == rows[vid]["content_hash"]:
            results[i] = ItemResult(id=str(vid), status="accepted", late=have.late, received_at=have.received_at)
        else:
            results[i] = ItemResult(
                id=str(vid),
                status="conflict",
                reasons=[
                    {
                        "field": "id",
                        "reason": "this id was already sent with different content; send a new id for a new visit",
                    }
                ],
            )
    for i, (visit, digest) in parsed.items():
        if results[i].status == "pending":  # a repeat inside the batch
            first = results[first_of[visit.id]] if visit.id in first_of else None
            if (
                first is not None
                and first.status in ("accepted", "duplicate")
                and parsed[first_of[visit.id]][1] == digest
            ):
                results[i] = first.model_copy()
            else:
                results[i] = ItemResult(
                    id=str(visit.id),
                    status="conflict",
                    reasons=[
                        {"field": "id", "reason": "the same id appears twice in this batch with different content"}
                    ],
                )
    tally = {s: sum(1 for r in results if r.status == s) for s in ("accepted", "duplicate", "conflict", "invalid")}
    return VisitBatchResult(**tally, items=results)


@dataclass(frozen=True)
class _Stored:
    content_hash: str
    received_at: datetime
    late: bool


_VISIT_COLUMNS = {  # column → SQL array type for unnest
    "id": "uuid",
    "content_hash": "text",
    "campaign_id": "uuid",
    "round": "int",
    "assignment_id": "uuid",
    "organization_id": "uuid",
    "region_code": "text",
    "surveyor_id": "uuid",
    "visited_at": "timestamptz",
    "received_at": "timestamptz",
    "late": "bool",
    "outcome": "text",
    "observation": "jsonb",
    "new_organization": "jsonb",
    "willing_to_establish": "bool",
    "latitude": "float8",
    "longitude": "float8",
    "review_status": "text",
    "registration_status": "text",
}
# New visits, their assignments marked visited and the phones told, in one round trip.
_INSERT_VISITS = (
    f"WITH ins AS (INSERT INTO visit ({', '.join(_VISIT_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'${i}::{t}[]' for i, t in enumerate(_VISIT_COLUMNS.values(), 1))}) "
    "ON CONFLICT (id) DO NOTHING RETURNING id, assignment_id), "
    "moved AS (UPDATE assignment a SET status = 'visited', version = a.version + 1, updated_at = now() "
    "FROM (SELECT DISTINCT assignment_id FROM ins) i WHERE a.id = i.assignment_id "
    "AND a.status IN ('pending', 'rejected') RETURNING a.id, a.surveyor_id), "
    "told AS (INSERT INTO mobile_change (surveyor_id, assignment_id, op) SELECT surveyor_id, id, 'upsert' FROM moved) "
    "SELECT id FROM ins"
)


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """One statement for the whole batch; ids already stored are left as they are."""
    if not rows:
        return set()
    conn = await raw_connection(session)
    columns = [
        [json.dumps(r[c]) if t == "jsonb" and r[c] is not None else r[c] for r in rows]
        for c, t in _VISIT_COLUMNS.items()
    ]
    return {r["id"] for r in await conn.fetch(_INSERT_VISITS, *columns)}


async def _contexts(session: AsyncSession, visits: Sequence[VisitIn]) -> dict[str, dict[Any, Any]]:
    """Assignments and campaigns the batch refers to, in two queries."""
    assignment_ids = list({v.assignment_id for v in visits if v.assignment_id})
    campaign_ids = {v.campaign_id for v in visits if v.campaign_id}
    assignments = {}
    if assignment_ids:
        found = await session.execute(
            text(
                "SELECT id, campaign_id, round, organization_id, region_code, surveyor_id FROM assignment "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": assignment_ids},
        )
        assignments = {r.id: r for r in found}
        campaign_ids |= {r.campaign_id for r in assignments.values()}
    campaigns: dict[Any, Any] = {}
    if campaign_ids:
        found = await session.execute(
            text(
                "SELECT c.id, c.status, c.region_code, "
                "max(r.number) FILTER (WHERE r.starts_on <= CURRENT_DATE) AS current, "
                "json_object_agg(r.number, r.ends_on) AS ends "
                "FROM campaign c JOIN campaign_round r ON r.campaign_id = c.id "
                "WHERE c.id = ANY(:ids) GROUP BY c.id, c.status, c.region_code"
            ),
            {"ids": list(campaign_ids)},
        )
        campaigns = {r.id: r for r in found}
    return {"assignments": assignments, "campaigns": campaigns}


def _check(
    visit: VisitIn, digest: str, contexts: dict[str, dict[Any, Any]], surveyor: uuid.UUID, caller: Caller, now: datetime
) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """The row to store, or the reason the visit cannot be taken."""
    if visit.visited_at.tzinfo is None:
        return {"field": "visited_at", "reason": "give the time zone (e.g. +08:00)"}, {}
    if visit.visited_at > now + FUTURE_TOLERANCE:
        return {"field": "visited_at", "reason": "is in the future"}, {}
    if (visit.assignment_id is None) == (visit.new_organization is None):
        return {"field": "assignment_id", "reason": "send either assignment_id or new_organization"}, {}
    if visit.assignment_id is not None:
        assignment = contexts["assignments"].get(visit.assignment_id)
        if assignment is None or assignment.surveyor_id != surveyor:
            return {"field": "assignment_id", "reason": "no such assignment of yours"}, {}
        campaign_id, round_no = assignment.campaign_id, assignment.round
        organization_id, region_code = assignment.organization_id, assignment.region_code
    else:
        assert visit.new_organization is not None
        if visit.campaign_id is None:
            return {"field": "campaign_id", "reason": "required with new_organization"}, {}
        region_code, organization_id = visit.new_organization.region_code, None
        campaign = contexts["campaigns"].get(visit.campaign_id)
        where = campaign.region_code if campaign is not None else None
        if refused_row(caller, where, kind="campaign", key=visit.campaign_id) or campaign is None:
            return {"field": "campaign_id", "reason": "no such campaign"}, {}
        if not regions.contains(campaign.region_code, region_code) or not regions.holds_organizations(region_code):
            return {
                "field": "new_organization.region_code",
                "reason": "must be a township or community of the campaign's region",
            }, {}
        campaign_id, round_no = visit.campaign_id, campaign.current or 1
    campaign = contexts["campaigns"].get(campaign_id)
    if campaign is None or campaign.status != "active":
        return {"field": "campaign_id", "reason": "the campaign is not active"}, {}
    ends = (campaign.ends or {}).get(str(round_no))
    late = bool(ends) and visit.visited_at > datetime.combine(
        datetime.fromisoformat(str(ends)).date(), time.max, tzinfo=visit.visited_at.tzinfo
    )
    observation = {k: getattr(visit, k) for k in OBSERVED if getattr(visit, k) is not None}
    return None, {
        "id": visit.id,
        "content_hash": digest,
        "campaign_id": campaign_id,
        "round": round_no,
        "assignment_id": visit.assignment_id,
        "organization_id": organization_id,
        "region_code": region_code,
        "surveyor_id": surveyor,
        "visited_at": visit.visited_at,
        "received_at": now,
        "late": late,
        "outcome": visit.outcome.value,
        "observation": {"outcome": visit.outcome.value, **observation},
        "new_organization": visit.new_organization.model_dump() if visit.new_organization else None,
        "willing_to_establish": visit.willing_to_establish,
        "latitude": visit.location.lat if visit.location else None,
        "longitude": visit.location.lon if visit.location else None,
        "review_status": "pending",
        "registration_status": None,
    }


# ---- photos ---------------------------------------------------------------------------------


def photo_path(sha256: str, extension: str) -> Path:
    folder = get_settings().photo_dir or (get_settings().data_dir / "photos")
    return Path(folder) / sha256[:2] / f"{sha256}.{extension}"


async def store_photo(
    session: AsyncSession,
    *,
    caller: Caller,
    visit_id: uuid.UUID,
    data: bytes,
) -> PhotoStored:
    """A photo of the surveyor's own visit (`data`: at most one byte past the size limit), stored once
    by content."""
    surveyor = surveyor_of(caller)
    visit = await session.get(Visit, visit_id)
    if visit is None or visit.surveyor_id != surveyor:
        raise not_found("visit")
    limit = get_settings().photo_max_bytes
    if len(data) > limit:
        raise ProblemError(413, f"a photo may have at most {limit} bytes", code="payload-too-large")
    kind = next((v for magic, v in IMAGE_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise ProblemError(415, "send a JPEG or PNG photo", code="unsupported-media-type")
    content_type, extension = kind
    sha256 = hashlib.sha256(data).hexdigest()
    target = photo_path(sha256, extension)
    if not target.exists():
        # Stored once by content, whoever sends it and however often: write aside, then rename.
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    made = await session.execute(
        text(
            "INSERT INTO visit_photo (visit_id, sha256, content_type, size) VALUES (:v, :s, :t, :n) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"v": visit_id, "s": sha256, "t": content_type, "n": len(data)},
    )
    return PhotoStored(
        visit_id=visit_id, sha256=sha256, size=len(data), content_type=content_type, new=made.first() is not None
    )
