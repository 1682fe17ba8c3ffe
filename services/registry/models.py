"""Registry tables and I/O schemas."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.models import Region, Role

__all__ = ["Region"]


class StrictModel(BaseModel):
    """Request bodies refuse fields they do not know (mass assignment, typos)."""

    model_config = ConfigDict(extra="forbid")


class RowError(BaseModel):
    row: int = Field(description="0-based index of the record in the request")
    field: str
    reason: str


class RegionRecord(StrictModel):
    # Checked per record, so one malformed code rejects its row, not the batch.
    code: Annotated[str, Field(max_length=20, examples=["430723000000"])]
    name: Annotated[str, Field(min_length=1, max_length=100, examples=["澧县"])]


class RegionImport(StrictModel):
    records: Annotated[list[RegionRecord], Field(min_length=1, max_length=20_000)]


class ImportResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[RowError]


class RegionPublic(BaseModel):
    code: str
    name: str
    level: int
    parent_code: str | None


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreate(StrictModel):
    username: Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    password: Annotated[str, Field(min_length=10, max_length=200)]
    role: Role
    region_code: Annotated[str, Field(pattern=r"^\d{12}$")]
    display_name: Annotated[str, Field(max_length=100)] = ""


class UserPublic(BaseModel):
    id: str
    username: str
    display_name: str
    role: Role
    region_code: str
    is_active: bool


class ApiKeyCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[str], Field(min_length=1, max_length=10)]
    region_code: Annotated[str, Field(pattern=r"^\d{12}$")]


class ApiKeyCreated(BaseModel):
    id: str
    name: str
    scopes: list[str]
    region_code: str
    key: str = Field(description="The full key. Shown once: only a hash is stored.")
