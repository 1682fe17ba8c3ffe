"""The event catalog is the whole contract between the services.

A service subscribes to an event only when its handler acts on it, and handles only what it
subscribes to; every outbox row is written through the catalog, events built in SQL included,
and those carry exactly the payload the catalog declares.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.registry import merge
from shared.events import CATALOG, SERVICES, emit_sql, outbox_insert_sql, subscriptions
from shared.outbox import SERVICE_KEY
from shared.worker import check_subscriptions
from tests.helpers import credit_code, import_orgs, import_tree, org_record

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("service", SERVICES)
def test_every_subscription_has_a_handler_and_every_handler_a_subscription(service: str) -> None:
    handlers = importlib.import_module(f"services.{service}.events").HANDLERS
    assert set(handlers) == subscriptions(service)


def test_a_worker_with_a_subscription_it_does_not_handle_refuses_to_start() -> None:
    with pytest.raises(RuntimeError, match=r"subscribed without a handler: \['registry.party_org.dissolved'\]"):
        check_subscriptions("evaluation", {})


def test_every_outbox_write_goes_through_the_catalog() -> None:
    raw = re.compile(r"insert\s+into\s+[\w{}\"]*_outbox|insert\(\s*outbox_table", re.IGNORECASE)
    writers = [
        str(path.relative_to(ROOT))
        for folder in ("services", "shared")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "shared" / "events.py" and raw.search(path.read_text())
    ]
    assert writers == []


def test_sql_built_events_are_vetted_by_the_catalog() -> None:
    select = "SELECT 'x' AS type, json_build_object() AS payload"
    with pytest.raises(ValueError, match="unknown event type"):
        outbox_insert_sql("registry", ["registry.organization.renamed"], select)
    with pytest.raises(RuntimeError, match="produced by coverage, not by registry"):
        outbox_insert_sql("registry", ["coverage.visit.verified"], select)
    with pytest.raises(ValueError, match="name the event types"):
        outbox_insert_sql("registry", [], select)


async def test_a_sql_built_event_of_a_type_not_named_writes_nothing(db: Any) -> None:
    with pytest.raises(DBAPIError, match="version"):
        async with db.session() as session:
            session.info[SERVICE_KEY] = "registry"
            await emit_sql(
                session,
                ["registry.organization.updated"],
                "SELECT 'registry.organization.renamed' AS type, json_build_object('source', 'x') AS payload",
            )
    async with db.session() as session:
        assert (await session.execute(text("SELECT count(*) FROM registry_outbox"))).scalar() == 0


async def test_the_merges_sql_built_payloads_are_the_catalogs(db: Any, registry: Any, admin: dict[str, str]) -> None:
    await import_tree(registry, admin)
    await import_orgs(
        registry,
        admin,
        [org_record(1, formal_members=4, has_youth_league=True), org_record(2, employees=None), org_record(3)],
    )
    await import_orgs(
        registry,
        admin,
        [
            org_record(1, formal_members=5),
            org_record(2, employees=None, status="closed", status_reason="停业"),
        ],
    )
    async with db.session() as session:
        found = await session.execute(
            text("SELECT type, payload FROM registry_outbox WHERE type = ANY(:types) ORDER BY seq"),
            {"types": list(merge.EVENT_TYPES)},
        )
        events = [(r.type, r.payload) for r in found]
    assert sorted({t for t, _ in events}) == sorted(merge.EVENT_TYPES)
    for event_type, payload in events:
        model = CATALOG[event_type].payload
        assert model is not None
        # Exactly what the catalog's model makes of it: no field missing, none extra, none of another form.
        assert model.model_validate(payload).model_dump(mode="json") == payload
    registered = next(p for t, p in events if t == "registry.organization.registered")
    first = next(c for c in registered["changes"] if c["credit_code"] == credit_code(1))
    assert first["before"] is None
    after = first["after"]
    assert (after["group_org"], after["formal_members"], after["covered"]) == (True, 4, False)
    updated = next(p for t, p in events if t == "registry.organization.updated")["changes"][0]
    assert (updated["before"]["formal_members"], updated["after"]["formal_members"]) == (4, 5)
    closed = next(p for t, p in events if t == "registry.organization.status_changed")["changes"][0]
    assert (closed["before"]["status"], closed["after"]["status"], closed["after"]["in_scope"]) == (
        "active",
        "closed",
        None,
    )
