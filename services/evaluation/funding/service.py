"""Funding: rule set versions, the annual computation and its idempotent write, listing."""

from __future__ import annotations

import gc
import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.evaluation.funding.engine import (
    DesignationAwardRule,
    Engine,
    FundingOptions,
    PartyOrgFacts,
    Rule,
    StarTierRule,
    dump_rules,
    option_assumptions,
    parse_options,
    parse_rules,
    scale_to_cap,
)
from services.evaluation.funding.models import (
    AllocationPublic,
    Assumption,
    CloseRequest,
    ComputationPublic,
    ComputeRequest,
    ComputeResult,
    Facts,
    FundingComputation,
    FundingRuleSet,
    LinePublic,
    RuleSetCreate,
    RuleSetPublic,
)
from services.evaluation.ratings import star_levels_for_year
from shared import locks, regions
from shared.auth import Caller
from shared.db import add_unique, copy_into, raw_connection
from shared.errors import ProblemError, conflict, invalid, not_found
from shared.locks import Namespace
from shared.pagination import Page, PageParams, trim
from shared.schemas import from_row
from shared.visible import check, load, load_region

log = logging.getLogger(__name__)

# Allocation ids are derived from their key, so the same computation always names the same rows.
ALLOCATION_NAMESPACE = uuid.UUID("6f0e8a52-2f55-4d0e-9d1c-3b2a6c1f0a07")
ALLOCATION_COLUMNS = (
    "id",
    "year",
    "rule_set_code",
    "scope_code",
    "party_org_id",
    "region_code",
    "party_org_name",
    "party_org_level",
    "rule_set_id",
    "rule_set_version",
    "budget_cap",
    "uncapped_total",
    "total",
    "computed_at",
)
LINE_COLUMNS = (
    "allocation_id",
    "rule_code",
    "region_code",
    "position",
    "rule_kind",
    "rule_name",
    "quantity",
    "unit_amount",
    "uncapped_amount",
    "amount",
    "basis",
)
# Columns whose change makes a recomputed row "updated" (computed_at is when it last changed);
# the slices of the row tuples below must match them.
_ALLOCATION_VALUES = ALLOCATION_COLUMNS[5:13]
_LINE_VALUES = LINE_COLUMNS[2:]


