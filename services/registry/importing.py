"""Partner bulk import: JSON, CSV or XLSX in; counts and per-row reasons out; idempotent.

A file's columns may be named by field (`credit_code`) or by their Chinese label
(统一社会信用代码); values may be codes (`enterprise`) or labels (非公有制企业, 是/否). An
empty cell means "not provided": the organization keeps what it has.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import uuid
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.registry import merge
from services.registry.labels import COLUMN_LABELS, FALSE_WORDS, TRUE_WORDS, header_to_field, value_to_code
from services.registry.models import ChangeSource, ImportBatch, OrganizationImportResult, RowError
from shared.auth import Caller
from shared.errors import ProblemError, invalid
from shared.settings import get_settings
from shared.spreadsheets import safe_cell, safe_row

BOOL_FIELDS = {
    "has_fixed_premises",
    "has_business_activity",
    "has_trade_union",
    "has_youth_league",
    "investor_is_party_member",
    "charter_includes_party_building",
}
INT_FIELDS = {"employees", "formal_members", "probationary_members", "activists", "floating_members"}
ERROR_COLUMN = "错误说明"
BAD_FILL = PatternFill(start_color="FFFFC7CE", end_color="FFFFC7CE", fill_type="solid")


@dataclass
class ParsedFile:
    headers: list[str]
    fields: list[str | None]  # the field each column maps to (None: unknown column)
    rows: list[list[Any]]  # raw cell values as read
    records: list[dict[str, Any]]
    errors: list[RowError]


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    out = str(value).strip()
    return out or None


def _coerce(field: str, raw: str) -> Any:
    """A cell's text as the JSON value the record schema expects (the schema still checks it)."""
    if field in BOOL_FIELDS:
        word = raw.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        return raw
    if field in INT_FIELDS:
        try:
            return int(float(raw)) if raw.replace(".", "", 1).isdigit() else raw
        except ValueError:
            return raw
    if field == "credit_code":
        return raw.upper()
    return value_to_code(field).get(raw, raw)


def _records_from_table(headers: list[str], rows: list[list[Any]]) -> ParsedFile:
    mapping = header_to_field()
    fields = [mapping.get(h.strip()) if h else None for h in headers]
    errors: list[RowError] = []
    unknown = [h for h, f in zip(headers, fields, strict=True) if h and f is None and h != ERROR_COLUMN]
    if unknown:
        raise invalid(
            "file",
            f"unknown column(s): {', '.join(unknown)}; use the field names or the Chinese labels of the template",
        )
    missing = [COLUMN_LABELS[f] for f in ("credit_code", "name", "kind", "region_code") if f not in fields]
    if missing:
        raise invalid("file", f"required column(s) missing: {', '.join(missing)}")
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        for field, value in zip(fields, row, strict=False):
            if field is None:
                continue
            cell = _cell_text(value)
            if cell is not None:
                record[field] = _coerce(field, cell)
        records.append(record)
    return ParsedFile(headers=headers, fields=fields, rows=rows, records=records, errors=errors)


def parse_csv(data: bytes) -> ParsedFile:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            content = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise invalid("file", "is neither UTF-8 nor GB18030 text")
    table = [row for row in csv.reader(io.StringIO(content)) if any(cell.strip() for cell in row)]
    if not table:
        raise invalid("file", "is empty")
    return _records_from_table(table[0], [list(r) for r in table[1:]])


def parse_xlsx(data: bytes) -> ParsedFile:
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        raise invalid("file", "is not a readable .xlsx workbook") from None
    sheet = workbook.worksheets[0]
    table = [list(r) for r in sheet.iter_rows(values_only=True) if any(c not in (None, "") for c in r)]
    workbook.close()
    if not table:
        raise invalid("file", "is empty")
    headers = [str(h).strip() if h is not None else "" for h in table[0]]
    return _records_from_table(headers, table[1:])


def parse_upload(filename: str, content_type: str | None, data: bytes) -> tuple[ParsedFile, str]:
    name = filename.lower()
    if name.endswith(".xlsx") or content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
        return parse_xlsx(data), "xlsx"
    if name.endswith(".csv") or content_type in ("text/csv", "application/csv"):
        return parse_csv(data), "csv"
    raise ProblemError(415, "upload a .csv or .xlsx file", code="unsupported-media-type")


