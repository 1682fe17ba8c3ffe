"""Recalculation jobs, snapshots and history, gaps, targets, establishment tasks and reports."""

from __future__ import annotations

import asyncio
import io
import uuid
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pylopdf_fonts_zh_cn
import pytest
from matplotlib import font_manager
from openpyxl import load_workbook
from sqlalchemy import text

from services.coverage import reports
from services.coverage.models import COUNTERS, CoverageHistory
from tests.helpers import (
    LIXIAN,
    credit_code,
    drain,
    import_orgs,
    import_tree,
    make_user,
    org_record,
    settle,
)

COMMUNITY, TOWN_B = "430723100001", "430723101000"


@pytest.fixture
async def county(db, redis, registry, admin) -> dict[str, Any]:
    await import_tree(registry, admin)
    area = (
        await registry.post(
            "/v1/areas", headers=admin, json={"name": "澧县经济开发区", "kind": "park", "region_code": "430723100000"}
        )
    ).json()
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, formal_members=4),  # single
            org_record(2, formal_members=1, area_id=area["id"]),  # joint, same park
            org_record(3, formal_members=2, area_id=area["id"]),  # joint, same park
            org_record(4, formal_members=2, region_code=TOWN_B, industry_code="F5211"),  # joint, same industry
            org_record(5, formal_members=1, region_code=TOWN_B, industry_code="F5212"),  # joint, same industry
            org_record(6, formal_members=1, region_code=TOWN_B, industry_code="E4710"),  # 兜底: alone
            org_record(7, formal_members=0, region_code=TOWN_B),  # instructor first
            org_record(8, formal_members=2, sector="law_firm", industry_code="L7231"),  # industry
            org_record(9, formal_members=5, region_code=TOWN_B),  # covered below
        ],
    )
    await registry.post(
        "/v1/party-orgs",
        headers=admin,
        json={
            "name": "九号企业党支部",
            "level": "branch",
            "formation": "single",
            "region_code": TOWN_B,
            "established_on": "2026-02-01",
            "covered_credit_codes": [credit_code(9)],
        },
    )
    await settle(db, redis)
    return {"area": area, "officer": await make_user(db, role="officer", region=LIXIAN)}


async def test_gaps_recommend_formations_and_propose_joint_groups(coverage, county) -> None:
    page = (await coverage.get("/v1/coverage/gaps", params={"region": LIXIAN}, headers=county["officer"])).json()
    by_code = {g["credit_code"]: g for g in page["items"]}
    assert set(by_code) == {credit_code(n) for n in range(1, 9)}
    assert by_code[credit_code(1)]["recommended_formation"] == "single"
    assert by_code[credit_code(7)]["recommended_formation"] == "instructor_first"
    assert by_code[credit_code(8)]["recommended_formation"] == "industry"
    assert "律师事务所" in by_code[credit_code(8)]["reason"]
    park = by_code[credit_code(2)]["joint_group"]
    assert park.startswith("area:") and by_code[credit_code(3)]["joint_group"] == park
    trade = by_code[credit_code(4)]["joint_group"]
    assert trade.startswith("industry:430723101000:F52") and by_code[credit_code(5)]["joint_group"] == trade
    assert (
        by_code[credit_code(6)]["recommended_formation"] == "joint" and by_code[credit_code(6)]["joint_group"] is None
    )
    assert "兜底" in by_code[credit_code(6)]["reason"]
    assert page["summary"] == {"single": 1, "joint": 5, "instructor_first": 1, "industry": 1}
    groups = (
        await coverage.get("/v1/coverage/gaps/joint-groups", params={"region": LIXIAN}, headers=county["officer"])
    ).json()
    assert sorted(len(g["organization_ids"]) for g in groups) == [2, 2]
    assert any(g["label"] == "澧县经济开发区联合党支部（拟）" for g in groups)

    first = (
        await coverage.get("/v1/coverage/gaps", params={"region": LIXIAN, "limit": 3}, headers=county["officer"])
    ).json()
    rest = (
        await coverage.get(
            "/v1/coverage/gaps", params={"region": LIXIAN, "cursor": first["next_cursor"]}, headers=county["officer"]
        )
    ).json()
    assert len(first["items"]) == 3 and len(first["items"]) + len(rest["items"]) == 8


