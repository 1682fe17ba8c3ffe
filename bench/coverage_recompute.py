"""Full coverage recompute against the fastest hand-written SQL, and incremental latency, in one run.

    .venv/bin/python bench/coverage_recompute.py [--orgs 1000000]

Needs the database (LIANGXIN_DATABASE_URL, or a running `liangxin dev`), preferably fresh. It
loads a synthetic province (code 98): 5 cities, 30 counties, 600 townships, 12,000 communities,
N organizations and their party organizations, straight into the registry tables. Then it times
(1) the coverage worker's full recompute (counting, writing the counters, absorbing queued
events) and (2) one hand-written statement computing the same figures into a scratch table —
the limit — and prints both and the ratio (goal ≤ 1.5). Finally it applies 300 single-organization
events through the worker's own event handler and prints the latency inside the worker
(p50, p99; goal p99 < 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.coverage import figures
from services.coverage.models import COUNTERS
from services.registry.organizations import COLUMNS, DEFAULTS
from shared.cli import settings_with_stack
from shared.db import Database
from shared.events import Event, OrganizationChanges, OrgChange, OrgFacts, subscriptions
from shared.locks import FIGURES as FIGURES_LOCK
from shared.relay import Publisher
from shared.rules import org_facts
from shared.scope import ScopeCriteria, derive_in_scope
from shared.settings import to_libpq_url
from shared.worker import make_event_handler

PROVINCE = "98"


def tree() -> tuple[list[tuple[str, str, int, str | None]], list[str]]:
    regions: list[tuple[str, str, int, str | None]] = [(f"{PROVINCE}0000000000", "基准省", 1, "000000000000")]
    communities = []
    for c in range(1, 6):
        city = f"{PROVINCE}{c:02d}00000000"
        regions.append((city, f"基准市{c}", 2, regions[0][0]))
        for k in range(1, 7):
            county = f"{PROVINCE}{c:02d}{k:02d}000000"
            regions.append((county, f"基准县{c}-{k}", 3, city))
            for t in range(1, 21):
                town = county[:6] + f"{t:03d}000"
                regions.append((town, f"乡镇{t}", 4, county))
                for v in range(1, 21):
                    community = town[:9] + f"{v:03d}"
                    regions.append((community, f"社区{v}", 5, town))
                    communities.append(community)
    return regions, communities


async def load(conn: asyncpg.Connection, n: int, settings: Any) -> list[dict[str, Any]]:
    rng = random.Random(7)
    regions, communities = tree()
    await conn.copy_records_to_table("region", columns=("code", "name", "level", "parent_code"), records=regions)
    now = datetime.now(UTC)
    orgs: list[dict[str, Any]] = []
    party_rows, org_rows = [], []
    for i in range(n):
        kind = "enterprise" if rng.random() < 0.93 else "social_org"
        row: dict[str, Any] = {c: None for c in COLUMNS}
        row.update(DEFAULTS)
        row.update(
            id=uuid.uuid4(),
            credit_code=None,
            name=f"基准组织{i}",
            kind=kind,
            region_code=rng.choice(communities),
            industry_code=rng.choice(["C1310", "F5211", "E4710", "H6210"]),
            employees=rng.choice([3, 8, 12, 40, 200]),
            has_fixed_premises=rng.random() < 0.85,
            has_business_activity=rng.random() < 0.9,
            social_org_level=rng.choice(["county", "city", "province"]) if kind == "social_org" else None,
            status="active" if rng.random() < 0.97 else "zombie",
            formal_members=rng.choice([0, 0, 1, 2, 3, 5, 8]),
            has_trade_union=rng.random() < 0.2,
            charter_includes_party_building=rng.random() < 0.3,
            instructed=rng.random() < 0.05,
            version=1,
            created_at=now,
            updated_at=now,
        )
        row["in_scope"] = derive_in_scope(row, ScopeCriteria.from_settings(settings))
        if row["formal_members"] >= 3 and rng.random() < 0.7:
            pid = uuid.uuid4()
            party_rows.append(
                (
                    pid,
                    f"党支部{i}",
                    "branch",
                    "single",
                    False,
                    row["region_code"],
                    None,
                    kind,
                    now.date(),
                    None,
                    None,
                    rng.random() < 0.8,
                    rng.random() < 0.4,
                    True,
                    1,
                    now,
                    now,
                )
            )
            row["party_org_id"] = pid
        orgs.append(row)
        org_rows.append(tuple(row[c] for c in COLUMNS))
    await conn.copy_records_to_table(
        "party_org",
        records=party_rows,
        columns=(
            "id",
            "name",
            "level",
            "formation",
            "functional",
            "region_code",
            "superior_id",
            "kind",
            "established_on",
            "dissolved_on",
            "dissolution_reason",
            "secretary_in_management",
            "secretary_is_investor",
            "active",
            "version",
            "created_at",
            "updated_at",
        ),
    )
    for start in range(0, len(org_rows), 50_000):
        await conn.copy_records_to_table("organization", columns=COLUMNS, records=org_rows[start : start + 50_000])
    await conn.execute("ANALYZE organization; ANALYZE party_org; ANALYZE region")
    return orgs


def limit_sql() -> str:
    """The same figures in one statement written for speed, computing only (nothing written back).

    Written apart from the service's code: sums per registered region first, then each sum added
    to the region's ancestors (a GROUPING SETS version over the organizations measured 4x slower)."""
    counted = "o.status = 'active' AND o.in_scope"
    return f"""
CREATE TEMP TABLE limit_figures AS
WITH leaf AS (
  SELECT o.region_code, o.kind, count(*) AS registered, count(*) FILTER (WHERE o.status = 'active') AS active,
    count(*) FILTER (WHERE {counted}) AS in_scope,
    count(*) FILTER (WHERE {counted} AND o.party_org_id IS NOT NULL) AS org_covered,
    count(*) FILTER (WHERE {counted} AND (o.party_org_id IS NOT NULL OR o.instructed OR o.has_trade_union
                                          OR o.has_youth_league)) AS work_covered,
    count(*) FILTER (WHERE {counted} AND o.formal_members >= 3) AS single_eligible,
    count(*) FILTER (WHERE {counted} AND o.formal_members >= 3 AND p.formation = 'single') AS single_formed,
    count(*) FILTER (WHERE {counted} AND o.charter_includes_party_building) AS charter_included,
    0 AS party_orgs, 0 AS single, 0 AS joint, 0 AS industry, 0 AS regional, 0 AS affiliated, 0 AS mgmt, 0 AS inv
  FROM organization o LEFT JOIN party_org p ON p.id = o.party_org_id GROUP BY 1, 2
  UNION ALL
  SELECT region_code, kind, 0, 0, 0, 0, 0, 0, 0, 0, count(*),
    count(*) FILTER (WHERE formation = 'single'), count(*) FILTER (WHERE formation = 'joint'),
    count(*) FILTER (WHERE formation = 'industry'), count(*) FILTER (WHERE formation = 'regional'),
    count(*) FILTER (WHERE formation = 'affiliated'), count(*) FILTER (WHERE secretary_in_management),
    count(*) FILTER (WHERE secretary_is_investor)
  FROM party_org WHERE active GROUP BY 1, 2
)
SELECT a.code, l.kind, sum(registered) AS registered, sum(active) AS active, sum(in_scope) AS in_scope,
  sum(org_covered) AS org_covered, sum(work_covered) AS work_covered, sum(single_eligible) AS single_eligible,
  sum(single_formed) AS single_formed, sum(charter_included) AS charter_included, sum(party_orgs) AS party_orgs,
  sum(single) AS single, sum(joint) AS joint, sum(industry) AS industry, sum(regional) AS regional,
  sum(affiliated) AS affiliated, sum(mgmt) AS mgmt, sum(inv) AS inv
FROM leaf l, LATERAL (SELECT DISTINCT rpad(left(l.region_code, n), 12, '0') AS code
                      FROM unnest(ARRAY[0, 2, 4, 6, 9, 12]) n) a
GROUP BY 1, 2"""


