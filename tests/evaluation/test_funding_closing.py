"""A past year: computed on the registry as it stood at the year's end, and closed by an official for good."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.evaluation.test_funding_api import allocations, compute, county, lines_by_org, party_org, rule_set
from tests.evaluation.test_funding_jobs import run_job
from tests.helpers import LIXIAN, WULING, import_orgs, make_user, org_record

__all__ = ["county"]

PAST = 2025


async def recorded_during(db: Any, year: int) -> None:
    """Date every ledger line so far inside `year`: the registry as if kept during that year."""
    async with db.session() as session:
        await session.execute(
            text("UPDATE registry_change SET changed_at = make_timestamptz(:y, 6, 1, 10, 0, 0, 'Asia/Shanghai')"),
            {"y": year},
        )


async def test_a_past_year_is_computed_on_the_registry_as_it_stood_at_its_end(
    evaluation, registry, admin, db, county
) -> None:
    await import_orgs(registry, admin, [org_record(5, formal_members=50), org_record(6, formal_members=10)])
    await party_org(registry, admin, 5)
    dissolved_later = await party_org(registry, admin, 6)
    await rule_set(evaluation, admin, "fuyang")
    await recorded_during(db, PAST)
    first = await compute(evaluation, admin, "fuyang", year=PAST)
    assert (first["facts"], first["facts_as_of"]) == ("year_end", f"{PAST + 1}-01-01T00:00:00+08:00")
    stood = lines_by_org(await allocations(evaluation, admin, year=PAST))
    assert stood["测试企业5号党支部"]["member_activity"] == 7_500
    assert stood["测试企业6号党支部"]["member_activity"] == 1_500

    # In the new year: 50 members become 52, and the other party organization's dissolution as of
    # mid-year is recorded (which also takes its organization out of it).
    await import_orgs(registry, admin, [org_record(5, formal_members=52)])
    response = await registry.post(
        f"/v1/party-orgs/{dissolved_later}/dissolve",
        headers=admin,
        json={"dissolved_on": f"{PAST}-06-30", "reason": "企业注销"},
    )
    assert response.status_code == 200, response.text

    again = await compute(evaluation, admin, "fuyang", year=PAST)
    assert (again["created"], again["updated"], again["removed"], again["total"]) == (0, 0, 0, first["total"])
    assert lines_by_org(await allocations(evaluation, admin, year=PAST)) == stood
    assert [a["code"] for a in again["assumptions"]][:2] == ["facts", "budget_cap"]
    assert "12月31日24时" in again["assumptions"][0]["text"]

    # Asked for, today's registry instead: the answer says so.
    today = await compute(evaluation, admin, "fuyang", year=PAST, facts="current")
    assert today["facts"] == "current" and "年末之后的变更" in today["assumptions"][0]["text"]
    now = lines_by_org(await allocations(evaluation, admin, year=PAST))
    assert now["测试企业5号党支部"]["member_activity"] == 7_800
    assert "测试企业6号党支部" not in now  # no members left, so no line


async def test_a_year_not_over_cannot_be_read_as_of_its_end(evaluation, registry, admin, county) -> None:
    await rule_set(evaluation, admin, "fuyang")
    response = await evaluation.post(
        "/v1/funding/allocations:compute",
        headers=admin,
        json={"year": 2026, "region_code": LIXIAN, "rule_set_code": "fuyang", "facts": "year_end"},
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "facts"
    assert (await compute(evaluation, admin, "fuyang", year=2026))["facts"] == "current"


async def close(evaluation: Any, headers: dict[str, str], year: int = PAST, **extra: Any) -> Any:
    body = {"year": year, "region_code": LIXIAN, "rule_set_code": "diqing", **extra}
    return await evaluation.post("/v1/funding/allocations:close", headers=headers, json=body)


async def test_a_closed_year_is_never_computed_again(evaluation, registry, admin, db, county) -> None:
    await party_org(registry, admin, 1, level="committee", established_on="2019-03-01")
    await party_org(registry, admin, 2)
    await rule_set(evaluation, admin, "diqing")
    await recorded_during(db, PAST)
    computed = await compute(evaluation, admin, "diqing", year=PAST, budget_cap=20_000)
    stored = await allocations(evaluation, admin, year=PAST)

    assert (await close(evaluation, admin, rule_set_code="fuyang")).status_code == 404  # nothing computed
    wuling = await make_user(db, role="officer", region=WULING)
    assert (await close(evaluation, wuling)).status_code == 404
    # Naming another county's jurisdiction is audited as a refused attempt on that region.
    async with db.session() as session:
        found = await session.execute(
            text("SELECT action, object_id FROM evaluation_audit WHERE outcome = 'refused' AND actor LIKE 'user:%'")
        )
    assert [tuple(r) for r in found] == [("POST /v1/funding/allocations:close", LIXIAN)]
    closed = await close(evaluation, admin)
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["closed"], body["total"], body["budget_cap"], body["party_orgs"]) == (True, 20_000, 20_000, 2)
    assert body["closed_by"] and body["closed_at"]
    assert [a["code"] for a in body["assumptions"]] == [a["code"] for a in computed["assumptions"]]
    assert (await close(evaluation, admin)).status_code == 409

    # The registry changes, an official recomputes, the schedule runs: nothing moves.
    await import_orgs(registry, admin, [org_record(2, formal_members=30)])
    refused = await evaluation.post(
        "/v1/funding/allocations:compute",
        headers=admin,
        json={"year": PAST, "region_code": LIXIAN, "rule_set_code": "diqing", "budget_cap": None},
    )
    assert refused.status_code == 409 and refused.json()["type"].endswith("/funding-closed"), refused.text
    assert str(PAST) in refused.json()["detail"] and refused.json()["closed_by"] == body["closed_by"]
    summary = await run_job(year=PAST)
    assert summary["closed"] == ["diqing"] and "diqing" not in summary["by_rule_set"]
    assert await allocations(evaluation, admin, year=PAST) == stored

    listed = await evaluation.get("/v1/funding/computations", headers=admin, params={"year": PAST})
    assert [(c["rule_set_code"], c["closed"], c["total"]) for c in listed.json()["items"]] == [("diqing", True, 20_000)]
    assert (await evaluation.get("/v1/funding/computations", headers=wuling)).json()["items"] == []
    # The closing is in the audit log, with who closed it.
    async with db.session() as session:
        audited = await session.execute(
            text(
                "SELECT after ->> 'closed_by' FROM evaluation_audit WHERE object_type = 'funding_computation' "
                "AND action = 'update' AND after ? 'closed_at'"
            )
        )
    assert audited.scalars().all() == [body["closed_by"]]


async def test_only_a_year_that_is_over_can_be_closed(evaluation, registry, admin, county) -> None:
    await party_org(registry, admin, 1)
    await rule_set(evaluation, admin, "diqing")
    await compute(evaluation, admin, "diqing")  # 2026, not over yet
    refused = await close(evaluation, admin, year=2026)
    assert refused.status_code == 409 and "2027-01-01" in refused.json()["detail"]
    assert (await compute(evaluation, admin, "diqing"))["unchanged"] == 1
