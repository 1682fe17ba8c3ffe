"""Annual funding computation against the fastest hand-written SQL for the same allocation, in one run.

    .venv/bin/python bench/funding_compute.py [--party-orgs 100000]

Needs the database (LIANGXIN_DATABASE_URL, or a running `liangxin dev`), preferably fresh. It
loads a synthetic province (code 97: 2 cities, 10 counties, 100 townships) with N party
organizations of every level, one organization each with its member counts, approved star
ratings for four in five of them and a few hundred city designations, straight into the tables.
One rule set uses every rule kind (the seed examples together) under a budget cap, so the largest
remainder rounding runs too. Then it times

1. the service: `funding_service.run`, the code behind `POST /v1/funding/allocations:compute`
   (read the facts, apply the rules, cap, write allocations and lines), first computation;
2. the limit: one hand-written statement computing the same lines, basis texts, cap and totals
   for this rule set, with its amounts written in, into scratch tables in key order built LIKE the funding
   tables (same columns, indexes and foreign keys);

checks that both give every party organization the same amounts, and prints both times and the
ratio (goal ≤ 2). Finally it times an unchanged recompute (which must write nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from datetime import date
from typing import Any

import asyncpg
from sqlalchemy import text

from services.evaluation.funding import service as funding_service
from services.evaluation.funding.engine import SEED_RULE_SETS, RuleList, dump_rules
from services.evaluation.funding.models import FundingRuleSet
from services.evaluation.funding.service import Computation
from shared.cli import settings_with_stack
from shared.db import Database
from shared.settings import to_libpq_url

PROVINCE = "97"
YEAR = 2025
# The budget: about three fifths of what the rules ask for, so every line is scaled and rounded.
CAP_PER_PARTY_ORG = 17_001
RULE_SET = "bench_all"


def tree() -> tuple[list[tuple[str, str, int, str]], list[str]]:
    province = f"{PROVINCE}0000000000"
    rows = [(province, "经费基准省", 1, "000000000000")]
    townships = []
    for c in range(1, 3):
        city = f"{PROVINCE}{c:02d}00000000"
        rows.append((city, f"经费基准市{c}", 2, province))
        for k in range(1, 6):
            county = f"{PROVINCE}{c:02d}{k:02d}000000"
            rows.append((county, f"经费基准县{c}-{k}", 3, city))
            for t in range(1, 11):
                town = county[:6] + f"{t:03d}000"
                rows.append((town, f"乡镇{t}", 4, county))
                townships.append(town)
    return rows, townships


def rules() -> list[dict[str, Any]]:
    every = [r for seed in ("fuyang", "diqing", "luzhou") for r in SEED_RULE_SETS[seed]["rules"]]
    return dump_rules(RuleList.model_validate({"rules": every}).rules)


async def load(conn: asyncpg.Connection, n: int) -> uuid.UUID:
    rng = random.Random(5)
    regions, townships = tree()
    await conn.copy_records_to_table("region", columns=("code", "name", "level", "parent_code"), records=regions)
    party, orgs, ratings, designations = [], [], [], []
    template, cycle = uuid.uuid4(), uuid.uuid4()
    for i in range(n):
        pid = uuid.uuid4()
        region = rng.choice(townships)
        level = rng.choices(["committee", "general_branch", "branch"], weights=[5, 10, 85])[0]
        if rng.random() < 0.06:
            established = date(YEAR, rng.randint(1, 12), 1)
        else:
            established = date(rng.randint(2005, YEAR - 1), rng.randint(1, 12), rng.randint(1, 28))
        dissolved = date(YEAR, rng.randint(1, 12), 15) if established.year < YEAR and rng.random() < 0.02 else None
        if rng.random() < 0.01:
            established = date(YEAR + 1, 1, 10)
        name = f"基准党组织{i}"
        party.append((pid, name, level, "single", region, "enterprise", established, dissolved))
        orgs.append(
            (uuid.uuid4(), f"基准企业{i}", "enterprise", region, "active", rng.randint(0, 60), rng.randint(0, 5), pid)
        )
        if rng.random() < 0.8:
            ratings.append((uuid.uuid4(), cycle, pid, name, region, "approved", rng.randint(1, 5), "bench"))
        if rng.random() < 0.004:
            kind = rng.choice(["model", "compliant", "compliant", "compliant"])
            designations.append((uuid.uuid4(), pid, name, region, YEAR, "city", kind, "active", "bench"))
    await conn.copy_records_to_table(
        "party_org",
        columns=("id", "name", "level", "formation", "region_code", "kind", "established_on", "dissolved_on"),
        records=party,
    )
    await conn.copy_records_to_table(
        "organization",
        columns=(
            "id",
            "name",
            "kind",
            "region_code",
            "status",
            "formal_members",
            "probationary_members",
            "party_org_id",
        ),
        records=orgs,
    )
    await conn.execute(
        "INSERT INTO evaluation_template (id, code, version, kind, name, region_code, definition, created_by) "
        "VALUES ($1, 'bench-stars', 1, 'star_rating', '五星', $2, '{}', 'bench')",
        template,
        f"{PROVINCE}0000000000",
    )
    await conn.execute(
        "INSERT INTO evaluation_cycle (id, name, year, template_id, region_code, status, created_by) "
        "VALUES ($1, '基准年度星级评定', $2, $3, $4, 'closed', 'bench')",
        cycle,
        YEAR,
        template,
        f"{PROVINCE}0000000000",
    )
    await conn.copy_records_to_table(
        "assessment",
        columns=(
            "id",
            "cycle_id",
            "party_org_id",
            "party_org_name",
            "region_code",
            "status",
            "star_level",
            "created_by",
        ),
        records=ratings,
    )
    await conn.execute("UPDATE assessment SET approved_at = now() WHERE cycle_id = $1", cycle)
    await conn.copy_records_to_table(
        "designation",
        columns=(
            "id",
            "party_org_id",
            "party_org_name",
            "region_code",
            "year",
            "level",
            "type",
            "status",
            "created_by",
        ),
        records=designations,
    )
    rule_set = uuid.uuid4()
    await conn.execute(
        "INSERT INTO funding_rule_set (id, code, version, name, region_code, rules, created_by) "
        "VALUES ($1, $2, 1, '基准：全部规则', $3, $4::jsonb, 'bench')",
        rule_set,
        RULE_SET,
        f"{PROVINCE}0000000000",
        json.dumps(rules()),
    )
    await conn.execute("ANALYZE")
    return rule_set


def limit_sql(cap: int) -> str:
    """The allocation of `rules()` for the province, written by hand for speed: one statement, the
    rule amounts written in, the same lines, basis texts, cap (largest remainder) and totals."""
    prefix = PROVINCE + "%"
    return f"""
