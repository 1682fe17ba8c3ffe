"""Cursor pagination: `limit`, `cursor` in; `items`, `next_cursor` out.

A cursor is the opaque, URL-safe encoding of the sort key of the last row served, so pages
stay stable while rows are inserted, and a page costs an index seek, not an OFFSET scan.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar, overload

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from shared.errors import invalid
from shared.schemas import storable
from shared.settings import get_settings

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page"
    )


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Postgres' bigint: every integer key of a cursor (ids, sequence numbers, transaction ids) fits.
_BIGINT = (-(2**63), 2**63 - 1)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not storable(value):
        raise ValueError
    return value


def _integer(value: Any) -> int:
    if type(value) is not int or not _BIGINT[0] <= value <= _BIGINT[1]:
        raise ValueError
    return value


def _moment(value: Any) -> datetime:
    at = datetime.fromisoformat(_text(value))
    if at.tzinfo is None:
        raise ValueError
    return at.astimezone(UTC)  # OverflowError at the ends of the calendar


_KEYS: dict[type, Callable[[Any], Any]] = {
    str: _text,
    int: _integer,
    uuid.UUID: lambda v: uuid.UUID(_text(v)),
    datetime: _moment,
    date: lambda v: date.fromisoformat(_text(v)),
}

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


@overload
def decode_cursor(cursor: str, a: type[A], /, *, field: str = ...) -> tuple[A]: ...
@overload
def decode_cursor(cursor: str, a: type[A], b: type[B], /, *, field: str = ...) -> tuple[A, B]: ...
@overload
def decode_cursor(cursor: str, a: type[A], b: type[B], c: type[C], /, *, field: str = ...) -> tuple[A, B, C]: ...
def decode_cursor(cursor: str, *keys: type, field: str = "cursor") -> tuple[Any, ...]:
    """The typed sort key a cursor carries, or a 422 naming `field`: a cursor is input like any
    other, so one that this API did not issue (forged, truncated, of another list) never reaches
    SQL. `keys` are the types of the key, in order: `str`, `int` (a bigint), `uuid.UUID`,
    `datetime` (with a time zone) or `date`."""
    return _decode(cursor, keys, field)


def _decode(cursor: str, keys: tuple[type, ...], field: str) -> tuple[Any, ...]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        values = json.loads(raw, parse_constant=_no_constant)
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError
        return tuple(_KEYS[kind](value) for kind, value in zip(keys, values, strict=True))
    except (binascii.Error, ValueError, TypeError, OverflowError, UnicodeError):
        raise invalid(field, "is not a cursor this API issued") from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON, and no key of ours


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None

    @overload
    def after(self, a: type[A], /) -> tuple[A] | None: ...
    @overload
    def after(self, a: type[A], b: type[B], /) -> tuple[A, B] | None: ...
    @overload
    def after(self, a: type[A], b: type[B], c: type[C], /) -> tuple[A, B, C] | None: ...
    def after(self, *keys: type) -> tuple[Any, ...] | None:
        """The sort key of the last row served (of the types given), or None on the first page."""
        return None if self.cursor is None else _decode(self.cursor, keys, "cursor")


def page_params(
    limit: Annotated[int | None, Query(ge=1, description="Page size (capped by the server)")] = None,
    cursor: Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page")] = None,
) -> PageParams:
    settings = get_settings()
    if limit is None:
        limit = settings.page_size_default
    if limit > settings.page_size_max:
        raise invalid("limit", f"must be at most {settings.page_size_max}")
    return PageParams(limit=limit, cursor=cursor)


PageDep = Annotated[PageParams, Depends(page_params)]


def trim(rows: list[T], params: PageParams, key: Callable[[T], tuple[Any, ...]]) -> tuple[list[T], str | None]:
    """Given up to `limit + 1` rows in key order: the page's rows and the cursor of the next page."""
    if len(rows) <= params.limit:
        return rows, None
    rows = rows[: params.limit]
    return rows, encode_cursor(*key(rows[-1]))
