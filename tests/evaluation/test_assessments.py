"""Cycles and assessments: validation, the state machine, multi-level approval, 整转 and its events."""

from __future__ import annotations

import base64
import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import text

from services.evaluation.ratings import star_levels_for_year
from tests.evaluation.factories import assess, county, cycle, fuyang, rate
from tests.helpers import make_user, settle


async def _events(db: Any) -> list[tuple[str, dict]]:
    async with db.session() as session:
        found = await session.execute(text("SELECT type, payload FROM evaluation_outbox ORDER BY seq"))
        return [(r.type, r.payload) for r in found]


async def test_two_stars_open_a_rectification_that_four_stars_close(db, redis, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=1)
    po = people["party_orgs"][0]
    first = await cycle(evaluation, people["county"], name="2027年第一季度", quarter=1)
    low = await rate(evaluation, people, first["id"], po["id"], fuyang(18, 16, 10, 8, 6))
    assert (low["status"], low["status_label"], low["total"], low["star_level"]) == ("approved", "已审定", "58.00", 2)

    rects = (await evaluation.get("/v1/rectifications", headers=people["county"])).json()["items"]
    assert len(rects) == 1
    rect = rects[0]
    assert (rect["status"], rect["star_level"], rect["party_org_id"]) == ("open", 2, po["id"])
    assert rect["due_on"] == (date.today() + timedelta(days=180)).isoformat() and rect["overdue"] is False

    second = await cycle(evaluation, people["county"], name="2027年第二季度", quarter=2)
    high = await rate(evaluation, people, second["id"], po["id"], fuyang(20, 18, 17, 16, 12))
    assert high["star_level"] == 4

    closed = (await evaluation.get(f"/v1/rectifications/{rect['id']}", headers=people["county"])).json()
    assert closed["status"] == "closed" and closed["closed_by_assessment_id"] == high["id"]
    assert "4星" in closed["close_reason"]

    events = await _events(db)
    assert [t for t, _ in events] == [
        "evaluation.assessment.approved",
        "evaluation.rectification.opened",
        "evaluation.assessment.approved",
        "evaluation.rectification.closed",
    ]
    approved = events[0][1]
    assert (approved["star_level"], approved["total"], approved["template_code"], approved["quarter"]) == (
        2,
        "58.00",
        "fuyang_five_star",
        1,
    )
    assert events[3][1]["rectification_id"] == rect["id"]
    # No service acts on them yet, so none is sent one: the relay marks them complete, no inbox records them.
    await settle(db, redis, "coverage", "evaluation")
    async with db.session() as session:
        outbox = await session.execute(
            text("SELECT count(*), count(*) FILTER (WHERE completed_at IS NOT NULL) FROM evaluation_outbox")
        )
        assert tuple(outbox.one()) == (len(events), len(events))
        inbox = await session.execute(
            text(
                "SELECT count(*) FROM (SELECT event_type FROM coverage_inbox UNION ALL "
                "SELECT event_type FROM evaluation_inbox) i WHERE event_type LIKE 'evaluation.%'"
            )
        )
        assert inbox.scalar() == 0

    async with db.session() as session:
        assert await star_levels_for_year(session, 2027, "430723") == {uuid.UUID(po["id"]): 4}
        assert await star_levels_for_year(session, 2026, "") == {}
        assert await star_levels_for_year(session, 2027, "430702") == {}


async def test_scores_are_validated_against_the_template(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=1)
    po = people["party_orgs"][0]
    c = await cycle(evaluation, people["county"])
    bad = await evaluation.post(
        f"/v1/cycles/{c['id']}/assessments",
        headers=people["county"],
        json={"party_org_id": po["id"], "scores": {"team_score": "21", "bogus": "1", "members_score": "-1"}},
    )
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"] == [
        {"field": "scores.bogus", "reason": "unknown item: this template version has no such item"},
        {"field": "scores.members_score", "reason": "must not be negative"},
        {"field": "scores.team_score", "reason": "exceeds the item's maximum of 20"},
    ]
    # Nothing was half-applied: the party organization has no assessment yet.
    listed = (await evaluation.get("/v1/assessments", params={"cycle_id": c["id"]}, headers=people["county"])).json()
    assert listed["items"] == []

    a = await assess(evaluation, people["county"], c["id"], po["id"], {"team_score": "19.5"})
    assert (a["total"], a["star_level"], a["group_totals"]["team"]) == ("19.50", 1, "19.50")
    extra = await evaluation.patch(
        f"/v1/assessments/{a['id']}",
        headers={**people["county"], "If-Match": '"v1"'},
        json={"scores": {"team_score": "1"}, "star_level": 5},
    )
    assert extra.status_code == 422 and extra.json()["errors"][0]["field"] == "star_level"
    incomplete = await evaluation.post(f"/v1/assessments/{a['id']}:submit", headers=people["county"])
    assert incomplete.status_code == 422
    assert {e["field"] for e in incomplete.json()["errors"]} == {
        "scores.members_score",
        "scores.mechanism_score",
        "scores.development_score",
        "scores.satisfaction_score",
    }
    twice = await evaluation.post(
        f"/v1/cycles/{c['id']}/assessments", headers=people["county"], json={"party_org_id": po["id"]}
    )
    assert twice.status_code == 409