WITH members AS (
  SELECT party_org_id, sum(formal_members) + sum(probationary_members) AS m
  FROM organization WHERE party_org_id IS NOT NULL AND region_code LIKE '{prefix}' GROUP BY 1),
stars AS (
  SELECT DISTINCT ON (a.party_org_id) a.party_org_id, a.star_level
  FROM assessment a JOIN evaluation_cycle c ON c.id = a.cycle_id JOIN evaluation_template t ON t.id = c.template_id
  WHERE c.year = {YEAR} AND t.kind = 'star_rating' AND a.status = 'approved' AND a.star_level IS NOT NULL
    AND a.region_code LIKE '{prefix}'
  ORDER BY a.party_org_id, COALESCE(c.quarter, 5) DESC, a.approved_at DESC, a.id),
awards AS (
  SELECT party_org_id, count(*) AS n, sum(CASE type WHEN 'model' THEN 100000 ELSE 30000 END) AS amount,
    string_agg(CASE type WHEN 'model' THEN '市级示范' ELSE '市级达标' END, '、' ORDER BY level, type) AS basis
  FROM designation WHERE year = {YEAR} AND status = 'active' AND level = 'city' AND type IN ('model', 'compliant')
    AND region_code LIKE '{prefix}' GROUP BY 1),
f AS (
  SELECT p.id, p.region_code, p.name, p.level, p.established_on, coalesce(m.m, 0)::bigint AS m, s.star_level AS star,
    (CASE WHEN p.dissolved_on >= make_date({YEAR}, 1, 1) AND p.dissolved_on < make_date({YEAR + 1}, 1, 1)
          THEN extract(month FROM p.dissolved_on) ELSE 12 END
     - CASE WHEN p.established_on >= make_date({YEAR}, 1, 1) THEN extract(month FROM p.established_on) ELSE 1 END
     + 1)::bigint AS months,
    CASE s.star_level WHEN 3 THEN 3000 WHEN 4 THEN 10000 WHEN 5 THEN 20000 END AS tier
  FROM party_org p LEFT JOIN members m ON m.party_org_id = p.id LEFT JOIN stars s ON s.party_org_id = p.id
  WHERE p.region_code LIKE '{prefix}' AND p.established_on <= make_date({YEAR}, 12, 31)
    AND (p.dissolved_on IS NULL OR p.dissolved_on >= make_date({YEAR}, 1, 1))),
