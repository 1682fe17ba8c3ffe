"""Small factories for evaluation tests: a county with party organizations, officials at each level."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import credit_code, import_orgs, import_tree, make_user, org_record

COMMUNITY = "430723100001"
TOWN_B = "430723101000"
CITY = "430700000000"
PROVINCE = "430000000000"
LIXIAN = "430723000000"
WULING = "430702000000"


async def seed_builtins(db: Any) -> None:
    """The built-in templates (the migration seeds them; each test starts from truncated tables)."""
    from services.evaluation.builtin import ensure

    async with db.session() as session:
        await ensure(session)


async def party_orgs(registry: httpx.AsyncClient, admin: dict[str, str], n: int, *, start: int = 1) -> list[dict]:
    """`n` single-formation party branches, one per enterprise, alternating between two townships."""
    records = [
        org_record(start + i, formal_members=4, region_code=COMMUNITY if i % 2 == 0 else TOWN_B) for i in range(n)
    ]
    await import_orgs(registry, admin, records)
    made = []
    for i, record in enumerate(records):
        response = await registry.post(
            "/v1/party-orgs",
            headers=admin,
            json={
                "name": f"测试企业{start + i}号党支部",
                "level": "branch",
                "formation": "single",
                "region_code": record["region_code"],
                "established_on": "2025-03-01",
                "covered_credit_codes": [credit_code(start + i)],
            },
        )
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


async def county(db: Any, registry: httpx.AsyncClient, admin: dict[str, str], n: int = 2) -> dict[str, Any]:
    await import_tree(registry, admin)
    await seed_builtins(db)
    return {
        "party_orgs": await party_orgs(registry, admin, n),
        "county": await make_user(db, role="officer", region=LIXIAN),
        "city": await make_user(db, role="officer", region=CITY),
        "province": await make_user(db, role="officer", region=PROVINCE),
        "wuling": await make_user(db, role="officer", region=WULING),
    }


async def template_id(evaluation: httpx.AsyncClient, headers: dict[str, str], code: str) -> str:
    response = await evaluation.get(f"/v1/templates/{code}", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def cycle(
    evaluation: httpx.AsyncClient, headers: dict[str, str], *, code: str = "fuyang_five_star", **body: Any
) -> dict[str, Any]:
    payload = {
        "name": "2027年度星级评定",
        "year": 2027,
        "template_id": await template_id(evaluation, headers, code),
        **body,
    }
    response = await evaluation.post("/v1/cycles", headers=headers, json=payload)
    assert response.status_code == 201, response.text
    return dict(response.json())


def fuyang(team: int, members: int, mechanism: int, development: int, satisfaction: int) -> dict[str, str]:
    return {
        "team_score": str(team),
        "members_score": str(members),
        "mechanism_score": str(mechanism),
        "development_score": str(development),
        "satisfaction_score": str(satisfaction),
    }


async def assess(
    evaluation: httpx.AsyncClient,
    headers: dict[str, str],
    cycle_id: str,
    party_org_id: str,
    scores: dict[str, str],
) -> dict[str, Any]:
    response = await evaluation.post(
        f"/v1/cycles/{cycle_id}/assessments", headers=headers, json={"party_org_id": party_org_id, "scores": scores}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def rate(
    evaluation: httpx.AsyncClient,
    people: dict[str, Any],
    cycle_id: str,
    party_org_id: str,
    scores: dict[str, str],
) -> dict[str, Any]:
    """Assess, submit as the county officer, approve as the city officer (one approval level)."""
    a = await assess(evaluation, people["county"], cycle_id, party_org_id, scores)
    r = await evaluation.post(f"/v1/assessments/{a['id']}:submit", headers=people["county"])
    assert r.status_code == 200, r.text
    r = await evaluation.post(f"/v1/assessments/{a['id']}:approve", headers=people["city"])
    assert r.status_code == 200, r.text
    return dict(r.json())
