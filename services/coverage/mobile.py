"""The field app's API: sync down (deltas and removals), visits up (idempotent batches), photos.

The bar is ODK Central / DHIS2 Android: a phone that is offline for days, resends whole batches,
and reorders them, never creates a second row, never loses a visit because a neighbour in its
batch was bad, and hears through the next sync what an official decided.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage import forms, photos
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
EARTH_RADIUS_M = 6_371_008.8


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
    return SyncPage(items=items, cursor=cursor, more=more, forms=await current_forms(session, surveyor))


async def current_forms(session: AsyncSession, surveyor: uuid.UUID) -> list[dict[str, Any]]:
    """The latest form of every active campaign the surveyor has assignments in (a few kilobytes
    each), so a phone always holds the version to fill in; older versions stay valid."""
    found = await session.execute(
        text(
            "SELECT DISTINCT ON (f.campaign_id) f.* FROM campaign_form f "
            "WHERE f.campaign_id IN (SELECT DISTINCT a.campaign_id FROM assignment a JOIN campaign c "
            "ON c.id = a.campaign_id AND c.status = 'active' WHERE a.surveyor_id = :s) "
            "ORDER BY f.campaign_id, f.version DESC"
        ),
        {"s": surveyor},
    )
    return [forms.public(forms.CampaignForm.model_validate(dict(r))).model_dump(mode="json") for r in found.mappings()]


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
            "form_version": None,
        }
    versions = await forms.latest_versions(session, [r["campaign_id"] for r in out.values()])
    for snapshot in out.values():
        snapshot["form_version"] = versions.get(uuid.UUID(snapshot["campaign_id"]))
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
        problems, row = _check(visit, digest, contexts, surveyor, caller, now)
        if problems:
            results[i] = ItemResult(id=str(visit.id), status="invalid", reasons=problems)
            continue
        first_of[visit.id] = i
        rows[visit.id] = row
    if rows:
        await _flag_devices(session, rows)

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
    "form_version": "int",
    "answers": "jsonb",
    "paradata": "jsonb",
    "device_id": "text",
    "flags": "jsonb",
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
    """Assignments (with their organization's known location), campaigns and the form versions the
    batch refers to, in a few queries."""
    assignment_ids = list({v.assignment_id for v in visits if v.assignment_id})
    campaign_ids = {v.campaign_id for v in visits if v.campaign_id}
    assignments = {}
    if assignment_ids:
        found = await session.execute(
            text(
                "SELECT a.id, a.campaign_id, a.round, a.organization_id, a.region_code, a.surveyor_id, "
                "o.latitude, o.longitude FROM assignment a LEFT JOIN organization o ON o.id = a.organization_id "
                "WHERE a.id = ANY(:ids)"
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
                "json_object_agg(r.number, r.ends_on) AS ends, json_object_agg(r.number, r.starts_on) AS starts, "
                "(SELECT max(f.version) FROM campaign_form f WHERE f.campaign_id = c.id) AS form_version "
                "FROM campaign c JOIN campaign_round r ON r.campaign_id = c.id "
                "WHERE c.id = ANY(:ids) GROUP BY c.id, c.status, c.region_code"
            ),
            {"ids": list(campaign_ids)},
        )
        campaigns = {r.id: r for r in found}
    keys: set[tuple[uuid.UUID, int]] = set()
    for v in visits:
        campaign_id = assignments[v.assignment_id].campaign_id if v.assignment_id in assignments else v.campaign_id
        if campaign_id is not None and v.form_version is not None:
            keys.add((campaign_id, v.form_version))
    return {"assignments": assignments, "campaigns": campaigns, "forms": await forms.compiled(session, keys)}


def _check(
    visit: VisitIn, digest: str, contexts: dict[str, dict[Any, Any]], surveyor: uuid.UUID, caller: Caller, now: datetime
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The row to store, or the reasons the visit cannot be taken (each failing answer on its own)."""
    if visit.visited_at.tzinfo is None:
        return [{"field": "visited_at", "reason": "give the time zone (e.g. +08:00)"}], {}
    for name in ("fix_time", "started_at", "ended_at"):
        moment = getattr(visit.paradata, name) if visit.paradata else None
        if moment is not None and moment.tzinfo is None:
            return [{"field": f"paradata.{name}", "reason": "give the time zone (e.g. +08:00)"}], {}
    if (visit.assignment_id is None) == (visit.new_organization is None):
        return [{"field": "assignment_id", "reason": "send either assignment_id or new_organization"}], {}
    known_at: tuple[float, float] | None = None
    if visit.assignment_id is not None:
        assignment = contexts["assignments"].get(visit.assignment_id)
        if assignment is None or assignment.surveyor_id != surveyor:
            return [{"field": "assignment_id", "reason": "no such assignment of yours"}], {}
        campaign_id, round_no = assignment.campaign_id, assignment.round
        organization_id, region_code = assignment.organization_id, assignment.region_code
        if assignment.latitude is not None and assignment.longitude is not None:
            known_at = (assignment.latitude, assignment.longitude)
    else:
        assert visit.new_organization is not None
        if visit.campaign_id is None:
            return [{"field": "campaign_id", "reason": "required with new_organization"}], {}
        region_code, organization_id = visit.new_organization.region_code, None
        campaign = contexts["campaigns"].get(visit.campaign_id)
        where = campaign.region_code if campaign is not None else None
        if refused_row(caller, where, kind="campaign", key=visit.campaign_id) or campaign is None:
            return [{"field": "campaign_id", "reason": "no such campaign"}], {}
        if not regions.contains(campaign.region_code, region_code) or not regions.holds_organizations(region_code):
            return [
                {
                    "field": "new_organization.region_code",
                    "reason": "must be a township or community of the campaign's region",
                }
            ], {}
        campaign_id, round_no = visit.campaign_id, campaign.current or 1
    campaign = contexts["campaigns"].get(campaign_id)
    if campaign is None or campaign.status != "active":
        return [{"field": "campaign_id", "reason": "the campaign is not active"}], {}
    problems = _check_form(visit, campaign_id, campaign.form_version, contexts["forms"])
    if problems:
        return problems, {}
    ends = (campaign.ends or {}).get(str(round_no))
    late = bool(ends) and visit.visited_at > datetime.combine(
        datetime.fromisoformat(str(ends)).date(), time.max, tzinfo=visit.visited_at.tzinfo
    )
    starts = (campaign.starts or {}).get(str(round_no))
    observation = {k: getattr(visit, k) for k in OBSERVED if getattr(visit, k) is not None}
    paradata = visit.paradata.model_dump(mode="json", exclude_none=True) if visit.paradata else None
    device = (visit.paradata.device_id if visit.paradata else None) or caller.extra.get("device_id")
    return [], {
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
        "form_version": visit.form_version,
        "answers": visit.answers,
        "paradata": paradata,
        "device_id": device,
        "flags": flags_of(visit, known_at=known_at, round_starts=starts, now=now),
    }


def _check_form(
    visit: VisitIn, campaign_id: uuid.UUID, current: int | None, compiled: dict[Any, forms.CompiledForm]
) -> list[dict[str, str]]:
    """The visit against exactly the form version it names; every failing answer on its own."""
    if visit.form_version is None:
        if current is not None:
            return [{"field": "form_version", "reason": f"required: the campaign has a form (version {current})"}]
        if visit.answers:
            return [{"field": "answers", "reason": "the campaign has no form: send the observation fields alone"}]
        return []
    form = compiled.get((campaign_id, visit.form_version))
    if form is None:
        return [{"field": "form_version", "reason": f"the campaign has no form version {visit.form_version}"}]
    fixed: dict[str, Any] = {name: getattr(visit, name) for name in forms.FIXED_FIELDS if name != "location"}
    fixed["outcome"] = visit.outcome.value
    fixed["location"] = visit.location.model_dump() if visit.location else None
    return form.check(fixed, visit.answers or {})


# ---- paradata: what makes a visit suspicious ------------------------------------------------------


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) between two WGS 84 points, in metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def flags_of(
    visit: VisitIn, *, known_at: tuple[float, float] | None, round_starts: Any, now: datetime
) -> list[dict[str, str]]:
    """Flags for reviewers (never a refusal): far from the organization's known location, filled in
    impossibly fast, dated in the future or before its round. (Many visits from one phone in a few
    minutes needs the whole batch and the table: `_flag_devices`.)"""
    settings = get_settings()
    found: list[dict[str, str]] = []
    if visit.location is not None and known_at is not None:
        away = distance_m((visit.location.lat, visit.location.lon), known_at)
        if away > settings.visit_flag_distance_m:
            accuracy = visit.paradata.gps_accuracy_m if visit.paradata else None
            note = f"（定位精度约{accuracy:.0f}米）" if accuracy is not None else ""
            found.append(
                {
                    "code": "far_from_organization",
                    "reason": f"走访定位距该组织已知位置约{away / 1000:.1f}公里{note}",
                }
            )
    paradata = visit.paradata
    if paradata is not None and paradata.started_at is not None and paradata.ended_at is not None:
        took = (paradata.ended_at - paradata.started_at).total_seconds()
        if took < settings.visit_flag_min_seconds:
            reason = "表单结束时间早于开始时间" if took < 0 else f"表单填写仅用时{took:.0f}秒"
            found.append({"code": "too_short", "reason": reason})
    if visit.visited_at > now + FUTURE_TOLERANCE:
        found.append({"code": "dated_in_future", "reason": "走访时间晚于服务器收到的时间"})
    if round_starts is not None:
        starts = date.fromisoformat(str(round_starts)[:10])
        if visit.visited_at.date() < starts:
            found.append({"code": "before_round", "reason": f"走访时间早于本轮开始日期（{starts.isoformat()}）"})
    return found


