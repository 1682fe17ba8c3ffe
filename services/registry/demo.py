"""A believable demo county (澧县-like), deterministic by seed: `liangxin seed-demo`.

About 9,000 enterprises and 400 social organizations over 19 townships and their
communities, parks and business districts, industries, member counts, party organizations of
every formation, instructors and some zombies. Everything goes through the registry's own
write paths, so the ledger, the change feed and the events are those of real work.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry import instructors, merge, party_orgs, service
from services.registry.models import (
    AreaCreate,
    AreaKind,
    AssignmentCreate,
    ChangeSource,
    Formation,
    InstructorCreate,
    InstructorKind,
    InstructorSource,
    PartyOrgCreate,
    PartyOrgLevel,
    RegionRecord,
)
from shared.auth import system_caller
from shared.codes import CREDIT_ALPHABET, make_credit_code
from shared.db import Database
from shared.outbox import SERVICE_KEY
from shared.regions import contains, township_of
from shared.rules import FORMATIONS, counted_sql
from shared.settings import get_settings

COUNTY = "430723"
TOWNSHIPS = [
    ("001", "澧阳街道"),
    ("002", "澧浦街道"),
    ("003", "澧西街道"),
    ("004", "澧澹街道"),
    ("100", "小渡口镇"),
    ("101", "梦溪镇"),
    ("102", "复兴厂镇"),
    ("103", "码头铺镇"),
    ("104", "涔南镇"),
    ("105", "大堰垱镇"),
    ("106", "王家厂镇"),
    ("107", "盐井镇"),
    ("108", "火连坡镇"),
    ("109", "官垸镇"),
    ("110", "甘溪滩镇"),
    ("111", "城头山镇"),
    ("112", "如东镇"),
    ("113", "澧南镇"),
    ("200", "车溪乡"),
]
COMMUNITY_SUFFIXES = ["社区", "村", "村", "社区", "村", "村", "村", "社区"]
COMMUNITY_WORDS = [
    "兴隆",
    "新华",
    "永丰",
    "红星",
    "长岭",
    "清水",
    "和平",
    "青山",
    "双龙",
    "金鸡",
    "花园",
    "太平",
    "荷花",
    "五一",
    "东岳",
    "白鹤",
    "友谊",
    "先锋",
]
NAME_WORDS = [
    "兴旺",
    "鑫源",
    "华泰",
    "润丰",
    "金澧",
    "兰江",
    "澧水",
    "洞庭",
    "湘北",
    "城头山",
    "九澧",
    "嘉禾",
    "宏达",
    "恒信",
    "天成",
    "瑞丰",
    "博远",
    "众诚",
    "佳和",
    "新兴",
    "顺发",
    "隆鑫",
    "泰和",
    "永安",
    "康源",
]
INDUSTRIES = [  # (GB/T 4754 code, business word, weight)
    ("A0111", "种植专业合作", 6),
    ("C1310", "米业", 8),
    ("C1511", "酒业", 3),
    ("C1391", "食品", 8),
    ("C3021", "建材", 6),
    ("C3311", "机械制造", 4),
    ("C1711", "纺织", 3),
    ("C3981", "电子", 3),
    ("E4710", "建筑工程", 7),
    ("F5124", "农副产品批发", 6),
    ("F5211", "商贸", 14),
    ("G5430", "物流", 5),
    ("H6210", "餐饮管理", 9),
    ("I6513", "网络科技", 3),
    ("K7020", "物业管理", 4),
    ("O8010", "家政服务", 4),
    ("R8810", "文化传媒", 2),
]
SOCIAL = [  # (industry code, name suffix, credit prefix, sector)
    ("S9521", "协会", "51", None),
    ("S9521", "商会", "51", None),
    ("P8331", "民办学校", "52", "private_school"),
    ("Q8411", "民办医院", "52", "private_hospital"),
    ("S9522", "基金会", "53", None),
    ("O8090", "服务中心", "52", None),
]
PROFESSIONAL = [("L7231", "律师事务所", "31", "law_firm"), ("L7241", "会计师事务所", "91", "accounting_firm")]


def org_code(rng: random.Random) -> str:
    """A 9-character organization code with its GB 11714 check character, from the credit alphabet."""
    body = "".join(rng.choice(CREDIT_ALPHABET[:10] + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum((int(c) if c.isdigit() else ord(c) - 55) * w for c, w in zip(body, weights, strict=True))
    check = 11 - total % 11
    return body + ("X" if check == 10 else "0" if check == 11 else str(check))


@dataclass
class DemoCounty:
    regions: list[dict[str, str]]
    communities: dict[str, list[str]]  # township code → community codes
    records: list[dict[str, Any]]


def build(seed: int) -> DemoCounty:
    rng = random.Random(seed)
    regions = [
        {"code": "430000000000", "name": "湖南省"},
        {"code": "430700000000", "name": "常德市"},
        {"code": COUNTY + "000000", "name": "澧县"},
    ]
    communities: dict[str, list[str]] = {}
    for code, name in TOWNSHIPS:
        township = COUNTY + code + "000"
        regions.append({"code": township, "name": name})
        words = rng.sample(COMMUNITY_WORDS, rng.randint(4, 8))
        communities[township] = []
        for i, word in enumerate(words, start=1):
            community = COUNTY + code + f"{i:03d}"
            suffix = "社区" if code < "100" else rng.choice(COMMUNITY_SUFFIXES)
            regions.append({"code": community, "name": word + suffix})
            communities[township].append(community)

    used_codes: set[str] = set()
    used_names: set[str] = set()

    def unique_code(prefix: str) -> str:
        while True:
            code = make_credit_code(prefix + COUNTY + org_code(rng))
            if code not in used_codes:
                used_codes.add(code)
                return code

    def unique_name(stem: str) -> str:
        name, n = stem, 1
        while name in used_names:
            n += 1
            name = stem.replace("有限公司", f"第{n}有限公司") if "有限公司" in stem else f"{stem}（{n}）"
        used_names.add(name)
        return name

    weights = [w for _, _, w in INDUSTRIES]
    records: list[dict[str, Any]] = []
    townships = list(communities)
    for _ in range(9_000):
        industry, word, _ = rng.choices(INDUSTRIES, weights)[0]
        township = rng.choice(townships)
        region = rng.choice([township, *communities[township]])
        # Most registered enterprises are small: about 1 in 25 is in scope (澧县: 8,690 → 352).
        big = rng.random() < 0.03
        employees = rng.randint(10, 300) if big else rng.choices([rng.randint(0, 9), rng.randint(10, 40)], [97, 3])[0]
        if employees >= 10:
            members = rng.choices([0, 1, 2, 3, 4, 6, 9, 15], [14, 10, 10, 16, 14, 12, 12, 12])[0]
        else:
            members = rng.choices([0, 1, 2, 3], [85, 8, 4, 3])[0]
        records.append(
            {
                "credit_code": unique_code("91"),
                "name": unique_name(f"澧县{rng.choice(NAME_WORDS)}{word}有限公司"),
                "kind": "enterprise",
                "region_code": region,
                "industry_code": industry,
                "registration_authority": "market_regulation",
                "employees": employees,
                "has_fixed_premises": big or rng.random() < 0.7,
                "has_business_activity": big or rng.random() < 0.8,
                "formal_members": members,
                "probationary_members": rng.choice([0, 0, 0, 1]) if members else 0,
                "activists": rng.choice([0, 0, 1, 2]),
                "floating_members": rng.choice([0, 0, 0, 1]),
                "has_trade_union": employees >= 10 and rng.random() < 0.5,
                "has_youth_league": big and rng.random() < 0.15,
                "leader_political_status": rng.choices(["party_member", "masses", "other"], [20, 75, 5])[0],
                "investor_is_party_member": rng.random() < 0.15,
                "charter_includes_party_building": big and members >= 3 and rng.random() < 0.6,
                "address": f"澧县{region[6:9]}号片区{rng.randint(1, 300)}号",
            }
        )
    for _ in range(400):
        industry, suffix, prefix, sector = rng.choice(SOCIAL)
        township = rng.choice(townships)
        level = rng.choices(["county", "city", "province"], [85, 10, 5])[0]
        staff = rng.choices([rng.randint(1, 29), rng.randint(30, 120)], [88, 12])[0]
        members = rng.choices([0, 1, 2, 3, 5, 8], [40, 15, 10, 15, 12, 8])[0]
        records.append(
            {
                "credit_code": unique_code(prefix),
                "name": unique_name(f"澧县{rng.choice(NAME_WORDS)}{suffix}"),
                "kind": "social_org",
                "region_code": rng.choice(communities[township]),
                "industry_code": industry,
                "registration_authority": "civil_affairs",
                "sector": sector,
                "social_org_level": level,
                "employees": staff,
                "formal_members": members,
                "has_trade_union": staff >= 30 and rng.random() < 0.4,
                "charter_includes_party_building": members >= 3 and rng.random() < 0.7,
            }
        )
    for industry, suffix, prefix, sector in PROFESSIONAL:
        for _ in range(12):
            records.append(
                {
                    "credit_code": unique_code(prefix),
                    "name": unique_name(f"湖南{rng.choice(NAME_WORDS)}{suffix}"),
                    "kind": "enterprise",
                    "region_code": rng.choice(communities[townships[0]]),
                    "industry_code": industry,
                    "registration_authority": "justice" if sector == "law_firm" else "market_regulation",
                    "sector": sector,
                    "employees": rng.randint(10, 30),
                    "has_fixed_premises": True,
                    "has_business_activity": True,
                    "formal_members": rng.choice([1, 1, 2, 4]),
                }
            )
    return DemoCounty(regions=regions, communities=communities, records=records)


async def load(session: AsyncSession, county: DemoCounty, seed: int) -> dict[str, int]:
    rng = random.Random(seed + 1)
    caller = system_caller("demo")
    await service.import_regions(session, caller=caller, records=[RegionRecord(**r) for r in county.regions])

    townships = list(county.communities)
    parks = []
    for name, kind, township in [
        ("澧县经济开发区", AreaKind.park, townships[0]),
        ("澧州商圈", AreaKind.business_district, townships[1]),
        ("澧阳大厦", AreaKind.building, townships[0]),
        ("澧县农副产品大市场", AreaKind.market, townships[4]),
    ]:
        area = await service.create_area(
            session, caller=caller, body=AreaCreate(name=name, kind=kind, region_code=township)
        )
        parks.append((area.id, township))
    for record in county.records:
        for area_id, township in parks:
            if contains(township, record["region_code"]) and rng.random() < 0.3:
                record["area_id"] = area_id
                break
    for start in range(0, len(county.records), 5_000):
        chunk = county.records[start : start + 5_000]
        incoming = [
            merge.Incoming(
                row=i, credit_code=r["credit_code"], values={k: v for k, v in r.items() if k != "credit_code"}
            )
            for i, r in enumerate(chunk)
        ]
        await merge.merge(session, caller=caller, incoming=incoming, source=ChangeSource.partner_import)

    found = await session.execute(
        text(
            "SELECT credit_code, name, kind, region_code, area_id, industry_code, sector, formal_members, employees "
            "FROM organization WHERE in_scope ORDER BY credit_code"
        )
    )
    in_scope = [dict(r) for r in found.mappings()]
    rng.shuffle(in_scope)
    established = date(2026, 7, 1)
    counts = dict.fromkeys(FORMATIONS, 0)

    async def found_party_org(
        name: str, formation: Formation, region: str, codes: list[str], level: PartyOrgLevel = PartyOrgLevel.branch
    ) -> None:
        await party_orgs.establish(
            session,
            caller=caller,
            body=PartyOrgCreate(
                name=name,
                level=level,
                formation=formation,
                region_code=region,
                covered_credit_codes=codes,
                established_on=established - timedelta(days=rng.randint(0, 2000)),
                secretary_in_management=rng.random() < 0.83,
                secretary_is_investor=rng.random() < 0.4,
            ),
        )
        counts[formation.value] += 1

    # Supervised sectors: one industry party organization each (行业统建).
    for sector, label in (("law_firm", "律师行业党委"), ("accounting_firm", "会计行业联合党支部")):
        members = [o["credit_code"] for o in in_scope if o["sector"] == sector]
        if members:
            await found_party_org(
                f"澧县{label}",
                Formation.industry,
                COUNTY + "000000",
                members,
                PartyOrgLevel.committee if sector == "law_firm" else PartyOrgLevel.branch,
            )
    taken = {o["credit_code"] for o in in_scope if o["sector"] in ("law_firm", "accounting_firm")}
    remaining = [o for o in in_scope if o["credit_code"] not in taken]
    # ≥3 formal members: single formation for nine in ten (the rest still to do).
    for org in [o for o in remaining if o["formal_members"] >= 3]:
        if rng.random() < 0.9:
            level = PartyOrgLevel.general_branch if org["formal_members"] >= 15 else PartyOrgLevel.branch
            await found_party_org(
                f"{org['name']}党支部", Formation.single, org["region_code"], [org["credit_code"]], level
            )
            taken.add(org["credit_code"])
    # 1–2 members: joint party organizations of three or four neighbours in a township.
    by_township: dict[str, list[dict[str, Any]]] = {}
    for org in remaining:
        if 1 <= org["formal_members"] <= 2:
            by_township.setdefault(township_of(org["region_code"]), []).append(org)
    for township, group in by_township.items():
        for i in range(0, len(group) - 2, 4):
            members = group[i : i + 4]
            if rng.random() < 0.85:
                await found_party_org(
                    f"{township[6:9]}片区非公企业联合党支部{i // 4 + 1}",
                    Formation.joint,
                    township,
                    [o["credit_code"] for o in members],
                )
                taken.update(o["credit_code"] for o in members)
    # A business-district party organization (区域联建) and an affiliated one (挂靠组建).
    district = [o for o in remaining if o["area_id"] == parks[1][0] and o["credit_code"] not in taken][:5]
    if district:
        await found_party_org(
            "澧州商圈联合党委",
            Formation.regional,
            parks[1][1],
            [o["credit_code"] for o in district],
            PartyOrgLevel.committee,
        )
        taken.update(o["credit_code"] for o in district)
    affiliated = [o for o in remaining if o["credit_code"] not in taken and o["formal_members"] >= 1][:2]
    for org in affiliated:
        await found_party_org(
            f"{org['name']}党小组挂靠党支部",
            Formation.affiliated,
            township_of(org["region_code"]),
            [org["credit_code"]],
        )
        taken.add(org["credit_code"])

    # Instructors for uncovered organizations without members (派驻帮建).
    zero = [o for o in remaining if o["credit_code"] not in taken and o["formal_members"] == 0]
    assigned = 0
    for i in range(20):
        row = await instructors.create(
            session,
            caller=caller,
            body=InstructorCreate(
                name=f"指导员{i + 1:02d}",
                kind=InstructorKind.full_time if i % 3 == 0 else InstructorKind.part_time,
                source=[
                    InstructorSource.dispatched_official,
                    InstructorSource.retired_official,
                    InstructorSource.public_recruitment,
                ][i % 3],
                region_code=COUNTY + "000000",
            ),
        )
        for org in zero[i * 5 : (i + 1) * 5]:
            await instructors.assign(
                session,
                caller=caller,
                instructor_id=row["id"],
                body=AssignmentCreate(credit_code=org["credit_code"], start_date=date(2026, 3, 1)),
            )
            assigned += 1

    # Zombies found by last year's survey (名存实亡), out of the denominator.
    uncovered_small = [
        r["credit_code"] for r in county.records if r["kind"] == "enterprise" and r["credit_code"] not in taken
    ][:180]
    zombies = rng.sample(uncovered_small, 51)
    incoming = [
        merge.Incoming(
            row=i,
            credit_code=code,
            values={"status": "zombie", "status_reason": "2025年摸底排查：无经营场所、无经营活动"},
        )
        for i, code in enumerate(zombies)
    ]
    await merge.merge(session, caller=caller, incoming=incoming, source=ChangeSource.visit)
    # Counted as the coverage figures count it, after the zombies left the denominator.
    counted = await session.execute(text(f"SELECT count(*) FROM organization WHERE {counted_sql()}"))
    return {
        "regions": len(county.regions),
        "organizations": len(county.records),
        "in_scope": counted.scalar_one(),
        **{f"party_orgs_{k}": v for k, v in counts.items()},
        "instructed": assigned,
        "zombies": len(zombies),
    }


async def main(seed: int, if_empty: bool) -> int:
    settings = get_settings()
    db = Database(settings, application_name="liangxin-demo", pool_size=2)
    try:
        async with db.session() as session:
            session.info[SERVICE_KEY] = "registry"
            if if_empty and (await session.execute(text("SELECT EXISTS (SELECT 1 FROM organization)"))).scalar():
                sys.stdout.write("demo data: the registry already has organizations; nothing loaded\n")
                return 0
            summary = await load(session, build(seed), seed)
    finally:
        await db.dispose()
    sys.stdout.write("demo data loaded: " + ", ".join(f"{k} {v}" for k, v in summary.items()) + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Load the demo county")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--if-empty", action="store_true", help="do nothing when organizations exist")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.seed, args.if_empty)))
