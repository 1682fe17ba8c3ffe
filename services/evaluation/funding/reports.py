"""The allocation workbook officials open: one row per line, Chinese headers, yuan as integers."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet

from services.evaluation.funding.engine import LEVEL_LABELS
from shared.spreadsheets import safe_row

HEADERS = [
    "年度",
    "规则集",
    "版本",
    "区划代码",
    "区划名称",
    "党组织名称",
    "党组织层级",
    "经费项目",
    "规则编码",
    "计算依据",
    "应拨金额（元）",
    "核定金额（元）",
]
WIDTHS = [8, 14, 6, 15, 14, 30, 10, 24, 22, 30, 14, 14]
YUAN = "#,##0"


def _bold(sheet: Worksheet, values: list[Any]) -> list[WriteOnlyCell]:
    cells = []
    for value in values:
        cell = WriteOnlyCell(sheet, value=value)
        cell.font = Font(bold=True)
        if isinstance(value, int) and not isinstance(value, bool):
            cell.number_format = YUAN
        cells.append(cell)
    return cells


def allocations_xlsx(rows: list[dict[str, Any]]) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("经费分配")
    for i, width in enumerate(WIDTHS):
        sheet.column_dimensions[chr(ord("A") + i)].width = width
    sheet.freeze_panes = "A2"
    sheet.append(_bold(sheet, HEADERS))
    uncapped_total = total = 0
    for r in rows:
        line = [
            r["year"],
            r["rule_set_code"],
            r["rule_set_version"],
            r["region_code"],
            r["region_name"] or "",
            r["party_org_name"],
            LEVEL_LABELS.get(r["party_org_level"], r["party_org_level"]),
            r["rule_name"],
            r["rule_code"],
            r["basis"],
        ]
        cells: list[Any] = safe_row(line)  # names and rules as text, never formulas
        for amount in (r["uncapped_amount"], r["amount"]):
            cell = WriteOnlyCell(sheet, value=amount)
            cell.number_format = YUAN
            cells.append(cell)
        sheet.append(cells)
        uncapped_total += r["uncapped_amount"]
        total += r["amount"]
    sheet.append(_bold(sheet, ["合计", *([""] * 9), uncapped_total, total]))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
