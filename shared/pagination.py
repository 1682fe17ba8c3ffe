"""Cursor pagination: `limit`, `cursor` in; `items`, `next_cursor` out.

A cursor is the opaque, URL-safe encoding of the sort key of the last row served, so pages
stay stable while rows are inserted, and a page costs an index seek, not an OFFSET scan.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from shared.errors import invalid
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


def decode_cursor(cursor: str, *, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid("cursor", "is not a cursor this API issued") from None
    if not isinstance(values, list) or len(values) != arity:
        raise invalid("cursor", "is not a cursor this API issued")
    return values


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None

    def values(self, arity: int) -> list[Any] | None:
        return None if self.cursor is None else decode_cursor(self.cursor, arity=arity)


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
