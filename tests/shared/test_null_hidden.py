"""PATCH fields that may be left out but not nulled: hidden from the schema, refused when sent."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field

from shared.errors import ProblemError
from shared.schemas import NullHiddenFromSchema, RequestModel, sent_fields


class Edit(RequestModel):
    name: Annotated[str, Field(min_length=1)] | NullHiddenFromSchema = None
    note: str | None = None


def test_the_schema_offers_no_null_where_the_service_refuses_one() -> None:
    schema = Edit.model_json_schema()["properties"]
    assert schema["name"]["type"] == "string" and "anyOf" not in schema["name"]
    assert {"type": "null"} in schema["note"]["anyOf"]


def test_a_null_is_refused_naming_the_field_and_a_nullable_one_passes() -> None:
    assert sent_fields(Edit.model_validate({"note": None})) == {"note": None}
    assert sent_fields(Edit.model_validate({"name": "x"})) == {"name": "x"}
    with pytest.raises(ProblemError) as refused:
        sent_fields(Edit.model_validate({"name": None}))
    assert refused.value.status == 422
    assert [(e.field, e.reason) for e in refused.value.errors] == [("name", "cannot be null")]