async def _flag_devices(session: AsyncSession, rows: dict[uuid.UUID, dict[str, Any]]) -> None:
    """Flag each visit of a phone that sent `visit_flag_device_visits` or more visits within
    `visit_flag_device_minutes` of it (this batch and those stored)."""
    settings = get_settings()
    window = timedelta(minutes=settings.visit_flag_device_minutes)
    by_device: dict[str, list[tuple[uuid.UUID, datetime]]] = {}
    for vid, row in rows.items():
        if row["device_id"]:
            by_device.setdefault(row["device_id"], []).append((vid, row["visited_at"]))
    if not by_device:
        return
    times = [t for items in by_device.values() for _, t in items]
    stored = await session.execute(
        text(
            "SELECT id, device_id, visited_at FROM visit WHERE device_id = ANY(:d) "
            "AND visited_at BETWEEN :lo AND :hi AND NOT (id = ANY(:ids))"
        ),
        {"d": list(by_device), "lo": min(times) - window, "hi": max(times) + window, "ids": list(rows)},
    )
    for r in stored:
        by_device[r.device_id].append((r.id, r.visited_at))
    for items in by_device.values():
        moments = sorted(t for _, t in items)
        for vid, at in items:
            if vid not in rows:
                continue
            near = sum(1 for t in moments if abs(t - at) <= window)
            if near >= settings.visit_flag_device_visits:
                rows[vid]["flags"].append(
                    {
                        "code": "many_from_device",
                        "reason": f"同一设备在{settings.visit_flag_device_minutes}分钟内前后共有{near}条走访",
                    }
                )


