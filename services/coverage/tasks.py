"""组建攻坚: establishment tasks, from gaps or from a new registration (双落地), completed by the registry."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.coverage.gaps import recommend, uncovered
from services.coverage.models import (
    EstablishmentTask,
    EstablishmentTaskMember,
    TaskMemberPublic,
    TaskPublic,
    TasksCreated,
    TasksFromGaps,
    TaskStatus,
    TaskUpdate,
)
from services.coverage.service import region_ref
from shared import locks, regions
from shared.auth import Caller
from shared.concurrency import check_if_match
from shared.errors import conflict, invalid
from shared.events import OrgChange
from shared.locks import Namespace
from shared.pagination import Page, PageParams, trim
from shared.rules import counted, counted_sql, org_covered, org_covered_sql
from shared.schemas import from_row, sent_fields
from shared.settings import get_settings
from shared.visible import load

LIVE = (TaskStatus.open.value, TaskStatus.in_progress.value)
# What an official may move a task to; completion comes only from the registry.
TRANSITIONS = {
    TaskStatus.open.value: {TaskStatus.in_progress.value, TaskStatus.cancelled.value},
    TaskStatus.in_progress.value: {TaskStatus.open.value, TaskStatus.cancelled.value},
}


async def lock_organizations(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Serialize task work per organization: a task being created and the event covering its
    organization otherwise race, and the task could stay open for an organization already covered."""
    await locks.lock_all(session, Namespace.establishment_task_org, (str(i) for i in ids))


async def to_public_many(session: AsyncSession, tasks: Sequence[EstablishmentTask], today: date) -> list[TaskPublic]:
    members: dict[uuid.UUID, list[TaskMemberPublic]] = {t.id: [] for t in tasks}
    if tasks:
        found = await session.execute(
            select(EstablishmentTaskMember)
            .where(col(EstablishmentTaskMember.task_id).in_(list(members)))
            .order_by(col(EstablishmentTaskMember.name))
        )
        for m in found.scalars():
            members[m.task_id].append(
                TaskMemberPublic(
                    organization_id=m.organization_id, credit_code=m.credit_code, name=m.name, covered_at=m.covered_at
                )
            )
    return [
        from_row(TaskPublic, t, overdue=t.status in LIVE and t.due_date < today, members=members[t.id]) for t in tasks
    ]


@dataclass
class Plan:
    """A task to create: for one organization, or for a proposed joint group."""

    region_code: str
    title: str
    formation: str
    reason: str
    members: list[dict[str, Any]]


async def _create_many(
    session: AsyncSession,
    *,
    plans: Sequence[Plan],
    origin: str,
    responsible_unit: str | None,
    due_date: date,
    created_by: str,
) -> tuple[list[uuid.UUID], int]:
    """Tasks for organizations not already in a live task and still uncovered; a plan left with none
    creates nothing. Set-based (a registration event brings up to 500 organizations): a fixed number
    of statements whatever the number of plans. Returns the ids created and the organizations skipped."""
    ids = [m["id"] for plan in plans for m in plan.members]
    if not ids:
        return [], 0
    await lock_organizations(session, ids)
    # Look again now that nothing else about these organizations can run: the registry may have
    # covered one since the gap list (or the registration event) was read.
    found = await session.execute(
        text(f"SELECT id FROM organization WHERE id = ANY(:ids) AND {counted_sql()} AND NOT {org_covered_sql()}"),
        {"ids": ids},
    )
    still = {r.id for r in found}
    task_of: dict[uuid.UUID, Plan] = {}
    members: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for plan in plans:
        kept = [m for m in plan.members if m["id"] in still]
        if kept:
            task_id = uuid.uuid4()
            task_of[task_id] = plan
            members += [(task_id, m) for m in kept]
    if not task_of:
        return [], len(ids)
    task_ids = list(task_of)
    await session.execute(
        text(
            "INSERT INTO establishment_task (id, region_code, title, recommended_formation, reason, origin, "
            "responsible_unit, due_date, status, created_by, version, created_at, updated_at) "
            "SELECT t.id, t.region_code, t.title, t.formation, t.reason, :origin, :unit, :due, 'open', :by, 1, "
            "now(), now() FROM unnest(CAST(:ids AS uuid[]), CAST(:regions AS text[]), CAST(:titles AS text[]), "
            "CAST(:formations AS text[]), CAST(:reasons AS text[])) AS t(id, region_code, title, formation, reason)"
        ),
        {
            "ids": task_ids,
            "regions": [task_of[t].region_code for t in task_ids],
            "titles": [task_of[t].title for t in task_ids],
            "formations": [task_of[t].formation for t in task_ids],
            "reasons": [task_of[t].reason for t in task_ids],
            "origin": origin,
            "unit": responsible_unit,
            "due": due_date,
            "by": created_by,
        },
    )
    claimed = await session.execute(
        text(
            "INSERT INTO establishment_task_member (task_id, organization_id, credit_code, name, active) "
            "SELECT t, o, c, n, true FROM unnest(CAST(:tasks AS uuid[]), CAST(:orgs AS uuid[]), "
            "CAST(:codes AS text[]), CAST(:names AS text[])) AS m(t, o, c, n) "
            "ON CONFLICT (organization_id) WHERE active DO NOTHING RETURNING task_id, organization_id"
        ),
        {
            "tasks": [t for t, _ in members],
            "orgs": [m["id"] for _, m in members],
            "codes": [m["credit_code"] for _, m in members],
            "names": [m["name"] for _, m in members],
        },
    )
    rows = claimed.all()
    made = {r.task_id for r in rows}
    if empty := [t for t in task_ids if t not in made]:
        await session.execute(text("DELETE FROM establishment_task WHERE id = ANY(:ids)"), {"ids": empty})
    return [t for t in task_ids if t in made], len(ids) - len(rows)


