"""The audit log (MLPS 2.0 level 3: 安全审计): append-only, one table per service.

Rows come from three places:
- database triggers on the audited tables record every insert, update and delete with the
  fields before and after (personal fields masked) — whatever code path made the change;
- the request that made a write adds one row naming the operation, its object and its outcome;
- logins, failed logins and refused operations are recorded as they happen.
Who, from where and under which request id come from settings of the transaction
(`liangxin.actor`, `liangxin.request_id`, `liangxin.client_addr`) that the caller dependency
sets. The services' database role may insert and read these tables, never change or delete a
row; old rows are removed only by `liangxin_purge_audit`, which keeps at least 180 days.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database, metadata
from shared.logging import request_id_var
from shared.models import RegionCodeType
from shared.outbox import SERVICES

log = logging.getLogger(__name__)
MASK = "***"
# Request fields that never reach the audit log as they are.
PERSONAL_FIELDS = frozenset({"password", "phone", "citizen_id", "key", "access_token"})


def _audit(service: str) -> Table:
    name = f"{service}_audit"
    return Table(
        name,
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("actor", String(160), nullable=False),
        Column("action", String(200), nullable=False),
        Column("object_type", String(60)),
        Column("object_id", String(200)),
        Column("region_code", RegionCodeType),
        Column("outcome", String(10), nullable=False, server_default="ok"),
        Column("request_id", String(64)),
        Column("client_addr", String(64)),
        Column("before", JSONB(none_as_null=True)),
        Column("after", JSONB(none_as_null=True)),
        Column("detail", Text),
        Index(f"ix_{name}_at", "at"),
        Index(f"ix_{name}_object", "object_id"),
    )


AUDIT = {s: _audit(s) for s in SERVICES}


def masked(value: Any) -> Any:
    """A copy of a request body or parameters with personal fields replaced."""
    if isinstance(value, dict):
        return {k: MASK if k in PERSONAL_FIELDS and v is not None else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value[:50]] + ([f"… {len(value) - 50} more"] if len(value) > 50 else [])
    return value


async def record(
    session: AsyncSession,
    *,
    service: str,
    actor: str,
    action: str,
    outcome: str = "ok",
    object_type: str | None = None,
    object_id: str | None = None,
    region_code: str | None = None,
    client_addr: str | None = None,
    after: Any = None,
    detail: str | None = None,
) -> None:
    values = {
        "actor": actor[:160],
        "action": action[:200],
        "outcome": outcome,
        "object_type": object_type,
        "object_id": object_id,
        "region_code": region_code,
        "request_id": request_id_var.get(),
        "client_addr": client_addr,
        "after": json.dumps(masked(after), default=str, ensure_ascii=False) if after is not None else None,
        "detail": detail,
    }
    # Plain INSERT, no RETURNING: the services' role may append rows it is not allowed to read back.
    await session.execute(
        text(
            f"INSERT INTO {AUDIT[service].name} ({', '.join(values)}) "
            f"VALUES ({', '.join('CAST(:after AS jsonb)' if k == 'after' else ':' + k for k in values)})"
        ),
        values,
    )


async def record_apart(db: Database, **kwargs: Any) -> None:
    """An audit row in a transaction of its own (the request's own one is being rolled back)."""
    try:
        async with db.session() as session:
            await record(session, **kwargs)
    except Exception:
        log.warning("audit row not written", extra={"action": kwargs.get("action"), "outcome": kwargs.get("outcome")})