async def test_target_progress_counts_what_is_left(coverage, county) -> None:
    target = await coverage.post(
        "/v1/targets",
        headers=county["officer"],
        json={
            "name": "澧县组织覆盖率100%",
            "region_code": LIXIAN,
            "target_rate": 1.0,
            "deadline": (date.today() - timedelta(days=1)).isoformat(),
        },
    )
    assert target.status_code == 201
    progress = (await coverage.get(f"/v1/targets/{target.json()['id']}/progress", headers=county["officer"])).json()
    assert (progress["numerator"], progress["denominator"], progress["gap_organizations"]) == (1, 9, 8)
    assert progress["current_rate"] == round(1 / 9, 6)
    assert progress["overdue"] is True and progress["reached"] is False
    assert len(progress["remaining"]) == 8
    half = (
        await coverage.post(
            "/v1/targets",
            headers=county["officer"],
            json={
                "name": "一半",
                "region_code": LIXIAN,
                "target_rate": 0.5,
                "deadline": (date.today() + timedelta(days=30)).isoformat(),
            },
        )
    ).json()
    progress = (await coverage.get(f"/v1/targets/{half['id']}/progress", headers=county["officer"])).json()
    assert progress["gap_organizations"] == 4 and progress["overdue"] is False and progress["days_left"] == 30
    bad = await coverage.post(
        "/v1/targets",
        headers=county["officer"],
        json={"name": "x", "region_code": LIXIAN, "target_rate": 1.5, "deadline": "2027-01-01"},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "target_rate"


async def test_tasks_from_gaps_complete_when_the_registry_covers_them(
    db, redis, coverage, registry, admin, county
) -> None:
    officer = county["officer"]
    tasks = (await coverage.get("/v1/establishment-tasks", headers=officer)).json()["items"]
    # Registration already opened a task for each in-scope organization (双落地). The ninth one got a
    # party organization at once: depending on which event arrived first its task completed or was
    # never opened, but it is not left open.
    by_code = {t["members"][0]["credit_code"]: t for t in tasks}
    open_codes = {code for code, t in by_code.items() if t["status"] == "open"}
    assert open_codes == {credit_code(n) for n in range(1, 9)}
    assert by_code.get(credit_code(9), {"status": "completed"})["status"] == "completed"
    assert {t["origin"] for t in tasks} == {"registration"}

    body = {
        "region_code": LIXIAN,
        "due_date": (date.today() + timedelta(days=60)).isoformat(),
        "responsible_unit": "澧县两新工委",
        "per": "joint_group",
    }
    nothing = (await coverage.post("/v1/establishment-tasks:from-gaps", json=body, headers=officer)).json()
    assert (nothing["created"], nothing["skipped"]) == (0, 8)
    for n in (2, 3):  # re-plan the two park organizations as one joint group
        task = by_code[credit_code(n)]
        manual = await coverage.patch(
            f"/v1/establishment-tasks/{task['id']}",
            json={"status": "completed"},
            headers={**officer, "If-Match": '"v1"'},
        )
        assert manual.status_code == 409 and "completes by itself" in manual.json()["detail"]
        stale = await coverage.patch(
            f"/v1/establishment-tasks/{task['id']}",
            json={"status": "cancelled"},
            headers={**officer, "If-Match": '"v0"'},
        )
        assert stale.status_code == 412
        cancelled = await coverage.patch(
            f"/v1/establishment-tasks/{task['id']}",
            json={"status": "cancelled"},
            headers={**officer, "If-Match": '"v1"'},
        )
        assert cancelled.status_code == 200 and cancelled.headers["etag"] == '"v2"'
    planned = (await coverage.post("/v1/establishment-tasks:from-gaps", json=body, headers=officer)).json()
    assert (planned["created"], planned["skipped"]) == (1, 6)
    [park_task] = planned["tasks"]
    assert park_task["title"] == "澧县经济开发区联合党支部（拟）" and park_task["recommended_formation"] == "joint"
    assert {m["credit_code"] for m in park_task["members"]} == {credit_code(2), credit_code(3)}

    established = await registry.post(
        "/v1/party-orgs",
        headers=admin,
        json={
            "name": "开发区联合党支部",
            "level": "branch",
            "formation": "joint",
            "region_code": "430723100000",
            "established_on": date.today().isoformat(),
            "covered_credit_codes": [credit_code(2), credit_code(3)],
        },
    )
    assert established.status_code == 201
    await settle(db, redis)
    done = (await coverage.get(f"/v1/establishment-tasks/{park_task['id']}", headers=officer)).json()
    assert done["status"] == "completed" and done["completed_by_party_org"] == established.json()["id"]
    assert all(m["covered_at"] for m in done["members"])
    overdue = (await coverage.get("/v1/establishment-tasks", params={"overdue": "true"}, headers=officer)).json()
    assert overdue["items"] == []


async def test_recounts_are_national_confined_and_shared(db, redis, coverage, registry, admin) -> None:
    """A recount counts the whole country: only national admins start one, only the national
    jurisdiction reads it, and requests that arrive together (or while it is under way) share it."""
    await import_tree(registry, admin)
    county_admin = await make_user(db, role="admin", region=LIXIAN)
    refused = await coverage.post("/v1/recalculations", headers=county_admin)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/national-only"), refused.text

    answers = await asyncio.gather(*(coverage.post("/v1/recalculations", headers=admin) for _ in range(8)))
    assert [a.status_code for a in answers] == [202] * 8
    assert len({a.json()["id"] for a in answers}) == 1
    job = answers[0].json()["id"]
    async with db.session() as session:
        rows = (await session.execute(text("SELECT region_code FROM coverage_recalculation"))).scalars().all()
    assert rows == ["000000000000"]
    assert (await coverage.post("/v1/recalculations", headers=admin)).json()["id"] == job  # still queued

    hidden = await coverage.get(f"/v1/recalculations/{job}", headers=county_admin)
    missing = await coverage.get(f"/v1/recalculations/{uuid.uuid4()}", headers=county_admin)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"] == missing.json()["detail"]

    await drain("coverage")
    assert (await coverage.get(f"/v1/recalculations/{job}", headers=admin)).json()["status"] == "done"
    again = await coverage.post("/v1/recalculations", headers=admin)  # the first one is over: a new one
    assert again.status_code == 202 and again.json()["id"] != job


async def test_a_new_in_scope_registration_gets_a_task_at_once(db, redis, coverage, registry, admin, county) -> None:
    await import_orgs(registry, admin, [org_record(50, formal_members=3), org_record(51, employees=2)])
    await settle(db, redis)
    tasks = (await coverage.get("/v1/establishment-tasks", headers=admin, params={"limit": 100})).json()["items"]
    registration = [t for t in tasks if t["members"][0]["credit_code"] in (credit_code(50), credit_code(51))]
    assert [t["members"][0]["credit_code"] for t in registration] == [credit_code(50)]  # 51 is not in scope
    assert registration[0]["recommended_formation"] == "single"
    assert registration[0]["due_date"] == (date.today() + timedelta(days=30)).isoformat()


async def test_recalculation_job_and_snapshots(db, redis, coverage, admin, county) -> None:
    officer = county["officer"]
    assert (await coverage.post("/v1/recalculations", headers=officer)).status_code == 403
    requested = await coverage.post("/v1/recalculations", headers=admin)
    assert requested.status_code == 202 and requested.json()["status"] == "queued"
    await drain("coverage")
    job = (await coverage.get(f"/v1/recalculations/{requested.json()['id']}", headers=admin)).json()
    assert job["status"] == "done" and job["figures_changed"] == 0 and job["finished_at"]
    # Asked for, it wrote the day's snapshot: history and the trend chart need not wait for 01:30.
    assert job["snapshot_date"] == date.today().isoformat()
    today = (
        await coverage.get(
            "/v1/coverage", params={"region": LIXIAN, "as_of": date.today().isoformat()}, headers=officer
        )
    ).json()
    assert today["source"] == "snapshot" and today["total"]["in_scope"] == 9 and today["total"]["org_covered"] == 1
    # An older snapshot, as if taken last week with fewer covered.
    zeroed = {"org_covered", "work_covered", "single_formed"}
    values = ", ".join("0" if c in zeroed else c for c in COUNTERS)
    async with db.session() as session:
        await session.execute(
            text(
                f"INSERT INTO coverage_snapshot (snapshot_date, region_code, kind, {', '.join(COUNTERS)}, taken_at) "
                f"SELECT :d, region_code, kind, {values}, now() FROM coverage_snapshot WHERE snapshot_date = :t"
            ),
            {"d": date.today() - timedelta(days=7), "t": date.today()},
        )
    history = (await coverage.get("/v1/coverage/history", params={"region": LIXIAN}, headers=officer)).json()
    assert [(p["date"], p["org_covered"]) for p in history["points"]] == [
        ((date.today() - timedelta(days=7)).isoformat(), 0),
        (date.today().isoformat(), 1),
    ]
    window = (
        await coverage.get(
            "/v1/coverage/history",
            headers=officer,
            params={"region": LIXIAN, "from": date.today().isoformat(), "to": date.today().isoformat()},
        )
    ).json()
    assert len(window["points"]) == 1

    png = await coverage.get("/v1/reports/coverage-trend.png", params={"region": LIXIAN}, headers=officer)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 10_000


async def test_the_trend_chart_on_day_one_is_in_chinese_and_names_the_region(
    redis, coverage, admin, county, tmp_path
) -> None:
    """A fresh install: no snapshot before 01:30 and no CJK font on the machine. One recalculation
    asked for gives the chart today's point; the bundled font draws its Chinese; the title names
    the region, not its code."""
    officer, params = county["officer"], {"region": LIXIAN}
    assert (await coverage.post("/v1/recalculations", headers=admin)).status_code == 202
    await drain("coverage")
    found = (await coverage.get("/v1/coverage/history", params=params, headers=officer)).json()
    history = CoverageHistory.model_validate(found)
    assert [(p.date, p.in_scope, p.org_covered) for p in history.points] == [(date.today(), 9, 1)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = await coverage.get("/v1/reports/coverage-trend.png", params=params, headers=officer)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert [str(w.message) for w in caught if "missing from" in str(w.message)] == []  # no empty boxes
    (tmp_path / "trend.png").write_bytes(png.content)

    title = reports.trend_figure(history).axes[0].title
    assert title.get_text() == "澧县“两个覆盖”趋势（全部）"
    used = font_manager.findfont(title.get_fontproperties(), fallback_to_default=False)
    assert Path(used) == pylopdf_fonts_zh_cn.sans_path()  # the font that installs with the project


async def test_coverage_workbook(coverage, county) -> None:
    response = await coverage.get("/v1/reports/coverage.xlsx", params={"region": LIXIAN}, headers=county["officer"])
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0].startswith("澧县两新组织党建")
    header = rows[2]
    assert header[:5] == ("区划代码", "区划名称", "纳入摸排范围数", "组织覆盖数", "组织覆盖率")
    body = {r[1]: dict(zip(header, r, strict=True)) for r in rows[3:]}
    assert set(body) == {"澧阳街道", "小渡口镇", "合计"}
    assert body["合计"]["纳入摸排范围数"] == 9 and body["合计"]["组织覆盖数"] == 1
    assert body["合计"]["组织覆盖率"] == pytest.approx(1 / 9, abs=1e-6)
    rate_cell = sheet.cell(row=sheet.max_row, column=5)
    assert rate_cell.number_format == "0.00%"