async def from_gaps(session: AsyncSession, *, caller: Caller, body: TasksFromGaps, today: date) -> TasksCreated:
    root = await region_ref(session, caller, body.region_code)
    if body.due_date < today:
        raise invalid("due_date", "is in the past")
    rows = await uncovered(session, region_code=root.code, kind=body.kind)
    gaps, groups = recommend(rows)
    by_id = {r["id"]: r for r in rows}
    plans: list[Plan] = []
    grouped: set[uuid.UUID] = set()
    if body.per == "joint_group":
        for group in groups:
            members = [by_id[i] for i in group.organization_ids]
            grouped.update(group.organization_ids)
            reason = f"拟{group.label}：" + "、".join(group.names)
            plans.append(Plan(group.region_code, group.label, "joint", reason, members))
    for gap in gaps:
        if gap.organization_id in grouped:
            continue
        plans.append(
            Plan(
                gap.region_code,
                f"{gap.name}：组建党组织",
                gap.recommended_formation,
                gap.reason,
                [by_id[gap.organization_id]],
            )
        )
    made, skipped = await _create_many(
        session,
        plans=plans,
        origin="gap",
        responsible_unit=body.responsible_unit,
        due_date=body.due_date,
        created_by=caller.label,
    )
    created: list[EstablishmentTask] = []
    if made:
        wanted = any_(bindparam("made", made, type_=ARRAY(UUID(as_uuid=True))))
        found = await session.execute(select(EstablishmentTask).where(col(EstablishmentTask.id) == wanted))
        order = {t: i for i, t in enumerate(made)}
        created = sorted(found.scalars(), key=lambda t: order[t.id])
    return TasksCreated(created=len(created), skipped=skipped, tasks=await to_public_many(session, created, today))


async def on_registered(session: AsyncSession, changes: Sequence[OrgChange], today: date) -> int:
    """双落地: a newly registered in-scope organization without a party organization gets a task at once."""
    plans = []
    for change in changes:
        facts = change.after
        if not counted(facts.status, facts.in_scope) or org_covered(facts):
            continue
        # One organization at a time: a registration is not grouped with others.
        gap, _ = recommend(
            [
                {
                    "id": change.organization_id,
                    "credit_code": change.credit_code,
                    "name": change.name,
                    "kind": facts.kind,
                    "region_code": facts.region_code,
                    "area_id": facts.area_id,
                    "industry_code": facts.industry_code,
                    "sector": facts.sector,
                    "formal_members": facts.formal_members,
                    "instructed": facts.instructed,
                    "group_org": facts.group_org,
                    "area_name": None,
                    "township_name": None,
                }
            ]
        )
        member = {"id": change.organization_id, "credit_code": change.credit_code, "name": change.name}
        plans.append(
            Plan(
                facts.region_code,
                f"{change.name}：新登记，同步组建党组织（双落地）",
                gap[0].recommended_formation,
                gap[0].reason,
                [member],
            )
        )
    made, _ = await _create_many(
        session,
        plans=plans,
        origin="registration",
        responsible_unit=None,
        due_date=today + timedelta(days=get_settings().establishment_due_days),
        created_by="system:registration",
    )
    return len(made)