def annotated_workbook(parsed: ParsedFile, result: OrganizationImportResult) -> bytes:
    """The uploaded rows again, with a Chinese error column and the bad cells highlighted."""
    by_row: dict[int, list[RowError]] = {}
    for err in result.errors:
        by_row.setdefault(err.row, []).append(err)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "导入数据"
    headers = [h for h in parsed.headers if h != ERROR_COLUMN]
    keep = [i for i, h in enumerate(parsed.headers) if h != ERROR_COLUMN]
    # The partner's own cells come back: as text, never as formulas (shared/spreadsheets.py).
    sheet.append([*safe_row(headers), ERROR_COLUMN])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    column_of = {parsed.fields[i]: n for n, i in enumerate(keep) if parsed.fields[i]}
    for index, row in enumerate(parsed.rows):
        values = [row[i] if i < len(row) else None for i in keep]
        errors = by_row.get(index, [])
        message = "；".join(f"{COLUMN_LABELS.get(e.field.split('.')[0], e.field)}：{e.reason}" for e in errors)
        sheet.append([*safe_row(values), safe_cell(message) or None])
        for err in errors:
            column = column_of.get(err.field.split(".")[0])
            target = sheet.cell(row=index + 2, column=(column if column is not None else len(headers)) + 1)
            target.fill = BAD_FILL
            target.comment = Comment(err.reason, "两新系统")
    sheet.freeze_panes = "A2"
    summary = workbook.create_sheet("导入结果")
    for key, value in (
        ("批次编号", str(result.batch_id)),
        ("新增", result.created),
        ("更新", result.updated),
        ("未变化", result.unchanged),
        ("拒绝", result.rejected),
        ("试运行（未写入）", "是" if result.dry_run else "否"),
    ):
        summary.append([key, value])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def request_hash(data: bytes, *, dry_run: bool) -> str:
    return hashlib.sha256(data + (b"|dry" if dry_run else b"|run")).hexdigest()


async def replay(session: AsyncSession, *, caller: Caller, key: str, digest: str) -> OrganizationImportResult | None:
    """The stored answer for this caller's Idempotency-Key, waiting for a concurrent first attempt."""
    found = await session.execute(
        text("SELECT request_hash, result FROM import_batch WHERE caller = :c AND idempotency_key = :k"),
        {"c": caller.label, "k": key},
    )
    row = found.first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise invalid("Idempotency-Key", "was already used for a different request; use a new key per batch")
    return OrganizationImportResult.model_validate(row.result)


async def run_import(
    session: AsyncSession,
    *,
    caller: Caller,
    records: list[dict[str, Any]],
    dry_run: bool,
    idempotency_key: str | None,
    digest: str,
) -> tuple[OrganizationImportResult, bool]:
    """Validate and merge a batch; returns the answer and whether it is a replay."""
    settings = get_settings()
    if len(records) > settings.import_max_records:
        raise invalid("records", f"at most {settings.import_max_records} records per batch (got {len(records)})")
    if not records:
        raise invalid("records", "the batch is empty")
    batch_id = uuid.uuid4()
    if idempotency_key and not dry_run:
        if (stored := await replay(session, caller=caller, key=idempotency_key, digest=digest)) is not None:
            return stored, True
        claim = await session.execute(
            insert(ImportBatch)
            .values(
                id=batch_id,
                caller=caller.label,
                idempotency_key=idempotency_key,
                request_hash=digest,
                dry_run=False,
                result={},
            )
            .on_conflict_do_nothing()
            .returning(col(ImportBatch.id))
        )
        if claim.first() is None:
            # A concurrent request with this key committed first: answer as it did.
            stored = await replay(session, caller=caller, key=idempotency_key, digest=digest)
            assert stored is not None
            return stored, True
    # Ten thousand short-lived objects would set off the cyclic collector again and again.
    gc.disable()
    try:
        incoming, errors = merge.validate_records(records)
    finally:
        gc.enable()
    merged = await merge.merge(
        session,
        caller=caller,
        incoming=incoming,
        source=ChangeSource.partner_import,
        batch_id=batch_id,
        dry_run=dry_run,
    )
    all_errors = sorted([*errors, *merged.errors], key=lambda e: e.row)
    result = OrganizationImportResult(
        batch_id=batch_id,
        dry_run=dry_run,
        created=merged.created,
        updated=merged.updated,
        unchanged=merged.unchanged,
        rejected=len({e.row for e in all_errors}),
        errors=all_errors,
    )
    if not dry_run:
        stored_result = result.model_dump(mode="json")
        if idempotency_key:
            await session.execute(
                text("UPDATE import_batch SET result = CAST(:r AS jsonb) WHERE id = :id"),
                {"r": OrganizationImportResult.model_validate(stored_result).model_dump_json(), "id": batch_id},
            )
        else:
            await session.execute(
                insert(ImportBatch).values(
                    id=batch_id,
                    caller=caller.label,
                    idempotency_key=None,
                    request_hash=digest,
                    dry_run=False,
                    result=stored_result,
                )
            )
    return result, False
