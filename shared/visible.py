"""Load one object the caller may see, or answer 404: the one way every service does it.

An object outside the caller's jurisdiction answers exactly as one that does not exist (the same
404 `<what> not found`), and the attempt is noted for the audit log (`shared.refusals.suspect`), so
every such refusal is audited the same way whether the object was named in the path, the body or
a query. What "may see" means is `shared.refusals.outside`: inside the jurisdiction, or, for
reference data issued above it (templates, cycles, rule sets), on the way up to it.

- `load(session, caller, Model, id, what=...)`: an ORM row by primary key (optionally locked).
- `load_row(session, caller, Model, value, what=..., column=...)`: the same as a plain mapping, for
  the registry's tables whose logic works on rows as mappings (see `services/registry/models.py`).
- `check(caller, region_code, kind=..., key=..., what=...)`: the rule alone, for rows read otherwise.
- `check_reference(...)`: the rule for an object a request body names, answered as a 422 naming the field;
  `refused_row(...)`: the same for one row of a batch that answers row by row.
- `load_region(session, caller, code)`: a registered region inside the jurisdiction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import refusals
from shared.auth import Caller
from shared.errors import ProblemError, invalid, not_found
from shared.models import Region

M = TypeVar("M")


def refused(kind: str, key: object, what: str) -> ProblemError:
    """The 404 of an object that is missing or outside the jurisdiction, the attempt noted."""
    refusals.suspect(kind, key)
    return not_found(what)


def check(caller: Caller, region_code: str | None, *, kind: str, key: object, what: str) -> None:
    """404 (noted) unless an object of `kind` lying in `region_code` is visible to the caller;
    `region_code` None means it was not found."""
    if region_code is None or refusals.outside(caller, kind, region_code):
        raise refused(kind, key, what)


def refused_row(caller: Caller, region_code: str | None, *, kind: str, key: object) -> bool:
    """The same rule for one row of a batch answered row by row: True (the attempt noted) when the
    object is missing or outside the jurisdiction, and the caller's code answers that row's error."""
    if region_code is None or refusals.outside(caller, kind, region_code):
        refusals.suspect(kind, key)
        return True
    return False


def check_reference(
    caller: Caller, region_code: str | None, *, kind: str, key: object, field: str, reason: str
) -> None:
    """The same rule for an object a request body names: a 422 naming `field` (noted for the audit
    log) unless it exists and the caller may see it."""
    if refused_row(caller, region_code, kind=kind, key=key):
        raise invalid(field, reason)


def _kind(model: Any, kind: str | None) -> str:
    return kind or model.__tablename__


async def load(
    session: AsyncSession,
    caller: Caller,
    model: type[M],
    key: Any,
    *,
    what: str,
    kind: str | None = None,
    lock: bool = False,
    region: Callable[[M], str] = lambda row: row.region_code,  # type: ignore[attr-defined]
) -> M:
    """The row of `model` with primary key `key`, or 404. `kind` names it for the refusal log
    (`shared.refusals.KINDS`; default: the table's name); `region` says where the row lies."""
    row = await session.get(model, key, with_for_update=lock)
    check(caller, None if row is None else region(row), kind=_kind(model, kind), key=key, what=what)
    assert row is not None
    return row


async def load_row(
    session: AsyncSession,
    caller: Caller,
    model: Any,
    value: Any,
    *,
    what: str,
    kind: str | None = None,
    column: str = "id",
    lock: bool = False,
) -> dict[str, Any]:
    """The row of `model`'s table whose `column` equals `value`, as a mapping, or 404."""
    table = model.__table__
    query = select(table).where(table.c[column] == value)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    check(caller, None if row is None else row["region_code"], kind=_kind(model, kind), key=value, what=what)
    assert row is not None
    return dict(row)


async def load_region(session: AsyncSession, caller: Caller, code: str | None) -> Region:
    """A registered region the caller may act in (default: its own), else 404 `region not found`."""
    code = code or caller.region_code
    caller.check_region(code)
    region = await session.get(Region, code)
    if region is None:
        raise not_found("region")
    return region
