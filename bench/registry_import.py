"""Partner import throughput against its limit, raw COPY, measured in the same run.

    .venv/bin/python bench/registry_import.py [--n 200000] [--batch 10000] [--url http://127.0.0.1:8001]

Needs a running registry API and its database (LIANGXIN_DATABASE_URL, or a running
`liangxin dev`). It creates a throwaway admin and a synthetic region tree (province code 99),
imports N generated organizations through POST /v1/organizations/import in batches, loads the
same rows with asyncpg's copy_records_to_table into a scratch table built LIKE the organization
table (same columns, defaults and indexes), then re-imports everything unchanged.
Goals: import/COPY ratio ≥ 0.25; unchanged re-import ≤ 0.5 × first import; no table growth.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from services.registry.organizations import COLUMNS, DEFAULTS
from shared.auth import create_user
from shared.cli import settings_with_stack
from shared.codes import make_credit_code
from shared.db import Database
from shared.models import Role
from shared.outbox import SERVICE_KEY
from shared.scope import ScopeCriteria, derive_in_scope
from shared.settings import to_libpq_url

PROVINCE, CITY, COUNTY = "990000000000", "990100000000", "990101000000"
TOWNSHIPS = [f"990101{t:03d}000" for t in range(1, 21)]
COMMUNITIES = [t[:9] + f"{c:03d}" for t in TOWNSHIPS for c in range(1, 11)]


def regions() -> list[dict[str, str]]:
    tree = [
        {"code": PROVINCE, "name": "基准测试省"},
        {"code": CITY, "name": "基准测试市"},
        {"code": COUNTY, "name": "基准测试县"},
    ]
    tree += [{"code": t, "name": f"测试乡镇{i}"} for i, t in enumerate(TOWNSHIPS, 1)]
    tree += [{"code": c, "name": f"测试社区{i}"} for i, c in enumerate(COMMUNITIES, 1)]
    return tree


def records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        employees = rng.randint(0, 200)
        out.append(
            {
                "credit_code": make_credit_code(f"91990101{i:09d}"),
                "name": f"基准测试企业{i}号有限公司",
                "kind": "enterprise",
                "region_code": rng.choice(COMMUNITIES),
                "industry_code": rng.choice(["C1310", "F5211", "E4710", "H6210", "G5430"]),
                "registration_authority": "market_regulation",
                "employees": employees,
                "has_fixed_premises": rng.random() < 0.8,
                "has_business_activity": rng.random() < 0.9,
                "formal_members": rng.randint(0, 8),
                "has_trade_union": rng.random() < 0.3,
                "address": f"测试路{rng.randint(1, 999)}号",
            }
        )
    return out


def copy_rows(batch: list[dict[str, Any]], settings: Any) -> list[tuple[Any, ...]]:
    """The rows as the import stores them, ready for COPY."""
    now = datetime.now(UTC)
    rows = []
    for record in batch:
        row: dict[str, Any] = {c: None for c in COLUMNS}
        row.update(DEFAULTS)
        row.update(record)
        row.update(
            id=uuid.uuid4(),
            in_scope=derive_in_scope(row, ScopeCriteria.from_settings(settings)),
            instructed=False,
            version=1,
            created_at=now,
            updated_at=now,
        )
        rows.append(tuple(row[c] for c in COLUMNS))
    return rows


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--url", default="http://127.0.0.1:8001")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = settings_with_stack()
    assert settings.database_url
    conn = await asyncpg.connect(to_libpq_url(settings.database_url))
    if await conn.fetchval("SELECT count(*) FROM organization WHERE region_code LIKE '99%'"):
        sys.stderr.write("organizations of a previous run exist (region 99…); use a fresh database\n")
        return 2

    db = Database(settings, application_name="liangxin-bench", pool_size=1)
    password = secrets.token_urlsafe(16)
    username = f"bench-{secrets.token_hex(4)}"
    async with db.session() as session:
        session.info[SERVICE_KEY] = "registry"
        await create_user(session, username=username, password=password, role=Role.admin, region_code="000000000000")
    await db.dispose()

    async with httpx.AsyncClient(base_url=args.url, timeout=600) as client:
        token = (await client.post("/v1/auth/token", data={"username": username, "password": password})).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        r = await client.post("/v1/regions/import", json={"records": regions()}, headers=headers)
        r.raise_for_status()
        data = records(args.n, args.seed)
        batches = [data[i : i + args.batch] for i in range(0, len(data), args.batch)]

        size_before = await conn.fetchval("SELECT pg_total_relation_size('organization')")
        started = time.perf_counter()
        created = 0
        for batch in batches:
            r = await client.post("/v1/organizations/import", json={"records": batch}, headers=headers)
            r.raise_for_status()
            created += r.json()["created"]
        first = time.perf_counter() - started
        assert created == args.n, f"created {created} of {args.n}"
        size_after_first = await conn.fetchval("SELECT pg_total_relation_size('organization')")
        ledger_after_first = await conn.fetchval("SELECT count(*) FROM registry_change")

        started = time.perf_counter()
        unchanged = 0
        for batch in batches:
            r = await client.post("/v1/organizations/import", json={"records": batch}, headers=headers)
            r.raise_for_status()
            unchanged += r.json()["unchanged"]
        again = time.perf_counter() - started
        size_after_again = await conn.fetchval("SELECT pg_total_relation_size('organization')")
        ledger_after_again = await conn.fetchval("SELECT count(*) FROM registry_change")

    await conn.execute("DROP TABLE IF EXISTS bench_organization_copy")
    # Identical: columns, defaults, indexes and (LIKE does not copy them) the same foreign keys.
    await conn.execute("CREATE TABLE bench_organization_copy (LIKE organization INCLUDING ALL)")
    for column, target in (("region_code", "region(code)"), ("area_id", "area(id)"), ("party_org_id", "party_org(id)")):
        await conn.execute(f"ALTER TABLE bench_organization_copy ADD FOREIGN KEY ({column}) REFERENCES {target}")
    prepared = [copy_rows(b, settings) for b in batches]
    started = time.perf_counter()
    for rows in prepared:
        await conn.copy_records_to_table("bench_organization_copy", columns=COLUMNS, records=rows)
    raw = time.perf_counter() - started
    await conn.execute("DROP TABLE bench_organization_copy")
    await conn.close()

    import_rate, copy_rate = args.n / first, args.n / raw
    ratio = import_rate / copy_rate
    print(f"organizations            {args.n:,} in batches of {args.batch:,}")
    print(f"HTTP import              {first:8.2f} s  {import_rate:10,.0f} rows/s")
    print(f"raw COPY (the limit)     {raw:8.2f} s  {copy_rate:10,.0f} rows/s")
    print(f"ratio import/COPY        {ratio:8.3f}    goal >= 0.25  {'met' if ratio >= 0.25 else 'NOT met'}")
    print(
        f"unchanged re-import      {again:8.2f} s  = {again / first:.3f} of the first import (goal <= 0.5)"
        f"  {'met' if again <= 0.5 * first else 'NOT met'}; {unchanged:,} unchanged"
    )
    print(
        f"table growth on re-import {size_after_again - size_after_first:,} bytes "
        f"(organization: {size_before:,} → {size_after_first:,} → {size_after_again:,}); "
        f"ledger lines added {ledger_after_again - ledger_after_first}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
