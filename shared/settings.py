"""Configuration for every Liangxin process, read from `LIANGXIN_*` variables and `.env`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that must never protect a real deployment.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "changethis",
        "secret",
        "password",
        "dev",
        "development",
        "development-only-secret",
        "test",
        "test-secret",
    }
)
MIN_SECRET_LENGTH = 32
# Estimated bits (`secret_bits`) a production secret needs: a random 32-character hex string (128
# bits) always passes (its estimate stayed above 95 over 20,000 draws), a repetition, a run or a
# handful of characters repeated (`aaaa…`, `0123…`, `abcabc…`, `password` × 4) does not.
MIN_SECRET_BITS = 80


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIANGXIN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A refused setting must not print what was given: it may be (part of) a secret.
        hide_input_in_errors=True,
    )

    env: Environment = Environment.development
    database_url: str | None = Field(
        default=None,
        description="Postgres URL (postgresql:// or postgresql+asyncpg://). "
        "Unset under `liangxin dev`: an embedded Postgres is started.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL. Unset under `liangxin dev`: an embedded Redis is started.",
    )
    jwt_secret: str = Field(default="development-only-secret", description="HS256 key for tokens")
    api_key_pepper: str = Field(default="development-only-secret", description="HMAC key for stored API key hashes")
    pii_hash_key: str = Field(default="development-only-secret", description="HMAC key for citizen ID hashes")
    access_token_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 60
    metrics_token: str | None = Field(
        default=None,
        description="bearer token GET /metrics requires; unset: /metrics is open in development and "
        "test, and answers 404 in production",
    )
    data_dir: Path = Field(default=Path(".liangxin"), description="Embedded stack data folder")

    log_level: str = "INFO"
    log_json: bool = True

    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    db_statement_timeout_ms: Annotated[int, Field(ge=100)] = 30_000

    queue_prefix: str = Field(default="liangxin", pattern=r"^[a-z0-9_.:-]{1,40}$")
    event_job_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 60
    relay_interval_s: Annotated[float, Field(gt=0, le=300)] = 2.0
    redelivery_after_s: Annotated[int, Field(ge=1)] = 300
    relay_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500

    page_size_default: Annotated[int, Field(ge=1)] = 50
    page_size_max: Annotated[int, Field(ge=1)] = 500

    registry_port: int = 8001
    coverage_port: int = 8002
    evaluation_port: int = 8003
    embedded_pg_port: int = 55432
    embedded_redis_port: int = 56379

    scope_enterprise_min_employees: int = Field(
        default=10, ge=0, description="摸排范围: an enterprise needs at least this many employees"
    )
    scope_social_org_min_staff: int = Field(
        default=30, ge=0, description="摸排范围: a social organization below this staff count is in scope only by level"
    )
    scope_social_org_levels: list[str] = Field(
        default=["national", "province"], description="registration levels that put a social organization in scope"
    )
    establishment_due_days: int = Field(
        default=30, ge=1, le=366, description="days a new registration's establishment task (双落地) has"
    )
    batch_job_timeout_s: int = Field(
        default=180, ge=5, le=7200, description="arq timeout of long jobs (recompute, rescope, funding)"
    )
    rectification_max_stars: int = Field(
        default=2, ge=0, le=5, description="整转: an approved star rating at or below this opens a rectification"
    )
    rectification_due_days: int = Field(
        default=180, ge=1, le=3660, description="days a rectification has before it is overdue"
    )
    visit_batch_max: int = Field(default=500, ge=1, le=5000, description="visits per mobile batch")
    photo_dir: Path | None = Field(default=None, description="where visit photos are kept (default: <data_dir>/photos)")
    photo_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="largest visit photo")
    photo_max_pixels: int = Field(default=40_000_000, ge=10_000, description="largest visit photo, in pixels")
    # Where photos are kept: `local` (a folder, photo_dir: `liangxin dev` and tests) or `s3` (any
    # S3-compatible object store: MinIO in compose, the cloud's object storage in Kubernetes).
    photo_store: str = Field(default="local", pattern=r"^(local|s3)$", description="local | s3")
    s3_endpoint_url: str | None = Field(default=None, description="e.g. http://minio:9000 (unset: AWS's own)")
    s3_bucket: str = Field(default="liangxin-photos", description="bucket of visit photos")
    s3_region: str = Field(default="us-east-1", description="the object store's region")
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Paradata: what makes a visit suspicious (flagged for reviewers, never refused).
    visit_flag_distance_m: float = Field(default=1000, gt=0, description="farther than this from the organization")
    visit_flag_min_seconds: int = Field(default=60, ge=0, description="a form filled in faster than this")
    visit_flag_device_visits: int = Field(default=6, ge=2, description="this many visits from one phone …")
    visit_flag_device_minutes: int = Field(default=10, ge=1, description="… within this many minutes")
    # Phones: a refresh token bound to a registered device (access tokens stay short).
    refresh_token_days: int = Field(default=30, ge=1, le=365, description="life of a device's refresh token")
    import_max_records: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    # An upload is read in a process of its own, killed past the time limit; a workbook is refused
    # before it is read when its zip directory declares too much (a zip bomb unpacks 100-fold or more).
    upload_parse_timeout_s: float = Field(default=30.0, gt=0, le=600, description="time to read one uploaded file")
    upload_parse_concurrency: int = Field(default=2, ge=1, le=64, description="uploads read at once per process")
    upload_max_unpacked_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="an XLSX unpacked")
    upload_max_compression_ratio: float = Field(default=100.0, gt=1, description="an XLSX's unpacked / packed size")
    upload_max_zip_members: int = Field(default=200, ge=1, description="files inside one XLSX")
    upload_max_columns: int = Field(default=100, ge=4, le=16_384, description="columns of an uploaded table")
    upload_max_bytes: Annotated[int, Field(ge=1024)] = 20 * 1024 * 1024
    funding_annual_month: int = Field(default=1, ge=1, le=12, description="month of the annual funding computation")
    funding_annual_day: int = Field(
        default=2, ge=1, le=28, description="day of the annual funding computation (of the year just ended)"
    )
    funding_annual_hour: int = Field(default=3, ge=0, le=23, description="hour of the annual funding computation")

    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, description="largest request body")
    rate_limit_per_minute: int = Field(default=600, ge=1, description="requests a minute per staff user")
    api_key_rate_limit_per_minute: int = Field(default=3000, ge=1, description="requests a minute per API key")
    login_max_failures: int = Field(default=5, ge=1, description="failed logins before an account is held")
    login_lock_s: int = Field(default=900, ge=1, description="how long failed logins are remembered")
    audit_retention_days: int = Field(default=365, ge=180, description="audit log kept at least this long")
    db_role: str = Field(
        default="liangxin_app",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$",
        description="role the services act as (row-level security applies to it); empty: the login role",
    )

    bootstrap_admin_username: str = "admin"
    bootstrap_admin_password: str | None = None

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str | None) -> str | None:
        return None if value is None else to_asyncpg_url(value)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.env is Environment.production:
            for name in ("jwt_secret", "api_key_pepper", "pii_hash_key", "metrics_token", "s3_secret_access_key"):
                value = getattr(self, name) or ""
                if not value and name == "metrics_token":
                    continue  # optional: without it /metrics is off
                if name == "s3_secret_access_key" and self.photo_store != "s3":
                    continue  # only the S3 photo store uses it
                # The message names the setting and the rule, never the value or a part of it.
                if value.lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LENGTH:
                    raise ValueError(
                        f"LIANGXIN_{name.upper()} must be set to a random value of at least "
                        f"{MIN_SECRET_LENGTH} characters in production"
                    )
                if secret_bits(value) < MIN_SECRET_BITS:
                    raise ValueError(
                        f"LIANGXIN_{name.upper()} is too predictable (repeated or sequential characters, or too "
                        "few different ones): generate it, e.g. with `openssl rand -hex 32`"
                    )
            if not self.database_url or not self.redis_url:
                raise ValueError("LIANGXIN_DATABASE_URL and LIANGXIN_REDIS_URL are required in production")
            if self.photo_store == "s3" and not self.s3_access_key_id:
                raise ValueError("LIANGXIN_S3_ACCESS_KEY_ID is required with LIANGXIN_PHOTO_STORE=s3")
        return self

    def queue_name(self, service: str) -> str:
        """Name of the arq queue a service consumes."""
        return f"{self.queue_prefix}:{service}"


def secret_bits(value: str) -> float:
    """A rough upper bound of a secret's entropy: the Shannon entropy of its characters, and of the
    steps between neighbouring characters (a run like `abcd…` has one step), whichever is lower,
    times the length of its shortest repeating unit (`abcabc…` counts as `abc`). It cannot tell a
    memorable phrase from a random string; it stops repetitions, runs and low variety."""
    unit = value[: _period(value)]
    steps = [ord(b) - ord(a) for a, b in pairwise(unit)]
    return min(_shannon(unit), _shannon(steps)) * len(unit)


def _period(value: str) -> int:
    return next(
        (p for p in range(1, len(value)) if all(value[i] == value[i - p] for i in range(p, len(value)))), len(value)
    )


def _shannon(items: Sequence[object]) -> float:
    counts = Counter(items)
    return sum(n / len(items) * math.log2(len(items) / n) for n in counts.values())


def to_asyncpg_url(url: str) -> str:
    """Normalise any Postgres URL to the SQLAlchemy asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("must be a postgresql:// URL")


def to_libpq_url(url: str) -> str:
    """The same URL for asyncpg.connect / psql, without the SQLAlchemy dialect."""
    return to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
