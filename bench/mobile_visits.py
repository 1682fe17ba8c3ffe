"""Field visits over HTTP against their limit, raw asyncpg inserts, measured in the same run.

    .venv/bin/python bench/mobile_visits.py [--devices 20] [--visits 500] [--url http://127.0.0.1:8002]

Needs a running coverage API and its database (LIANGXIN_DATABASE_URL, or a running
`liangxin dev`), preferably fresh. It creates a synthetic county (code 97) with one organization
per visit, a campaign, one surveyor per device and their assignments; then every device posts its
visits in batches of 100, all devices at once. It prints visits/s and the p50/p99 latency of a
batch, the rate of asyncpg `executemany(INSERT … ON CONFLICT DO NOTHING)` of the same rows into a
table built LIKE `visit` (the limit) and the ratio (goal ≥ 0.3, p99 < 250 ms), and finally replays
the whole run and counts the rows it added (must be 0).

The campaign has a form (FORM: a condition, a constraint, a choice list): every visit answers it
and is checked against its version, as the field app's visits are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.coverage.mobile import content_hash
from services.coverage.models import VisitIn
from services.registry.organizations import COLUMNS, DEFAULTS
from shared.auth import create_user, issue_token
from shared.cli import settings_with_stack
from shared.db import Database
from shared.models import Role
from shared.outbox import SERVICE_KEY
from shared.settings import to_libpq_url

COUNTY = "970101000000"
BATCH = 100
# The campaign's form: every visit answers it and is checked against version 1.
FORM = {
    "title": "基准摸排表",
    "questions": [
        {
            "name": "formal_members",
            "type": "integer",
            "label": "正式党员数",
            "required": True,
            "constraint": ". <= 1000",
        },
        {"name": "has_trade_union", "type": "yes_no", "label": "是否建立工会", "required": True},
        {
            "name": "union_members",
            "type": "integer",
            "label": "工会会员人数",
            "required": True,
            "constraint": ". >= 1 and . <= 500",
            "relevant": "${has_trade_union} = 'yes'",
        },
        {
            "name": "opinions",
            "type": "select_multiple",
            "label": "意见建议",
            "choices": [{"value": "funding", "label": "经费"}, {"value": "training", "label": "培训"}],
        },
    ],
}


async def setup(conn: asyncpg.Connection, settings: Any, devices: int, per_device: int) -> tuple[str, list[Any]]:
    regions = [
        ("970000000000", "基准省", 1, "000000000000"),
        ("970100000000", "基准市", 2, "970000000000"),
        (COUNTY, "基准县", 3, "970100000000"),
    ]
    towns = [f"970101{t:03d}000" for t in range(1, devices + 1)]
    regions += [(t, f"乡镇{i}", 4, COUNTY) for i, t in enumerate(towns, 1)]
    await conn.copy_records_to_table("region", columns=("code", "name", "level", "parent_code"), records=regions)
    now = datetime.now(UTC)
    rows = []
    for d, town in enumerate(towns):
        for i in range(per_device):
            row: dict[str, Any] = {c: None for c in COLUMNS}
            row.update(DEFAULTS)
            row.update(
                id=uuid.uuid4(),
                name=f"基准组织{d}-{i}",
                kind="enterprise",
                region_code=town,
                employees=30,
                has_fixed_premises=True,
                has_business_activity=True,
                in_scope=True,
                instructed=False,
                version=1,
                created_at=now,
                updated_at=now,
            )
            rows.append(tuple(row[c] for c in COLUMNS))
    await conn.copy_records_to_table("organization", columns=COLUMNS, records=rows)
    db = Database(settings, application_name="liangxin-bench", pool_size=1)
    users = []
    async with db.session() as session:
        session.info[SERVICE_KEY] = "registry"
        for _ in range(devices):
            users.append(
                await create_user(
                    session,
                    username=f"bench-surveyor-{uuid.uuid4().hex[:6]}",
                    password=uuid.uuid4().hex,
                    role=Role.surveyor,
                    region_code=COUNTY,
                )
            )
    await db.dispose()
    campaign = uuid.uuid4()
    await conn.execute(
        "INSERT INTO campaign (id, name, region_code, kinds, criteria, status, created_by, version, created_at) "
        "VALUES ($1, '基准摸排', $2, ARRAY['enterprise'], '{}', 'active', 'bench', 1, now())",
        campaign,
        COUNTY,
    )
    await conn.execute(
        "INSERT INTO campaign_round VALUES ($1, 1, $2, $3)",
        campaign,
        date.today() - timedelta(days=10),
        date.today() + timedelta(days=10),
    )
    for user, town in zip(users, towns, strict=True):
        await conn.execute(
            "INSERT INTO campaign_team (id, campaign_id, name, surveyor_ids, townships) "
            "VALUES ($1, $2, $3, ARRAY[$4::uuid], ARRAY[$5])",
            uuid.uuid4(),
            campaign,
            f"小组{town}",
            user.id,
            town,
        )
    return str(campaign), users


def device_visits(assignments: list[Any]) -> list[dict[str, Any]]:
    visited = datetime.now(UTC) - timedelta(days=1)
    return [
        {
            "id": str(uuid.uuid4()),
            "assignment_id": str(a["id"]),
            "visited_at": visited.isoformat(),
            "outcome": "operating",
            "employees": 31,
            "formal_members": 2,
            "has_fixed_premises": True,
            "has_business_activity": True,
            "notes": "基准走访",
            "location": {"lat": 29.63, "lon": 111.76},
            "form_version": 1,
            "answers": {"has_trade_union": True, "union_members": 12, "opinions": ["funding", "training"]},
            "paradata": {
                "started_at": (visited - timedelta(minutes=6)).isoformat(),
                "ended_at": visited.isoformat(),
                "app_version": "bench",
            },
        }
        for a in assignments
    ]


async def post_all(
    url: str, tokens: list[str], per_device: list[list[dict[str, Any]]]
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    accepted = 0

    async def device(token: str, visits: list[dict[str, Any]]) -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(0, len(visits), BATCH):
                started = time.perf_counter()
                r = await client.post("/v1/mobile/visits", json={"visits": visits[i : i + BATCH]})
                latencies.append(time.perf_counter() - started)
                r.raise_for_status()
                accepted += r.json()["accepted"]

    started = time.perf_counter()
    await asyncio.gather(*(device(t, v) for t, v in zip(tokens, per_device, strict=True)))
    return time.perf_counter() - started, latencies, accepted


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--visits", type=int, default=500, help="visits per device")
    parser.add_argument("--url", default="http://127.0.0.1:8002")
    args = parser.parse_args()
    settings = settings_with_stack()
    assert settings.database_url
    conn = await asyncpg.connect(to_libpq_url(settings.database_url))
    if await conn.fetchval("SELECT count(*) FROM region WHERE code LIKE '97%'"):
        sys.stderr.write("county 97 of an earlier run exists; use a fresh database\n")
        return 2
    campaign, users = await setup(conn, settings, args.devices, args.visits)
    async with httpx.AsyncClient(base_url=args.url, timeout=600) as client:
        officer = await _officer_token(settings)
        r = await client.post(
            f"/v1/campaigns/{campaign}/assignments:generate",
            json={"round": 1},
            headers={"Authorization": f"Bearer {officer}"},
        )
        r.raise_for_status()
        form = await client.put(
            f"/v1/campaigns/{campaign}/form", json=FORM, headers={"Authorization": f"Bearer {officer}"}
        )
        form.raise_for_status()
    tokens = [issue_token(u, settings)[0] for u in users]
    per_device = []
    for user in users:
        found = await conn.fetch("SELECT id FROM assignment WHERE surveyor_id = $1 ORDER BY id", user.id)
        per_device.append(device_visits(list(found)))
    total = sum(len(v) for v in per_device)

    before = await conn.fetchval("SELECT count(*) FROM visit")
    elapsed, latencies, accepted = await post_all(args.url, tokens, per_device)
    assert accepted == total, f"accepted {accepted} of {total}"
    rate = total / elapsed
    p50, p99 = statistics.median(latencies) * 1000, statistics.quantiles(latencies, n=100)[98] * 1000

    # The limit: the same rows, as the service stores them, inserted with asyncpg executemany.
    await conn.execute("DROP TABLE IF EXISTS bench_visit")
    await conn.execute("CREATE TABLE bench_visit (LIKE visit INCLUDING ALL)")
    stored = await conn.fetch("SELECT * FROM visit WHERE campaign_id = $1", uuid.UUID(campaign))
    columns = list(stored[0].keys())
    rows = [[json.dumps(r[c]) if isinstance(r[c], dict | list) else r[c] for c in columns] for r in stored]
    for row in rows:
        row[columns.index("id")] = uuid.uuid4()
    statement = (
        f"INSERT INTO bench_visit ({', '.join(columns)}) VALUES "
        f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) ON CONFLICT DO NOTHING"
    )
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        await conn.executemany(statement, rows[i : i + BATCH])
    limit_s = time.perf_counter() - started
    await conn.execute("DROP TABLE bench_visit")
    limit_rate = total / limit_s

    replay_elapsed, _, _ = await post_all(args.url, tokens, per_device)
    after = await conn.fetchval("SELECT count(*) FROM visit")
    await conn.close()
    assert content_hash(VisitIn.model_validate(per_device[0][0]))  # the payload is a valid visit
    print(f"visits                    {total:,} from {args.devices} devices in batches of {BATCH}")
    print(
        f"HTTP, all devices at once {elapsed:7.2f} s  {rate:9,.0f} visits/s  batch p50 {p50:.0f} ms  "
        f"p99 {p99:.0f} ms (goal p99 < 250 ms) {'met' if p99 < 250 else 'NOT met'}"
    )
    print(f"asyncpg executemany limit {limit_s:7.2f} s  {limit_rate:9,.0f} rows/s")
    ratio = rate / limit_rate
    print(f"ratio HTTP/limit          {ratio:7.3f}    goal >= 0.3  {'met' if ratio >= 0.3 else 'NOT met'}")
    print(f"replay of the whole run   {replay_elapsed:7.2f} s, rows added: {after - before - total}")
    return 0


async def _officer_token(settings: Any) -> str:
    db = Database(settings, application_name="liangxin-bench", pool_size=1)
    async with db.session() as session:
        session.info[SERVICE_KEY] = "registry"
        user = await create_user(
            session,
            username=f"bench-officer-{uuid.uuid4().hex[:6]}",
            password=uuid.uuid4().hex,
            role=Role.officer,
            region_code=COUNTY,
        )
    await db.dispose()
    return issue_token(user, settings)[0]


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