# ---- photos ---------------------------------------------------------------------------------


async def store_photo(
    session: AsyncSession,
    *,
    caller: Caller,
    visit_id: uuid.UUID,
    data: bytes,
    file_name: str | None,
) -> PhotoStored:
    """A photo of the surveyor's own visit (`data`: at most one byte past the size limit), cleaned of
    its metadata and stored once by content."""
    surveyor = surveyor_of(caller)
    visit = await session.get(Visit, visit_id)
    if visit is None or visit.surveyor_id != surveyor:
        raise not_found("visit")
    settings = get_settings()
    limit = settings.photo_max_bytes
    if len(data) > limit:
        raise ProblemError(413, f"a photo may have at most {limit} bytes", code="payload-too-large")
    # Decoding and encoding take tens of milliseconds of CPU: off the event loop.
    cleaned, content_type = await asyncio.to_thread(photos.clean, data, max_pixels=settings.photo_max_pixels)
    sha256 = hashlib.sha256(cleaned).hexdigest()
    await photos.store().put(photos.key_of(sha256, content_type), cleaned, content_type)
    name = printable(file_name)[:200] if file_name else None
    made = await session.execute(
        text(
            "INSERT INTO visit_photo (visit_id, sha256, content_type, size, file_name) VALUES (:v, :s, :t, :n, :f) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"v": visit_id, "s": sha256, "t": content_type, "n": len(cleaned), "f": name or None},
    )
    return PhotoStored(
        visit_id=visit_id,
        sha256=sha256,
        size=len(cleaned),
        content_type=content_type,
        file_name=name or None,
        new=made.first() is not None,
    )
