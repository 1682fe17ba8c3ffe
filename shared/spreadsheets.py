"""Cells of the spreadsheets officials open: text stays text, never a formula.

Names and addresses come from partners and the public. Excel, WPS and LibreOffice run a CSV field
or an edited cell that starts with `= + - @`, a tab or a carriage return as a formula
(`=HYPERLINK(…)` leaks data, `=cmd|…` runs a program), so every export passes its values through
`safe_cell`, which prefixes such text with a single quote, as the OWASP guidance on CSV injection
recommends. Numbers, dates and booleans are left alone: a negative number stays a number.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Control characters XML 1.0 cannot hold: openpyxl refuses to write them, so an export would fail.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def safe_text(text: str) -> str:
    """The text as a spreadsheet shows it without ever evaluating it."""
    text = _UNWRITABLE.sub("", text)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def safe_cell(value: Any) -> Any:
    """A value for an XLSX or CSV cell: text neutralized, anything else unchanged.

    openpyxl makes a cell a formula only when its text starts with `=`, which `safe_text` never
    leaves, so every string is written as a text cell.
    """
    return safe_text(value) if isinstance(value, str) else value


def safe_row(values: list[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]
