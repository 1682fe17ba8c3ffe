"""Officials review field visits: verify (the registry's ledger follows, through an event) or reject
(the surveyor reads the reason at the next sync); organizations found in the field are confirmed
into the registry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.coverage import photos as photo_store
from services.coverage.models import Confirmation, PhotoRef, Visit, VisitPhoto, VisitPublic
from shared import regions
from shared.auth import Caller
from shared.errors import conflict, invalid, not_found
from shared.events import Observation, RegistrationConfirmed, VisitLedgerOutcome, VisitVerified, emit
from shared.pagination import Page, PageParams, trim
from shared.visible import load

# Stable ids for organizations found in the field, so a confirmation names the registry's id.
FOUND_IN_FIELD = uuid.UUID("6f1d3c84-8a1e-4c8e-9d0b-2a6c1f7e5b31")


async def get(session: AsyncSession, *, caller: Caller, visit_id: uuid.UUID, lock: bool = False) -> Visit:
    return await load(session, caller, Visit, visit_id, what="visit", lock=lock)


async def public_many(session: AsyncSession, visits: list[Visit]) -> list[VisitPublic]:
    """Visits as reviewers see them: with their photos (each readable at its `href`), answers,
    paradata and flags."""
    photos: dict[uuid.UUID, list[PhotoRef]] = {v.id: [] for v in visits}
    if visits:
        found = await session.execute(
            text(
                "SELECT visit_id, sha256, content_type, size, file_name FROM visit_photo WHERE visit_id = ANY(:ids) "
                "ORDER BY uploaded_at, sha256"
            ),
            {"ids": list(photos)},
        )
        for r in found:
            photos[r.visit_id].append(
                PhotoRef(
                    sha256=r.sha256,
                    content_type=r.content_type,
                    size=r.size,
                    file_name=r.file_name,
                    href=f"/v1/visits/{r.visit_id}/photos/{r.sha256}",
                )
            )
    return [
        VisitPublic.model_validate(
            {
                **v.model_dump(),
                "photos": photos[v.id],
                "location": {"lat": v.latitude, "lon": v.longitude} if v.latitude is not None else None,
            }
        )
        for v in visits
    ]


async def photo(session: AsyncSession, *, caller: Caller, visit_id: uuid.UUID, sha256: str) -> tuple[bytes, str]:
    """A photo of a visit inside the caller's jurisdiction (404 otherwise, as for a missing one)."""
    visit = await get(session, caller=caller, visit_id=visit_id)
    row = await session.get(VisitPhoto, (visit.id, sha256))
    if row is None:
        raise not_found("photo")
    data = await photo_store.store().get(photo_store.key_of(row.sha256, row.content_type))
    if data is None:
        raise not_found("photo")
    return data, row.content_type


