"""Uploaded CSV and XLSX files, read (and the annotated workbook written) in a process of their own.

openpyxl is pure Python: a thread running it still holds the GIL most of the time and cannot be
stopped, so one hostile workbook (a zip bomb of 600,000 rows is 90 KB) stalled the whole registry.
`run` starts `python -m services.registry.uploads`, hands it the job over a pipe (JSON both ways:
nothing the child sends back can be more than data) and kills it at the time limit; the event loop
only waits. The child imports openpyxl and the labels, nothing else, so it starts in a fraction of
a second.

Before openpyxl sees a workbook its zip directory is checked (members, unpacked size, ratio; Python's
zipfile never inflates a member past its declared size), then the sheet's declared dimensions, and
reading stops one row past the record cap.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import io
import json
import logging
import sys
import warnings
from typing import Any

from services.registry.labels import COLUMN_LABELS
from shared.archives import Limits, Refused, check_archive
from shared.spreadsheets import safe_cell, safe_row

log = logging.getLogger(__name__)

ERROR_COLUMN = "错误说明"
SHEET_MAX_ROWS = 1_048_576  # what a worksheet can hold; row numbers beyond it are not a spreadsheet


def too_many_records(cap: int, got: str) -> str:
    """The reason a batch over the cap is refused, for JSON and files alike."""
    return f"at most {cap} records per batch ({got})"


# ---- in the child process ---------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _table(rows: Any, limits: Limits) -> tuple[list[str], list[list[Any]]]:
    """Header and non-empty rows, trailing blanks trimmed; refused as soon as a cap is passed."""
    table: list[list[Any]] = []
    for number, row in enumerate(rows, start=1):
        if number > SHEET_MAX_ROWS:
            raise Refused(422, "file", f"has more than {SHEET_MAX_ROWS} rows")
        if len(row) > limits.max_columns:
            tail = row[limits.max_columns :]
            # count(None) runs in C: a row padded to column XFD costs nothing to look at.
            if tail.count(None) != len(tail) and not all(_blank(v) for v in tail):
                raise Refused(422, "file", f"row {number} has a value beyond column {limits.max_columns}")
            row = row[: limits.max_columns]
        width = next((i + 1 for i in range(len(row) - 1, -1, -1) if not _blank(row[i])), 0)
        if width == 0:
            continue
        table.append(list(row[:width]))
        if len(table) > limits.max_records + 1:
            raise Refused(422, "records", too_many_records(limits.max_records, "the file has more"))
    if not table:
        raise Refused(422, "file", "is empty")
    headers = [str(h).strip() if h is not None else "" for h in table[0]]
    return headers, table[1:]


def read_csv(data: bytes, limits: Limits) -> tuple[list[str], list[list[Any]]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            content = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise Refused(422, "file", "is neither UTF-8 nor GB18030 text")
    reader = csv.reader(io.StringIO(content))
    try:
        return _table(reader, limits)
    except csv.Error as exc:
        raise Refused(422, "file", f"line {reader.line_num}: {exc}") from None


def read_xlsx(data: bytes, limits: Limits) -> tuple[list[str], list[list[Any]]]:
    from openpyxl import load_workbook

    check_archive(data, limits)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        sheet = workbook.worksheets[0]
    except Exception:
        raise Refused(422, "file", "is not a readable .xlsx workbook") from None
    declared_rows = (sheet.max_row or 0) - (sheet.min_row or 1) + 1
    if declared_rows > limits.max_records + 1:
        reason = too_many_records(limits.max_records, f"the sheet declares {declared_rows} rows")
        raise Refused(422, "records", reason)
    if (sheet.max_column or 0) > limits.max_columns:
        raise Refused(422, "file", f"the sheet declares {sheet.max_column} columns; at most {limits.max_columns}")
    # Read what the sheet holds, not what it claims: a dimension that lies neither pads every row
    # to 16,384 columns nor hides rows past the one it names.
    sheet.reset_dimensions()
    try:
        return _table(sheet.iter_rows(values_only=True), limits)
    except Refused:
        raise
    except Exception:
        raise Refused(422, "file", "is not a readable .xlsx workbook") from None
    finally:
        workbook.close()


def read_table(kind: str, limits: dict[str, Any], data: bytes) -> tuple[list[str], list[list[Any]]]:
    caps = Limits(**limits)
    return read_xlsx(data, caps) if kind == "xlsx" else read_csv(data, caps)


def annotated_workbook(
    headers: list[str],
    fields: list[str | None],
    rows: list[list[Any]],
    errors: list[tuple[int, str, str]],
    summary: list[tuple[str, Any]],
) -> bytes:
    """The uploaded rows again, with a Chinese error column and the bad cells highlighted."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill

    bad_fill = PatternFill(start_color="FFFFC7CE", end_color="FFFFC7CE", fill_type="solid")
    by_row: dict[int, list[tuple[str, str]]] = {}
    for row_index, field, reason in errors:
        by_row.setdefault(row_index, []).append((field, reason))
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "导入数据"
    keep = [i for i, h in enumerate(headers) if h != ERROR_COLUMN]
    shown = [headers[i] for i in keep]
    # The partner's own cells come back: as text, never as formulas (shared/spreadsheets.py).
    sheet.append([*safe_row(shown), ERROR_COLUMN])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    column_of = {fields[i]: n for n, i in enumerate(keep) if fields[i]}
    for index, row in enumerate(rows):
        values = [row[i] if i < len(row) else None for i in keep]
        row_errors = by_row.get(index, [])
        message = "；".join(f"{COLUMN_LABELS.get(f.split('.')[0], f)}：{reason}" for f, reason in row_errors)
        sheet.append([*safe_row(values), safe_cell(message) or None])
        for field, reason in row_errors:
            column = column_of.get(field.split(".")[0])
            target = sheet.cell(row=index + 2, column=(column if column is not None else len(shown)) + 1)
            target.fill = bad_fill
            target.comment = Comment(reason, "两新系统")
    sheet.freeze_panes = "A2"
    result_sheet = workbook.create_sheet("导入结果")
    for key, value in summary:
        result_sheet.append([key, value])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