async def on_covered(session: AsyncSession, changes: Sequence[OrgChange], party_org_id: uuid.UUID) -> int:
    """Members now covered are marked; a live task whose members are all covered completes."""
    now = datetime.now(UTC)
    ids = [c.organization_id for c in changes if c.after.covered and (c.before is None or not c.before.covered)]
    if not ids:
        return 0
    await lock_organizations(session, ids)
    touched = await session.execute(
        text(
            "UPDATE establishment_task_member SET covered_at = :now WHERE organization_id = ANY(:ids) AND active "
            "AND covered_at IS NULL RETURNING task_id"
        ),
        {"now": now, "ids": ids},
    )
    task_ids = list({r.task_id for r in touched})
    if not task_ids:
        return 0
    done = await session.execute(
        text(
            "UPDATE establishment_task t SET status = 'completed', completed_at = :now, completed_by_party_org = :p, "
            "version = version + 1, updated_at = :now "
            "WHERE t.id = ANY(:tasks) AND t.status IN ('open', 'in_progress') AND NOT EXISTS ("
            "  SELECT 1 FROM establishment_task_member m WHERE m.task_id = t.id AND m.covered_at IS NULL) "
            "RETURNING t.id"
        ),
        {"now": now, "p": party_org_id, "tasks": task_ids},
    )
    completed = [r.id for r in done]
    if completed:
        await session.execute(
            text("UPDATE establishment_task_member SET active = false WHERE task_id = ANY(:t)"), {"t": completed}
        )
    return len(completed)


async def get(session: AsyncSession, *, caller: Caller, task_id: uuid.UUID, lock: bool = False) -> EstablishmentTask:
    return await load(session, caller, EstablishmentTask, task_id, what="establishment task", lock=lock)


async def update(
    session: AsyncSession, *, caller: Caller, task_id: uuid.UUID, body: TaskUpdate, if_match: str | None
) -> EstablishmentTask:
    task = await get(session, caller=caller, task_id=task_id, lock=True)
    check_if_match(if_match, task.version, what="task")
    values = sent_fields(body)
    if (status := values.get("status")) is not None and status != task.status:
        if status not in TRANSITIONS.get(task.status, set()):
            reason = (
                "a task completes by itself when the registry reports a party organization covering it"
                if status == TaskStatus.completed
                else f"a {task.status} task cannot become {status}"
            )
            raise conflict(reason)
        if status == TaskStatus.cancelled:
            await session.execute(
                text("UPDATE establishment_task_member SET active = false WHERE task_id = :t"), {"t": task.id}
            )
    for key, value in values.items():
        setattr(task, key, value.value if isinstance(value, TaskStatus) else value)
    task.version += 1
    task.updated_at = datetime.now(UTC)
    await session.flush()
    return task


async def list_page(
    session: AsyncSession,
    *,
    caller: Caller,
    region: str | None,
    status: TaskStatus | None,
    overdue: bool | None,
    page: PageParams,
    today: date,
) -> Page[TaskPublic]:
    root = await region_ref(session, caller, region)
    query = select(EstablishmentTask).where(col(EstablishmentTask.region_code).startswith(regions.prefix(root.code)))
    if status is not None:
        query = query.where(col(EstablishmentTask.status) == status.value)
    if overdue is not None:
        late = col(EstablishmentTask.status).in_(LIVE) & (col(EstablishmentTask.due_date) < today)
        query = query.where(late if overdue else ~late)
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(col(EstablishmentTask.id) > after[0])
    found = list((await session.execute(query.order_by(col(EstablishmentTask.id)).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda t: (str(t.id),))
    return Page[TaskPublic](items=await to_public_many(session, rows, today), next_cursor=cursor)
