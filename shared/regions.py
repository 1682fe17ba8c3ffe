"""Region codes (统计用区划代码) and jurisdiction arithmetic.

A code has 12 digits: 2 province, 2 city, 2 county, 3 township, 3 village. Its level is the
position of its last non-zero segment, and its subtree is every code that starts with the
digits up to that segment. `000000000000` is the national root (level 0).
Where SQL needs a rule it has a SQL form too (`…_sql`); tests/shared/test_rules.py holds them equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, literal

ROOT_CODE = "000000000000"
_SEGMENTS = ((0, 2), (2, 4), (4, 6), (6, 9), (9, 12))
_PREFIX_LEN = {0: 0, 1: 2, 2: 4, 3: 6, 4: 9, 5: 12}
CODE_RE = re.compile(r"^\d{12}$")
LEVEL_NAMES = {0: "全国", 1: "省级", 2: "市级", 3: "县级", 4: "乡级", 5: "村级"}
TOWNSHIP = 4
# Organizations are registered in a township (乡镇、街道) or in a village or community below it.
ORGANIZATION_LEVELS = (TOWNSHIP, 5)


def is_valid_code(code: str) -> bool:
    return bool(CODE_RE.match(code))


def level(code: str) -> int:
    """Level 0 (root) to 5 (village or community)."""
    result = 0
    for i, (start, end) in enumerate(_SEGMENTS, start=1):
        if code[start:end].strip("0"):
            result = i
    return result


def prefix(code: str) -> str:
    """The digits every code in this region's subtree starts with."""
    return code[: _PREFIX_LEN[level(code)]]


def parent(code: str) -> str | None:
    """The nearest ancestor: the code with its last non-zero segment zeroed."""
    lvl = level(code)
    if lvl == 0:
        return None
    start, end = _SEGMENTS[lvl - 1]
    return code[:start] + "0" * (end - start) + code[end:]


def ancestors(code: str) -> list[str]:
    """The code itself followed by every ancestor up to the root."""
    chain = [code]
    while (up := parent(chain[-1])) is not None:
        chain.append(up)
    return chain


def prefix_sql(column: str) -> str:
    """`prefix` as a SQL expression over a code column."""
    cases = " ".join(
        f"WHEN substr({column}, {start + 1}, {end - start}) <> '{'0' * (end - start)}' THEN {end}"
        for start, end in reversed(_SEGMENTS)
    )
    return f"left({column}, CASE {cases} ELSE 0 END)"


def ancestors_sql(column: str) -> str:
    """`ancestors` as a subquery yielding one row per region, column `code`."""
    lengths = ", ".join(str(n) for n in sorted(set(_PREFIX_LEN.values())))
    return f"SELECT DISTINCT rpad(left({column}, n), 12, '0') AS code FROM unnest(ARRAY[{lengths}]) n"


def holds_organizations(code: str) -> bool:
    """Organizations are registered (and found in the field) in a township or a village or community."""
    return level(code) in ORGANIZATION_LEVELS


def township_of(code: str) -> str:
    """The township a region of level 4 or 5 lies in (the code itself above that level)."""
    return code[:9] + "000" if level(code) >= TOWNSHIP else code


def township_sql(column: str) -> str:
    """`township_of` as a SQL expression over a code column."""
    return f"(CASE WHEN length(rtrim({column}, '0')) > 9 THEN left({column}, 9) || '000' ELSE {column} END)"


def contains(outer: str, inner: str) -> bool:
    """True when `inner` lies in the subtree of `outer` (a region contains itself)."""
    return inner.startswith(prefix(outer))


def subtree_filter(column: Any, code: str) -> ColumnElement[bool]:
    """SQL condition: `column` is in the subtree of `code` (index-friendly prefix match)."""
    p = prefix(code)
    if not p:
        return literal(True)
    return column.startswith(p, autoescape=True)


def common_ancestor(codes: Iterable[str]) -> str:
    """The deepest region whose subtree holds every code (the root when they share no province)."""
    found: str | None = None
    for code in codes:
        if found is None:
            found = code
        while not contains(found, code):
            found = parent(found) or ROOT_CODE
    return found or ROOT_CODE