JOBS: dict[str, Any] = {"read_table": read_table, "annotated_workbook": annotated_workbook}


def _encode(value: Any) -> Any:
    """JSON for what a cell or a job holds beyond JSON's own types, tagged `$…`."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$seconds": value.total_seconds()}
    raise TypeError(f"{type(value).__name__} cannot cross to the upload process")


_DECODERS: dict[str, Any] = {
    "$bytes": base64.b64decode,
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$seconds": lambda seconds: dt.timedelta(seconds=seconds),
}


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and (tag := next(iter(obj))) in _DECODERS:
        return _DECODERS[tag](obj[tag])
    return obj


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_encode, ensure_ascii=False).encode()


def loads(data: bytes) -> Any:
    return json.loads(data, object_hook=_decode)


def main() -> None:
    """Child side: a JSON line [job, args, with_data], then the raw file; a JSON outcome on stdout."""
    warnings.simplefilter("ignore")  # openpyxl's remarks on odd workbooks would only clutter the logs
    job, args, with_data = loads(sys.stdin.buffer.readline())
    if with_data:
        args.append(sys.stdin.buffer.read())
    try:
        outcome: tuple[Any, ...] = ("ok", JOBS[job](*args))
    except Refused as refused:
        outcome = ("refused", refused.status, refused.field, refused.reason)
    except Exception as exc:
        # The type only: a message could quote the file's contents.
        outcome = ("error", type(exc).__name__)
    sys.stdout.buffer.write(dumps(outcome))
    sys.stdout.buffer.flush()


# ---- in the service -------------------------------------------------------------------------


class Crashed(Exception):
    """The child failed without an answer (a bug, or killed by the system)."""


_slots: dict[tuple[asyncio.AbstractEventLoop, int], asyncio.Semaphore] = {}


def _slot(concurrency: int) -> asyncio.Semaphore:
    key = (asyncio.get_running_loop(), concurrency)
    if key not in _slots:
        _slots.clear()  # one loop and one setting per process, except in tests
        _slots[key] = asyncio.Semaphore(concurrency)
    return _slots[key]


async def run(job: str, *args: Any, data: bytes | None = None, timeout_s: float, concurrency: int) -> Any:
    """Run a job of `JOBS` (`data`, if any, is its last argument) in a child process.

    `TimeoutError` when it was killed at the time limit.
    """
    # The file goes as it is, after the JSON line (which holds no raw newline): no copy in base64.
    payload = dumps([job, args, data is not None]) + b"\n" + (data or b"")
    async with _slot(concurrency):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.registry.uploads",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            out, _ = await asyncio.wait_for(child.communicate(payload), timeout_s)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    if child.returncode != 0 or not out:
        log.error("upload child failed", extra={"job": job, "returncode": child.returncode})
        raise Crashed(job)
    outcome = loads(out)
    if outcome[0] == "refused":
        raise Refused(*outcome[1:])
    if outcome[0] == "error":
        log.warning("upload not readable", extra={"job": job, "reason": outcome[1]})
        raise Refused(422, "file", "could not be read")
    return outcome[1]


if __name__ == "__main__":
    main()
