"""Coverage counters: what each organization and party organization contributes, kept two ways.

Incrementally, each registry event carries the facts of every changed organization before and
after; adding `contribution(after) − contribution(before)` to every region up the tree keeps the
counters exact in any delivery order (each change is applied once, through the inbox). A full
recompute counts the same contributions from the registry tables. Both use the definitions
below, and a randomized test holds them equal.

The counting rules themselves (counted, organization and work coverage, single formation) are
in shared/rules.py, in Python for the events and in SQL for the recompute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage.models import COUNTERS, FORMATIONS, ORG_COUNTERS, PARTY_COUNTERS, Figures, PartyOrgCounts
from shared import regions, rules
from shared.events import OrgFacts, PartyOrgFacts

Key = tuple[str, str]  # (region_code, kind)
# Held shared by every event handler and exclusively by a full recompute, so a recompute sees
# no half-applied event and knows exactly which events its count already includes.
from shared.locks import FIGURES as FIGURES_LOCK  # noqa: E402

# The events whose consumption changes the counters: while one of them has failed, the figures of
# the regions it names are stale.
COUNTER_EVENTS = frozenset(
    {
        "registry.organization.registered",
        "registry.organization.updated",
        "registry.organization.status_changed",
        "registry.party_org.established",
        "registry.party_org.updated",
        "registry.party_org.coverage_changed",
        "registry.party_org.dissolved",
        "registry.instructor.assigned",
        "registry.instructor.unassigned",
    }
)


def org_contribution(facts: OrgFacts | None) -> dict[str, int]:
    if facts is None:
        return {}
    counted = rules.counted(facts.status, facts.in_scope)
    return {
        "registered": 1,
        "active": int(facts.status == rules.ACTIVE),
        "in_scope": int(counted),
        "org_covered": int(counted and rules.org_covered(facts)),
        "work_covered": int(counted and rules.work_covered(facts)),
        "single_eligible": int(counted and rules.single_eligible(facts.formal_members)),
        "single_formed": int(counted and rules.single_formed(facts)),
        "charter_included": int(counted and facts.charter),
    }


def party_contribution(facts: PartyOrgFacts | None) -> dict[str, int]:
    if facts is None or not facts.active:
        return {}
    out = {"party_orgs": 1, f"party_orgs_{facts.formation}": 1}
    out["secretary_in_management"] = int(facts.secretary_in_management)
    out["secretary_is_investor"] = int(facts.secretary_is_investor)
    return out


class Deltas:
    """Counter changes per (region, kind), summed over a whole event before one write."""

    def __init__(self) -> None:
        self.by_key: dict[Key, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def _add(self, region_code: str, kind: str, vector: Mapping[str, int], sign: int) -> None:
        for code in regions.ancestors(region_code):
            row = self.by_key[(code, kind)]
            for name, value in vector.items():
                if value:
                    row[name] += sign * value

    def org(self, before: OrgFacts | None, after: OrgFacts | None) -> None:
        if before is not None:
            self._add(before.region_code, before.kind, org_contribution(before), -1)
        if after is not None:
            self._add(after.region_code, after.kind, org_contribution(after), +1)

    def party(self, before: PartyOrgFacts | None, after: PartyOrgFacts | None) -> None:
        if before is not None:
            self._add(before.region_code, before.kind, party_contribution(before), -1)
        if after is not None:
            self._add(after.region_code, after.kind, party_contribution(after), +1)

    def rows(self) -> list[tuple[Any, ...]]:
        """Non-zero changes in key order (a stable lock order across concurrent handlers)."""
        out = []
        for key in sorted(self.by_key):
            values = self.by_key[key]
            if any(values.values()):
                out.append((*key, *(values.get(c, 0) for c in COUNTERS)))
        return out


async def apply(session: AsyncSession, deltas: Deltas) -> int:
    rows = deltas.rows()
    if not rows:
        return 0
    columns = ", ".join(COUNTERS)
    increments = ", ".join(f"{c} = coverage_figure.{c} + excluded.{c}" for c in COUNTERS)
    unnest = ", ".join(f"CAST(:{c} AS bigint[])" for c in COUNTERS)
    params: dict[str, Any] = {"region_code": [r[0] for r in rows], "kind": [r[1] for r in rows]}
    for i, name in enumerate(COUNTERS, start=2):
        params[name] = [r[i] for r in rows]
    await session.execute(
        text(
            f"INSERT INTO coverage_figure (region_code, kind, {columns}, updated_at) "
            f"SELECT r, k, {columns}, now() FROM unnest(CAST(:region_code AS text[]), CAST(:kind AS text[]), {unnest}) "
            f"AS t(r, k, {columns}) "
            f"ON CONFLICT (region_code, kind) DO UPDATE SET {increments}, updated_at = now()"
        ),
        params,
    )
    return len(rows)


async def hold_shared(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": FIGURES_LOCK})


# ---- the full recompute ---------------------------------------------------------------


def leaf_sums_sql(org_where: str = "TRUE", party_where: str = "TRUE") -> str:
    """Counters summed per (region, kind) where organizations and party organizations are registered."""
    counted = rules.counted_sql("o.")
    org_sums = ",\n".join(
        [
            "count(*) AS registered",
            f"count(*) FILTER (WHERE o.status = '{rules.ACTIVE}') AS active",
            f"count(*) FILTER (WHERE {counted}) AS in_scope",
            f"count(*) FILTER (WHERE {counted} AND {rules.org_covered_sql('o.')}) AS org_covered",
            f"count(*) FILTER (WHERE {counted} AND {rules.work_covered_sql('o.')}) AS work_covered",
            f"count(*) FILTER (WHERE {counted} AND {rules.single_eligible_sql('o.')}) AS single_eligible",
            f"count(*) FILTER (WHERE {counted} AND {rules.single_formed_sql('o.', 'p.formation')}) AS single_formed",
            f"count(*) FILTER (WHERE {counted} AND o.charter_includes_party_building) AS charter_included",
        ]
    )
    party_sums = ",\n".join(
        [
            "count(*) AS party_orgs",
            *(f"count(*) FILTER (WHERE q.formation = '{f}') AS party_orgs_{f}" for f in FORMATIONS),
            "count(*) FILTER (WHERE q.secretary_in_management) AS secretary_in_management",
            "count(*) FILTER (WHERE q.secretary_is_investor) AS secretary_is_investor",
        ]
    )
    zeros_party = ", ".join(f"0 AS {c}" for c in PARTY_COUNTERS)
    zeros_org = ", ".join(f"0 AS {c}" for c in ORG_COUNTERS)
    return f"""
  SELECT o.region_code, o.kind, {org_sums}, {zeros_party}
  FROM organization o LEFT JOIN party_org p ON p.id = o.party_org_id
  WHERE {org_where}
  GROUP BY o.region_code, o.kind
  UNION ALL
  SELECT q.region_code, q.kind, {zeros_org}, {party_sums}
  FROM party_org q WHERE q.active AND {party_where} GROUP BY q.region_code, q.kind"""


def recompute_sql() -> str:
    """Every counter of every region, counted from the registry tables.

    Organizations are first summed per (region, kind) where they are registered, then each sum
    is added to the region's ancestors: a few rows per region instead of six per organization.
    """
    sums = ", ".join(f"sum(c.{x})::bigint AS {x}" for x in COUNTERS)
    return f"""
