"""Gaps: in-scope organizations still uncovered, what formation each should get, and joint groups.

The recommendation follows 澧县's rule (BRIEF.md): a supervised sector (private schools and
hospitals, law and accounting firms) is built by its industry; ≥ 3 formal members → single;
1–2 → joint with organizations of the same area, else of the same industry, else of the same
township (兜底); none → an instructor and group organizations first (派驻帮建).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage.models import Gap, GapPage, JointGroup, Metric
from services.coverage.service import check_kind, region_ref
from shared import regions, rules
from shared.auth import Caller
from shared.pagination import PageParams, encode_cursor

SUPERVISED = {
    "private_school": "民办学校",
    "private_hospital": "民办医院",
    "law_firm": "律师事务所",
    "accounting_firm": "会计师事务所",
}
JOINT_MAX = 5  # organizations per proposed joint party organization
SINGLE = rules.SINGLE_MIN_FORMAL_MEMBERS

# Counted organizations that do not count yet for each metric (among those it applies to).
_NOT_REACHED = {
    Metric.org_coverage: f"NOT {rules.org_covered_sql('o.')}",
    Metric.work_coverage: f"NOT {rules.work_covered_sql('o.')}",
    Metric.single_formation: f"{rules.single_eligible_sql('o.')} AND NOT {rules.single_formed_sql('o.')}",
}


async def uncovered(
    session: AsyncSession,
    *,
    region_code: str,
    kind: str | None,
    metric: Metric = Metric.org_coverage,
    organization_ids: Iterable[uuid.UUID] | None = None,
) -> list[dict[str, Any]]:
    """Active in-scope organizations that do not yet count for `metric`, in region order."""
    clauses = ["o.region_code LIKE :prefix", rules.counted_sql("o."), _NOT_REACHED[metric]]
    params: dict[str, Any] = {"prefix": regions.prefix(region_code) + "%"}
    if kind:
        clauses.append("o.kind = :kind")
        params["kind"] = kind
    if organization_ids is not None:
        clauses.append("o.id = ANY(:ids)")
        params["ids"] = list(organization_ids)
    found = await session.execute(
        text(
            "SELECT o.id, o.credit_code, o.name, o.kind, o.region_code, o.area_id, o.industry_code, o.sector, "
            f"o.formal_members, o.instructed, {rules.group_org_sql('o.')} AS group_org, "
            "a.name AS area_name, r.name AS township_name "
            "FROM organization o LEFT JOIN party_org p ON p.id = o.party_org_id LEFT JOIN area a ON a.id = o.area_id "
            f"LEFT JOIN region r ON r.code = {regions.township_sql('o.region_code')} "
            f"WHERE {' AND '.join(clauses)} ORDER BY o.region_code, o.id"
        ),
        params,
    )
    return [dict(r) for r in found.mappings()]


def _chunks(members: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Balanced groups of at most JOINT_MAX (7 → 4 + 3, not 5 + 2)."""
    count = -(-len(members) // JOINT_MAX)
    size, extra = divmod(len(members), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(members[start:end])
        start = end
    return out


_GAP_FIELDS = (
    "credit_code",
    "name",
    "kind",
    "region_code",
    "area_id",
    "industry_code",
    "formal_members",
    "instructed",
    "group_org",
)


def _gap(row: dict[str, Any], formation: str, reason: str, group: str | None = None) -> Gap:
    return Gap(
        organization_id=row["id"],
        recommended_formation=formation,
        reason=reason,
        joint_group=group,
        **{k: row[k] for k in _GAP_FIELDS},
    )


def recommend(rows: list[dict[str, Any]]) -> tuple[list[Gap], list[JointGroup]]:
    """A recommendation for every organization, and the joint groups proposed for 1–2-member ones."""
    gaps: dict[uuid.UUID, Gap] = {}
    candidates = []
    for row in rows:
        members = row["formal_members"]
        if row["sector"] in SUPERVISED:
            gaps[row["id"]] = _gap(
                row, "industry", f"{SUPERVISED[row['sector']]}有行业主管部门，由行业党组织统一组建（行业统建）"
            )
        elif rules.single_eligible(members):
            gaps[row["id"]] = _gap(row, "single", f"有正式党员{members}名，符合单独组建条件（{SINGLE}名以上）")
        elif members == 0:
            gaps[row["id"]] = _gap(
                row, "instructor_first", "暂无正式党员：选派党建指导员，先建工会、共青团等群团组织（派驻帮建）"
            )
        else:
            candidates.append(row)

    groups: list[JointGroup] = []
    remaining = candidates
    for basis in ("area", "industry", "township"):
        buckets: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in remaining:
            township = regions.township_of(row["region_code"])
            if basis == "area" and row["area_id"]:
                buckets[(str(row["area_id"]),)].append(row)
            elif basis == "industry" and row["industry_code"]:
                buckets[(township, row["industry_code"][:3])].append(row)
            elif basis == "township":
                buckets[(township,)].append(row)
        placed: set[uuid.UUID] = set()
        for key, members in sorted(buckets.items()):
            if len(members) < 2:
                continue
            for n, chunk in enumerate(_chunks(members), start=1):
                group_key = f"{basis}:{':'.join(key)}:{n}"
                first = chunk[0]
                township_name = first["township_name"] or key[0]
                if basis == "area":
                    label, why = f"{first['area_name'] or '园区'}联合党支部（拟）", "同一园区/商圈/楼宇"
                elif basis == "industry":
                    label, why = f"{township_name}{key[1]}行业联合党支部（拟）", "同一乡镇同一行业"
                else:
                    label, why = f"{township_name}非公企业联合党支部（拟）", "同一乡镇（兜底）"
                groups.append(
                    JointGroup(
                        key=group_key,
                        basis=basis,
                        label=label,
                        region_code=regions.township_of(first["region_code"]),
                        organization_ids=[m["id"] for m in chunk],
                        names=[m["name"] for m in chunk],
                    )
                )
                for m in chunk:
                    placed.add(m["id"])
                    gaps[m["id"]] = _gap(
                        m,
                        "joint",
                        f"有正式党员{m['formal_members']}名，不足{SINGLE}名：与{why}的{len(chunk) - 1}家组织联合组建",
                        group_key,
                    )
        remaining = [r for r in remaining if r["id"] not in placed]
    for row in remaining:
        gaps[row["id"]] = _gap(
            row,
            "joint",
            f"有正式党员{row['formal_members']}名，不足{SINGLE}名，附近暂无可联合的组织：纳入乡镇已有联合党组织（兜底）",
        )
    return [gaps[r["id"]] for r in rows], groups


async def gap_page(
    session: AsyncSession,
    *,
    caller: Caller,
    region: str | None,
    kind: str | None,
    metric: Metric,
    page: PageParams,
) -> GapPage:
    check_kind(kind)
    root = await region_ref(session, caller, region)
    rows = await uncovered(session, region_code=root.code, kind=kind, metric=metric)
    gaps, _ = recommend(rows)
    summary: dict[str, int] = defaultdict(int)
    for gap in gaps:
        summary[gap.recommended_formation] += 1
    start = 0
    if (after := page.after(str, uuid.UUID)) is not None:
        start = next((i + 1 for i, g in enumerate(gaps) if (g.region_code, g.organization_id) == after), len(gaps))
    window = gaps[start : start + page.limit]
    more = start + page.limit < len(gaps)
    cursor = encode_cursor(window[-1].region_code, str(window[-1].organization_id)) if more and window else None
    return GapPage(items=window, next_cursor=cursor, summary=dict(summary))


async def joint_groups(
    session: AsyncSession, *, caller: Caller, region: str | None, kind: str | None
) -> list[JointGroup]:
    check_kind(kind)
    root = await region_ref(session, caller, region)
    _, groups = recommend(await uncovered(session, region_code=root.code, kind=kind))
    return groups