raw AS (
  SELECT id, region_code, 'star_subsidy' AS code, 0 AS pos, 'star_tier' AS kind, '区财政星级补助' AS rname,
    1::bigint AS q, tier::bigint AS unit, tier::bigint AS amount, star || '星' AS basis FROM f WHERE tier IS NOT NULL
  UNION ALL SELECT id, region_code, 'member_activity', 1, 'per_member', '党员活动经费', m, 150, m * 150,
    m || '名党员 × 150元' FROM f WHERE m > 0
  UNION ALL SELECT id, region_code, 'town_enterprise_matching', 2, 'matching', '镇、企1:1配套',
    coalesce(tier, 0) + m * 150, NULL, coalesce(tier, 0) + m * 150,
    '1:1配套' || (coalesce(tier, 0) + m * 150) || '元（镇、企）' FROM f WHERE coalesce(tier, 0) + m * 150 > 0
  UNION ALL SELECT id, region_code, 'startup_grant', 3, 'startup', '新建党组织启动经费', 1, 5000, 5000,
    to_char(established_on, 'YYYY-MM-DD') || '新建' FROM f WHERE established_on >= make_date({YEAR}, 1, 1)
  UNION ALL SELECT id, region_code, 'annual_activity', 4, 'by_level', '党组织活动经费', 1,
    CASE level WHEN 'branch' THEN 3000 ELSE 20000 END, CASE level WHEN 'branch' THEN 3000 ELSE 20000 END,
    CASE level WHEN 'committee' THEN '党委' WHEN 'general_branch' THEN '党总支' ELSE '党支部' END FROM f
  UNION ALL SELECT id, region_code, 'secretary_allowance', 5, 'secretary_allowance', '党支部书记工作补助', months, 300,
    months * 300, months || '个月 × 300元' FROM f WHERE level = 'branch'
  UNION ALL SELECT f.id, f.region_code, 'site_award', 6, 'designation_award', '市级示范阵地、标准化阵地奖励', a.n, NULL,
    a.amount, a.basis FROM f JOIN awards a ON a.party_org_id = f.id),
tot AS (SELECT sum(amount)::bigint AS t FROM raw),
sc AS (SELECT raw.*, (amount * {cap}) / t AS fl, (amount * {cap}) % t AS rem, t FROM raw, tot),
short AS (SELECT {cap} - sum(fl)::bigint AS s FROM sc),
ranked AS (SELECT sc.*, row_number() OVER (ORDER BY rem DESC, id, pos) AS rn FROM sc),
final AS (
  SELECT r.*, CASE WHEN r.t <= {cap} THEN r.amount ELSE r.fl + (r.rn <= short.s)::int END AS capped
  FROM ranked r, short),
allocations AS (
  INSERT INTO limit_allocation (id, year, rule_set_code, scope_code, party_org_id, region_code, party_org_name,
    party_org_level, rule_set_id, rule_set_version, budget_cap, uncapped_total, total, computed_at)
  SELECT f.id, {YEAR}, '{RULE_SET}', '{PROVINCE}0000000000', f.id, f.region_code, f.name, f.level, $1, 1, {cap},
    sum(x.amount), sum(x.capped), now()
  FROM final x JOIN f ON f.id = x.id GROUP BY f.id, f.region_code, f.name, f.level ORDER BY f.id RETURNING 1)
INSERT INTO limit_line (allocation_id, rule_code, region_code, position, rule_kind, rule_name, quantity, unit_amount,
  uncapped_amount, amount, basis)
