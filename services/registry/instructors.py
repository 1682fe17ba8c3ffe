"""Instructors (党建指导员) and their assignments; an organization is `instructed` while one runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.models import (
    AssignmentCreate,
    AssignmentEnd,
    ChangeSource,
    Instructor,
    InstructorAssignment,
    InstructorCreate,
    InstructorPublic,
)
from services.registry.organizations import lock_rows, write_history
from services.registry.queries import insert_row, list_visible
from shared.auth import Caller
from shared.errors import conflict, invalid
from shared.events import CHANGES_PER_EVENT, InstructorChanged, OrgChange, emit_many
from shared.logging import request_id_var
from shared.models import Scope
from shared.pagination import Page, PageParams
from shared.pii import citizen_id_hash, mask_citizen_id, mask_phone
from shared.rules import org_facts
from shared.settings import get_settings
from shared.visible import check, check_reference, load_row


def to_public(row: dict[str, Any], caller: Caller) -> InstructorPublic:
    phone = row.get("phone") if Scope.pii_read in caller.scopes else mask_phone(row.get("phone"))
    return InstructorPublic(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        source=row["source"],
        phone=phone,
        citizen_id=mask_citizen_id(row.get("citizen_id_last4")),
        region_code=row["region_code"],
    )


ACTIVE_TODAY = "start_date <= :today AND (end_date IS NULL OR end_date >= :today)"


async def create(session: AsyncSession, *, caller: Caller, body: InstructorCreate) -> dict[str, Any]:
    caller.check_region(body.region_code)
    if (await session.execute(text("SELECT 1 FROM region WHERE code = :c"), {"c": body.region_code})).first() is None:
        raise invalid("region_code", f"region {body.region_code} is not registered")
    values = body.model_dump(mode="python", exclude={"citizen_id"})
    if body.citizen_id:
        values["citizen_id_hash"] = citizen_id_hash(body.citizen_id, get_settings().pii_hash_key)
        values["citizen_id_last4"] = body.citizen_id[-4:]
    row = {"id": uuid.uuid4(), **values, "created_at": datetime.now(UTC)}
    await insert_row(session, Instructor, row)
    return row


async def get(session: AsyncSession, *, caller: Caller, instructor_id: uuid.UUID) -> dict[str, Any]:
    return await load_row(session, caller, Instructor, instructor_id, what="instructor")


async def list_page(
    session: AsyncSession, *, caller: Caller, region: str | None, page: PageParams, citizen_id: str | None = None
) -> Page[Any]:
    clauses, params = [], {}
    if citizen_id is not None:
        clauses.append("citizen_id_hash = :cid")
        params["cid"] = citizen_id_hash(citizen_id.upper(), get_settings().pii_hash_key)
    rows, cursor = await list_visible(
        session, caller, Instructor, region=region, page=page, clauses=clauses, params=params
    )
    return Page[Any](items=rows, next_cursor=cursor)


async def sync_instructed(
    session: AsyncSession,
    *,
    org_ids: Sequence[uuid.UUID] | None,
    today: date,
    actor: str,
    source: ChangeSource,
    instructor_id: uuid.UUID | None = None,
    assignment_id: uuid.UUID | None = None,
    event: str | None = None,
) -> list[OrgChange]:
    """Bring `instructed` in line with today's assignments (for the given organizations, or all)."""
    if org_ids is None:
        found = await session.execute(
            text(
                "SELECT o.id FROM organization o WHERE o.instructed IS DISTINCT FROM EXISTS ("
                f"SELECT 1 FROM instructor_assignment a WHERE a.organization_id = o.id AND {ACTIVE_TODAY})"
            ),
            {"today": today},
        )
        org_ids = [r.id for r in found]
    if not org_ids:
        return []
    rows = await lock_rows(session, ids=org_ids)
    found = await session.execute(
        text(
            f"SELECT DISTINCT organization_id FROM instructor_assignment WHERE organization_id = ANY(:ids) "
            f"AND {ACTIVE_TODAY}"
        ),
        {"ids": list(org_ids), "today": today},
    )
    instructed_now = {r.organization_id for r in found}
    now = datetime.now(UTC)
    changes, history, flips = [], [], []
    for org in rows:
        after_row = {**org, "instructed": org["id"] in instructed_now}
        formation = org.get("covering_formation")
        if after_row["instructed"] != org["instructed"]:
            flips.append(org["id"])
            history.append(
                (
                    "organization",
                    org["id"],
                    org["region_code"],
                    "instructed" if after_row["instructed"] else "uninstructed",
                    source.value,
                    actor,
                    None,
                    request_id_var.get(),
                    None,
                    now,
                    json.dumps({"instructed": org["instructed"]}),
                    json.dumps({"instructed": after_row["instructed"]}),
                )
            )
        changes.append(
            OrgChange(
                organization_id=org["id"],
                credit_code=org["credit_code"],
                name=org["name"],
                before=org_facts(org, formation),
                after=org_facts(after_row, formation),
            )
        )
    if flips:
        await session.execute(
            text(
                "UPDATE organization SET instructed = NOT instructed, version = version + 1, updated_at = :now "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": flips, "now": now},
        )
    await write_history(session, history)
    if event is not None:
        await emit_many(
            session,
            [
                (event, InstructorChanged(instructor_id=instructor_id, assignment_id=assignment_id, organizations=c))
                for c in _chunks(changes)
            ],
        )
    else:
        # The daily pass over assignments that started or ended: events per direction, each bounded.
        for name, wanted in (("registry.instructor.assigned", True), ("registry.instructor.unassigned", False)):
            moved = [c for c in changes if c.before and c.before.instructed != wanted and c.after.instructed == wanted]
            await emit_many(
                session,
                [
                    (name, InstructorChanged(instructor_id=None, assignment_id=None, organizations=chunk))
                    for chunk in _chunks(moved)
                ],
            )
    return changes


def _chunks(changes: list[OrgChange]) -> list[list[OrgChange]]:
    return [changes[i : i + CHANGES_PER_EVENT] for i in range(0, len(changes), CHANGES_PER_EVENT)]


async def assign(
    session: AsyncSession, *, caller: Caller, instructor_id: uuid.UUID, body: AssignmentCreate
) -> dict[str, Any]:
    instructor = await get(session, caller=caller, instructor_id=instructor_id)
    if body.end_date is not None and body.end_date < body.start_date:
        raise invalid("end_date", "is before start_date")
    orgs = await lock_rows(session, codes=[body.credit_code])
    check_reference(
        caller,
        orgs[0]["region_code"] if orgs else None,
        kind="credit_code",
        key=body.credit_code,
        field="credit_code",
        reason=f"no organization with credit code {body.credit_code} in your jurisdiction",
    )
    org = orgs[0]
    overlap = await session.execute(
        text(
            "SELECT 1 FROM instructor_assignment WHERE instructor_id = :i AND organization_id = :o "
            "AND start_date <= COALESCE(:end, 'infinity'::date) AND COALESCE(end_date, 'infinity'::date) >= :start"
        ),
        {"i": instructor_id, "o": org["id"], "start": body.start_date, "end": body.end_date},
    )
    if overlap.first() is not None:
        raise conflict("this instructor is already assigned to this organization for part of that period")
    row = {
        "id": uuid.uuid4(),
        "instructor_id": instructor["id"],
        "organization_id": org["id"],
        "start_date": body.start_date,
        "end_date": body.end_date,
        "end_reason": None,
        "created_at": datetime.now(UTC),
    }
    await insert_row(session, InstructorAssignment, row)
    today = date.today()
    if body.start_date <= today and (body.end_date is None or body.end_date >= today):
        await sync_instructed(
            session,
            org_ids=[org["id"]],
            today=today,
            actor=caller.label,
            source=ChangeSource.manual,
            instructor_id=instructor["id"],
            assignment_id=row["id"],
            event="registry.instructor.assigned",
        )
    return row


async def end(
    session: AsyncSession, *, caller: Caller, assignment_id: uuid.UUID, body: AssignmentEnd
) -> dict[str, Any]:
    found = await session.execute(
        text(
            "SELECT a.*, i.region_code FROM instructor_assignment a JOIN instructor i ON i.id = a.instructor_id "
            "WHERE a.id = :id FOR UPDATE OF a"
        ),
        {"id": assignment_id},
    )
    found_row = found.mappings().first()
    region_code = found_row["region_code"] if found_row else None
    check(caller, region_code, kind="instructor_assignment", key=assignment_id, what="assignment")
    row = dict(found_row or {})
    if row["end_reason"] is not None:
        raise conflict(f"the assignment already ended on {row['end_date']}")
    if body.end_date < row["start_date"]:
        raise invalid("end_date", f"is before the start date {row['start_date']}")
    await session.execute(
        text("UPDATE instructor_assignment SET end_date = :e, end_reason = :r WHERE id = :id"),
        {"e": body.end_date, "r": body.reason, "id": assignment_id},
    )
    row.update(end_date=body.end_date, end_reason=body.reason)
    await sync_instructed(
        session,
        org_ids=[row["organization_id"]],
        today=date.today(),
        actor=caller.label,
        source=ChangeSource.manual,
        instructor_id=row["instructor_id"],
        assignment_id=assignment_id,
        event="registry.instructor.unassigned",
    )
    return row
