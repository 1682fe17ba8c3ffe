"""The demo county: believable, valid, deterministic, loaded through the real write paths."""

from __future__ import annotations

from sqlalchemy import text

from services.registry import demo
from shared.codes import credit_code_problem
from shared.outbox import SERVICE_KEY
from tests.helpers import recompute


def test_the_same_seed_builds_the_same_county() -> None:
    first, again, other = demo.build(2026), demo.build(2026), demo.build(7)
    assert [r["credit_code"] for r in first.records] == [r["credit_code"] for r in again.records]
    assert [r["credit_code"] for r in first.records] != [r["credit_code"] for r in other.records]
    assert all(credit_code_problem(r["credit_code"]) is None for r in first.records)
    assert len({r["credit_code"] for r in first.records}) == len(first.records)
    assert len(first.communities) == 19
    assert all(len(c) >= 4 for c in first.communities.values())


async def test_loading_the_demo_county(db) -> None:
    async with db.session() as session:
        session.info[SERVICE_KEY] = "registry"
        summary = await demo.load(session, demo.build(2026), 2026)
    # The banner's "in scope" is the coverage figures' denominator, counted by coverage itself.
    await recompute()
    async with db.session() as session:
        figure = await session.execute(
            text("SELECT sum(in_scope) FROM coverage_figure WHERE region_code = :county"),
            {"county": demo.COUNTY + "000000"},
        )
        assert summary["in_scope"] == figure.scalar_one()
    async with db.session() as session:
        kinds = dict((await session.execute(text("SELECT kind, count(*) FROM organization GROUP BY kind"))).all())
        formations = dict(
            (await session.execute(text("SELECT formation, count(*) FROM party_org GROUP BY formation"))).all()
        )
        zombies = (await session.execute(text("SELECT count(*) FROM organization WHERE status = 'zombie'"))).scalar()
        ledger = (await session.execute(text("SELECT count(*) FROM registry_change"))).scalar()
        areas = (await session.execute(text("SELECT count(*) FROM organization WHERE area_id IS NOT NULL"))).scalar()
    assert 8_900 <= kinds["enterprise"] <= 9_100 and kinds["social_org"] == 400
    assert set(formations) == {"single", "joint", "industry", "regional", "affiliated"}
    assert zombies == summary["zombies"] == 51
    assert summary["instructed"] > 0 and areas > 0
    assert ledger > kinds["enterprise"] + kinds["social_org"]  # creation lines plus coverage and status lines