def allocation_id(year: int, rule_set_code: str, scope_code: str, party_org_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(ALLOCATION_NAMESPACE, f"{year}:{rule_set_code}:{scope_code}:{party_org_id}")


# ---- rule sets ----------------------------------------------------------------------------------


CLOSED = "funding-closed"  # the problem code of a computation an official closed
# A year ends at midnight in China (no daylight saving there: a fixed offset is exact).
CHINA = timezone(timedelta(hours=8))


def year_end(year: int) -> datetime:
    """The end of 31 December of `year`, Beijing time: what a past year's registry facts are read as of."""
    return datetime(year + 1, 1, 1, tzinfo=CHINA)


def rule_set_public(row: FundingRuleSet) -> RuleSetPublic:
    return RuleSetPublic.model_validate(row, from_attributes=True)


async def create_rule_set(session: AsyncSession, *, caller: Caller, body: RuleSetCreate) -> FundingRuleSet:
    region_code = (await load_region(session, caller, body.region_code)).code
    await locks.lock(session, Namespace.rule_set_code, body.code)
    latest = (
        await session.execute(
            text("SELECT version, region_code FROM funding_rule_set WHERE code = :c ORDER BY version DESC LIMIT 1"),
            {"c": body.code},
        )
    ).first()
    if latest is not None and latest.region_code != region_code:
        raise _rule_set_code_taken(body.code)
    row = FundingRuleSet(
        code=body.code,
        version=(latest.version + 1) if latest else 1,
        name=body.name,
        region_code=region_code,
        rules=dump_rules(body.rules),
        options=body.options.model_dump(mode="json"),
        created_by=caller.label,
    )
    # Taken by a jurisdiction the caller cannot see (row-level security hid it above): the insert says so.
    await add_unique(session, row, constraint="uq_funding_rule_set_code_version", taken=_rule_set_code_taken(body.code))
    return row


def _rule_set_code_taken(code: str) -> ProblemError:
    """Rule set codes are national: the same answer whoever holds the code, naming no jurisdiction."""
    return conflict(f"rule set code {code!r} is taken by another jurisdiction; choose another code")


async def get_rule_set(session: AsyncSession, *, caller: Caller, rule_set_id: uuid.UUID) -> FundingRuleSet:
    # Rules issued above the caller apply to it, so they are readable as well as its own.
    return await load(session, caller, FundingRuleSet, rule_set_id, what="rule set", kind="rule_set")


async def find_rule_set(session: AsyncSession, *, caller: Caller, code: str, version: int | None) -> FundingRuleSet:
    found = await session.execute(
        text(
            "SELECT id FROM funding_rule_set WHERE code = :c AND (CAST(:v AS integer) IS NULL OR version = :v) "
            "ORDER BY version DESC LIMIT 1"
        ),
        {"c": code, "v": version},
    )
    first = found.first()
    if first is None:
        raise not_found("rule set")
    return await get_rule_set(session, caller=caller, rule_set_id=first.id)


async def list_rule_sets(
    session: AsyncSession, *, caller: Caller, code: str | None, page: PageParams
) -> Page[RuleSetPublic]:
    after = page.after(str, int)
    ancestors = regions.ancestors(caller.region_code)
    found = await session.execute(
        text(
            "SELECT * FROM funding_rule_set WHERE (region_code LIKE :prefix OR region_code = ANY(:ancestors)) "
            "AND (CAST(:code AS text) IS NULL OR code = :code) "
            "AND (CAST(:after_code AS text) IS NULL "
            "OR (code, version) > (:after_code, CAST(:after_version AS bigint))) "
            "ORDER BY code, version LIMIT :limit"
        ),
        {
            "prefix": caller.region_prefix + "%",
            "ancestors": ancestors,
            "code": code,
            "after_code": after[0] if after else None,
            "after_version": after[1] if after else 0,
            "limit": page.limit + 1,
        },
    )
    rows, cursor = trim([FundingRuleSet(**dict(r)) for r in found.mappings()], page, lambda r: (r.code, r.version))
    return Page[RuleSetPublic](items=[rule_set_public(r) for r in rows], next_cursor=cursor)


# ---- the computation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Computation:
    year: int
    scope_code: str
    rule_set: FundingRuleSet
    budget_cap: int | None
    # The request named no cap: keep the one of the previous computation of the same key.
    keep_cap: bool = False
    # Which registry facts: None reads them as of the year's end once the year is over, else now.
    facts: Facts | None = None
    actor: str = "system"


# Registry fields a computation reads, and so must take back to the year's end (the ledger's
# `after` names what a change touched, its `before` what the field held until then).
_TRACKED = {
    "organization": ("party_org_id", "region_code", "formal_members", "probationary_members"),
    "party_org": (
        "name",
        "level",
        "region_code",
        "established_on",
        "dissolved_on",
        "secretary_in_management",
        "secretary_is_investor",
    ),
}
# Ledger actions that add a row: a row added after the year's end did not exist at it.
_ADDED = {"organization": "created", "party_org": "established"}


@dataclass
class _YearEnd:
    """Registry rows as they stood at a moment, from the ledger lines written since."""

    # entity → row ids changed since the moment (their rows are read by id and taken back).
    touched: dict[str, list[uuid.UUID]] = field(default_factory=lambda: {"organization": [], "party_org": []})
    # Rows added since: they did not exist at the moment.
    added: set[uuid.UUID] = field(default_factory=set)
    # id → {field: value at the moment} for the fields changed since.
    earlier: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)

    def row(self, row: dict[str, Any]) -> dict[str, Any] | None:
        if row["id"] in self.added:
            return None
        return {**row, **self.earlier.get(row["id"], {})}


