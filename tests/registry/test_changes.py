"""The change feed: commit order without gaps or repeats, even with concurrent writers."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sqlalchemy import text

from services.registry import merge
from services.registry.models import ChangeSource
from shared.auth import system_caller
from shared.outbox import SERVICE_KEY
from tests.helpers import feeds_caught_up, import_orgs, import_tree, make_api_key, org_record


async def read_all(registry, headers: dict[str, str], cursor: str | None = None) -> tuple[list[dict[str, Any]], str]:
    await feeds_caught_up()
    items: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": 7, **({"after": cursor} if cursor else {})}
        response = await registry.get("/v1/changes", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["items"]:
            return items, cursor


async def test_feed_pages_in_order_and_resumes(db, registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(n) for n in range(10)])
    partner = await make_api_key(db, scopes=["registry:read"], region="430723000000")
    items, cursor = await read_all(registry, partner)
    assert len(items) == 10 and {i["action"] for i in items} == {"created"}
    await import_orgs(registry, admin, [org_record(3, employees=99)])
    more, _ = await read_all(registry, partner, cursor)
    assert [(m["action"], m["after"]) for m in more] == [("updated", {"employees": 99})]
    outside = await make_api_key(db, scopes=["registry:read"], region="430702000000")
    assert (await read_all(registry, outside))[0] == []


async def test_concurrent_writers_never_make_the_feed_skip_or_repeat(db, registry, admin) -> None:
    await import_tree(registry, admin)
    caller = system_caller("test-writer")
    rng = random.Random(11)

    async def writer(w: int) -> None:
        for batch in range(6):
            async with db.session() as session:
                session.info[SERVICE_KEY] = "registry"
                base = w * 1000 + batch * 10
                incoming = [
                    merge.Incoming(
                        row=i,
                        credit_code=org_record(base + i)["credit_code"],
                        values={k: v for k, v in org_record(base + i).items() if k != "credit_code"},
                    )
                    for i in range(3)
                ]
                await merge.merge(session, caller=caller, incoming=incoming, source=ChangeSource.manual)
                # Hold the transaction open for a while: later transactions commit first.
                await asyncio.sleep(rng.uniform(0, 0.15))

    seen: list[int] = []
    cursor: str | None = None
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            response = await registry.get(
                "/v1/changes", params={"limit": 5, **({"after": cursor} if cursor else {})}, headers=admin
            )
            page = response.json()
            seen.extend(int(_seq(i["cursor"])) for i in page["items"])
            cursor = page["next_cursor"]
            if finished and not page["items"]:
                return
            await asyncio.sleep(0.01)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(6)))
    done.set()
    await reading
    async with db.session() as session:
        all_seqs = (await session.execute(text("SELECT seq FROM registry_change ORDER BY seq"))).scalars().all()
    assert len(all_seqs) == 6 * 6 * 3
    assert len(seen) == len(set(seen)), "a change was served twice"
    assert sorted(seen) == list(all_seqs), "a change was skipped"


def _seq(cursor: str) -> int:
    from shared.pagination import decode_cursor

    return decode_cursor(cursor, int, int)[1]
