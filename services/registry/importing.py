"""Partner bulk import: JSON, CSV or XLSX in; counts and per-row reasons out; idempotent.

A file's columns may be named by field (`credit_code`) or by their Chinese label
(统一社会信用代码); values may be codes (`enterprise`) or labels (非公有制企业, 是/否). An
empty cell means "not provided": the organization keeps what it has.
"""

from __future__ import annotations

import gc
import hashlib
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.registry import merge, uploads
from services.registry.labels import COLUMN_LABELS, FALSE_WORDS, TRUE_WORDS, header_to_field, value_to_code
from services.registry.models import ChangeSource, ImportBatch, OrganizationImportResult, RowError
from shared.auth import Caller
from shared.errors import ProblemError, invalid
from shared.settings import get_settings

BOOL_FIELDS = {
    "has_fixed_premises",
    "has_business_activity",
    "has_trade_union",
    "has_youth_league",
    "investor_is_party_member",
    "charter_includes_party_building",
}
INT_FIELDS = {"employees", "formal_members", "probationary_members", "activists", "floating_members"}
ERROR_COLUMN = uploads.ERROR_COLUMN


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


def _problem(refused: uploads.Refused) -> ProblemError:
    if refused.status == 413:
        return ProblemError(
            413,
            f"{refused.field}: {refused.reason}; split it into smaller files",
            code="payload-too-large",
            errors=[{"field": refused.field, "reason": refused.reason}],
        )
    return invalid(refused.field, refused.reason)


async def _off_loop(job: str, *args: Any, data: bytes | None = None) -> Any:
    """A job of `uploads.JOBS` in a child process, under the time limit; its refusals as problems."""
    settings = get_settings()
    limit = settings.upload_parse_timeout_s
    try:
        return await uploads.run(job, *args, data=data, timeout_s=limit, concurrency=settings.upload_parse_concurrency)
    except uploads.Refused as refused:
        raise _problem(refused) from None
    except TimeoutError:
        doing = "read" if job == "read_table" else "annotate"
        raise _problem(uploads.Refused(413, "file", f"took more than {limit:g} s to {doing}")) from None
    except uploads.Crashed:
        raise invalid("file", "could not be read") from None


def upload_limits() -> uploads.Limits:
    settings = get_settings()
    return uploads.Limits(
        max_records=settings.import_max_records,
        max_columns=settings.upload_max_columns,
        max_unpacked_bytes=settings.upload_max_unpacked_bytes,
        max_compression_ratio=settings.upload_max_compression_ratio,
        max_zip_members=settings.upload_max_zip_members,
    )


async def parse_upload(filename: str, content_type: str | None, data: bytes) -> tuple[ParsedFile, str]:
    """The file's records, read off the event loop; at most the record cap of them."""
    name = filename.lower()
    if name.endswith(".xlsx") or content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
        kind = "xlsx"
    elif name.endswith(".csv") or content_type in ("text/csv", "application/csv"):
        kind = "csv"
    else:
        raise ProblemError(415, "upload a .csv or .xlsx file", code="unsupported-media-type")
    headers, rows = await _off_loop("read_table", kind, asdict(upload_limits()), data=data)
    return _records_from_table(headers, rows), kind


async def annotated_workbook(parsed: ParsedFile, result: OrganizationImportResult) -> bytes:
    """The uploaded rows again, with a Chinese error column and the bad cells highlighted."""
    summary: list[tuple[str, Any]] = [
        ("批次编号", str(result.batch_id)),
        ("新增", result.created),
        ("更新", result.updated),
        ("未变化", result.unchanged),
        ("拒绝", result.rejected),
        ("试运行（未写入）", "是" if result.dry_run else "否"),
    ]
    errors = [(e.row, e.field, e.reason) for e in result.errors]
    workbook: bytes = await _off_loop("annotated_workbook", parsed.headers, parsed.fields, parsed.rows, errors, summary)
    return workbook


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
        raise invalid("records", uploads.too_many_records(settings.import_max_records, f"got {len(records)}"))
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


async def run_file_import(
    session: AsyncSession,
    *,
    caller: Caller,
    filename: str,
    content_type: str | None,
    data: bytes,
    dry_run: bool,
    annotate: bool,
    idempotency_key: str | None,
) -> tuple[OrganizationImportResult, bool, bytes | None]:
    """The same import from an uploaded CSV or XLSX (`data`: at most one byte past the size limit);
    returns the answer, whether it is a replay, and the annotated workbook when asked for."""
    limit = get_settings().upload_max_bytes
    if len(data) > limit:
        raise ProblemError(
            413, f"the file is larger than {limit} bytes; split it into batches", code="payload-too-large"
        )
    parsed, _ = await parse_upload(filename, content_type, data)
    result, replayed = await run_import(
        session,
        caller=caller,
        records=parsed.records,
        dry_run=dry_run,
        idempotency_key=idempotency_key,
        digest=request_hash(data, dry_run=dry_run),
    )
    return result, replayed, (await annotated_workbook(parsed, result) if annotate else None)
