"""An XLSForm workbook (the ODK standard: `survey` and `choices` sheets) read with pyxform, the
reference XLSForm library, into a campaign form.

pyxform parses the sheets and checks them (names, choice lists, `${…}` references) and says which
row is wrong; this module maps its survey to `forms.FormIn`, keeping the subset the server can
check: the types text, integer, decimal, select_one, select_multiple, date, acknowledge and
yes/no (`select_one` of a list holding exactly yes and no), image, geopoint; `required`;
`constraint` and `relevant` in the expression subset (`expressions.py`). Anything else is a
row-level error naming the row and the column (`survey[7].constraint`), and nothing is published.
Metadata rows (start, end, today, deviceid…) are left out: the visit's paradata records them.

Like the registry's uploads, the workbook is read in a process of its own under a time limit
(openpyxl is pure Python), after its zip directory is checked (`services.registry.uploads`).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import warnings
from typing import Any

log = logging.getLogger(__name__)

METADATA = {
    "start",
    "end",
    "today",
    "deviceid",
    "subscriberid",
    "simserial",
    "phonenumber",
    "username",
    "email",
    "audit",
}
TYPES = {
    "text": "text",
    "integer": "integer",
    "decimal": "decimal",
    "select one": "select_one",
    "select all that apply": "select_multiple",
    "date": "date",
    "acknowledge": "yes_no",
    "photo": "photo",
    "geopoint": "geopoint",
}
SUPPORTED = "text, integer, decimal, select_one, select_multiple, date, acknowledge, image, geopoint"
_ROW = re.compile(r"\[row : (\d+)\]")


def _label(value: Any) -> str | None:
    """A label in one language: the Chinese one when the workbook has several (`label::中文`)."""
    if isinstance(value, dict):
        for key, text in value.items():
            if "中" in key or key.lower().startswith("zh"):
                return str(text)
        return str(next(iter(value.values()), "")) or None
    return str(value) if value not in (None, "") else None


def _required(value: Any) -> bool | None:
    text = str(value or "").strip().lower()
    if text in ("", "no", "false", "false()"):
        return False
    if text in ("yes", "true", "true()"):
        return True
    return None


def cell(where: dict[str, int], name: str, column: str) -> str:
    """Where a problem sits in the workbook: `survey[<row>].<column>`."""
    if name not in where:
        return "file"
    return f"survey[{where[name]}].{'type' if column == 'choices' else column}"


def convert(data: bytes, fallback_title: str) -> dict[str, Any]:
    """In the child: {"form", "where", "structure": [[field, reason], …]}, or {"problems": […]} for a
    workbook pyxform refuses."""
    from pyxform.errors import PyXFormError
    from pyxform.xls2json import workbook_to_json
    from pyxform.xls2json_backends import get_xlsform

    from shared.archives import Limits, Refused, check_archive

    try:
        check_archive(data, Limits(10_000, 100, 8 * 1024 * 1024, 100, 100))
    except Refused as refused:
        return {"problems": [[refused.field, refused.reason]], "status": refused.status}
    try:
        workbook = get_xlsform(io.BytesIO(data), file_type=".xlsx")
        rows = list(workbook.survey or [])
        survey = workbook_to_json(workbook, form_name="form", fallback_form_name="form", warnings=[])
    except PyXFormError as exc:
        message = str(exc)
        row = _ROW.search(message)
        field = f"survey[{row.group(1)}]" if row else "file"
        return {"problems": [[field, _ROW.sub("", message).strip() or "is not a valid XLSForm"]]}
    where: dict[str, int] = {}  # question name → its row in the survey sheet
    for number, row_values in enumerate(rows, start=2):
        name = str(row_values.get("name") or "").strip()
        if name and name not in where:
            where[name] = number
    problems: list[list[str]] = []
    questions: list[dict[str, Any]] = []

    def refuse(name: str, column: str, reason: str) -> None:
        problems.append([cell(where, name, column), reason])

    def walk(children: list[dict[str, Any]]) -> None:
        for child in children:
            kind, name = child.get("type", ""), str(child.get("name", ""))
            if kind == "group" and name == "meta":
                continue  # pyxform's own instanceID: the visit's id plays that part
            if kind == "group":
                if (child.get("bind") or {}).get("relevant"):
                    refuse(name, "relevant", "conditions on groups are not supported: put relevant on each question")
                walk(child.get("children", []))
                continue
            if kind in METADATA or kind == "note":
                continue
            if kind not in TYPES:
                shown = {"repeat": "begin_repeat", "calculate": "calculate"}.get(kind, kind)
                refuse(name, "type", f"type {shown!r} is not supported here; use one of {SUPPORTED}")
                continue
            bind = child.get("bind") or {}
            question: dict[str, Any] = {"name": name, "type": TYPES[kind], "label": _label(child.get("label")) or name}
            if (hint := _label(child.get("hint"))) is not None:
                question["hint"] = hint
            required = _required(bind.get("required"))
            if required is None:
                refuse(name, "required", "use yes or no (conditional required is not supported)")
            question["required"] = bool(required)
            for key in ("constraint", "relevant"):
                if bind.get(key):
                    question[key] = str(bind[key])
            if bind.get("jr:constraintMsg"):
                question["constraint_message"] = _label(bind["jr:constraintMsg"])
            if child.get("choice_filter"):
                refuse(name, "choice_filter", "choice filters are not supported")
            if TYPES[kind] in ("select_one", "select_multiple"):
                choices = [
                    {"value": str(c["name"]), "label": _label(c.get("label")) or str(c["name"])}
                    for c in child.get("choices", [])
                ]
                if TYPES[kind] == "select_one" and sorted(c["value"] for c in choices) == ["no", "yes"]:
                    question["type"] = "yes_no"
                else:
                    question["choices"] = choices
            questions.append(question)

    walk(survey.get("children", []))
    title = None
    for setting in workbook.settings or []:
        title = title or setting.get("form_title")
    form = {"title": str(title or fallback_title)[:200], "questions": questions}
    # Problems found here come with the form, so the server's own checks (expressions) add theirs.
    return {"form": form, "where": where, "structure": problems}


def main() -> None:
    """Child side: a JSON line [fallback_title], then the workbook; a JSON outcome on stdout."""
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)  # pyxform logs remarks on odd workbooks; they would carry its contents
    (fallback_title,) = json.loads(sys.stdin.buffer.readline())
    data = sys.stdin.buffer.read()
    try:
        outcome = convert(data, fallback_title)
    except Exception as exc:  # a workbook pyxform chokes on: the type only, never its contents
        outcome = {"problems": [["file", f"could not be read as an XLSForm ({type(exc).__name__})"]]}
    sys.stdout.buffer.write(json.dumps(outcome, ensure_ascii=False, default=str).encode())
    sys.stdout.buffer.flush()


async def read(data: bytes, *, fallback_title: str, timeout_s: float) -> dict[str, Any]:
    """Convert in a child process; `TimeoutError` when it was killed at the time limit."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.coverage.xlsform",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(
            child.communicate(json.dumps([fallback_title]).encode() + b"\n" + data), timeout_s
        )
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0 or not out:
        log.error("xlsform child failed", extra={"returncode": child.returncode})
        return {"problems": [["file", "could not be read as an XLSForm"]]}
    result: dict[str, Any] = json.loads(out)
    return result


if __name__ == "__main__":
    main()
