"""The one write path for organizations: a set-based merge in SQL.

Every writer — a partner import of 10,000 rows, an official's edit, a verified field visit,
a scheduled re-derivation — sends the fields it provides per organization. They are COPYed
into a staging table with a bitmask of what was provided; then, in the caller's transaction
and in SQL: the affected rows are locked; each staged row is merged over its organization;
`in_scope` is derived; every rule needing the database is checked and a failing row gets its
reason (and nothing else happens to it); the rest are inserted or updated; one ledger line per
changed organization records the fields before and after; and events carrying the coverage
facts before and after are written to the outbox, up to 500 organizations each.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.models import ChangeSource, Organization, OrganizationRecord, RowError
from services.registry.organizations import DEFAULTS, FIELDS
from shared import refusals, regions
from shared.auth import Caller
from shared.db import raw_connection
from shared.errors import invalid, not_found, printable
from shared.events import CHANGES_PER_EVENT, emit_sql
from shared.logging import request_id_var
from shared.rules import org_facts_sql
from shared.scope import ScopeCriteria, in_scope_sql
from shared.settings import Settings, get_settings

EVENT_CHUNK = CHANGES_PER_EVENT
EVENT_TYPES = tuple(f"registry.organization.{action}" for action in ("registered", "updated", "status_changed"))
# Small writes (an edit, a registration, a visit) want the ids back; bulk imports do not.
IDS_FOR_AT_MOST = 1_000
BIT = {f: 1 << i for i, f in enumerate(FIELDS)}
STAGE_COLUMNS = ("row", "org_id", "new_id", "mask", "credit_code", *FIELDS)
# Fields the ledger and the change feed show (status_reason travels as the line's reason).
LEDGER_FIELDS = (*(f for f in FIELDS if f != "status_reason"), "in_scope")
OFFICIAL_ONLY_STATUSES = ("zombie", "relocated")
OUTSIDE = "not within your jurisdiction"


@dataclass
class Incoming:
    """One requested change: the fields a caller provided for one organization."""

    row: int
    values: dict[str, Any]
    credit_code: str | None = None
    org_id: uuid.UUID | None = None
    # The id a new organization gets (default: random); lets a caller name it in advance.
    new_id: uuid.UUID | None = None


@dataclass
class MergeResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    ids: dict[int, uuid.UUID] = field(default_factory=dict)


class _Raced(Exception):
    """Another transaction registered one of the credit codes after this one looked."""


def validate_records(records: Sequence[Mapping[str, Any]]) -> tuple[list[Incoming], list[RowError]]:
    """Schema-check each record on its own; two rows with one credit code are both rejected."""
    incoming: list[Incoming] = []
    errors: list[RowError] = []
    validate = OrganizationRecord.model_validate
    for row, raw in enumerate(records):
        try:
            record = validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = printable(".".join(str(p) for p in err["loc"])) or "record"
                errors.append(
                    RowError(row=row, field=loc, reason=printable(str(err["msg"]).removeprefix("Value error, ")))
                )
            continue
        values = record.__dict__
        provided = {k: values[k] for k in record.model_fields_set if k != "credit_code"}
        incoming.append(Incoming(row=row, values=provided, credit_code=record.credit_code))
    rows_of: dict[str, list[int]] = {}
    for item in incoming:
        rows_of.setdefault(item.credit_code or "", []).append(item.row)
    duplicated = {code for code, rows in rows_of.items() if len(rows) > 1}
    if duplicated:
        for item in incoming:
            if item.credit_code in duplicated:
                others = ", ".join(str(r) for r in rows_of[item.credit_code or ""] if r != item.row)
                errors.append(
                    RowError(
                        row=item.row, field="credit_code", reason=f"appears again in row(s) {others} of this batch"
                    )
                )
        incoming = [i for i in incoming if i.credit_code not in duplicated]
    return incoming, errors


_POSITION = {f: i for i, f in enumerate(FIELDS)}


def _stage_tuple(item: Incoming) -> tuple[Any, ...]:
    mask = 0
    values: list[Any] = [None] * len(FIELDS)
    for key, value in item.values.items():
        i = _POSITION[key]
        mask |= 1 << i
        values[i] = value.value if isinstance(value, Enum) else value
    return (item.row, item.org_id, item.new_id or uuid.uuid4(), mask, item.credit_code, *values)


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


NOT_NULL = frozenset(c.name for c in Organization.__table__.c if not c.nullable)  # type: ignore[attr-defined]
REQUIRED = frozenset({"name", "kind", "region_code"})  # reported as "Field required", as the schema check says


@dataclass(frozen=True)
class Check:
    """A write rule that needs the database. A staged row for which `fails` holds is refused with
    `field` and `reason`, and nothing of it is applied. `fails` is SQL over the merged row `x` (the
    staged fields over the organization's current ones; `x.old_…` are the current ones), its
    region `r` and its area `a`; `{jurisdiction}` stands for the caller's subtree as a LIKE pattern.
    `{x.column}` in `reason` is the row's value."""

    field: str
    fails: str
    reason: str
    partners_only: bool = False


# In order: a row is refused for the first check it fails.
CHECKS: tuple[Check, ...] = (
    # Row-level security hides another jurisdiction's organizations from the lookup; `registered_in`
    # asks the database where a staged credit code is registered at all.
    Check("credit_code", "x.old_id IS NOT NULL AND x.old_region_code NOT LIKE {jurisdiction}", OUTSIDE),
    Check("credit_code", "x.old_id IS NULL AND x.registered_in IS NOT NULL", OUTSIDE),
    Check("name", "x.name IS NULL", "Field required"),
    # A record may leave these out (defaults or the current value apply) but not send null.
    *(Check(f, f"x.{f} IS NULL", "cannot be null") for f in FIELDS if f in NOT_NULL and f not in REQUIRED),
    Check("kind", "x.kind IS NULL", "Field required"),
    Check("region_code", "x.region_code IS NULL", "Field required"),
    Check("region_code", "x.region_code NOT LIKE {jurisdiction}", OUTSIDE),
    Check("region_code", "r.code IS NULL", "region {x.region_code} is not registered"),
    Check(
        "region_code",
        f"r.level NOT IN ({', '.join(str(n) for n in regions.ORGANIZATION_LEVELS)})",
        "must be a township (level 4) or a village or community (level 5)",
    ),
    Check("area_id", "x.area_id IS NOT NULL AND a.id IS NULL", "no such area"),
    Check(
        "area_id",
        f"x.area_id IS NOT NULL AND x.region_code NOT LIKE {regions.prefix_sql('a.region_code')} || '%'",
        "the area lies in another region than the organization",
    ),
    Check("status_reason", "x.status_changed AND x.given_reason IS NULL", "a status change needs a reason"),
    Check(
        "status",
        f"x.status_changed AND x.status IN ({', '.join(_sql_literal(s) for s in OFFICIAL_ONLY_STATUSES)})",
        "only officials may set status '{x.status}' (after a verified visit)",
        partners_only=True,
    ),
)


def _error_sql(check: Check) -> str:
    """The check's `field|reason` as a SQL string expression, the row's values spliced in."""
    parts = re.split(r"\{(x\.[a-z_]+)\}", f"{check.field}|{check.reason}")
    return " || ".join(part if i % 2 else _sql_literal(part) for i, part in enumerate(parts) if part)


def _checks_sql(is_partner: bool, jurisdiction: str) -> str:
    return "\n  ".join(
        f"WHEN {c.fails.replace('{jurisdiction}', jurisdiction)} THEN {_error_sql(c)}"
        for c in CHECKS
        if is_partner or not c.partners_only
    )


def _merge_view_sql(by_id: bool, is_partner: bool, settings: Settings, prefix: str) -> str:
    """A view merging each staged row over its organization: derived scope, what changed, and
    the first rule the row breaks (`prefix` is the caller's jurisdiction, digits only)."""
    assert prefix.isdigit() or prefix == "", "a region prefix is digits"
    merged = []
    for f in FIELDS:
        if f == "status_reason":
            continue
        default = _sql_literal(DEFAULTS[f]) if f in DEFAULTS else "NULL"
        merged.append(
            f"CASE WHEN s.mask & {BIT[f]} <> 0 THEN s.{f} WHEN o.id IS NOT NULL THEN o.{f} ELSE {default} END AS {f}"
        )
    # The party organization and `instructed` are not written here: before and after are the same.
    old = [f"o.{f} AS old_{f}" for f in FIELDS] + [
        "o.in_scope AS old_in_scope",
        "o.party_org_id AS old_party_org_id",
        "o.instructed AS old_instructed",
    ]
    join = "o.id = s.org_id" if by_id else "o.credit_code = s.credit_code"
    # Row-level security hides another jurisdiction's organizations from the lookup above; this
    # asks the database (one call per batch) where each staged credit code is registered at all.
    registered_in = "NULL::text" if by_id else "h.region_code"
    hidden_join = (
        ""
        if by_id
        else "LEFT JOIN liangxin_credit_code_regions((SELECT array_agg(credit_code) FROM org_stage)) h "
        "ON h.credit_code = s.credit_code"
    )
    new_cols = ", ".join(f"m.{f}" for f in LEDGER_FIELDS)
    old_cols = ", ".join(f"m.old_{f}" for f in LEDGER_FIELDS)
    return f"""
CREATE TEMP VIEW org_merge_v AS
SELECT x.*, CASE
  {_checks_sql(is_partner, _sql_literal(prefix + "%"))}
END AS error
FROM (
  SELECT m.*,
         m.status IS DISTINCT FROM coalesce(m.old_status, 'active') AS status_changed,
         m.old_id IS NULL OR ({new_cols}) IS DISTINCT FROM ({old_cols}) AS changed
  FROM (
    SELECT m.*, {in_scope_sql(ScopeCriteria.from_settings(settings), "m.")} AS in_scope FROM (
      SELECT s.row, s.mask, s.status_reason AS given_reason, o.id AS old_id, {registered_in} AS registered_in,
             coalesce(o.id, s.new_id) AS id, coalesce(o.credit_code, s.credit_code) AS credit_code,
             o.party_org_id, coalesce(o.instructed, false) AS instructed, p.formation AS covering_formation,
             {", ".join(merged)}, {", ".join(old)}
      FROM org_stage s
      -- A lookup per staged row (the fence keeps it one): cost follows the batch, not the
      -- registry, whatever the planner believes about the tables' sizes.
      LEFT JOIN LATERAL (SELECT * FROM organization o WHERE {join} OFFSET 0) o ON true
      LEFT JOIN party_org p ON p.id = o.party_org_id
      {hidden_join}
    ) m
  ) m
) x
LEFT JOIN region r ON r.code = x.region_code
LEFT JOIN area a ON a.id = x.area_id"""


def _write_sql(source: ChangeSource) -> list[str]:
    cols = ["id", "credit_code", *FIELDS, "status_changed_at", "in_scope", "version", "created_at", "updated_at"]
    values = (
        ["m.id", "m.credit_code"]
        + ["CASE WHEN m.status_changed THEN m.given_reason END" if f == "status_reason" else f"m.{f}" for f in FIELDS]
        + ["CASE WHEN m.status_changed THEN now() END", "m.in_scope", "1", "now()", "now()"]
    )
    updates = [f"{f} = m.{f}" for f in FIELDS if f != "status_reason"] + [
        "status_reason = CASE WHEN m.status_changed THEN m.given_reason ELSE o.status_reason END",
        "status_changed_at = CASE WHEN m.status_changed THEN now() ELSE o.status_changed_at END",
        "in_scope = m.in_scope",
        "version = o.version + 1",
        "updated_at = now()",
    ]
    new_json = "jsonb_build_object(" + ", ".join(f"'{f}', m.{f}" for f in LEDGER_FIELDS) + ")"
    old_json = "jsonb_build_object(" + ", ".join(f"'{f}', m.old_{f}" for f in LEDGER_FIELDS) + ")"
    return [
        f"""INSERT INTO organization ({", ".join(cols)})
            SELECT {", ".join(values)} FROM org_merge m WHERE m.error IS NULL AND m.old_id IS NULL
            ON CONFLICT (credit_code) WHERE credit_code IS NOT NULL DO NOTHING""",
        f"""UPDATE organization o SET {", ".join(updates)}
            FROM org_merge m WHERE o.id = m.old_id AND m.error IS NULL AND m.changed""",
        f"""INSERT INTO registry_change
              (entity, entity_id, region_code, action, source, actor, reason, request_id, batch_id, before, after)
            SELECT 'organization', m.id, m.region_code, 'created', '{source.value}', :actor,
                   coalesce(CASE WHEN m.status_changed THEN m.given_reason END, :reason), :request_id, :batch_id,
                   NULL, {new_json.replace("jsonb_build_object", "json_build_object", 1)}
            FROM org_merge m WHERE m.error IS NULL AND m.old_id IS NULL""",
        f"""INSERT INTO registry_change
              (entity, entity_id, region_code, action, source, actor, reason, request_id, batch_id, before, after)
            SELECT 'organization', m.id, m.region_code,
                   CASE WHEN m.status_changed THEN 'status_changed' ELSE 'updated' END, '{source.value}', :actor,
                   coalesce(CASE WHEN m.status_changed THEN m.given_reason END, :reason), :request_id, :batch_id,
                   d.before::json, d.after::json
            FROM (
              -- OFFSET 0 keeps the two objects computed once per row, not once per key compared.
              SELECT m.*, {new_json} AS j, {old_json} AS o FROM org_merge m
              WHERE m.error IS NULL AND m.changed AND m.old_id IS NOT NULL OFFSET 0
            ) m
            CROSS JOIN LATERAL (
              SELECT jsonb_object_agg(e.key, m.o -> e.key) AS before, jsonb_object_agg(e.key, e.value) AS after
              FROM jsonb_each(m.j) e WHERE e.value IS DISTINCT FROM m.o -> e.key
            ) d
""",
        # One event per action and chunk of organizations: their facts before and after.
        f"""SELECT 'registry.organization.' || c.action AS type,
                   -- json, not jsonb: built without a parse, stored as written.
                   json_build_object('source', '{source.value}', 'changes', json_agg(c.change ORDER BY c.row))
                     AS payload
            FROM (
              SELECT a.*, (row_number() OVER (PARTITION BY a.action ORDER BY a.row) - 1) / {EVENT_CHUNK} AS chunk
              FROM (
                SELECT m.row,
                       CASE WHEN m.old_id IS NULL THEN 'registered' WHEN m.status_changed THEN 'status_changed'
                            ELSE 'updated' END AS action,
                       json_build_object('organization_id', m.id, 'credit_code', m.credit_code, 'name', m.name,
                         'before', CASE WHEN m.old_id IS NOT NULL
                                        THEN {org_facts_sql("m.old_", "m.covering_formation")} END,
                         'after', {org_facts_sql("m.", "m.covering_formation")}) AS change
                FROM org_merge m WHERE m.error IS NULL AND m.changed
              ) a
            ) c
            GROUP BY c.action, c.chunk""",
    ]


async def merge(
    session: AsyncSession,
    *,
    caller: Caller,
    incoming: list[Incoming],
    source: ChangeSource,
    batch_id: uuid.UUID | None = None,
    dry_run: bool = False,
    reason: str | None = None,
) -> MergeResult:
    """Create or update organizations; each bad item is reported and nothing of it is applied."""
    if not incoming:
        return MergeResult()
    for attempt in range(3):
        try:
            async with session.begin_nested():
                return await _merge(
                    session,
                    caller=caller,
                    incoming=incoming,
                    source=source,
                    batch_id=batch_id,
                    dry_run=dry_run,
                    reason=reason,
                )
        except _Raced:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _merge(
    session: AsyncSession,
    *,
    caller: Caller,
    incoming: list[Incoming],
    source: ChangeSource,
    batch_id: uuid.UUID | None,
    dry_run: bool,
    reason: str | None,
) -> MergeResult:
    settings = get_settings()
    conn = await raw_connection(session)
    # Sorting 10,000 wide rows in memory, not on disk.
    await conn.execute("SET LOCAL work_mem = '64MB'")
    by_id = any(i.org_id is not None for i in incoming)
    await conn.execute(
        "CREATE TEMP TABLE org_stage ON COMMIT DROP AS SELECT 0 AS row, NULL::uuid AS org_id, NULL::uuid AS new_id, "
        f"0::bigint AS mask, credit_code, {', '.join(FIELDS)} FROM organization WITH NO DATA"
    )
    await conn.copy_records_to_table("org_stage", columns=STAGE_COLUMNS, records=[_stage_tuple(i) for i in incoming])
    await conn.execute(_merge_view_sql(by_id, caller.kind == "api_key", settings, caller.region_prefix))
    # One pass keeps the rows that matter: those with an error and those that would change.
    keep = "CREATE TEMP TABLE org_merge ON COMMIT DROP AS SELECT * FROM org_merge_v WHERE error IS NOT NULL OR changed"
    await conn.execute(keep)
    updates = await conn.fetchval("SELECT array_agg(old_id) FROM org_merge WHERE error IS NULL AND old_id IS NOT NULL")
    if updates:
        # Lock only what this batch updates, in a stable order, and look again at the locked,
        # latest versions. Rows found unchanged need no lock: against the snapshot just read
        # they are a no-op, which serializes before any later writer.
        await conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM organization WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE) l",
            updates,
        )
        await conn.execute("DROP TABLE org_merge")
        await conn.execute(keep)
    result = MergeResult()
    for r in await conn.fetch("SELECT row, old_id, error, credit_code, region_code FROM org_merge ORDER BY row"):
        if r["error"] is not None:
            fld, why = r["error"].split("|", 1)
            result.errors.append(RowError(row=r["row"], field=fld, reason=why))
            if why == OUTSIDE:
                # For the audit log: an attempt on another jurisdiction's organization or region.
                refusals.suspect("credit_code" if fld == "credit_code" else "region", r[fld])
        elif r["old_id"] is None:
            result.created += 1
        else:
            result.updated += 1
    result.unchanged = len(incoming) - result.created - result.updated - len(result.errors)
    if len(incoming) <= IDS_FOR_AT_MOST:
        rows = await conn.fetch("SELECT row, id FROM org_merge_v WHERE error IS NULL")
        result.ids = {r["row"]: r["id"] for r in rows}
    if not dry_run and (result.created or result.updated):
        insert, update, created_lines, updated_lines, events = _write_sql(source)
        inserted = await conn.execute(insert)
        if int(inserted.rsplit(" ", 1)[1]) != result.created:
            raise _Raced
        await conn.execute(update)
        params = {"actor": caller.label, "reason": reason, "request_id": request_id_var.get(), "batch_id": batch_id}
        for ledger in (created_lines, updated_lines):
            await session.execute(text(ledger), params)
        await emit_sql(session, EVENT_TYPES, events)
    await conn.execute("DROP TABLE org_merge; DROP VIEW org_merge_v; DROP TABLE org_stage")
    return result


def single_result(result: MergeResult) -> uuid.UUID:
    """For one-organization writes: the id, or the row's error as a 422 naming the field."""
    if result.errors:
        err = result.errors[0]
        if err.reason == OUTSIDE and err.field == "credit_code":
            raise not_found("organization")
        raise invalid(err.field, err.reason)
    return result.ids[0]
