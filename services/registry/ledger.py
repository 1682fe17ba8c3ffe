"""The ledger export (台账, 一企一表): one row per organization, Chinese headers, XLSX or CSV."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter as _letter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.labels import label
from services.registry.models import OrgKind
from services.registry.organizations import OrgFilter, filter_sql
from shared.auth import Caller
from shared.errors import ProblemError
from shared.spreadsheets import safe_row

XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit, minus the header row
CHUNK = 2_000

# (header, column in the query, value label field)
LEDGER_COLUMNS: list[tuple[str, str, str | None]] = [
    ("统一社会信用代码", "credit_code", None),
    ("名称", "name", None),
    ("类型", "kind", "kind"),
    ("所属区划代码", "region_code", None),
    ("所属区划", "region_name", None),
    ("所属园区商圈楼宇", "area_name", None),
    ("行业代码", "industry_code", None),
    ("登记机关", "registration_authority", "registration_authority"),
    ("主管行业", "sector", "sector"),
    ("地址", "address", None),
    ("经营状态", "status", "status"),
    ("是否纳入摸排范围", "in_scope", None),
    ("从业人员", "employees", None),
    ("有固定经营场所", "has_fixed_premises", None),
    ("有生产经营活动", "has_business_activity", None),
    ("社会组织登记级别", "social_org_level", "social_org_level"),
    ("正式党员数", "formal_members", None),
    ("预备党员数", "probationary_members", None),
    ("入党积极分子数", "activists", None),
    ("流动党员数", "floating_members", None),
    ("是否建立党组织", "covered", None),
    ("所在党组织", "party_org_name", None),
    ("组建方式", "formation", "formation"),
    ("党组织层级", "party_org_level", "level"),
    ("党建指导员", "instructors", None),
    ("建立工会", "has_trade_union", None),
    ("建立共青团", "has_youth_league", None),
    ("负责人政治面貌", "leader_political_status", "leader_political_status"),
    ("出资人是党员", "investor_is_party_member", None),
    ("党建写入章程", "charter_includes_party_building", None),
    ("最后更新", "updated_at", None),
]

_QUERY = """
SELECT o.*, r.name AS region_name, a.name AS area_name, o.party_org_id IS NOT NULL AS covered,
       p.name AS party_org_name, p.formation, p.level AS party_org_level,
       (SELECT string_agg(i.name, '、' ORDER BY i.name) FROM instructor_assignment ia
          JOIN instructor i ON i.id = ia.instructor_id
         WHERE ia.organization_id = o.id AND ia.start_date <= CURRENT_DATE
           AND (ia.end_date IS NULL OR ia.end_date >= CURRENT_DATE)) AS instructors
FROM organization o
JOIN region r ON r.code = o.region_code
LEFT JOIN area a ON a.id = o.area_id
LEFT JOIN party_org p ON p.id = o.party_org_id
WHERE {where} AND (o.region_code, o.id) > (:last_region, CAST(:last_id AS uuid))
ORDER BY o.region_code, o.id
LIMIT :limit
"""


def _value(row: dict[str, Any], column: str, field: str | None) -> Any:
    value = row.get(column)
    if field is not None:
        return label(field, value)
    if isinstance(value, bool):
        return "是" if value else "否"
    if value is None:
        return ""
    if column == "updated_at":
        return value.strftime("%Y-%m-%d %H:%M")
    return value


async def _rows(
    session: AsyncSession, caller: Caller, region: str | None, kind: OrgKind | None
) -> AsyncIterator[list[Any]]:
    params: dict[str, Any] = {}
    clauses = filter_sql(caller, OrgFilter(region=region, kind=kind), params)
    where = " AND ".join(clauses) or "TRUE"
    last_region, last_id = "", "00000000-0000-0000-0000-000000000000"
    while True:
        found = await session.execute(
            text(_QUERY.format(where=where)), {**params, "last_region": last_region, "last_id": last_id, "limit": CHUNK}
        )
        rows = [dict(r) for r in found.mappings()]
        for row in rows:
            yield safe_row([_value(row, column, field) for _, column, field in LEDGER_COLUMNS])
        if len(rows) < CHUNK:
            return
        last_region, last_id = rows[-1]["region_code"], str(rows[-1]["id"])


async def count(session: AsyncSession, caller: Caller, region: str | None, kind: OrgKind | None) -> int:
    params: dict[str, Any] = {}
    clauses = filter_sql(caller, OrgFilter(region=region, kind=kind), params)
    found = await session.execute(
        text(f"SELECT count(*) FROM organization o WHERE {' AND '.join(clauses) or 'TRUE'}"), params
    )
    return int(found.scalar_one())


async def xlsx(session: AsyncSession, *, caller: Caller, region: str | None, kind: OrgKind | None) -> Any:
    """A spooled file holding the workbook (streamed row by row, never all in memory)."""
    if (total := await count(session, caller, region, kind)) > XLSX_MAX_ROWS:
        raise ProblemError(
            413,
            f"{total} organizations exceed what one sheet holds ({XLSX_MAX_ROWS}); "
            "export a smaller region or use ledger.csv",
            code="too-many-rows",
        )
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("两新组织台账")
    sheet.freeze_panes = "A2"
    widths = {"统一社会信用代码": 22, "名称": 36, "所属区划": 16, "所在党组织": 28, "地址": 30}
    for index, (header, _, _) in enumerate(LEDGER_COLUMNS, start=1):
        letter = sheet.column_dimensions[_letter(index)]
        letter.width = widths.get(header, 12)
    header_cells = []
    for header, _, _ in LEDGER_COLUMNS:
        cell = WriteOnlyCell(sheet, value=header)
        cell.font = Font(bold=True)
        header_cells.append(cell)
    sheet.append(header_cells)
    async for values in _rows(session, caller, region, kind):
        sheet.append(values)
    sheet.auto_filter.ref = f"A1:{_letter(len(LEDGER_COLUMNS))}{total + 1}"
    out = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
    workbook.save(out)
    out.seek(0)
    return out


async def csv_file(session: AsyncSession, *, caller: Caller, region: str | None, kind: OrgKind | None) -> Any:
    """A spooled file holding the CSV, written before the request's transaction ends."""
    out = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
    # utf-8-sig writes a BOM, so Excel opens the file with its Chinese text intact.
    wrapper = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
    writer = csv.writer(wrapper)
    writer.writerow([h for h, _, _ in LEDGER_COLUMNS])
    async for values in _rows(session, caller, region, kind):
        writer.writerow(values)
    wrapper.flush()
    wrapper.detach()
    out.seek(0)
    return out
