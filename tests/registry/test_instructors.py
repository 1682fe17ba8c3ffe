"""Instructors: an assignment running today makes an organization work-covered (工作覆盖)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import text

from services.registry.instructors import sync_instructed
from services.registry.models import ChangeSource
from shared.outbox import SERVICE_KEY
from tests.helpers import credit_code, import_orgs, import_tree, org_record


async def test_assignment_today_instructs_and_ending_it_does_not(db, registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(1)])
    instructor = await registry.post(
        "/v1/instructors",
        headers=admin,
        json={
            "name": "李指导",
            "kind": "part_time",
            "source": "retired_official",
            "phone": "13800001111",
            "region_code": "430723000000",
        },
    )
    assert instructor.status_code == 201
    iid = instructor.json()["id"]
    assigned = await registry.post(
        f"/v1/instructors/{iid}/assignments",
        headers=admin,
        json={"credit_code": credit_code(1), "start_date": (date.today() - timedelta(days=10)).isoformat()},
    )
    assert assigned.status_code == 201
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    assert org["instructed"] and org["work_covered"] and not org["covered"]

    overlap = await registry.post(
        f"/v1/instructors/{iid}/assignments",
        headers=admin,
        json={"credit_code": credit_code(1), "start_date": date.today().isoformat()},
    )
    assert overlap.status_code == 409

    ended = await registry.post(
        f"/v1/instructor-assignments/{assigned.json()['id']}/end",
        headers=admin,
        json={"end_date": (date.today() - timedelta(days=1)).isoformat(), "reason": "调离"},
    )
    assert ended.status_code == 200
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    assert not org["instructed"] and not org["work_covered"]
    async with db.session() as session:
        types = (
            (
                await session.execute(
                    text("SELECT type FROM registry_outbox WHERE type LIKE 'registry.instructor.%' ORDER BY seq")
                )
            )
            .scalars()
            .all()
        )
    assert types == ["registry.instructor.assigned", "registry.instructor.unassigned"]


async def test_the_daily_pass_starts_future_assignments(db, registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(1)])
    iid = (
        await registry.post(
            "/v1/instructors",
            headers=admin,
            json={
                "name": "王指导",
                "kind": "full_time",
                "source": "dispatched_official",
                "region_code": "430723000000",
            },
        )
    ).json()["id"]
    start = date.today() + timedelta(days=3)
    await registry.post(
        f"/v1/instructors/{iid}/assignments",
        headers=admin,
        json={"credit_code": credit_code(1), "start_date": start.isoformat()},
    )
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    assert not org["instructed"]

    async with db.session() as session:
        session.info[SERVICE_KEY] = "registry"
        changes = await sync_instructed(
            session, org_ids=None, today=start, actor="system:test", source=ChangeSource.system
        )
    assert [(c.before.instructed, c.after.instructed) for c in changes if c.before] == [(False, True)]
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    assert org["instructed"]
    history = (await registry.get(f"/v1/organizations/{org['id']}/history", headers=admin)).json()["items"]
    assert history[-1]["action"] == "instructed" and history[-1]["source"] == "system"
