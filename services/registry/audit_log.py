"""`GET /v1/audit`: the audit log of all three services, for auditors (审计员), within their jurisdiction.

The rows are written by database triggers, by the request that made a write, by logins and
refused operations (see `shared.audit`), and by attempts on other jurisdictions
(`shared.refusals`). This endpoint only reads them; nothing can change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.audit import AUDIT
from shared.auth import Caller, requires
from shared.deps import SessionDep
from shared.errors import PROBLEM_RESPONSES, invalid
from shared.models import Scope
from shared.pagination import Page, PageDep, PageParams, trim

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["audit"])
Auditor = Annotated[Caller, requires(Scope.audit_read)]
Service = Literal["registry", "coverage", "evaluation"]


class AuditEntry(BaseModel):
    service: Service
    id: int
    at: datetime
    actor: str = Field(description="`user:<name>`, `api_key:<name>` or `system:<process>`")
    action: str = Field(description="`POST /v1/...` for a request; `insert`/`update`/`delete` for a row; `login`")
    object_type: str | None
    object_id: str | None
    region_code: str | None
    outcome: str = Field(
        description="`ok`, `failed` (a login), `denied` (an operation refused for want of a permission) or "
        "`refused` (an attempt on another jurisdiction's object or region, answered as if it did not exist)"
    )
    request_id: str | None
    client_addr: str | None
    before: Any = Field(description="changed fields before (personal fields masked)")
    after: Any = Field(description="changed fields after (personal fields masked)")
    detail: str | None


@router.get(
    "/audit",
    response_model=Page[AuditEntry],
    summary="Read the audit log of all services (newest first), within your jurisdiction",
)
async def list_audit(
    session: SessionDep,
    caller: Auditor,
    page: PageDep,
    service: Service | None = None,
    actor: Annotated[str | None, Query(max_length=160, description="exact actor, e.g. `user:zhang`")] = None,
    action: Annotated[str | None, Query(max_length=200, description="actions starting with this")] = None,
    object_id: Annotated[str | None, Query(max_length=200)] = None,
    outcome: Literal["ok", "failed", "denied", "refused"] | None = None,
    since: Annotated[datetime | None, Query(alias="from", description="at or after this time")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="before this time")] = None,
) -> Page[AuditEntry]:
    return await read(
        session,
        caller=caller,
        page=page,
        flt=AuditFilter(
            service=service, actor=actor, action=action, object_id=object_id, outcome=outcome, since=since, until=until
        ),
    )


@dataclass(frozen=True)
class AuditFilter:
    service: Service | None = None
    actor: str | None = None
    action: str | None = None
    object_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def read(session: AsyncSession, *, caller: Caller, flt: AuditFilter, page: PageParams) -> Page[AuditEntry]:
    """Audit rows of the chosen services inside the caller's jurisdiction, newest first."""
    since, until, action = flt.since, flt.until, flt.action
    if since and until and since >= until:
        raise invalid("to", "must be after `from`")
    clauses: list[str] = ["TRUE"]
    params: dict[str, Any] = {"limit": page.limit + 1}
    if prefix := caller.region_prefix:
        # Rows without a region (a failed login for an unknown name) are for the national level.
        clauses.append("region_code LIKE :prefix")
        params["prefix"] = prefix + "%"
    for name, value, sql in (
        ("actor", flt.actor, "actor = :actor"),
        ("action", action, "action LIKE :action"),
        ("object_id", flt.object_id, "object_id = :object_id"),
        ("outcome", flt.outcome, "outcome = :outcome"),
        ("since", since, "at >= :since"),
        ("until", until, "at < :until"),
    ):
        if value is not None:
            clauses.append(sql)
            params[name] = value
    if action is not None:
        params["action"] = action.replace("%", r"\%").replace("_", r"\_") + "%"
    if (after := page.after(datetime, str, int)) is not None:
        params["c_at"], params["c_service"], params["c_id"] = after
        clauses.append("(at, {service}, id) < (:c_at, :c_service, :c_id)")
    where = " AND ".join(clauses)
    services = [flt.service] if flt.service else list(AUDIT)
    union = " UNION ALL ".join(
        f"(SELECT '{s}' AS service, * FROM {AUDIT[s].name} WHERE {where.replace('{service}', repr(s))} "
        "ORDER BY at DESC, id DESC LIMIT :limit)"
        for s in services
    )
    found = await session.execute(
        text(f"SELECT * FROM ({union}) u ORDER BY at DESC, service DESC, id DESC LIMIT :limit"), params
    )
    rows = [AuditEntry.model_validate(dict(r)) for r in found.mappings()]
    items, cursor = trim(rows, page, key=lambda e: (e.at.isoformat(), e.service, e.id))
    return Page[AuditEntry](items=items, next_cursor=cursor)
