"""双述双评: a secretary's report per cycle, evaluators' scores, aggregates per party organization."""

from __future__ import annotations

from tests.evaluation.factories import county, cycle


async def test_review_aggregates(db, registry, evaluation, admin) -> None:
    people = await county(db, registry, admin, n=2)
    first, second = people["party_orgs"]
    c = await cycle(evaluation, people["county"], name="2027年度双述双评")
    report = await evaluation.post(
        f"/v1/cycles/{c['id']}/reviews",
        headers=people["county"],
        json={
            "party_org_id": first["id"],
            "secretary_name": "王书记",
            "content": "一年来，党支部围绕企业发展开展“三会一课”……",
            "reported_on": "2027-12-20",
        },
    )
    assert report.status_code == 201, report.text
    rid = report.json()["id"]
    again = await evaluation.post(
        f"/v1/cycles/{c['id']}/reviews",
        headers=people["county"],
        json={"party_org_id": first["id"], "secretary_name": "王书记", "content": "x", "reported_on": "2027-12-21"},
    )
    assert again.status_code == 409
    await evaluation.post(
        f"/v1/cycles/{c['id']}/reviews",
        headers=people["county"],
        json={"party_org_id": second["id"], "secretary_name": "李书记", "content": "述职", "reported_on": "2027-12-20"},
    )
    for kind, score in (("member", "92"), ("member", "85.5"), ("public", "78"), ("superior", "90")):
        response = await evaluation.post(
            f"/v1/reviews/{rid}/scores", headers=people["county"], json={"evaluator_kind": kind, "score": score}
        )
        assert response.status_code == 201, response.text
    bad = await evaluation.post(
        f"/v1/reviews/{rid}/scores", headers=people["county"], json={"evaluator_kind": "member", "score": 101}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "score"
    unknown = await evaluation.post(
        f"/v1/reviews/{rid}/scores", headers=people["county"], json={"evaluator_kind": "boss", "score": 50}
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "evaluator_kind"

    summary = (await evaluation.get(f"/v1/cycles/{c['id']}/reviews/summary", headers=people["city"])).json()
    by_org = {s["party_org_id"]: s for s in summary}
    assert by_org[first["id"]] == {
        "party_org_id": first["id"],
        "party_org_name": first["name"],
        "region_code": first["region_code"],
        "report_id": rid,
        "count": 4,
        "average": "86.38",
        "min": "78.00",
        "max": "92.00",
        "by_kind": {"member": 2, "public": 1, "superior": 1},
    }
    empty = by_org[second["id"]]
    assert (empty["count"], empty["average"], empty["min"], empty["max"], empty["by_kind"]) == (0, None, None, None, {})
    scores = (await evaluation.get(f"/v1/reviews/{rid}/scores", headers=people["county"])).json()
    assert [s["score"] for s in scores] == ["92.00", "85.50", "78.00", "90.00"]

    assert (await evaluation.get(f"/v1/reviews/{rid}", headers=people["wuling"])).status_code == 404
    assert (
        await evaluation.post(
            f"/v1/reviews/{rid}/scores", headers=people["wuling"], json={"evaluator_kind": "member", "score": 1}
        )
    ).status_code == 404