SELECT a.code AS region_code, c.kind, {sums}
FROM ({leaf_sums_sql()}) c
CROSS JOIN LATERAL ({regions.ancestors_sql("c.region_code")}) a
GROUP BY a.code, c.kind"""


async def recompute(conn: asyncpg.Connection, *, subscribed: Iterable[str], snapshot: date | None) -> tuple[int, int]:
    """Rebuild every counter from the registry (exclusive of event handlers); returns
    (figure rows changed, events absorbed). The caller holds the figures lock and runs this in
    a REPEATABLE READ transaction that started after the lock was granted."""
    await conn.execute(f"CREATE TEMP TABLE coverage_fresh ON COMMIT DROP AS {recompute_sql()}")
    # Registry events whose transactions this snapshot sees are already counted: record them
    # as consumed, so their delivery (still queued, or redelivered) adds nothing. Only counter
    # events: the others (a visit's answer, an import's zeroed rows) still need their handler.
    absorbed = await conn.execute(
        "INSERT INTO coverage_inbox (event_id, consumer, event_type, status) "
        "SELECT o.id, 'coverage', o.type, 'baseline' FROM registry_outbox o "
        "WHERE o.completed_at IS NULL AND o.type = ANY($1::text[]) "
        "ON CONFLICT DO NOTHING",
        sorted(COUNTER_EVENTS.intersection(subscribed)),
    )
    # A counter event whose consumption failed is counted here too (its registry transaction
    # committed before it was consumed): no longer stale, and no longer to be retried.
    recovered = await conn.execute(
        "UPDATE coverage_inbox SET status = 'baseline', error = error || ' (counted by a full recompute)' "
        "WHERE status = 'failed' AND event_type = ANY($1::text[])",
        sorted(COUNTER_EVENTS),
    )
    columns = ", ".join(COUNTERS)
    upserted = await conn.execute(
        f"INSERT INTO coverage_figure (region_code, kind, {columns}, updated_at) "
        f"SELECT region_code, kind, {columns}, now() FROM coverage_fresh "
        f"ON CONFLICT (region_code, kind) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in COUNTERS)
        + ", updated_at = now() WHERE ("
        + ", ".join(f"coverage_figure.{c}" for c in COUNTERS)
        + ") IS DISTINCT FROM ("
        + ", ".join(f"excluded.{c}" for c in COUNTERS)
        + ")"
    )
    # Regions and kinds that no longer have anything fall back to zero.
    zeroed = await conn.execute(
        f"UPDATE coverage_figure f SET {', '.join(f'{c} = 0' for c in COUNTERS)}, updated_at = now() "
        f"WHERE NOT EXISTS (SELECT 1 FROM coverage_fresh n WHERE n.region_code = f.region_code AND n.kind = f.kind) "
        f"AND ({' OR '.join(f'f.{c} <> 0' for c in COUNTERS)})"
    )
    if snapshot is not None:
        await conn.execute("DELETE FROM coverage_snapshot WHERE snapshot_date = $1", snapshot)
        await conn.execute(
            f"INSERT INTO coverage_snapshot (snapshot_date, region_code, kind, {columns}, taken_at) "
            f"SELECT $1, region_code, kind, {columns}, now() FROM coverage_fresh",
            snapshot,
        )
    await conn.execute("DROP TABLE coverage_fresh")
    return _count(upserted) + _count(zeroed), _count(absorbed) + _count(recovered)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


# ---- reading ------------------------------------------------------------------------------


def rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 6)


def to_figures(row: Mapping[str, Any]) -> Figures:
    v = {c: int(row.get(c) or 0) for c in COUNTERS}
    return Figures(
        registered=v["registered"],
        active=v["active"],
        in_scope=v["in_scope"],
        org_covered=v["org_covered"],
        work_covered=v["work_covered"],
        org_coverage_rate=rate(v["org_covered"], v["in_scope"]),
        work_coverage_rate=rate(v["work_covered"], v["in_scope"]),
        single_formation_eligible=v["single_eligible"],
        single_formed=v["single_formed"],
        single_formation_rate=rate(v["single_formed"], v["single_eligible"]),
        charter_included=v["charter_included"],
        charter_rate=rate(v["charter_included"], v["in_scope"]),
        secretary_in_management_rate=rate(v["secretary_in_management"], v["party_orgs"]),
        secretary_is_investor_rate=rate(v["secretary_is_investor"], v["party_orgs"]),
        party_orgs=PartyOrgCounts(total=v["party_orgs"], **{f: v[f"party_orgs_{f}"] for f in FORMATIONS}),
    )
