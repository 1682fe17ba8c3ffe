"""Outbox and inbox tables, one pair per service (a service writes only its own tables)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from shared.db import metadata
from shared.models import RegionCodeType

# Keys in `AsyncSession.info`: which service owns the session, and the events it wrote.
SERVICE_KEY = "liangxin_service"
OUTBOX_IDS = "liangxin_outbox_ids"
# Callables (no arguments, awaitable) to run once the session's transaction has committed.
AFTER_COMMIT = "liangxin_after_commit"

SERVICES = ("registry", "coverage", "evaluation")
# Inbox statuses an operator must look at: a consumption that failed, a request refused on its merits.
ATTENTION = ("failed", "refused")
ATTENTION_SQL = "status IN ('failed', 'refused')"


def _outbox(service: str) -> Table:
    name = f"{service}_outbox"
    return Table(
        name,
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
        Column("type", String(80), nullable=False),
        Column("version", Integer, nullable=False, server_default="1"),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("correlation_id", String(64)),
        # json, not jsonb: written once, read once by the relay; no parse on the way in.
        Column("payload", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        # Every subscriber has an inbox row for it: nothing left to deliver.
        Column("completed_at", DateTime(timezone=True)),
        Column("redeliveries", Integer, nullable=False, server_default="0"),
        Index(f"ix_{name}_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
        Index(
            f"ix_{name}_incomplete",
            "published_at",
            postgresql_where=text("completed_at IS NULL AND published_at IS NOT NULL"),
        ),
    )


def _inbox(service: str) -> Table:
    name = f"{service}_inbox"
    return Table(
        name,
        metadata,
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("consumer", String(40), nullable=False),
        Column("event_type", String(80), nullable=False),
        # done | ignored | baseline (counted by a full recompute) | failed | refused
        Column("status", String(10), nullable=False),
        Column("error", Text),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # For a failed or refused event: the smallest region containing what it names, so operators
        # see the failures of their jurisdiction (row-level security; workers, the relay and
        # readiness act for the whole country).
        Column("region_code", RegionCodeType),
        PrimaryKeyConstraint("event_id", "consumer", name=f"pk_{name}"),
        Index(f"ix_{name}_attention", "processed_at", postgresql_where=text(ATTENTION_SQL)),
    )


OUTBOX = {s: _outbox(s) for s in SERVICES}
INBOX = {s: _inbox(s) for s in SERVICES}


def outbox_table(service: str) -> Table:
    return OUTBOX[service]
