"""The organization write checks that need the database (`services/registry/merge.py` `CHECKS`):
a partner's import with one row breaking each of them gets each row refused with the check's
field and reason, the row's values spliced in, and nothing of those rows applied."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from services.registry import merge
from tests.helpers import LIXIAN, import_orgs, import_tree, make_api_key, org_record


async def test_each_check_refuses_its_row_with_its_field_and_reason(db: Any, registry: Any, admin: Any) -> None:
    await import_tree(registry, admin)
    existing = [org_record(1), org_record(8), org_record(9), org_record(2, region_code="430702001000")]
    await import_orgs(registry, admin, existing)
    area = await registry.post(
        "/v1/areas", headers=admin, json={"name": "小渡口工业园", "kind": "park", "region_code": "430723101000"}
    )
    assert area.status_code == 201, area.text
    partner = await make_api_key(db, scopes=["registry:read", "registry:write"], region=LIXIAN)
    rows: list[tuple[dict[str, Any], str, str]] = [
        (org_record(2), "credit_code", merge.OUTSIDE),
        (org_record(1, formal_members=None), "formal_members", "cannot be null"),
        (org_record(3, region_code="430702001000"), "region_code", merge.OUTSIDE),
        (org_record(4, region_code="430723199000"), "region_code", "region 430723199000 is not registered"),
        (
            org_record(5, region_code=LIXIAN),
            "region_code",
            "must be a township (level 4) or a village or community (level 5)",
        ),
        (org_record(6, area_id="00000000-0000-4000-8000-000000000000"), "area_id", "no such area"),
        (
            org_record(7, area_id=area.json()["id"]),
            "area_id",
            "the area lies in another region than the organization",
        ),
        (org_record(8, status="closed"), "status_reason", "a status change needs a reason"),
        (
            org_record(9, status="zombie", status_reason="走访"),
            "status",
            "only officials may set status 'zombie' (after a verified visit)",
        ),
    ]
    answer = await registry.post(
        "/v1/organizations/import", headers=partner, json={"records": [record for record, _, _ in rows]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors"] == [
        {"row": i, "field": field, "reason": reason} for i, (_, field, reason) in enumerate(rows)
    ]
    async with db.session() as session:
        found = await session.execute(text("SELECT count(*), max(version) FROM organization"))
        assert tuple(found.one()) == (len(existing), 1)
    # The declared list is what the merge checks: each of these reasons is one of its entries.
    declared = {(c.field, c.reason) for c in merge.CHECKS}
    assert {
        (field, reason.replace("430723199000", "{x.region_code}").replace("'zombie'", "'{x.status}'"))
        for _, field, reason in rows
    } <= declared