async def test_the_state_machine_and_if_match(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=1)
    county_h, city_h = people["county"], people["city"]
    c = await cycle(evaluation, county_h)
    a = await assess(evaluation, county_h, c["id"], people["party_orgs"][0]["id"], fuyang(16, 16, 16, 10, 10))
    url = f"/v1/assessments/{a['id']}"
    assert (await evaluation.patch(url, headers=county_h, json={"scores": {}})).status_code == 428
    stale = await evaluation.patch(url, headers={**county_h, "If-Match": '"v9"'}, json={"scores": {}})
    assert stale.status_code == 412
    edited = await evaluation.patch(url, headers={**county_h, "If-Match": '"v1"'}, json={"scores": {"team_score": 20}})
    assert edited.status_code == 200 and edited.headers["ETag"] == '"v2"' and edited.json()["total"] == "72.00"

    assert (await evaluation.post(f"{url}:approve", headers=city_h)).status_code == 409  # still a draft
    submitted = await evaluation.post(f"{url}:submit", headers=county_h)
    assert submitted.json()["status"] == "submitted"
    locked = await evaluation.patch(url, headers={**county_h, "If-Match": '"v3"'}, json={"scores": {"team_score": 1}})
    assert locked.status_code == 409 and locked.json()["status_now"] == "submitted"

    # The assessor's own level may neither return nor approve.
    own = await evaluation.post(f"{url}:return", headers=county_h, json={"reason": "再核实"})
    assert own.status_code == 403 and own.json()["type"].endswith("/approval-level")
    assert (await evaluation.post(f"{url}:return", headers=city_h, json={"reason": ""})).status_code == 422
    returned = await evaluation.post(f"{url}:return", headers=city_h, json={"reason": "企业发展得分依据不足"})
    assert returned.json()["status"] == "returned" and returned.json()["returned_reason"] == "企业发展得分依据不足"

    fixed = await evaluation.patch(
        url, headers={**county_h, "If-Match": returned.headers["ETag"]}, json={"scores": {"development_score": 16}}
    )
    assert fixed.status_code == 200 and fixed.json()["star_level"] == 4
    await evaluation.post(f"{url}:submit", headers=county_h)
    approved = await evaluation.post(f"{url}:approve", headers=city_h)
    assert approved.json()["status"] == "approved" and approved.json()["approvals"][0]["level"] == 2
    after = await evaluation.patch(
        url, headers={**county_h, "If-Match": approved.headers["ETag"]}, json={"scores": {"team_score": 1}}
    )
    assert after.status_code == 409 and "locked" in after.json()["detail"]
    assert (await evaluation.post(f"{url}:return", headers=city_h, json={"reason": "x"})).status_code == 409
    # No rectification for a 4-star rating.
    assert (await evaluation.get("/v1/rectifications", headers=county_h)).json()["items"] == []


async def test_multi_level_approval(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=1)
    county_h, city_h, province_h = people["county"], people["city"], people["province"]
    c = await cycle(evaluation, county_h, approval_levels=3)
    assert c["approval_levels"] == 3
    a = await assess(evaluation, county_h, c["id"], people["party_orgs"][0]["id"], fuyang(10, 10, 10, 10, 10))
    url = f"/v1/assessments/{a['id']}"
    await evaluation.post(f"{url}:submit", headers=county_h)
    step1 = (await evaluation.post(f"{url}:approve", headers=city_h)).json()
    assert step1["status"] == "submitted" and len(step1["approvals"]) == 1
    # The city cannot approve twice: the next approval must come from above it.
    again = await evaluation.post(f"{url}:approve", headers=city_h)
    assert again.status_code == 403
    step2 = (await evaluation.post(f"{url}:approve", headers=province_h)).json()
    assert step2["status"] == "submitted" and [x["level"] for x in step2["approvals"]] == [2, 1]
    # Nothing has consequences yet.
    assert (await evaluation.get("/v1/rectifications", headers=county_h)).json()["items"] == []
    step3 = (await evaluation.post(f"{url}:approve", headers=admin)).json()
    assert step3["status"] == "approved" and [x["level"] for x in step3["approvals"]] == [2, 1, 0]
    assert step3["star_level"] == 0
    rects = (await evaluation.get("/v1/rectifications", headers=county_h)).json()["items"]
    assert [r["star_level"] for r in rects] == [0]


