"""Formula injection: partner text reaches every spreadsheet officials open as inert text."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from services.evaluation.funding.engine import SEED_RULE_SETS
from shared.spreadsheets import safe_cell
from tests.helpers import LIXIAN, TREE, credit_code, import_orgs, import_tree, org_record

# What OWASP lists as formula triggers, as a partner system or a spreadsheet would send them.
VARIANTS = [
    '=HYPERLINK("http://x","y")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-1+1",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
]
TOWNSHIP = "430723100000"


def in_workbook(variant: str) -> str:
    """The neutralized text as read back from XLSX, where XML turns a carriage return into a line feed."""
    return "'" + variant.replace("\r", "\n")


def test_safe_cell_quotes_triggers_and_leaves_numbers_alone() -> None:
    assert [safe_cell(v) for v in VARIANTS] == ["'" + v for v in VARIANTS]
    assert [safe_cell(v) for v in (-5, -1.5, 0, True, None, "澧县-1号", "a=b", "")] == [
        -5,
        -1.5,
        0,
        True,
        None,
        "澧县-1号",
        "a=b",
        "",
    ]
    assert safe_cell("\x01=1+1") == "'=1+1"  # a control character XML cannot hold does not hide a trigger


def assert_no_formulas(content: bytes) -> list[tuple[Any, ...]]:
    """The workbook's rows; fails on any formula cell, in openpyxl's view and in the sheet XML."""
    workbook = load_workbook(io.BytesIO(content))
    rows: list[tuple[Any, ...]] = []
    for sheet in workbook.worksheets:
        assert isinstance(sheet, Worksheet)
        for row in sheet.iter_rows():
            assert [c.coordinate for c in row if c.data_type == "f"] == []
        rows += list(sheet.iter_rows(values_only=True))
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in archive.read(name) and b"<f " not in archive.read(name)
    return rows


async def test_ledger_workbook_and_csv(registry, admin, tree) -> None:
    records = [org_record(n, name=v, address=v, employees=n + 10) for n, v in enumerate(VARIANTS)]
    result = await import_orgs(registry, admin, records)
    assert result["created"] == len(VARIANTS), result["errors"]  # the schema accepts every variant

    workbook = await registry.get("/v1/ledger.xlsx", headers=admin)
    assert workbook.status_code == 200
    rows = assert_no_formulas(workbook.content)
    header = rows[0]
    by_code = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    for n, variant in enumerate(VARIANTS):
        row = by_code[credit_code(n)]
        assert (row["名称"], row["地址"]) == (in_workbook(variant), in_workbook(variant))
        assert row["从业人员"] == n + 10  # numbers stay numbers

    text = await registry.get("/v1/ledger.csv", headers=admin)
    lines = list(csv.reader(io.StringIO(text.content.decode("utf-8-sig"), newline="")))
    by_code_csv = {line[0]: dict(zip(lines[0], line, strict=True)) for line in lines[1:]}
    for n, variant in enumerate(VARIANTS):
        row = by_code_csv[credit_code(n)]
        assert (row["名称"], row["地址"]) == ("'" + variant, "'" + variant)
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())


async def test_a_control_character_in_a_name_does_not_break_the_ledger(registry, admin, tree) -> None:
    # XML cannot hold U+0001: openpyxl refused to write it and the whole ledger was a 500.
    await import_orgs(registry, admin, [org_record(1, name="澧县\x01公司")])
    workbook = await registry.get("/v1/ledger.xlsx", headers=admin)
    assert workbook.status_code == 200
    assert assert_no_formulas(workbook.content)[1][1] == "澧县公司"


async def test_annotated_import_workbook_echoes_cells_as_text(registry, admin, tree) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["credit_code", "name", "kind", "region_code", "address", "employees"])
    for n, variant in enumerate(VARIANTS):
        writer.writerow([credit_code(n), variant, "enterprise", "430723100001", variant, "很多" if n == 0 else "12"])
    response = await registry.post(
        "/v1/organizations/import/file",
        headers=admin,
        data={"annotate": "true"},
        files={"file": ("导入.csv", buffer.getvalue().encode(), "text/csv")},
    )
    assert response.status_code == 200, response.text
    rows = assert_no_formulas(response.content)
    data = rows[1 : 1 + len(VARIANTS)]
    assert [r[1] for r in data] == [in_workbook(v) for v in VARIANTS]
    assert [r[4] for r in data] == [in_workbook(v) for v in VARIANTS]
    assert data[0][-1].startswith("从业人员数：")  # the error column still explains the bad row


async def test_funding_allocation_workbook(registry, evaluation, admin, tree) -> None:
    await import_orgs(registry, admin, [org_record(n, formal_members=5) for n in range(len(VARIANTS))])
    for n, variant in enumerate(VARIANTS):
        created = await registry.post(
            "/v1/party-orgs",
            headers=admin,
            json={
                "name": variant,
                "level": "branch",
                "formation": "single",
                "region_code": TOWNSHIP,
                "established_on": "2020-05-01",
                "covered_credit_codes": [credit_code(n)],
            },
        )
        assert created.status_code == 201, created.text
    body = {"code": "diqing", "region_code": LIXIAN, **SEED_RULE_SETS["diqing"]}
    assert (await evaluation.post("/v1/funding/rule-sets", headers=admin, json=body)).status_code == 201
    computed = await evaluation.post(
        "/v1/funding/allocations:compute",
        headers=admin,
        json={"year": 2026, "region_code": LIXIAN, "rule_set_code": "diqing"},
    )
    assert computed.status_code == 200, computed.text
    response = await evaluation.get("/v1/funding/allocations.xlsx", headers=admin, params={"year": 2026})
    assert response.status_code == 200
    rows = assert_no_formulas(response.content)
    assert rows[0][5] == "党组织名称"
    assert {r[5] for r in rows[1:-1]} == {in_workbook(v) for v in VARIANTS}
    assert all(isinstance(r[-1], int) for r in rows[1:])  # amounts stay numbers


async def test_coverage_workbook(registry, coverage, admin) -> None:
    townships = [{"code": f"4307231{n:02d}000", "name": v} for n, v in enumerate(VARIANTS, start=10)]
    await import_tree(registry, admin, [*TREE, *townships])
    response = await coverage.get("/v1/reports/coverage.xlsx", headers=admin, params={"region": LIXIAN})
    assert response.status_code == 200, response.text
    rows = assert_no_formulas(response.content)
    names = {r[1] for r in rows[3:]}
    assert {in_workbook(v) for v in VARIANTS} <= names