SELECT id, code, region_code, pos, kind, rname, q, unit, amount, capped, basis FROM final ORDER BY id, code"""


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--party-orgs", type=int, default=100_000)
    args = parser.parse_args()
    settings = settings_with_stack()
    assert settings.database_url
    conn = await asyncpg.connect(to_libpq_url(settings.database_url))
    await conn.execute("SET statement_timeout = 0")
    if await conn.fetchval("SELECT count(*) FROM region WHERE code LIKE $1", PROVINCE + "%"):
        sys.stderr.write(f"province {PROVINCE} of an earlier run exists; use a fresh database\n")
        return 2
    started = time.perf_counter()
    rule_set_id = await load(conn, args.party_orgs)
    took = time.perf_counter() - started
    ratings = await conn.fetchval("SELECT count(*) FROM assessment WHERE region_code LIKE $1", PROVINCE + "%")
    sites = await conn.fetchval("SELECT count(*) FROM designation WHERE region_code LIKE $1", PROVINCE + "%")
    print(
        f"loaded {args.party_orgs:,} party organizations and their organizations, {ratings:,} approved star ratings "
        f"and {sites:,} city designations in {took:.0f} s"
    )

    db = Database(settings, application_name="liangxin-bench", pool_size=1)
    async with db.session() as session:
        rule_set = await session.get(FundingRuleSet, rule_set_id)
    assert rule_set is not None
    cap = args.party_orgs * CAP_PER_PARTY_ORG
    computation = Computation(YEAR, f"{PROVINCE}0000000000", rule_set, cap)

    async def service() -> tuple[float, Any]:
        begun = time.perf_counter()
        async with db.session() as session:
            await session.execute(text("SET LOCAL statement_timeout = 0"))
            result = await funding_service.run(session, computation)
        return time.perf_counter() - begun, result

    service_s, result = await service()

    await conn.execute(
        "CREATE TABLE limit_allocation (LIKE funding_allocation INCLUDING ALL);"
        "CREATE TABLE limit_line (LIKE funding_line INCLUDING ALL);"
        "ALTER TABLE limit_allocation ADD FOREIGN KEY (rule_set_id) REFERENCES funding_rule_set (id);"
        "ALTER TABLE limit_line ADD FOREIGN KEY (allocation_id) REFERENCES limit_allocation (id) ON DELETE CASCADE"
    )
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute(limit_sql(cap).replace("$1", f"'{rule_set_id}'::uuid"))
    limit_s = time.perf_counter() - started
    limit_rows = await conn.fetchval("SELECT count(*) FROM limit_line")
    differ = await conn.fetchval(
        "SELECT count(*) FROM (SELECT a.party_org_id, l.rule_code, l.amount, l.uncapped_amount, l.basis "
        "FROM funding_line l JOIN funding_allocation a ON a.id = l.allocation_id WHERE a.rule_set_code = $1) s "
        "FULL JOIN (SELECT allocation_id AS party_org_id, rule_code, amount, uncapped_amount, basis FROM limit_line) x "
        "USING (party_org_id, rule_code) "
        "WHERE (s.amount, s.uncapped_amount, s.basis) IS DISTINCT FROM (x.amount, x.uncapped_amount, x.basis)",
        RULE_SET,
    )
    await conn.execute("DROP TABLE limit_line; DROP TABLE limit_allocation")

    again_s, again = await service()
    await db.dispose()
    await conn.close()

    print(
        f"service compute          {service_s:7.2f} s  ({result.party_orgs:,} allocations, {result.lines:,} lines; "
        f"{result.uncapped_total:,} yuan capped to {result.total:,})"
    )
    print(
        f"hand-written SQL (limit) {limit_s:7.2f} s  ({limit_rows:,} lines; {differ} lines differ from the service's)"
    )
    ratio = service_s / limit_s
    print(f"ratio service/limit      {ratio:7.2f}    goal <= 2  {'met' if ratio <= 2 else 'NOT met'}")
    print(
        f"unchanged recompute      {again_s:7.2f} s  (created {again.created}, updated {again.updated}, "
        f"removed {again.removed}, unchanged {again.unchanged:,})"
    )
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
