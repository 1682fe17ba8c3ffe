"""The counters kept by events equal a full recount, whatever the changes and however delivered."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from sqlalchemy import text

from shared.events import Event
from shared.relay import Publisher
from shared.settings import get_settings
from tests.helpers import credit_code, drain, figure_rows, import_orgs, import_tree, org_record, recompute, settle

COMMUNITY, TOWN_A, TOWN_B, WULING_TOWN = "430723100001", "430723100000", "430723101000", "430702001000"
REGIONS = [COMMUNITY, TOWN_A, TOWN_B, WULING_TOWN]


def random_record(rng: random.Random, n: int) -> dict[str, Any]:
    kind = rng.choice(["enterprise"] * 4 + ["social_org", "individual_business"])
    return org_record(
        n,
        kind=kind,
        region_code=rng.choice(REGIONS),
        employees=rng.choice([None, 3, 9, 10, 30, 120]),
        has_fixed_premises=rng.choice([True, True, False, None]),
        has_business_activity=rng.choice([True, False]),
        formal_members=rng.choice([0, 0, 1, 2, 3, 4, 7]),
        has_trade_union=rng.random() < 0.2,
        has_youth_league=rng.random() < 0.1,
        charter_includes_party_building=rng.random() < 0.3,
        social_org_level=rng.choice([None, "county", "province"]) if kind == "social_org" else None,
        industry_code=rng.choice(["C1310", "F5211", "E4710"]),
    )


class Scenario:
    def __init__(self, registry: Any, headers: dict[str, str], rng: random.Random):
        self.registry, self.headers, self.rng = registry, headers, rng
        self.codes: list[str] = []
        self.party_orgs: list[str] = []
        self.assignments: list[str] = []
        self.instructor = ""
        self.applied = 0

    async def org(self, code: str) -> dict[str, Any]:
        return (await self.registry.get(f"/v1/organizations/by-credit-code/{code}", headers=self.headers)).json()

    async def step(self) -> None:
        rng, r, h = self.rng, self.registry, self.headers
        action = rng.choice(
            ["import", "update", "status", "move", "single", "joint", "dissolve", "recover", "assign", "unassign"]
        )
        if action == "import" or len(self.codes) < 12:
            start = len(self.codes) + 1
            batch = [random_record(rng, n) for n in range(start, start + rng.randint(1, 12))]
            await import_orgs(r, h, batch)
            self.codes += [b["credit_code"] for b in batch]
        elif action == "update":
            picked = rng.sample(self.codes, min(len(self.codes), rng.randint(1, 6)))
            org = [await self.org(c) for c in picked]
            await import_orgs(
                r,
                h,
                [
                    {
                        **random_record(rng, 0),
                        "credit_code": o["credit_code"],
                        "kind": o["kind"],
                        "region_code": o["region_code"],
                    }
                    for o in org
                ],
            )
        elif action in ("status", "move"):
            one = await self.org(rng.choice(self.codes))
            body = (
                {"status": rng.choice(["active", "zombie", "closed", "relocated"]), "status_reason": "随机核查"}
                if action == "status"
                else {"region_code": rng.choice(REGIONS)}
            )
            await r.patch(
                f"/v1/organizations/{one['id']}", json=body, headers={**h, "If-Match": f'"v{one["version"]}"'}
            )
        elif action in ("single", "joint"):
            orgs = [await self.org(c) for c in rng.sample(self.codes, min(len(self.codes), 8))]
            if action == "single":
                orgs = [o for o in orgs if o["formal_members"] >= 3][:1]
            else:
                orgs = [o for o in orgs if o["region_code"].startswith("430723")][:3]
            if len(orgs) < (1 if action == "single" else 2):
                return
            response = await r.post(
                "/v1/party-orgs",
                headers=h,
                json={
                    "name": f"随机党组织{self.applied}",
                    "level": "branch",
                    "formation": action,
                    "region_code": "430723000000" if action == "joint" else orgs[0]["region_code"],
                    "established_on": "2026-01-01",
                    "covered_credit_codes": [o["credit_code"] for o in orgs],
                    "transfer": rng.random() < 0.7,
                    "secretary_in_management": rng.random() < 0.5,
                    "secretary_is_investor": rng.random() < 0.4,
                },
            )
            if response.status_code == 201:
                self.party_orgs.append(response.json()["id"])
        elif action == "dissolve" and self.party_orgs:
            pid = self.party_orgs.pop(rng.randrange(len(self.party_orgs)))
            await r.post(
                f"/v1/party-orgs/{pid}/dissolve",
                headers=h,
                json={"dissolved_on": date.today().isoformat(), "reason": "随机撤销"},
            )
        elif action == "recover" and self.party_orgs:
            pid = rng.choice(self.party_orgs)
            party = (await r.get(f"/v1/party-orgs/{pid}", headers=h)).json()
            if party["formation"] == "joint" and party["active"]:
                extra = rng.choice(self.codes)
                await r.put(
                    f"/v1/party-orgs/{pid}/covered-organizations",
                    headers=h,
                    json={"credit_codes": sorted({*party["covered_credit_codes"], extra}), "transfer": True},
                )
        elif action == "assign":
            if not self.instructor:
                self.instructor = (
                    await r.post(
                        "/v1/instructors",
                        headers=h,
                        json={
                            "name": "随机指导员",
                            "kind": "full_time",
                            "source": "dispatched_official",
                            "region_code": "430700000000",
                        },
                    )
                ).json()["id"]
            response = await r.post(
                f"/v1/instructors/{self.instructor}/assignments",
                headers=h,
                json={
                    "credit_code": rng.choice(self.codes),
                    "start_date": (date.today() - timedelta(days=3)).isoformat(),
                },
            )
            if response.status_code == 201:
                self.assignments.append(response.json()["id"])
        elif action == "unassign" and self.assignments:
            aid = self.assignments.pop(rng.randrange(len(self.assignments)))
            await r.post(
                f"/v1/instructor-assignments/{aid}/end",
                headers=h,
                json={"end_date": (date.today() - timedelta(days=1)).isoformat(), "reason": "轮换"},
            )
        self.applied += 1


async def test_random_registry_changes_keep_the_counters_equal_to_a_recount(db, redis, registry, admin) -> None:
    await import_tree(registry, admin)
    scenario = Scenario(registry, admin, random.Random(20261122))
    for i in range(240):
        await scenario.step()
        if i % 37 == 0:
            await settle(db, redis)  # consumption interleaved with changes, as in production
    await settle(db, redis)
    async with db.session() as session:
        events = (await session.execute(text("SELECT count(*) FROM coverage_inbox"))).scalar()
        party_orgs = (await session.execute(text("SELECT count(*) FROM party_org"))).scalar()
    assert events > 150 and party_orgs > 5 and scenario.applied > 200
    kept = await figure_rows(db)
    assert kept, "no counters at all"

    # Every event once more, past arq's own de-duplication: nothing may move.
    publisher = Publisher(db, redis, get_settings())
    async with db.session() as session:
        rows = (
            await session.execute(
                text("SELECT id, type, version, occurred_at, correlation_id, payload FROM registry_outbox ORDER BY seq")
            )
        ).all()
    envelopes = [
        Event(
            id=r.id,
            type=r.type,
            version=r.version,
            occurred_at=r.occurred_at,
            producer="registry",
            correlation_id=r.correlation_id,
            payload=r.payload,
        ).model_dump(mode="json")
        for r in rows
    ]
    resent = await publisher.enqueue([("coverage", e) for e in envelopes], force=True)
    assert sum(resent) == len(envelopes)
    await drain("coverage")
    assert await figure_rows(db) == kept

    result = await recompute()
    assert result["figures_changed"] == 0
    assert await figure_rows(db) == kept


async def test_a_recount_absorbs_events_still_in_the_queue(db, redis, registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(registry, admin, [org_record(n, formal_members=n % 5) for n in range(1, 30)])
    await registry.post(
        "/v1/party-orgs",
        headers=admin,
        json={
            "name": "吸收测试党支部",
            "level": "branch",
            "formation": "single",
            "region_code": COMMUNITY,
            "established_on": "2026-01-01",
            "covered_credit_codes": [credit_code(4)],
        },
    )
    # The events are committed and queued but not consumed when the recount runs.
    result = await recompute()
    assert result["events_absorbed"] >= 2
    recounted = await figure_rows(db)
    await settle(db, redis)
    assert await figure_rows(db) == recounted
    lixian = recounted[("430723000000", "enterprise")]
    assert lixian[2] == 29  # in_scope: every one of the 29 enterprises
