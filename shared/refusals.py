"""Attempts on another jurisdiction's objects and regions, recorded for auditors.

A caller who names an object or a region outside its jurisdiction gets the answer of one that does
not exist (a 404, or a row error naming the field), so the answer tells it nothing. The attempt still
belongs in the audit log. The code that refuses notes what was asked for (`suspect`), and a 404 of a
path that names an object notes that object. Once the response has gone out (so its timing tells
nothing either), the notes are looked up for the whole country: those that exist outside the
caller's jurisdiction become one audit row per request, outcome `refused`, under the target's
region (the closest region holding every target when there are several), where the auditors of
the target's jurisdiction and every auditor above both jurisdictions see it. A name that exists
nowhere leaves no row: nothing was probed, and a caller cannot flood the log with made-up ids.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import regions
from shared.audit import record as audit_record

log = logging.getLogger(__name__)
# Names one request may note; a 10,000-row import of foreign credit codes is one row all the same.
MAX_NOTED = 1_000


@dataclass(frozen=True)
class Kind:
    """How to find where objects of one kind lie: `sql` maps `:keys` to (key, region_code) rows."""

    object_type: str
    sql: str
    uuid_keys: bool = True
    # Reference data (templates, cycles, rule sets) issued above a caller is readable by it.
    readable_from_above: bool = False


def _by_id(table: str, object_type: str | None = None, **options: Any) -> Kind:
    return Kind(
        object_type or table,
        f"SELECT id::text AS key, region_code FROM {table} WHERE id = ANY(CAST(:keys AS uuid[]))",
        **options,
    )


KINDS: dict[str, Kind] = {
    "region": Kind("region", "SELECT code AS key, code AS region_code FROM region WHERE code = ANY(:keys)", False),
    "area": _by_id("area"),
    "organization": _by_id("organization"),
    "credit_code": Kind(
        "organization",
        "SELECT credit_code AS key, region_code FROM organization WHERE credit_code = ANY(:keys)",
        uuid_keys=False,
    ),
    "party_org": _by_id("party_org"),
    "instructor": _by_id("instructor"),
    "instructor_assignment": Kind(
        "instructor_assignment",
        "SELECT a.id::text AS key, i.region_code FROM instructor_assignment a "
        "JOIN instructor i ON i.id = a.instructor_id WHERE a.id = ANY(CAST(:keys AS uuid[]))",
    ),
    "staff_user": _by_id("staff_user"),
    "recalculation": _by_id("coverage_recalculation", "recalculation"),
    "target": _by_id("coverage_target", "target"),
    "establishment_task": _by_id("establishment_task"),
    "campaign": _by_id("campaign"),
    "assignment": _by_id("assignment"),
    "visit": _by_id("visit"),
    "template": Kind(
        "template",
        "SELECT DISTINCT code AS key, region_code FROM evaluation_template WHERE code = ANY(:keys)",
        uuid_keys=False,
        readable_from_above=True,
    ),
    "cycle": _by_id("evaluation_cycle", "cycle", readable_from_above=True),
    "assessment": _by_id("assessment"),
    "rectification": _by_id("rectification"),
    "designation": _by_id("designation"),
    "review_report": _by_id("review_report"),
    "rule_set": _by_id("funding_rule_set", "rule_set", readable_from_above=True),
    # An event a service failed to consume, named by the operators' retry (`shared.failures`).
    **{
        f"{service}_event": Kind(
            "event",
            f"SELECT DISTINCT event_id::text AS key, region_code FROM {service}_inbox "
            "WHERE event_id = ANY(CAST(:keys AS uuid[])) AND region_code IS NOT NULL",
        )
        for service in ("registry", "coverage", "evaluation")
    },
}

_noted: ContextVar[set[tuple[str, str]] | None] = ContextVar("liangxin_refusal_suspects", default=None)


def begin() -> tuple[set[tuple[str, str]], Token[set[tuple[str, str]] | None]]:
    """Start noting for one request (the request middleware calls this)."""
    noted: set[tuple[str, str]] = set()
    return noted, _noted.set(noted)


def end(token: Token[set[tuple[str, str]] | None]) -> None:
    _noted.reset(token)


def suspect(kind: str, key: object) -> None:
    """Note an object or region a caller named and was refused: absent, or outside its jurisdiction
    (the lookup after the response tells which). Outside a request (jobs, the CLI) it does nothing."""
    assert kind in KINDS, kind
    noted = _noted.get()
    if noted is not None and len(noted) < MAX_NOTED and key is not None:
        noted.add((kind, str(key)))


def _valid(kind: Kind, key: str) -> bool:
    if not kind.uuid_keys:
        return True
    try:
        uuid.UUID(key)
    except ValueError:
        return False
    return True


async def locate(session: AsyncSession, noted: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(kind, key, region_code) of every noted name that exists; the session must see the whole country."""
    by_kind: dict[str, list[str]] = {}
    for kind, key in noted:
        if _valid(KINDS[kind], key):
            by_kind.setdefault(kind, []).append(key)
    found: list[tuple[str, str, str]] = []
    for kind, keys in sorted(by_kind.items()):
        rows = await session.execute(text(KINDS[kind].sql), {"keys": sorted(keys)})
        found.extend((kind, r.key, r.region_code) for r in rows if r.region_code is not None)
    return found


def outside(caller: Any, kind: str, region_code: str) -> bool:
    """True when the caller may not see an object of `kind` lying in `region_code`."""
    if caller.can_see(region_code):
        return False
    return not (KINDS[kind].readable_from_above and regions.contains(region_code, caller.region_code))


async def record(
    scope: Mapping[str, Any], *, status: int, noted: set[tuple[str, str]], path_kinds: Mapping[str, str]
) -> None:
    """After a response: one `refused` audit row if the request named anything of another
    jurisdiction. Never raises: the caller's answer is already sent."""
    caller = (scope.get("state") or {}).get("caller")
    if caller is None:
        return
    names = set(noted)
    if status == 404:
        for param, value in (scope.get("path_params") or {}).items():
            if (kind := path_kinds.get(param)) is not None:
                names.add((kind, str(value)))
    if not names:
        return
    route = getattr(scope.get("route"), "path", "unmatched")
    state = scope["app"].state
    try:
        async with state.db.session() as session:
            targets = [t for t in await locate(session, names) if outside(caller, t[0], t[2])]
            if not targets:
                return
            targets.sort()
            kind, key, _ = targets[0]
            more = f" and {len(targets) - 1} more" if len(targets) > 1 else ""
            client = scope.get("client")
            await audit_record(
                session,
                service=state.service,
                actor=caller.label,
                action=f"{scope.get('method', '')} {route}",
                outcome="refused",
                object_type=KINDS[kind].object_type,
                object_id=key,
                region_code=regions.common_ancestor(t[2] for t in targets),
                client_addr=client[0] if client else None,
                detail=f"outside the caller's jurisdiction ({caller.region_code}): "
                f"{KINDS[kind].object_type} {key}{more}",
            )
    except Exception as exc:
        log.warning("refused attempt not recorded", extra={"route": route, "reason": type(exc).__name__})