async def list_page(
    session: AsyncSession,
    *,
    caller: Caller,
    campaign_id: uuid.UUID | None,
    review_status: str | None,
    region: str | None,
    registration_status: str | None,
    page: PageParams,
    flagged: bool | None = None,
) -> Page[VisitPublic]:
    if region is not None:
        caller.check_region(region)
    query = select(Visit).where(col(Visit.region_code).startswith(regions.prefix(region or caller.region_code)))
    if campaign_id is not None:
        query = query.where(col(Visit.campaign_id) == campaign_id)
    if review_status is not None:
        query = query.where(col(Visit.review_status) == review_status)
    if registration_status is not None:
        query = query.where(col(Visit.registration_status) == registration_status)
    if flagged is not None:
        query = query.where(text("visit.flags <> '[]'::jsonb") if flagged else text("visit.flags = '[]'::jsonb"))
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(col(Visit.id) > after[0])
    found = list((await session.execute(query.order_by(col(Visit.id)).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda v: (str(v.id),))
    return Page[VisitPublic](items=await public_many(session, rows), next_cursor=cursor)


async def _tell_surveyor(session: AsyncSession, visit: Visit, status: str) -> None:
    if visit.assignment_id is not None:
        await session.execute(
            text(
                "WITH moved AS (UPDATE assignment SET status = :s, version = version + 1, updated_at = now() "
                "WHERE id = :a RETURNING id, surveyor_id) "
                "INSERT INTO mobile_change (surveyor_id, assignment_id, op) SELECT surveyor_id, id, 'upsert' FROM moved"
            ),
            {"s": status, "a": visit.assignment_id},
        )


def _pending(visit: Visit) -> None:
    if visit.review_status != "pending":
        raise conflict(f"the visit was already {visit.review_status} by {visit.reviewed_by}")


async def verify(session: AsyncSession, *, caller: Caller, visit_id: uuid.UUID) -> Visit:
    visit = await get(session, caller=caller, visit_id=visit_id, lock=True)
    _pending(visit)
    visit.review_status, visit.reviewed_by, visit.reviewed_at = "verified", caller.label, datetime.now(UTC)
    if visit.organization_id is not None:
        await emit(
            session,
            "coverage.visit.verified",
            VisitVerified(
                visit_id=visit.id,
                organization_id=visit.organization_id,
                campaign_id=visit.campaign_id,
                round=visit.round,
                visited_at=visit.visited_at,
                verified_by=caller.label,
                verified_in=caller.region_code,
                region_code=visit.region_code,
                observation=Observation.model_validate(visit.observation),
                latitude=visit.latitude,
                longitude=visit.longitude,
            ),
        )
        visit.ledger_status, visit.ledger_error = "pending", None
    else:
        visit.registration_status = "pending"
    await _tell_surveyor(session, visit, "verified")
    await session.flush()
    return visit


async def reject(session: AsyncSession, *, caller: Caller, visit_id: uuid.UUID, reason: str) -> Visit:
    visit = await get(session, caller=caller, visit_id=visit_id, lock=True)
    _pending(visit)
    visit.review_status, visit.reviewed_by, visit.reviewed_at = "rejected", caller.label, datetime.now(UTC)
    visit.reject_reason = reason
    await _tell_surveyor(session, visit, "rejected")
    await session.flush()
    return visit


async def confirm(session: AsyncSession, *, caller: Caller, visit_id: uuid.UUID, body: Confirmation) -> Visit:
    """A verified visit's new organization becomes a registration request to the registry."""
    visit = await get(session, caller=caller, visit_id=visit_id, lock=True)
    if visit.registration_status != "pending":
        reason = (
            "verify the visit first"
            if visit.review_status == "pending" and visit.new_organization
            else "there is no pending registration for this visit"
        )
        raise conflict(reason)
    found: dict[str, Any] = {**(visit.new_organization or {}), **body.model_dump(exclude_none=True)}
    if not caller.can_see(found["region_code"]) or not regions.holds_organizations(found["region_code"]):
        raise invalid("region_code", "must be a township or community inside your jurisdiction")
    if found.get("credit_code"):
        from shared.codes import credit_code_problem

        if (problem := credit_code_problem(found["credit_code"])) is not None:
            raise invalid("credit_code", problem)
        known = await session.execute(
            text("SELECT name FROM organization WHERE credit_code = :c"), {"c": found["credit_code"]}
        )
        if (row := known.first()) is not None:
            raise conflict(f"credit code {found['credit_code']} is already registered as {row.name}")
    organization_id = uuid.uuid5(FOUND_IN_FIELD, str(visit.id))
    await emit(
        session,
        "coverage.registration.confirmed",
        RegistrationConfirmed(
            visit_id=visit.id,
            organization_id=organization_id,
            campaign_id=visit.campaign_id,
            confirmed_by=caller.label,
            name=found["name"],
            kind=found.get("kind", "enterprise"),
            region_code=found["region_code"],
            address=found.get("address"),
            credit_code=found.get("credit_code"),
            industry_code=found.get("industry_code"),
            observation=Observation.model_validate(visit.observation),
        ),
    )
    visit.registration_status, visit.registered_organization_id = "registered", organization_id
    visit.ledger_status, visit.ledger_error = "pending", None
    await session.flush()
    return visit


async def on_ledger_outcome(session: AsyncSession, outcome: VisitLedgerOutcome, *, applied: bool) -> None:
    """The registry's answer reaches the visit: applied, or refused with why (nothing changed there).
    A refused registration goes back to pending, so an official can correct it and confirm again."""
    reasons = "; ".join(f"{e.field}: {e.reason}" for e in outcome.errors) or None
    registration = outcome.request == "registration"
    await session.execute(
        text(
            "UPDATE visit SET ledger_status = :status, ledger_error = :error, "
            "registration_status = CASE WHEN :reopen THEN 'pending' ELSE registration_status END, "
            "registered_organization_id = CASE WHEN :reopen THEN NULL ELSE registered_organization_id END "
            "WHERE id = :id"
        ),
        {
            "status": "applied" if applied else "refused",
            "error": None if applied else reasons,
            "reopen": registration and not applied,
            "id": outcome.visit_id,
        },
    )


async def dismiss(session: AsyncSession, *, caller: Caller, visit_id: uuid.UUID, reason: str) -> Visit:
    visit = await get(session, caller=caller, visit_id=visit_id, lock=True)
    if visit.registration_status != "pending":
        raise conflict("there is no pending registration for this visit")
    visit.registration_status = "dismissed"
    visit.reject_reason = reason
    await session.flush()
    return visit
