"""The ledger export officials open in a spreadsheet program."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from tests.helpers import credit_code, import_orgs, import_tree, make_user, org_record


async def test_xlsx_has_chinese_headers_frozen_row_and_filters(db, registry, admin) -> None:
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, formal_members=4),
            org_record(2, kind="social_org", social_org_level="province"),
            org_record(3, region_code="430702001000"),
        ],
    )
    await registry.post(
        "/v1/party-orgs",
        headers=admin,
        json={
            "name": "一号企业党支部",
            "level": "branch",
            "formation": "single",
            "region_code": "430723100001",
            "established_on": "2026-01-05",
            "covered_credit_codes": [credit_code(1)],
        },
    )
    county = await make_user(db, role="officer", region="430723000000")
    response = await registry.get("/v1/ledger.xlsx", headers=county)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    header = rows[0]
    assert header[:4] == ("统一社会信用代码", "名称", "类型", "所属区划代码")
    assert {"从业人员", "正式党员数", "是否建立党组织", "组建方式", "党建指导员"} <= set(header)
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:AE{len(rows)}"
    assert len(rows) == 3  # the 武陵区 organization is outside the county
    by_code = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    first = by_code[credit_code(1)]
    assert first["类型"] == "非公有制企业" and first["是否建立党组织"] == "是" and first["组建方式"] == "单独组建"
    assert first["所在党组织"] == "一号企业党支部" and first["所属区划"] == "澧州社区"
    assert by_code[credit_code(2)]["类型"] == "社会组织" and by_code[credit_code(2)]["是否建立党组织"] == "否"

    social = await registry.get("/v1/ledger.csv", params={"kind": "social_org"}, headers=county)
    assert social.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(social.content.decode("utf-8-sig"))))
    assert lines[0] == list(header) and [line[0] for line in lines[1:]] == [credit_code(2)]
