"""The evaluation worker: a dissolved party organization, overdue-rectification reminders."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import text

from services.evaluation.jobs import remind_overdue
from shared.events import Event
from shared.queue import HANDLE_EVENT
from shared.settings import get_settings
from tests.evaluation.factories import assess, county, cycle, fuyang, rate
from tests.helpers import settle


async def test_a_dissolved_party_org_loses_its_rectification_and_drafts(db, redis, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=2)
    po, other = people["party_orgs"]
    year = await cycle(evaluation, people["county"], name="2027年度")
    low = await rate(evaluation, people, year["id"], po["id"], fuyang(10, 10, 10, 10, 10))
    await rate(evaluation, people, year["id"], other["id"], fuyang(10, 10, 10, 10, 10))
    following = await cycle(evaluation, people["county"], name="2028年度", year=2028)
    draft = await assess(evaluation, people["county"], following["id"], po["id"], fuyang(10, 10, 10, 10, 10))
    await settle(db, redis, "evaluation")

    response = await registry.post(
        f"/v1/party-orgs/{po['id']}/dissolve",
        headers=admin,
        json={"dissolved_on": date.today().isoformat(), "reason": "企业注销"},
    )
    assert response.status_code == 200, response.text
    await settle(db, redis, "evaluation")

    rects = (await evaluation.get("/v1/rectifications", headers=people["county"])).json()["items"]
    by_org = {r["party_org_id"]: r for r in rects}
    assert by_org[po["id"]]["status"] == "cancelled" and by_org[po["id"]]["close_reason"] == "党组织已撤销"
    assert by_org[other["id"]]["status"] == "open"
    assert (await evaluation.get(f"/v1/assessments/{draft['id']}", headers=people["county"])).json()[
        "status"
    ] == "cancelled"
    # The approved rating stays as history.
    kept = (await evaluation.get(f"/v1/assessments/{low['id']}", headers=people["county"])).json()
    assert (kept["status"], kept["star_level"]) == ("approved", 0)
    # A dissolved party organization cannot be assessed again.
    refused = await evaluation.post(
        f"/v1/cycles/{following['id']}/assessments", headers=people["county"], json={"party_org_id": po["id"]}
    )
    assert refused.status_code in (409, 422)

    # Delivered twice, the event has no second effect (the inbox records it once).
    async with db.session() as session:
        row = (
            await session.execute(
                text("SELECT id, type, payload, occurred_at FROM registry_outbox WHERE type = :t"),
                {"t": "registry.party_org.dissolved"},
            )
        ).one()
    event = Event(id=row.id, type=row.type, occurred_at=row.occurred_at, producer="registry", payload=row.payload)
    await redis.enqueue_job(
        HANDLE_EVENT, event.model_dump(mode="json"), _queue_name=get_settings().queue_name("evaluation")
    )
    await settle(db, redis, "evaluation")
    async with db.session() as session:
        inbox = await session.execute(text("SELECT status FROM evaluation_inbox WHERE event_id = :id"), {"id": row.id})
        assert inbox.scalars().all() == ["done"]


async def test_overdue_rectifications_are_reminded_once_a_day(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=2)
    c = await cycle(evaluation, people["county"])
    for po in people["party_orgs"]:
        await rate(evaluation, people, c["id"], po["id"], fuyang(16, 16, 10, 10, 10))
    late_id = people["party_orgs"][0]["id"]
    async with db.session() as session:
        await session.execute(
            text("UPDATE rectification SET due_on = :d WHERE party_org_id = :p"),
            {"d": date.today() - timedelta(days=1), "p": late_id},
        )
    overdue = (await evaluation.get("/v1/rectifications", params={"overdue": "true"}, headers=people["city"])).json()
    assert [(r["party_org_id"], r["overdue"], r["reminded_on"]) for r in overdue["items"]] == [(late_id, True, None)]

    first = await remind_overdue({"db": db})
    assert first == {"reminded": 1, "by_county": {"430723000000": 1}}
    assert (await remind_overdue({"db": db}))["reminded"] == 0  # once a day
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert (await remind_overdue({"db": db}, today=tomorrow))["reminded"] == 1
    listed = (await evaluation.get("/v1/rectifications", params={"overdue": "true"}, headers=people["city"])).json()
    assert listed["items"][0]["reminded_on"] == tomorrow
    on_time = (await evaluation.get("/v1/rectifications", params={"overdue": "false"}, headers=people["city"])).json()
    assert [r["party_org_id"] for r in on_time["items"]] == [people["party_orgs"][1]["id"]]