async def test_everything_is_confined_to_the_jurisdiction(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=1)
    po = people["party_orgs"][0]
    c = await cycle(evaluation, people["county"])
    a = await assess(evaluation, people["county"], c["id"], po["id"], fuyang(10, 10, 10, 10, 10))
    other = people["wuling"]
    assert (await evaluation.get(f"/v1/assessments/{a['id']}", headers=other)).status_code == 404
    assert (await evaluation.get(f"/v1/cycles/{c['id']}", headers=other)).status_code == 404
    assert (await evaluation.get("/v1/assessments", headers=other)).json()["items"] == []
    assert (await evaluation.post(f"/v1/assessments/{a['id']}:submit", headers=other)).status_code == 404
    outside = await evaluation.post(
        "/v1/cycles",
        headers=other,
        json={"name": "x", "year": 2027, "template_id": c["template_id"], "region_code": "430723000000"},
    )
    assert outside.status_code == 404
    # A Wuling cycle cannot assess a party organization of 澧县.
    wuling_cycle = await cycle(evaluation, other)
    refused = await evaluation.post(
        f"/v1/cycles/{wuling_cycle['id']}/assessments", headers=other, json={"party_org_id": po["id"]}
    )
    assert refused.status_code == 404
    assert (await evaluation.get("/v1/templates", headers={})).status_code == 401
    auditor = await make_user(db, role="auditor", region="430723000000")
    assert (await evaluation.get(f"/v1/assessments/{a['id']}", headers=auditor)).status_code == 200
    assert (await evaluation.post(f"/v1/assessments/{a['id']}:submit", headers=auditor)).status_code == 403


async def test_generate_drafts_for_every_party_org(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=3)
    c = await cycle(evaluation, people["county"], code="luzhou_seven_have", name="2027年阵地达标")
    made = (await evaluation.post(f"/v1/cycles/{c['id']}/assessments:generate", headers=people["county"])).json()
    assert made == {"created": 3, "existing": 0}
    again = (await evaluation.post(f"/v1/cycles/{c['id']}/assessments:generate", headers=people["county"])).json()
    assert again == {"created": 0, "existing": 3}
    items = (await evaluation.get("/v1/assessments", params={"cycle_id": c["id"]}, headers=people["county"])).json()
    first = items["items"][0]
    assert first["status"] == "draft" and first["star_level"] is None and first["passed"] is False
    all_met = {k: "1" for k in ("premises", "facilities", "signage", "flag", "books", "rules", "activities")}
    done = await evaluation.patch(
        f"/v1/assessments/{first['id']}", headers={**people["county"], "If-Match": '"v1"'}, json={"scores": all_met}
    )
    assert (done.json()["total"], done.json()["passed"]) == ("7.00", True)
    one_short = await evaluation.patch(
        f"/v1/assessments/{first['id']}",
        headers={**people["county"], "If-Match": '"v2"'},
        json={"scores": {"flag": "0"}},
    )
    assert (one_short.json()["total"], one_short.json()["passed"]) == ("6.00", False)


async def test_an_earlier_cycle_approved_late_does_not_close_a_rectification(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=1)
    po = people["party_orgs"][0]
    q1 = await cycle(evaluation, people["county"], name="2027年第一季度", quarter=1)
    q2 = await cycle(evaluation, people["county"], name="2027年第二季度", quarter=2)
    early = await assess(evaluation, people["county"], q1["id"], po["id"], fuyang(20, 20, 20, 20, 20))
    await rate(evaluation, people, q2["id"], po["id"], fuyang(16, 16, 10, 10, 10))  # 2 stars: opens
    await evaluation.post(f"/v1/assessments/{early['id']}:submit", headers=people["county"])
    late = await evaluation.post(f"/v1/assessments/{early['id']}:approve", headers=people["city"])
    assert late.json()["star_level"] == 5
    rects = (await evaluation.get("/v1/rectifications", headers=people["county"])).json()["items"]
    assert [(r["status"], r["star_level"]) for r in rects] == [("open", 2)]
    # Funding reads the latest cycle of the year, not the latest approval.
    async with db.session() as session:
        assert await star_levels_for_year(session, 2027, "") == {uuid.UUID(po["id"]): 2}


