"""Advisory locks: named in one module, one namespace per kind of thing, and each one really excludes."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared import locks
from shared.locks import Namespace

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_namespaces_are_distinct_and_apart_from_the_fixed_key() -> None:
    values = [n.value for n in Namespace]
    assert len(values) == len(set(values))
    assert locks.FIGURES not in values


def test_no_service_picks_its_own_lock_key() -> None:
    """Locks keyed by a hash are taken through shared.locks alone, so a new one cannot reuse a seed."""
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("services", "shared")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "locks.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"hashtext|advisory_xact_lock\(", line) and "FIGURES" not in line
    ]
    assert found == []


async def _blocked(db: Any, first: tuple[Namespace, str], second: tuple[Namespace, str]) -> bool:
    """Whether `second` waits while another transaction holds `first`."""
    async with db.session() as holder:
        await locks.lock(holder, *first)
        async with db.session() as other:
            await other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            try:
                await locks.lock(other, *second)
            except DBAPIError as exc:
                assert "lock timeout" in str(exc.orig).lower() or "55P03" in str(exc.orig)
                return True
            return False


async def test_the_same_key_waits_and_another_namespace_does_not(db: Any) -> None:
    assert await _blocked(db, (Namespace.template_code, "T1"), (Namespace.template_code, "T1"))
    assert not await _blocked(db, (Namespace.template_code, "T1"), (Namespace.template_code, "T2"))
    assert not await _blocked(db, (Namespace.template_code, "T1"), (Namespace.rule_set_code, "T1"))


async def test_lock_all_takes_every_key(db: Any) -> None:
    async with db.session() as holder:
        await locks.lock_all(holder, Namespace.designation_quota, ["b", "a", "a"])
        for key in ("a", "b"):
            async with db.session() as other:
                await other.execute(text("SET LOCAL lock_timeout = '200ms'"))
                with pytest.raises(DBAPIError):
                    await locks.lock(other, Namespace.designation_quota, key)