async def _year_end(conn: Any, as_of: datetime, prefix: str) -> _YearEnd:
    """What the ledger says changed since `as_of` for organizations and party organizations that were,
    or are, in the jurisdiction (one moved out since: its region before the move was in it)."""
    lines = await conn.fetch(
        """
        WITH touched AS (
          SELECT DISTINCT entity_id FROM registry_change
          WHERE changed_at >= $1 AND entity IN ('organization', 'party_org')
            AND (region_code LIKE $2 OR (before ->> 'region_code') LIKE $2))
        SELECT c.entity, c.entity_id, c.action, c.before::text AS before, c.after::text AS after
        FROM registry_change c JOIN touched t ON t.entity_id = c.entity_id
        WHERE c.changed_at >= $1 ORDER BY c.seq""",
        as_of,
        prefix + "%",
    )
    out = _YearEnd()
    for line in lines:
        entity, entity_id = line["entity"], line["entity_id"]
        if entity_id not in out.earlier:
            out.earlier[entity_id] = {}
            out.touched[entity].append(entity_id)
        if line["action"] == _ADDED[entity]:
            out.added.add(entity_id)
            continue
        before, after = json.loads(line["before"] or "{}") or {}, json.loads(line["after"] or "{}") or {}
        earlier = out.earlier[entity_id]
        for key in _TRACKED[entity]:
            # The first change since the moment holds the value the field had at it.
            if key in after and key not in earlier:
                earlier[key] = before.get(key)
    return out


def _date(value: Any) -> date | None:
    return value if value is None or isinstance(value, date) else date.fromisoformat(str(value))


_PARTY_COLUMNS = (
    "p.id, p.region_code, p.name, p.level, p.established_on, p.dissolved_on, "
    "p.secretary_in_management, p.secretary_is_investor"
)


async def load_facts(
    session: AsyncSession, *, year: int, scope_code: str, rules: list[Rule], as_of: datetime | None = None
) -> list[PartyOrgFacts]:
    """Every party organization of the jurisdiction that existed during `year`, ordered by id; with
    `as_of`, the party organizations and members as the registry recorded them at that moment."""
    prefix = regions.prefix(scope_code)
    conn = await raw_connection(session)
    then = await _year_end(conn, as_of, prefix) if as_of is not None else _YearEnd()
    changed_orgs, changed_party = then.touched["organization"], then.touched["party_org"]
    # Rows nothing changed since are read as they are, in SQL; changed ones by id, then taken back.
    members: dict[uuid.UUID, list[int]] = {
        r["party_org_id"]: [r["formal"], r["probationary"]]
        for r in await conn.fetch(
            "SELECT party_org_id, sum(formal_members)::int AS formal, sum(probationary_members)::int AS probationary "
            "FROM organization WHERE party_org_id IS NOT NULL AND region_code LIKE $1 AND NOT (id = ANY($2::uuid[])) "
            "GROUP BY party_org_id",
            prefix + "%",
            changed_orgs,
        )
    }
    if changed_orgs:
        for r in await conn.fetch(
            "SELECT id, party_org_id, region_code, formal_members, probationary_members FROM organization "
            "WHERE id = ANY($1::uuid[])",
            changed_orgs,
        ):
            org = then.row(dict(r))
            if org is None or not str(org["region_code"]).startswith(prefix) or org["party_org_id"] is None:
                continue
            # Ledger values are JSON: ids as text.
            counts = members.setdefault(uuid.UUID(str(org["party_org_id"])), [0, 0])
            counts[0] += int(org["formal_members"] or 0)
            counts[1] += int(org["probationary_members"] or 0)
    rows = [
        dict(r)
        for r in await conn.fetch(
            f"SELECT {_PARTY_COLUMNS} FROM party_org p WHERE p.region_code LIKE $1 AND NOT (p.id = ANY($3::uuid[])) "
            "AND p.established_on <= make_date($2, 12, 31) "
            "AND (p.dissolved_on IS NULL OR p.dissolved_on >= make_date($2, 1, 1))",
            prefix + "%",
            year,
            changed_party,
        )
    ]
    if changed_party:
        for r in await conn.fetch(
            f"SELECT {_PARTY_COLUMNS} FROM party_org p WHERE p.id = ANY($1::uuid[])", changed_party
        ):
            row = then.row(dict(r))
            if row is None or not str(row["region_code"]).startswith(prefix):
                continue
            row["established_on"], row["dissolved_on"] = _date(row["established_on"]), _date(row["dissolved_on"])
            if row["established_on"] > date(year, 12, 31) or (
                row["dissolved_on"] is not None and row["dissolved_on"] < date(year, 1, 1)
            ):
                continue
            rows.append(row)
    rows.sort(key=lambda r: r["id"])
    stars: dict[uuid.UUID, int] = {}
    if any(isinstance(r, StarTierRule) for r in rules):
        stars = await star_levels_for_year(session, year, prefix)
    designations: dict[uuid.UUID, list[tuple[str, str]]] = {}
    if any(isinstance(r, DesignationAwardRule) for r in rules):
        for d in await conn.fetch(
            "SELECT party_org_id, level, type FROM designation WHERE year = $1 AND status = 'active' "
            "AND region_code LIKE $2 ORDER BY party_org_id, level, type",
            year,
            prefix + "%",
        ):
            designations.setdefault(d["party_org_id"], []).append((d["level"], d["type"]))
    return [
        PartyOrgFacts(
            party_org_id=r["id"],
            region_code=r["region_code"],
            name=r["name"],
            level=r["level"],
            formal_members=members.get(r["id"], (0, 0))[0],
            probationary_members=members.get(r["id"], (0, 0))[1],
            established_on=r["established_on"],
            dissolved_on=r["dissolved_on"],
            star_level=stars.get(r["id"]),
            designations=tuple(designations.get(r["id"], ())),
            secretary_recorded=bool(r["secretary_in_management"] or r["secretary_is_investor"]),
        )
        for r in rows
    ]