async def test_a_tampered_cursor_is_a_422(db, evaluation, admin) -> None:
    forged = base64.urlsafe_b64encode(b'["not-a-uuid"]').decode().rstrip("=")
    for url in ("/v1/assessments", "/v1/cycles", "/v1/designations"):
        response = await evaluation.get(url, params={"cursor": forged}, headers=admin)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "cursor", url
    forged2 = base64.urlsafe_b64encode(b'["2027-13-45", "x"]').decode().rstrip("=")
    response = await evaluation.get("/v1/rectifications", params={"cursor": forged2}, headers=admin)
    assert response.status_code == 422


async def test_one_cycle_per_template_and_period_over_a_jurisdiction(db, registry, evaluation, admin) -> None:
    """A second annual cycle of the same template, year and region would rate a party organization twice
    in one period: refused (409 naming the first), as is one above or below it; other periods, other
    templates and other jurisdictions are free."""
    people = await county(db, registry, admin, n=1)
    first = await cycle(evaluation, people["county"], name="2027年度")
    template = first["template_id"]

    async def opened(headers: dict[str, str], **body: Any) -> Any:
        payload = {"name": "又一个", "year": 2027, "template_id": template, **body}
        return await evaluation.post("/v1/cycles", headers=headers, json=payload)

    again = await opened(people["county"])
    assert again.status_code == 409 and again.json()["cycle_id"] == first["id"], again.text
    assert "2027" in again.json()["detail"]
    assert (await opened(people["city"], region_code="430700000000")).status_code == 409  # above it
    assert (await opened(people["county"], region_code="430723100000")).status_code == 409  # below it
    assert (await opened(people["county"], quarter=4)).status_code == 201
    assert (await opened(people["county"], quarter=4)).status_code == 409
    assert (await opened(people["county"], year=2028)).status_code == 201
    assert (await opened(people["wuling"])).status_code == 201  # the neighbouring county
    qinghe = await evaluation.get("/v1/templates/qinghe_nine_aspects", headers=admin)
    assert (await opened(people["county"], template_id=qinghe.json()["id"])).status_code == 201
    async with db.session() as session:
        count = await session.execute(text("SELECT count(*) FROM evaluation_cycle WHERE year = 2027"))
    assert count.scalar_one() == 4


async def test_a_re_rating_approved_after_the_annual_rating_stands(db, registry, evaluation, admin) -> None:
    """The annual rating opens 整转; a quarterly re-rating of the same year approved after it replaces it:
    it closes the rectification and is the year's star level for funding."""
    people = await county(db, registry, admin, n=1)
    po = people["party_orgs"][0]
    annual = await cycle(evaluation, people["county"], name="2027年度")
    second_quarter = await cycle(evaluation, people["county"], name="2027年第二季度复评", quarter=2)
    low = await rate(evaluation, people, annual["id"], po["id"], fuyang(18, 16, 10, 8, 6))
    assert low["star_level"] == 2
    [rect] = (await evaluation.get("/v1/rectifications", headers=people["county"])).json()["items"]
    assert rect["status"] == "open"
    again = await rate(evaluation, people, second_quarter["id"], po["id"], fuyang(20, 18, 17, 16, 12))
    assert again["star_level"] == 4
    closed = (await evaluation.get(f"/v1/rectifications/{rect['id']}", headers=people["county"])).json()
    assert (closed["status"], closed["closed_by_assessment_id"]) == ("closed", again["id"])
    async with db.session() as session:
        assert await star_levels_for_year(session, 2027, "") == {uuid.UUID(po["id"]): 4}


async def test_a_rating_of_an_earlier_year_approved_late_neither_opens_nor_counts_later(
    db, registry, evaluation, admin
) -> None:
    people = await county(db, registry, admin, n=1)
    po = people["party_orgs"][0]
    old = await cycle(evaluation, people["county"], name="2027年度")
    new = await cycle(evaluation, people["county"], name="2028年度", year=2028)
    late = await assess(evaluation, people["county"], old["id"], po["id"], fuyang(18, 16, 10, 8, 6))
    await rate(evaluation, people, new["id"], po["id"], fuyang(20, 18, 17, 16, 12))  # 4 stars in 2028
    await evaluation.post(f"/v1/assessments/{late['id']}:submit", headers=people["county"])
    approved = await evaluation.post(f"/v1/assessments/{late['id']}:approve", headers=people["city"])
    assert approved.json()["star_level"] == 2
    # 2028's rating stands: 2027's two stars, approved after it, open no 整转 ...
    assert (await evaluation.get("/v1/rectifications", headers=people["county"])).json()["items"] == []
    # ... and each year keeps its own star level for funding.
    async with db.session() as session:
        assert await star_levels_for_year(session, 2027, "") == {uuid.UUID(po["id"]): 2}
        assert await star_levels_for_year(session, 2028, "") == {uuid.UUID(po["id"]): 4}
