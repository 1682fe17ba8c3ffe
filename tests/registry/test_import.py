"""Partner bulk import: per-row rejection, no half-applied rows, idempotency, files."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

from openpyxl import Workbook, load_workbook
from sqlalchemy import text

from services.registry.labels import COLUMN_LABELS
from tests.helpers import credit_code, import_orgs, org_record


async def counts(db: Any) -> dict[str, int]:
    async with db.session() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM organization) AS orgs, "
                    "(SELECT count(*) FROM registry_change) AS ledger, "
                    "(SELECT count(*) FROM registry_outbox WHERE type LIKE 'registry.organization.%') AS events, "
                    "(SELECT coalesce(sum(version), 0) FROM organization) AS versions"
                )
            )
        ).one()
    return dict(row._mapping)


def corrupt(code: str) -> str:
    """The same code with a wrong check character."""
    from shared.codes import CREDIT_ALPHABET

    return code[:17] + CREDIT_ALPHABET[(CREDIT_ALPHABET.index(code[17]) + 1) % 31]


async def test_ten_thousand_rows_with_one_percent_bad_codes(db, registry, admin, tree) -> None:
    rng = random.Random(7)
    records = [
        org_record(n, region_code=rng.choice(["430723100001", "430723101000"]), formal_members=rng.randint(0, 6))
        for n in range(10_000)
    ]
    bad_rows = sorted(rng.sample(range(10_000), 100))
    for row in bad_rows:
        records[row]["credit_code"] = corrupt(records[row]["credit_code"])
    result = await import_orgs(registry, admin, records)
    assert (result["created"], result["rejected"], result["updated"], result["unchanged"]) == (9_900, 100, 0, 0)
    assert [e["row"] for e in result["errors"]] == bad_rows
    assert all(
        e["field"] == "credit_code" and e["reason"].startswith("check character should be") for e in result["errors"]
    )
    after = await counts(db)
    assert after["orgs"] == 9_900 and after["ledger"] == 9_900
    # Events carry up to 500 organizations each: 9,900 registrations in 20 events.
    assert after["events"] == 20


async def test_resending_a_batch_changes_nothing(db, registry, admin, tree) -> None:
    records = [org_record(n) for n in range(50)]
    await import_orgs(registry, admin, records)
    before = await counts(db)
    again = await import_orgs(registry, admin, records)
    assert (again["created"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 50, 0)
    assert await counts(db) == before  # no rows, no ledger lines, no events, no version bumps


async def test_a_bad_row_is_never_half_applied(db, registry, admin, tree) -> None:
    await import_orgs(registry, admin, [org_record(1), org_record(2)])
    result = await import_orgs(
        registry,
        admin,
        [
            org_record(1, employees=99, region_code="430702001000"),  # fine: moves within the national admin's reach
            org_record(2, employees=77, region_code="430723000000"),  # county level: the whole row is refused
            org_record(3, formal_members=-1),
            {"credit_code": credit_code(4), "name": "缺类型"},
        ],
    )
    assert (result["updated"], result["rejected"]) == (1, 3)
    reasons = {e["row"]: (e["field"], e["reason"]) for e in result["errors"]}
    assert reasons[1][0] == "region_code"
    assert reasons[2] == ("formal_members", "Input should be greater than or equal to 0")
    assert set(reasons) == {1, 2, 3}
    org2 = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(2)}", headers=admin)).json()
    assert org2["employees"] == 25 and org2["region_code"] == "430723100001" and org2["version"] == 1


async def test_two_rows_with_one_credit_code_are_both_rejected(registry, admin, tree) -> None:
    result = await import_orgs(registry, admin, [org_record(1), org_record(2), org_record(1, name="另一个")])
    assert result["created"] == 1
    assert [(e["row"], e["reason"]) for e in result["errors"]] == [
        (0, "appears again in row(s) 2 of this batch"),
        (2, "appears again in row(s) 0 of this batch"),
    ]


async def test_partners_update_only_the_columns_they_send(registry, admin, tree) -> None:
    await import_orgs(registry, admin, [org_record(1, formal_members=4, address="澧州大道1号")])
    # The party-member system knows member counts and nothing else.
    result = await import_orgs(
        registry,
        admin,
        [
            {
                "credit_code": credit_code(1),
                "name": "澧县测试企业1号有限公司",
                "kind": "enterprise",
                "region_code": "430723100001",
                "formal_members": 6,
                "probationary_members": 1,
            }
        ],
    )
    assert result["updated"] == 1
    org = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(1)}", headers=admin)).json()
    assert (org["formal_members"], org["probationary_members"], org["address"], org["employees"]) == (
        6,
        1,
        "澧州大道1号",
        25,
    )


async def test_idempotency_key_replays_the_stored_answer(db, registry, admin, tree) -> None:
    records = [org_record(n) for n in range(5)] + [org_record(9, credit_code="BAD")]
    headers = {**admin, "Idempotency-Key": "batch-2026-11-22-001"}
    first = await registry.post("/v1/organizations/import", json={"records": records}, headers=headers)
    state = await counts(db)
    second = await registry.post("/v1/organizations/import", json={"records": records}, headers=headers)
    assert second.json() == first.json() and second.headers["idempotent-replayed"] == "true"
    assert await counts(db) == state
    reused = await registry.post("/v1/organizations/import", json={"records": records[:2]}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_dry_run_reports_without_writing(db, registry, admin, tree) -> None:
    await import_orgs(registry, admin, [org_record(1)])
    state = await counts(db)
    result = await import_orgs(
        registry, admin, [org_record(1, employees=3), org_record(2), org_record(3)], dry_run=True
    )
    assert (result["created"], result["updated"], result["dry_run"]) == (2, 1, True)
    assert await counts(db) == state


async def test_batches_are_capped(registry, admin, tree) -> None:
    response = await registry.post("/v1/organizations/import", json={"records": [{}] * 10_001}, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "records", "reason": "at most 10000 records per batch (got 10001)"}]


def chinese_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    fields = [
        "credit_code",
        "name",
        "kind",
        "region_code",
        "employees",
        "has_fixed_premises",
        "has_business_activity",
        "formal_members",
    ]
    labels = {"kind": {"enterprise": "非公有制企业", "social_org": "社会组织"}}
    body = []
    for r in rows:
        out = []
        for f in fields:
            value = r.get(f)
            if isinstance(value, bool):
                value = "是" if value else "否"
            out.append(labels.get(f, {}).get(str(value), value))
        body.append(out)
    return [COLUMN_LABELS[f] for f in fields], body


async def test_csv_upload_with_chinese_headers_in_gb18030(registry, admin, tree) -> None:
    headers, rows = chinese_table([org_record(1), org_record(2, kind="social_org", employees=35)])
    buffer = io.StringIO()
    csv.writer(buffer).writerows([headers, *rows])
    response = await registry.post(
        "/v1/organizations/import/file",
        headers=admin,
        files={"file": ("台账.csv", buffer.getvalue().encode("gb18030"), "text/csv")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    social = (await registry.get(f"/v1/organizations/by-credit-code/{credit_code(2)}", headers=admin)).json()
    assert social["kind"] == "social_org" and social["in_scope"] is True and social["has_fixed_premises"] is True


async def test_xlsx_upload_comes_back_annotated_for_the_official(registry, admin, tree) -> None:
    records = [org_record(1), org_record(2, credit_code=corrupt(credit_code(2))), org_record(3, employees="很多")]
    headers, rows = chinese_table(records)
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    data = io.BytesIO()
    workbook.save(data)
    response = await registry.post(
        "/v1/organizations/import/file",
        headers=admin,
        data={"annotate": "true"},
        files={"file": ("导入.xlsx", data.getvalue(), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-import-created"] == "1" and response.headers["x-import-rejected"] == "2"
    annotated = load_workbook(io.BytesIO(response.content))
    sheet = annotated["导入数据"]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][-1] == "错误说明"
    assert values[1][-1] is None
    assert values[2][-1].startswith("统一社会信用代码：check character should be")
    assert values[3][-1].startswith("从业人员数：")
    assert sheet.cell(row=3, column=1).fill.start_color.rgb == "FFFFC7CE"  # the bad credit code cell
    assert sheet.cell(row=4, column=5).fill.start_color.rgb == "FFFFC7CE"  # the bad employee count
    assert sheet.cell(row=2, column=1).fill.fill_type is None
    summary = dict(annotated["导入结果"].iter_rows(values_only=True))
    assert summary["新增"] == 1 and summary["拒绝"] == 2


async def test_files_with_unknown_columns_or_types_are_refused_whole(db, registry, admin, tree) -> None:
    response = await registry.post(
        "/v1/organizations/import/file",
        headers=admin,
        files={"file": ("x.csv", "统一社会信用代码,名称,类型,所属区划代码,颜色\n".encode(), "text/csv")},
    )
    assert response.status_code == 422 and "unknown column(s): 颜色" in response.json()["detail"]
    pdf = await registry.post(
        "/v1/organizations/import/file", headers=admin, files={"file": ("x.pdf", b"%PDF-1.4", "application/pdf")}
    )
    assert pdf.status_code == 415
    assert (await counts(db))["orgs"] == 0