def allocate(
    facts: list[PartyOrgFacts], computation: Computation, now: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """Allocation and line rows (in table column order) and the uncapped total."""
    # Hundreds of thousands of small objects, none cyclic: collecting while building them only costs
    # time (a third of it). Nothing here awaits, so no other request runs while collection is off.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _allocate(facts, computation, now)
    finally:
        if enabled:
            gc.enable()


def _allocate(
    facts: list[PartyOrgFacts], computation: Computation, now: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    rs, year, scope, cap = computation.rule_set, computation.year, computation.scope_code, computation.budget_cap
    code, rule_set_id, version = rs.code, rs.id, rs.version
    engine = Engine(parse_rules(rs.rules), parse_options(rs.options))
    per_org = [(f, lines) for f in facts if (lines := engine.lines(f, year))]
    uncapped = [line.amount for _, lines in per_org for line in lines]
    # The cap ranks lines in party organization order; rows come out in allocation id order, the
    # order of the indexes they are written to.
    amounts = uncapped if cap is None else scale_to_cap(uncapped, cap)
    starts, at = [], 0
    for _, lines in per_org:
        starts.append(at)
        at += len(lines)
    ids = [allocation_id(year, code, scope, f.party_org_id) for f, _ in per_org]
    allocation_rows, line_rows = [], []
    for i in sorted(range(len(per_org)), key=lambda i: ids[i].int):
        (f, lines), aid, at = per_org[i], ids[i], starts[i]
        region = f.region_code
        total = uncapped_total = 0
        for line in lines:
            amount = amounts[at]
            at += 1
            total += amount
            uncapped_total += line.amount
            line_rows.append(
                (
                    aid,
                    line.rule_code,
                    region,
                    line.position,
                    line.rule_kind,
                    line.rule_name,
                    line.quantity,
                    line.unit_amount,
                    line.amount,
                    amount,
                    line.basis,
                )
            )
        allocation_rows.append(
            (
                aid,
                year,
                code,
                scope,
                f.party_org_id,
                region,
                f.name,
                f.level,
                rule_set_id,
                version,
                cap,
                uncapped_total,
                total,
                now,
            )
        )
    return allocation_rows, line_rows, sum(uncapped)


async def compute(session: AsyncSession, *, caller: Caller, body: ComputeRequest) -> ComputeResult:
    scope = (await load_region(session, caller, body.region_code)).code
    rule_set = await find_rule_set(session, caller=caller, code=body.rule_set_code, version=body.rule_set_version)
    if not regions.contains(rule_set.region_code, scope):
        raise invalid(
            "region_code", f"rule set {rule_set.code!r} applies in region {rule_set.region_code} and below only"
        )
    if body.budget_cap == 0 and not body.confirm_zero_budget:
        raise invalid(
            "budget_cap", "0 yuan zeroes every allocation; send confirm_zero_budget: true if that is what you mean"
        )
    computation = Computation(
        body.year,
        scope,
        rule_set,
        body.budget_cap,
        # Omitted keeps the cap an official set before; an explicit null removes it.
        keep_cap="budget_cap" not in body.model_fields_set,
        facts=body.facts,
        actor=caller.label,
    )
    return await run(session, computation)


def _closed(row: FundingComputation) -> ProblemError:
    assert row.closed_at is not None
    return ProblemError(
        409,
        f"the {row.year} allocation of rule set {row.rule_set_code!r} over region {row.scope_code} was closed on "
        f"{row.closed_at.astimezone(CHINA):%Y-%m-%d %H:%M} by {row.closed_by}; a closed year is never computed again",
        code=CLOSED,
        closed_at=row.closed_at.isoformat(),
        closed_by=row.closed_by,
    )


async def _lock_key(session: AsyncSession, year: int, code: str, scope: str) -> None:
    # One computation (or closing) of a key at a time; different keys run side by side.
    await locks.lock(session, Namespace.funding_computation, f"funding:{year}:{code}:{scope}")


async def _stored_computation(session: AsyncSession, year: int, code: str, scope: str) -> FundingComputation | None:
    found = await session.execute(
        text("SELECT * FROM funding_computation WHERE year = :y AND rule_set_code = :c AND scope_code = :s"),
        {"y": year, "c": code, "s": scope},
    )
    row = found.mappings().first()
    return FundingComputation(**dict(row)) if row is not None else None


def _assumptions(
    computation: Computation, rules: list[Rule], options: FundingOptions, facts: Facts, over: bool
) -> list[Assumption]:
    year, cap = computation.year, computation.budget_cap
    if facts == "year_end":
        facts_text = f"党组织和党员数据取{year}年12月31日24时（北京时间）登记系统中的记录，此后的变更（据台账）不计入"
    elif over:
        facts_text = f"党组织和党员数据取核算时登记系统中的现状，含{year}年末之后的变更"
    else:
        facts_text = f"{year}年尚未结束，党组织和党员数据取核算时登记系统中的现状"
    cap_text = (
        "未设预算上限，各项按规则全额计算"
        if cap is None
        else f"预算上限{cap}元：超出时各项按同一比例核减，按最大余数法取整到元"
    )
    found = [("facts", facts, facts_text), ("budget_cap", "none" if cap is None else str(cap), cap_text)]
    found += option_assumptions(options, rules)
    return [Assumption(code=c, value=v, text=t) for c, v, t in found]


async def run(session: AsyncSession, computation: Computation) -> ComputeResult:
    """Compute and store one allocation; recomputing with the same inputs changes no row. A closed
    computation is refused (409) and changes nothing."""
    rs = computation.rule_set
    key = (computation.year, rs.code, computation.scope_code)
    await _lock_key(session, *key)
    previous = await _stored_computation(session, *key)
    if previous is not None and previous.closed_at is not None:
        raise _closed(previous)
    source = "request" if computation.budget_cap is not None else "none"
    if computation.keep_cap:
        kept = previous.budget_cap if previous is not None else None
        computation = replace(computation, budget_cap=kept)
        source = "kept" if kept is not None else "none"
    now = datetime.now(UTC)
    over = now >= year_end(computation.year)
    facts: Facts = computation.facts or ("year_end" if over else "current")
    if facts == "year_end" and not over:
        raise invalid("facts", f"{computation.year} is not over yet: its facts can only be read as they are now")
    as_of = year_end(computation.year) if facts == "year_end" else now
    rules, options = parse_rules(rs.rules), parse_options(rs.options)
    loaded = await load_facts(
        session,
        year=computation.year,
        scope_code=computation.scope_code,
        rules=rules,
        as_of=as_of if facts == "year_end" else None,
    )
    allocations, lines, uncapped = allocate(loaded, computation, now)
    conn = await raw_connection(session)
    existing = await conn.fetchval(
        "SELECT count(*) FROM funding_allocation WHERE year = $1 AND rule_set_code = $2 AND scope_code = $3", *key
    )
    if existing == 0:
        # The first computation of a key: nothing to compare with, so straight in.
        await copy_into(conn, "funding_allocation", ALLOCATION_COLUMNS, allocations)
        await copy_into(conn, "funding_line", LINE_COLUMNS, lines)
        created, updated, removed = len(allocations), 0, 0
    else:
        created, updated, removed = await _merge(conn, key, allocations, lines)
    total = sum(a[12] for a in allocations)
    assumptions = _assumptions(computation, rules, options, facts, over)
    await _record(
        session,
        previous,
        FundingComputation(
            year=computation.year,
            rule_set_code=rs.code,
            scope_code=computation.scope_code,
            region_code=computation.scope_code,
            rule_set_id=rs.id,
            rule_set_version=rs.version,
            budget_cap=computation.budget_cap,
            facts=facts,
            assumptions=[a.model_dump() for a in assumptions],
            party_orgs=len(allocations),
            lines=len(lines),
            uncapped_total=uncapped,
            total=total,
            computed_by=computation.actor,
            computed_at=now,
        ),
        changed=bool(created or updated or removed),
    )
    result = ComputeResult(
        year=computation.year,
        region_code=computation.scope_code,
        rule_set_code=rs.code,
        rule_set_version=rs.version,
        budget_cap=computation.budget_cap,
        budget_cap_source=source,
        facts=facts,
        facts_as_of=as_of,
        assumptions=assumptions,
        party_orgs=len(allocations),
        lines=len(lines),
        uncapped_total=uncapped,
        total=total,
        scaled=total < uncapped,
        created=created,
        updated=updated,
        unchanged=len(allocations) - created - updated,
        removed=removed,
    )
    logged = result.model_dump(mode="json", exclude={"assumptions"})
    log.info("funding computed", extra={f"funding_{k}": v for k, v in logged.items()})
    return result


# What a computation's record says; a recompute that changes none of it (and no allocation) writes nothing.
_RECORDED = (
    "rule_set_id",
    "rule_set_version",
    "budget_cap",
    "facts",
    "assumptions",
    "party_orgs",
    "lines",
    "uncapped_total",
    "total",
)


async def _record(
    session: AsyncSession, previous: FundingComputation | None, computed: FundingComputation, *, changed: bool
) -> None:
    if previous is None:
        session.add(computed)
        await session.flush()
        return
    values = {k: getattr(computed, k) for k in _RECORDED}
    if not changed and all(getattr(previous, k) == v for k, v in values.items()):
        return
    await session.execute(
        text(
            "UPDATE funding_computation SET "
            + ", ".join(f"{k} = :{k}" for k in values)
            + ", computed_by = :computed_by, computed_at = :computed_at WHERE id = :id"
        ).bindparams(bindparam("assumptions", type_=JSONB)),
        {**values, "computed_by": computed.computed_by, "computed_at": computed.computed_at, "id": previous.id},
    )


def computation_public(row: FundingComputation) -> ComputationPublic:
    return from_row(ComputationPublic, row, region_code=row.scope_code, closed=row.closed_at is not None)


async def close(session: AsyncSession, *, caller: Caller, body: CloseRequest) -> FundingComputation:
    """Close a year's computation (the official confirms its figures and the assumptions listed with
    them): from then on it is never computed again, by hand or by the schedule."""
    scope = body.region_code or caller.region_code
    check(caller, scope, kind="region", key=scope, what="computation")
    await _lock_key(session, body.year, body.rule_set_code, scope)
    row = await _stored_computation(session, body.year, body.rule_set_code, scope)
    if row is None:
        raise ProblemError(
            404,
            f"no computation of {body.year} under rule set {body.rule_set_code!r} over region {scope}: "
            "compute it first",
            code="not-found",
        )
    if row.closed_at is not None:
        raise _closed(row)
    if datetime.now(UTC) < year_end(body.year):
        raise conflict(f"{body.year} is not over yet; its computation can be closed from {body.year + 1}-01-01")
    closed_at = datetime.now(UTC)
    await session.execute(
        text("UPDATE funding_computation SET closed_at = :at, closed_by = :by WHERE id = :id"),
        {"at": closed_at, "by": caller.label, "id": row.id},
    )
    row.closed_at, row.closed_by = closed_at, caller.label
    log.info(
        "funding closed",
        extra={"funding_year": row.year, "funding_rule_set": row.rule_set_code, "funding_scope": row.scope_code},
    )
    return row


async def list_computations(
    session: AsyncSession,
    *,
    caller: Caller,
    region: str | None,
    year: int | None,
    rule_set_code: str | None,
    page: PageParams,
) -> Page[ComputationPublic]:
    """Computations over the region's subtree (default: the caller's jurisdiction)."""
    root = region or caller.region_code
    caller.check_region(root)
    params: dict[str, Any] = {"prefix": regions.prefix(root) + "%", "year": year, "code": rule_set_code}
    where = (
        "region_code LIKE :prefix AND (CAST(:year AS integer) IS NULL OR year = :year) "
        "AND (CAST(:code AS text) IS NULL OR rule_set_code = :code)"
    )
    if (after := page.after(uuid.UUID)) is not None:
        params["after"] = str(after[0])
        where += " AND id > CAST(:after AS uuid)"
    found = await session.execute(
        text(f"SELECT * FROM funding_computation WHERE {where} ORDER BY id LIMIT :limit"),
        {**params, "limit": page.limit + 1},
    )
    rows, cursor = trim([FundingComputation(**dict(r)) for r in found.mappings()], page, lambda r: (str(r.id),))
    return Page[ComputationPublic](items=[computation_public(r) for r in rows], next_cursor=cursor)


async def _merge(
    conn: Any, key: tuple[int, str, str], allocations: list[tuple[Any, ...]], lines: list[tuple[Any, ...]]
) -> tuple[int, int, int]:
    """Bring the stored allocation of `key` to the computed one, writing only rows that differ.

    The comparison is done here, on the rows as read: an unchanged recompute writes nothing at all,
    and a changed one stages and upserts only its differing rows."""
    where = "a.year = $1 AND a.rule_set_code = $2 AND a.scope_code = $3"
    stored = {
        r[0]: tuple(r[1:])
        for r in await conn.fetch(
            f"SELECT a.id, {', '.join(f'a.{c}' for c in _ALLOCATION_VALUES)} FROM funding_allocation a WHERE {where}",
            *key,
        )
    }
    stored_lines = {
        (r[0], r[1]): tuple(r[2:])
        for r in await conn.fetch(
            f"SELECT l.allocation_id, l.rule_code, {', '.join(f'l.{c}' for c in _LINE_VALUES)} FROM funding_line l "
            f"JOIN funding_allocation a ON a.id = l.allocation_id WHERE {where}",
            *key,
        )
    }
    computed = {row[0] for row in allocations}
    removed = [aid for aid in stored if aid not in computed]
    created = computed - stored.keys()
    changed = [row for row in allocations if stored.get(row[0]) != row[5:13]]
    touched = {row[0] for row in changed} - created
    computed_lines = {(row[0], row[1]) for row in lines}
    gone_lines = [k for k in stored_lines if k not in computed_lines and k[0] in computed]
    changed_lines = [row for row in lines if stored_lines.get((row[0], row[1])) != row[2:]]
    line_touched = ({k[0] for k in gone_lines} | {row[0] for row in changed_lines}) - created
    if removed:
        await conn.execute("DELETE FROM funding_allocation WHERE id = ANY($1::uuid[])", removed)
    if gone_lines:
        await conn.execute(
            "DELETE FROM funding_line l USING unnest($1::uuid[], $2::text[]) AS g(allocation_id, rule_code) "
            "WHERE l.allocation_id = g.allocation_id AND l.rule_code = g.rule_code",
            [k[0] for k in gone_lines],
            [k[1] for k in gone_lines],
        )
    if changed:
        await _upsert(conn, "funding_allocation", ALLOCATION_COLUMNS, ("id",), changed)
    if changed_lines:
        await _upsert(conn, "funding_line", LINE_COLUMNS, ("allocation_id", "rule_code"), changed_lines)
    if stale := line_touched - touched:
        await conn.execute("UPDATE funding_allocation SET computed_at = now() WHERE id = ANY($1::uuid[])", list(stale))
    return len(created), len(touched | line_touched), len(removed)


async def _upsert(
    conn: Any, table: str, columns: tuple[str, ...], key: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    stage = f"{table}_stage"
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DROP; TRUNCATE {stage}")
    await conn.copy_records_to_table(stage, columns=columns, records=rows)
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    await conn.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


# ---- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationFilter:
    region: str | None = None
    year: int | None = None
    rule_set_code: str | None = None
    party_org_id: uuid.UUID | None = None
    level: str | None = None
    scope_code: str | None = None


def _where(caller: Caller, flt: AllocationFilter) -> tuple[str, dict[str, Any]]:
    region = flt.region or caller.region_code
    caller.check_region(region)
    clauses = ["a.region_code LIKE :prefix"]
    params: dict[str, Any] = {"prefix": regions.prefix(region) + "%"}
    for column, value in (
        ("year", flt.year),
        ("rule_set_code", flt.rule_set_code),
        ("party_org_id", flt.party_org_id),
        ("party_org_level", flt.level),
        ("scope_code", flt.scope_code),
    ):
        if value is not None:
            clauses.append(f"a.{column} = :{column}")
            params[column] = value
    return " AND ".join(clauses), params


async def _lines_of(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[LinePublic]]:
    found = await session.execute(
        text("SELECT * FROM funding_line WHERE allocation_id = ANY(:ids) ORDER BY allocation_id, position"),
        {"ids": ids},
    )
    out: dict[uuid.UUID, list[LinePublic]] = {}
    for r in found.mappings():
        out.setdefault(r["allocation_id"], []).append(LinePublic.model_validate(dict(r)))
    return out


async def list_page(
    session: AsyncSession, *, caller: Caller, flt: AllocationFilter, page: PageParams
) -> Page[AllocationPublic]:
    where, params = _where(caller, flt)
    if (after := page.after(str, uuid.UUID)) is not None:
        where += " AND (a.region_code, a.id) > (:after_region, CAST(:after_id AS uuid))"
        params.update(after_region=after[0], after_id=str(after[1]))
    found = await session.execute(
        text(f"SELECT * FROM funding_allocation a WHERE {where} ORDER BY a.region_code, a.id LIMIT :limit"),
        {**params, "limit": page.limit + 1},
    )
    rows, cursor = trim([dict(r) for r in found.mappings()], page, lambda r: (r["region_code"], str(r["id"])))
    lines = await _lines_of(session, [r["id"] for r in rows])
    items = [AllocationPublic(**r, lines=lines.get(r["id"], [])) for r in rows]
    return Page[AllocationPublic](items=items, next_cursor=cursor)


async def export_rows(
    session: AsyncSession, *, caller: Caller, flt: AllocationFilter, max_lines: int
) -> list[dict[str, Any]]:
    """Every line matching the filter with its allocation, for the workbook."""
    where, params = _where(caller, flt)
    found = await session.execute(
        text(
            "SELECT a.year, a.rule_set_code, a.rule_set_version, a.region_code, r.name AS region_name, "
            "a.party_org_name, a.party_org_level, a.budget_cap, l.rule_code, l.rule_name, l.basis, "
            "l.uncapped_amount, l.amount FROM funding_allocation a "
            "JOIN funding_line l ON l.allocation_id = a.id LEFT JOIN region r ON r.code = a.region_code "
            f"WHERE {where} ORDER BY a.year, a.rule_set_code, a.region_code, a.party_org_name, a.id, l.position "
            "LIMIT :limit"
        ),
        {**params, "limit": max_lines + 1},
    )
    rows = [dict(r) for r in found.mappings()]
    if len(rows) > max_lines:
        raise invalid("region", f"more than {max_lines:,} lines: narrow the export (region, year or rule set)")
    return rows


async def latest_rule_sets(session: AsyncSession) -> list[FundingRuleSet]:
    found = await session.execute(text("SELECT DISTINCT ON (code) * FROM funding_rule_set ORDER BY code, version DESC"))
    return [FundingRuleSet(**dict(r)) for r in found.mappings()]


async def compute_annual(session: AsyncSession, *, rule_set: FundingRuleSet, year: int) -> ComputeResult | None:
    """The scheduled computation of one rule set over its own region, keeping the budget cap of an
    earlier computation of it (a cap is a decision the schedule must not undo). None when an official
    closed that computation: it is never computed again."""
    try:
        return await run(
            session,
            Computation(year, rule_set.region_code, rule_set, None, keep_cap=True, actor="system:annual_funding"),
        )
    except ProblemError as e:
        if e.code == CLOSED:
            return None
        raise