async def incremental(db: Database, redis: Any, settings: Any, orgs: list[dict[str, Any]], count: int) -> list[float]:
    """Single-organization events through the coverage worker's own handler; seconds each."""
    from services.coverage.events import HANDLERS

    handler = make_event_handler("coverage", HANDLERS, figures.hold_shared)
    ctx = {"db": db, "service": "coverage", "publisher": Publisher(db, redis, settings), "job_try": 1}
    rng = random.Random(11)
    durations = []
    for _ in range(count):
        org = rng.choice(orgs)
        before = _facts(org)
        org["formal_members"] = (org["formal_members"] + 1) % 6
        event = Event(
            id=uuid.uuid4(),
            type="registry.organization.updated",
            version=1,
            occurred_at=datetime.now(UTC),
            producer="registry",
            correlation_id=None,
            payload=OrganizationChanges(
                source="manual",
                changes=[
                    OrgChange(
                        organization_id=org["id"], credit_code=None, name=org["name"], before=before, after=_facts(org)
                    )
                ],
            ).model_dump(mode="json"),
        )
        started = time.perf_counter()
        await handler(ctx, event.model_dump(mode="json"))
        durations.append(time.perf_counter() - started)
    return durations


def _facts(org: dict[str, Any]) -> OrgFacts:
    return org_facts(org, "single")  # every party organization of the benchmark is a single one


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    settings = settings_with_stack()
    assert settings.database_url and settings.redis_url
    conn = await asyncpg.connect(to_libpq_url(settings.database_url))
    if await conn.fetchval("SELECT count(*) FROM region WHERE code LIKE $1", PROVINCE + "%"):
        sys.stderr.write(f"province {PROVINCE} of an earlier run exists; use a fresh database\n")
        return 2
    started = time.perf_counter()
    orgs = await load(conn, args.orgs, settings)
    parties = await conn.fetchval("SELECT count(*) FROM party_org WHERE region_code LIKE $1", PROVINCE + "%")
    took = time.perf_counter() - started
    print(f"loaded {args.orgs:,} organizations and {parties:,} party organizations in {took:.0f} s")

    await conn.execute("SET statement_timeout = 0")
    await conn.execute("SELECT pg_advisory_lock($1)", FIGURES_LOCK)
    started = time.perf_counter()
    async with conn.transaction(isolation="repeatable_read"):
        changed, _ = await figures.recompute(conn, subscribed=subscriptions("coverage"), snapshot=None)
    service_s = time.perf_counter() - started
    await conn.execute("SELECT pg_advisory_unlock($1)", FIGURES_LOCK)

    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute(limit_sql())
        rows = await conn.fetchval("SELECT count(*) FROM limit_figures")
        await conn.execute("DROP TABLE limit_figures")
    limit_s = time.perf_counter() - started
    check = await conn.fetchrow(
        f"SELECT {', '.join(f'sum({c})' for c in COUNTERS[:3])} FROM coverage_figure WHERE region_code = $1",
        f"{PROVINCE}0000000000",
    )
    print(
        f"full recompute (service)  {service_s:7.2f} s  ({changed:,} figure rows written; province in scope "
        f"{int(check[2]):,} of {int(check[0]):,} registered)"
    )
    print(f"hand-written SQL (limit)  {limit_s:7.2f} s  ({rows:,} rows)")
    print(
        f"ratio service/limit       {service_s / limit_s:7.2f}    goal <= 1.5  "
        f"{'met' if service_s / limit_s <= 1.5 else 'NOT met'}"
    )

    db = Database(settings, application_name="liangxin-bench", pool_size=2)
    from shared.queue import make_redis

    redis = make_redis(settings.redis_url)
    durations = await incremental(db, redis, settings, orgs, args.events)
    await redis.aclose()
    await db.dispose()
    p50 = statistics.median(durations) * 1000
    p99 = statistics.quantiles(durations, n=100)[98] * 1000
    print(
        f"incremental, one event    p50 {p50:6.1f} ms  p99 {p99:6.1f} ms over {len(durations)} events "
        f"(goal p99 < 100 ms) {'met' if p99 < 100 else 'NOT met'}"
    )
    await conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
