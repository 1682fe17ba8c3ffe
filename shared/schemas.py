"""What every request's input must be, in one place: request bodies refuse fields they do not know
(mass assignment, typos), and no text reaches Postgres that it cannot store.

Postgres refuses a NUL character (U+0000) in text and JSON, and an unpaired surrogate cannot be
encoded for it at all; left to the database either answers a 500, or a 422 that names no field
and sinks a whole batch. Checked here instead, each is a 422 naming its field, and in a batch
(a partner import, the field app's visits) only its own row is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Self, TypeVar, get_args

from fastapi import Request
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError
from starlette.datastructures import UploadFile

from shared.errors import invalid, printable

UNSTORABLE = "must not contain NUL (U+0000) or unpaired surrogate characters"
M = TypeVar("M", bound=BaseModel)
_SCALARS = frozenset({bool, int, float, Decimal, uuid.UUID, date, datetime})


def storable(text: str) -> bool:
    """Text Postgres can store."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def all_storable(value: Any) -> bool:
    """Every string in `value`, keys of mappings included, at any depth."""
    return next(_unstorable(value, ()), None) is None


def _unstorable(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Where in `value` text Postgres cannot store sits (a bad key: the mapping holding it)."""
    if value is None or type(value) in _SCALARS:
        return
    if isinstance(value, str):
        if not storable(value):
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not storable(key):
                yield loc
            else:
                yield from _unstorable(item, (*loc, key))
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            yield from _unstorable(item, (*loc, i))
    elif isinstance(value, BaseModel) and not isinstance(value, RequestModel):  # (those check themselves)
        for name, item in value.__dict__.items():
            yield from _unstorable(item, (*loc, name))


class PerItem:
    """Marks a list field whose items the service validates one by one (a bad item is refused on
    its own, the others go in): the body as a whole leaves them alone."""


@cache
def _per_item(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(n for n, f in model.model_fields.items() if any(isinstance(m, PerItem) for m in f.metadata))


class RequestModel(BaseModel):
    """Base of every request body."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _storable_text(self) -> Self:
        # Once per model rather than per field (an import validates 10,000 records), naming each
        # place exactly (`townships[2]`, `scores.team_score`).
        found: list[tuple[str | int, ...]] = []
        for name, value in self.__dict__.items():
            if value is None or type(value) in _SCALARS:
                continue
            if isinstance(value, str):
                if not storable(value):
                    found.append((name,))
            elif name not in _per_item(type(self)):
                found.extend(_unstorable(value, (name,)))
        if found:
            error = PydanticCustomError("unstorable_text", UNSTORABLE)
            raise ValidationError.from_exception_data(
                type(self).__name__, [InitErrorDetails(type=error, loc=loc, input="") for loc in found]
            )
        return self


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


async def storable_parameters(request: Request) -> None:
    """Query, path and form parameters hold text Postgres can store (an app-wide dependency)."""
    found: list[tuple[str, Any]] = [*request.query_params.multi_items(), *request.path_params.items()]
    if request.headers.get("content-type", "").startswith(_FORMS):
        found.extend((await request.form()).multi_items())  # parsed once: FastAPI already read it
    for name, value in found:
        if not isinstance(value, UploadFile) and not (storable(name) and all_storable(value)):
            raise invalid(printable(name), UNSTORABLE)


# A field a PATCH may leave out but not set to null. Its `None` default only stands for "not sent";
# validation still lets an explicit null through, so the schema hides that None (SkipJsonSchema)
# and `sent_fields` refuses the null with a 422 naming the field.
NullHiddenFromSchema = SkipJsonSchema[None]


@cache
def _null_hidden(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` typed `… | NullHiddenFromSchema`."""
    return frozenset(
        name for name, info in model.model_fields.items() if NullHiddenFromSchema in get_args(info.annotation)
    )


def sent_fields(body: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body sent, with their values; 422 `cannot be null` for a null sent to a
    field typed `NullHiddenFromSchema`."""
    values = body.model_dump(exclude_unset=True)
    for key in _null_hidden(type(body)):
        if key in values and values[key] is None:
            raise invalid(key, "cannot be null")
    return values


def from_row(model: type[M], row: Any, **computed: Any) -> M:
    """A response model from a table row: each field read off the row's attribute of the same name,
    except those given in `computed` (what the row does not hold as such: derived, renamed, joined)."""
    values = {name: getattr(row, name) for name in model.model_fields if name not in computed}
    return model.model_validate({**values, **computed})
