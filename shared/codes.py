"""Check characters of national identifiers.

- Unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters over a
  31-character alphabet; the last is a check character over the first 17.
- Citizen ID number (GB 11643-1999): 17 digits and a check digit or X.
"""

from __future__ import annotations

CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_VALUE = {c: i for i, c in enumerate(CREDIT_ALPHABET)}
_CREDIT_CHARS = frozenset(CREDIT_ALPHABET)
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def credit_check_char(first17: str) -> str:
    total = sum(map(int.__mul__, map(_CREDIT_VALUE.__getitem__, first17), _CREDIT_WEIGHTS))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` is not a valid credit code, or None when it is."""
    if len(code) != 18:
        return f"must be 18 characters (got {len(code)})"
    if not _CREDIT_CHARS.issuperset(code):
        bad = sorted(set(code) - _CREDIT_CHARS)
        return f"contains characters outside the GB 32100 alphabet: {''.join(bad)} (I, O, S, V, Z are never used)"
    expected = credit_check_char(code[:17])
    if code[17] != expected:
        return f"check character should be {expected!r} (got {code[17]!r})"
    return None


def make_credit_code(first17: str) -> str:
    return first17 + credit_check_char(first17)


def citizen_id_problem(number: str) -> str | None:
    """Why `number` is not a valid citizen ID number (GB 11643), or None when it is."""
    if len(number) != 18:
        return f"must be 18 characters (got {len(number)})"
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        return "must be 17 digits followed by a digit or X"
    expected = _ID_CHECK[sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True)) % 11]
    if number[17] != expected:
        return f"check digit should be {expected!r} (got {number[17]!r})"
    return None
