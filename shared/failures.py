"""Event consumptions an operator must see: failed ones (to retry) and refused ones (to read why).

A consumer records a failure in its inbox after the last try (`shared.worker`), with the smallest
region containing what the event names. Each service's API shows its own consumer's rows:
- `/readyz` stays 200 but says `degraded` with the number of failed events, and `/metrics`
  exports them as `liangxin_events_failed` and `liangxin_events_refused`;
- `GET /v1/events/failed` lists them to admins, within their jurisdiction;
- `POST /v1/events/{event_id}:retry` delivers a failed event to the consumer again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import regions
from shared.auth import Caller, requires
from shared.db import Database
from shared.deps import SessionDep
from shared.errors import conflict, not_found
from shared.events import CATALOG
from shared.models import Scope
from shared.outbox import AFTER_COMMIT, ATTENTION, ATTENTION_SQL
from shared.pagination import Page, PageDep, PageParams, trim
from shared.relay import reopen

Status = Literal["failed", "refused"]
# Staff admins only (partner keys never hold `admin`); each sees the failures of their jurisdiction.
Admin = Annotated[Caller, requires(Scope.admin)]


class EventFailure(BaseModel):
    event_id: uuid.UUID
    event_type: str
    producer: str
    consumer: str = Field(description="the service whose consumption failed (this one)")
    status: Status = Field(
        description="failed: the consumer could not apply it (retry it once the cause is fixed); "
        "refused: the consumer refused what it asks, on its merits (retrying gives the same answer)"
    )
    reason: str | None = Field(description="the error, or why it was refused (never the data it carried)")
    recorded_at: datetime
    region_code: str = Field(description="the smallest region containing what the event names")


class RetryQueued(BaseModel):
    event_id: uuid.UUID
    event_type: str
    consumer: str
    status: Literal["queued"] = "queued"


async def count(db: Database, service: str) -> dict[str, int]:
    """Failed and refused consumptions of `service`, for readiness and metrics."""
    async with db.session() as session:
        found = await session.execute(
            text(f"SELECT status, count(*) AS n FROM {service}_inbox WHERE {ATTENTION_SQL} GROUP BY status")
        )
        counted = {r.status: int(r.n) for r in found}
    return {status: counted.get(status, 0) for status in ATTENTION}


def _visible(caller: Caller) -> tuple[str, dict[str, Any]]:
    """Rows whose region lies in the caller's jurisdiction (a row without one belongs to the country)."""
    return (
        "starts_with(coalesce(region_code, :root), :prefix)",
        {"root": regions.ROOT_CODE, "prefix": caller.region_prefix},
    )


async def page_of(
    session: AsyncSession, *, service: str, caller: Caller, status: Status, event_type: str | None, page: PageParams
) -> Page[EventFailure]:
    where, params = _visible(caller)
    filters = [where, "status = :status"]
    params |= {"status": status, "limit": page.limit + 1}
    if event_type is not None:
        filters.append("event_type = :type")
        params["type"] = event_type
    if (after := page.after(datetime, uuid.UUID)) is not None:
        filters.append("(processed_at, event_id) > (:after_at, :after_id)")
        params |= {"after_at": after[0], "after_id": after[1]}
    found = await session.execute(
        text(
            "SELECT event_id, event_type, consumer, status, error, processed_at, "
            f"coalesce(region_code, :root) AS region_code FROM {service}_inbox WHERE {' AND '.join(filters)} "
            "ORDER BY processed_at, event_id LIMIT :limit"
        ),
        params,
    )
    rows, cursor = trim(list(found), page, lambda r: (r.processed_at.isoformat(), str(r.event_id)))
    return Page[EventFailure](
        items=[
            EventFailure(
                event_id=r.event_id,
                event_type=r.event_type,
                producer=_producer(r.event_type),
                consumer=r.consumer,
                status=r.status,
                reason=r.error,
                recorded_at=r.processed_at,
                region_code=r.region_code,
            )
            for r in rows
        ],
        next_cursor=cursor,
    )


def _producer(event_type: str) -> str:
    spec = CATALOG.get(event_type)
    return spec.producer if spec else event_type.split(".", 1)[0]


async def retry(
    session: AsyncSession, *, service: str, caller: Caller, event_id: uuid.UUID
) -> tuple[RetryQueued, dict[str, Any]]:
    """Forget a failed consumption and hand back the event's envelope, to be queued after commit."""
    where, params = _visible(caller)
    row = (
        await session.execute(
            text(
                f"SELECT event_type, status FROM {service}_inbox WHERE event_id = :id AND consumer = :consumer "
                f"AND {ATTENTION_SQL} AND {where} FOR UPDATE"
            ),
            {**params, "id": event_id, "consumer": service},
        )
    ).first()
    if row is None:
        raise not_found("failed event")
    if row.status != "failed":
        raise conflict(f"the event was {row.status} on its merits; delivering it again would get the same answer")
    envelope = await reopen(session, _producer(row.event_type), event_id)
    if envelope is None:
        raise conflict("the event is no longer kept by its producer")
    await session.execute(
        text(f"DELETE FROM {service}_inbox WHERE event_id = :id AND consumer = :consumer"),
        {"id": event_id, "consumer": service},
    )
    return RetryQueued(event_id=event_id, event_type=row.event_type, consumer=service), envelope


def events_router(service: str) -> APIRouter:
    """The operators' endpoints of one service's consumer (every service has one)."""
    router = APIRouter(prefix="/v1/events", tags=["operations"])

    @router.get(
        "/failed",
        response_model=Page[EventFailure],
        summary="Events this service failed to consume, or refused (admins, within their jurisdiction)",
        description="Failed events are not retried by themselves any more (the consumer tried "
        "with growing delays first); coverage figures that depend on one say they are `stale`. "
        "Fix the cause, then `POST /v1/events/{event_id}:retry`. Refused events (`status=refused`) are "
        "answers: the reason says why, and the producer was told.",
    )
    async def list_failed(
        session: SessionDep,
        caller: Admin,
        page: PageDep,
        status: Annotated[Status, Query(description="failed (default) or refused")] = "failed",
        event_type: Annotated[str | None, Query(max_length=80, pattern=r"^[a-z]+\.[a-z_]+\.[a-z_]+$")] = None,
    ) -> Page[EventFailure]:
        return await page_of(session, service=service, caller=caller, status=status, event_type=event_type, page=page)

    @router.post(
        "/{event_id}:retry",
        response_model=RetryQueued,
        status_code=202,
        summary="Deliver a failed event to this service's consumer again (admins)",
        description="The failure is forgotten and the event queued again after commit (the relay re-sends it "
        "should that be lost); its consumer applies it once, as any event. 409 for a refused event.",
    )
    async def retry_failed(request: Request, event_id: uuid.UUID, session: SessionDep, caller: Admin) -> RetryQueued:
        queued, envelope = await retry(session, service=service, caller=caller, event_id=event_id)
        publisher = request.app.state.publisher

        async def enqueue() -> None:
            await publisher.enqueue([(service, envelope)], force=True)

        session.info.setdefault(AFTER_COMMIT, []).append(enqueue)
        return queued

    return router
