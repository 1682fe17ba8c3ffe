"""Coverage figures for a region and its children: from the counters, a snapshot, or counted live for a cut."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.coverage.figures import COUNTER_EVENTS, COUNTERS, leaf_sums_sql, to_figures
from services.coverage.models import (
    CoverageHistory,
    CoverageReport,
    HistoryPoint,
    Recalculation,
    RecalculationPublic,
    RegionFigures,
    RegionRef,
)
from shared import regions
from shared.auth import Caller
from shared.errors import ProblemError, invalid, not_found
from shared.outbox import AFTER_COMMIT
from shared.rules import SURVEYED_KINDS
from shared.settings import get_settings
from shared.visible import load, load_region

RECOMPUTE = "recompute"  # the arq function (services/coverage/jobs.py) the API enqueues


def check_kind(kind: str | None) -> None:
    """Figures, gaps and targets are cut by the kinds of the two new organizations, or not at all."""
    if kind is not None and kind not in SURVEYED_KINDS:
        raise invalid("kind", "must be " + " or ".join(SURVEYED_KINDS))


async def region_ref(session: AsyncSession, caller: Caller, code: str | None) -> RegionRef:
    found = await load_region(session, caller, code)
    return RegionRef(code=found.code, name=found.name, level=found.level)


async def children_of(session: AsyncSession, code: str) -> list[RegionRef]:
    found = await session.execute(
        text("SELECT code, name, level FROM region WHERE parent_code = :c ORDER BY code"), {"c": code}
    )
    return [RegionRef(code=r.code, name=r.name, level=r.level) for r in found]


def _kind_clause(kind: str | None, column: str = "kind") -> str:
    return f"AND {column} = :kind" if kind else ""


async def _summed(
    session: AsyncSession, table: str, stamp: str, where: str, params: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], datetime | None]:
    """The counters of each region in `:codes` (over every kind, or `:kind`) from a figures table, and
    when the latest of them was written."""
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTERS)
    found = await session.execute(
        text(
            f"SELECT region_code, {sums}, max({stamp}) AS at FROM {table} "
            f"WHERE {where} AND region_code = ANY(:codes) {_kind_clause(params['kind'])} GROUP BY region_code"
        ),
        params,
    )
    rows = {r["region_code"]: dict(r) for r in found.mappings()}
    return rows, max((r["at"] for r in rows.values()), default=None)


async def report(
    session: AsyncSession,
    *,
    caller: Caller,
    region: str | None,
    kind: str | None,
    area_id: uuid.UUID | None,
    industry: str | None,
    as_of: date | None,
) -> CoverageReport:
    check_kind(kind)
    if as_of is not None and (area_id is not None or industry is not None):
        raise invalid("as_of", "snapshots hold whole regions; ask for today's figures to cut by area or industry")
    root = await region_ref(session, caller, region)
    children = await children_of(session, root.code)
    codes = [root.code, *(c.code for c in children)]
    params: dict[str, Any] = {"codes": codes, "kind": kind}
    if area_id is not None or industry is not None:
        rows, computed_at, source = await _live(session, root, children, kind, area_id, industry), None, "live"
    elif as_of is not None:
        params["day"] = as_of
        rows, computed_at = await _summed(session, "coverage_snapshot", "taken_at", "snapshot_date = :day", params)
        exists = await session.execute(
            text("SELECT 1 FROM coverage_snapshot WHERE snapshot_date = :d LIMIT 1"), {"d": as_of}
        )
        if exists.first() is None:
            raise not_found(f"snapshot of {as_of}")
        source = "snapshot"
    else:
        rows, computed_at = await _summed(session, "coverage_figure", "updated_at", "TRUE", params)
        source = "counters"
    lagging = await uncounted(session, root.code) if source == "counters" else 0
    return CoverageReport(
        region=root,
        kind=kind,
        area_id=area_id,
        industry=industry,
        as_of=as_of,
        source=source,
        computed_at=computed_at,
        stale=lagging > 0,
        stale_reason=(
            f"{lagging} registry change event(s) touching this region could not be counted yet (failed "
            "consumptions, listed by GET /v1/events/failed on this service); the figures are exact again "
            "once they are retried, or after the nightly recount"
            if lagging
            else None
        ),
        total=to_figures(rows.get(root.code, {})),
        children=[RegionFigures(region=c, **to_figures(rows.get(c.code, {})).model_dump()) for c in children],
    )


async def uncounted(session: AsyncSession, code: str) -> int:
    """Failed consumptions of counter events that may touch the figures of `code`: events whose
    regions lie in its subtree, or whose smallest common region contains it (conservatively)."""
    # Through a database function: row-level security hides an event spanning a larger region
    # from the caller, though it may touch the caller's figures.
    found = await session.execute(
        text("SELECT liangxin_uncounted_events(CAST(:above AS text[]), :prefix, CAST(:types AS text[]))"),
        {"types": sorted(COUNTER_EVENTS), "above": regions.ancestors(code), "prefix": regions.prefix(code)},
    )
    return int(found.scalar_one())


async def _live(
    session: AsyncSession,
    root: RegionRef,
    children: list[RegionRef],
    kind: str | None,
    area_id: uuid.UUID | None,
    industry: str | None,
) -> dict[str, dict[str, int]]:
    """Counted now from the registry for a cut the counters do not hold (an area, an industry)."""
    filters = ["o.region_code LIKE :prefix"]
    params: dict[str, Any] = {"prefix": regions.prefix(root.code) + "%"}
    if kind:
        filters.append("o.kind = :kind")
        params["kind"] = kind
    if area_id is not None:
        filters.append("o.area_id = :area")
        params["area"] = area_id
    if industry is not None:
        filters.append("o.industry_code LIKE :industry")
        params["industry"] = industry + "%"
    where = " AND ".join(filters)
    # The recompute's own counting rules, restricted to the cut; party organizations count when
    # they cover an organization inside it.
    party_where = f"EXISTS (SELECT 1 FROM organization o WHERE o.party_org_id = q.id AND {where})"
    found = await session.execute(text(leaf_sums_sql(where, party_where)), params)
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    child_prefixes = [(c.code, regions.prefix(c.code)) for c in children]
    for leaf in found.mappings():
        targets = [root.code] + [code for code, p in child_prefixes if leaf["region_code"].startswith(p)]
        for code in targets:
            for c in COUNTERS:
                rows[code][c] += int(leaf[c] or 0)
    return rows


async def history(
    session: AsyncSession,
    *,
    caller: Caller,
    region: str | None,
    kind: str | None,
    start: date | None,
    end: date | None,
) -> CoverageHistory:
    check_kind(kind)
    if start and end and start > end:
        raise invalid("from", "is after `to`")
    root = await region_ref(session, caller, region)
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTERS)
    found = await session.execute(
        text(
            f"SELECT d.snapshot_date, {sums.replace('sum(', 'sum(s.')} FROM "
            "(SELECT DISTINCT snapshot_date FROM coverage_snapshot WHERE snapshot_date BETWEEN :start AND :end) d "
            "LEFT JOIN coverage_snapshot s ON s.snapshot_date = d.snapshot_date AND s.region_code = :code "
            f"{_kind_clause(kind, 's.kind')} GROUP BY d.snapshot_date ORDER BY d.snapshot_date"
        ),
        {"start": start or date(1900, 1, 1), "end": end or date(9999, 12, 31), "code": root.code, "kind": kind},
    )
    points = [HistoryPoint(date=r["snapshot_date"], **to_figures(dict(r)).model_dump()) for r in found.mappings()]
    return CoverageHistory(region=root, kind=kind, points=points)


def recalculation_public(row: Recalculation) -> RecalculationPublic:
    return RecalculationPublic.model_validate(row, from_attributes=True)


async def enqueue_recount(redis: Any, recalculation_id: uuid.UUID) -> None:
    """Put a recount on the coverage queue (one job per recount, whoever asks again)."""
    await redis.enqueue_job(
        RECOMPUTE,
        str(recalculation_id),
        _job_id=f"recalculation:{recalculation_id}",
        _queue_name=get_settings().queue_name("coverage"),
    )


async def request_recalculation(session: AsyncSession, *, caller: Caller, redis: Any) -> Recalculation:
    """A recount of the whole country (national admins only): the one queued or running, else a new
    one, queued once the request commits."""
    if caller.region_code != regions.ROOT_CODE:
        raise ProblemError(
            403, "a recount covers the whole country: only national admins start one", code="national-only"
        )
    row, created = await start_recalculation(session, requested_by=caller.label, region_code=caller.region_code)
    if created:

        async def enqueue() -> None:
            await enqueue_recount(redis, row.id)

        session.info.setdefault(AFTER_COMMIT, []).append(enqueue)
    return row


async def get_recalculation(session: AsyncSession, *, caller: Caller, recalculation_id: uuid.UUID) -> Recalculation:
    return await load(session, caller, Recalculation, recalculation_id, what="recalculation", kind="recalculation")


async def start_recalculation(
    session: AsyncSession, *, requested_by: str, region_code: str
) -> tuple[Recalculation, bool]:
    """The recount queued or running for the region, else a new one (and True): requests that
    arrive together or while one is under way share one job (a partial unique index decides)."""
    for _ in range(5):
        created = await session.execute(
            text(
                "INSERT INTO coverage_recalculation (id, requested_by, region_code, status) "
                "VALUES (:id, :by, :region, 'queued') "
                "ON CONFLICT (region_code) WHERE status IN ('queued', 'running') DO NOTHING RETURNING id"
            ),
            {"id": uuid.uuid4(), "by": requested_by, "region": region_code},
        )
        if (new := created.first()) is not None:
            row = await session.get(Recalculation, new.id)
            assert row is not None
            return row, True
        active = await session.execute(
            select(Recalculation).where(
                col(Recalculation.region_code) == region_code,
                col(Recalculation.status).in_(("queued", "running")),
            )
        )
        if (found := active.scalar_one_or_none()) is not None:
            return found, False
    raise ProblemError(
        503, "recounts are starting and finishing too fast to join one; retry", headers={"Retry-After": "2"}
    )
