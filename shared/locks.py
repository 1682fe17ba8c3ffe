"""Every advisory lock the services take, named in one place.

A keyed lock is `pg_advisory_xact_lock(hashtextextended(key, namespace))`: the namespace is the
hash's seed, so the same key in two namespaces is two locks, and a new kind of lock takes a new
member of `Namespace` (unique: the enum refuses a repeated value at import). Transaction-scoped:
released at commit or rollback, so a lock can never outlive the work it protects.

`FIGURES` is the one fixed key: held shared by every coverage event handler and exclusively by a
full recount (session-scoped there, on the recount's own connection; see `services/coverage/jobs.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, unique

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@unique
class Namespace(IntEnum):
    """What a keyed lock serializes, and what its key is."""

    # coverage: task work per organization (key: organization id), so a task being created and the
    # event covering its organization cannot race.
    establishment_task_org = 7
    # evaluation: publishing a template code's next version (key: template code).
    template_code = 61
    # evaluation: a party organization's open rectification (key: party organization id).
    rectification = 62
    # evaluation: designations counted against one quota (key: region:year:level:type).
    designation_quota = 63
    # evaluation: one assessment per cycle and party organization (key: cycle id:party org id).
    assessment = 64
    # evaluation: one review report per cycle and party organization (key: cycle id:party org id).
    review_report = 65
    # evaluation: one cycle per template and period over overlapping regions (key: cycle:code:period).
    cycle_period = 66
    # evaluation: a funding rule set code's next version (key: rule set code).
    rule_set_code = 67
    # evaluation: one computation or closing of a year's funding (key: funding:year:code:scope).
    funding_computation = 68


# The coverage counters as a whole (a plain bigint key, outside the hashed namespaces).
FIGURES = 74_500_001


async def lock(session: AsyncSession, namespace: Namespace, key: str) -> None:
    """Wait for, then hold until the transaction ends, the lock on `key` in `namespace`."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, :n))"), {"k": key, "n": int(namespace)}
    )


async def lock_all(session: AsyncSession, namespace: Namespace, keys: Iterable[str]) -> None:
    """The locks on several keys, taken in one order (by hash) so two holders cannot deadlock."""
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(key, :n) AS k "
            "FROM unnest(CAST(:keys AS text[])) key ORDER BY 1) locks"
        ),
        {"keys": sorted(set(keys)), "n": int(namespace)},
    )
