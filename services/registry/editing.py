"""One organization at a time, by hand: register it and edit it, through the same merge as imports."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.registry import merge, organizations
from services.registry.merge import Incoming
from services.registry.models import ChangeSource, OrganizationCreate, OrganizationUpdate
from shared.auth import Caller
from shared.concurrency import check_if_match
from shared.errors import ProblemError
from shared.schemas import sent_fields
from shared.visible import check


async def create(session: AsyncSession, *, caller: Caller, body: OrganizationCreate) -> dict[str, Any]:
    """Register one organization (source: manual); 409 when its credit code is registered anywhere."""
    if await organizations.lock_rows(session, codes=[body.credit_code]):
        raise ProblemError(409, f"credit code {body.credit_code} is already registered", code="conflict")
    values = body.model_dump(include=body.model_fields_set - {"credit_code"})
    result = await merge.merge(
        session,
        caller=caller,
        source=ChangeSource.manual,
        incoming=[Incoming(row=0, values=values, credit_code=body.credit_code)],
    )
    org_id = merge.single_result(result)
    return await organizations.get_row(session, caller=caller, org_id=org_id)


async def update(
    session: AsyncSession, *, caller: Caller, org_id: uuid.UUID, body: OrganizationUpdate, if_match: str | None
) -> dict[str, Any]:
    """Change the fields sent, from the version the caller read (If-Match), under the row's lock."""
    rows = await organizations.lock_rows(session, ids=[org_id])
    check(caller, rows[0]["region_code"] if rows else None, kind="organization", key=org_id, what="organization")
    check_if_match(if_match, rows[0]["version"], what="organization")
    values = sent_fields(body)
    result = await merge.merge(
        session, caller=caller, source=ChangeSource.manual, incoming=[Incoming(row=0, values=values, org_id=org_id)]
    )
    merge.single_result(result)
    return await organizations.get_row(session, caller=caller, org_id=org_id)
