"""Party organizations: establish, change what they cover, edit, dissolve. Each change emits an event."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.models import (
    ChangeSource,
    CoveredOrganizations,
    Dissolution,
    Formation,
    OrgStatus,
    PartyOrg,
    PartyOrgCreate,
    PartyOrgPublic,
    PartyOrgUpdate,
)
from services.registry.organizations import jsonable, lock_rows, write_history
from services.registry.queries import insert_row, list_visible
from shared import regions
from shared.auth import Caller
from shared.concurrency import check_if_match
from shared.errors import FieldError, ProblemError, conflict, invalid
from shared.events import CHANGES_PER_EVENT, OrgChange, PartyOrgChanged, PartyOrgFacts, emit_many
from shared.logging import request_id_var
from shared.pagination import Page, PageParams
from shared.rules import SINGLE_MIN_FORMAL_MEMBERS, org_facts, party_org_kind, single_eligible
from shared.schemas import sent_fields
from shared.visible import check_reference, load_row, refused_row

MULTI_FORMATIONS = {Formation.joint: 2}


def party_facts(row: dict[str, Any]) -> PartyOrgFacts:
    """What coverage counts of a party organization: its columns of the same names."""
    return PartyOrgFacts.model_validate({k: row[k] for k in PartyOrgFacts.model_fields})


async def _emit(
    session: AsyncSession,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    organizations: list[OrgChange],
) -> None:
    """The change in events of at most CHANGES_PER_EVENT organizations: the first carries the party
    organization's own change, the rest (`coverage_changed`, its facts unchanged) the other organizations."""
    facts = party_facts(after)
    chunks = [organizations[i : i + CHANGES_PER_EVENT] for i in range(0, len(organizations), CHANGES_PER_EVENT)]
    first, rest = (chunks[0], chunks[1:]) if chunks else ([], [])
    await emit_many(
        session,
        [
            (
                f"registry.party_org.{action}",
                PartyOrgChanged(
                    party_org_id=after["id"],
                    name=after["name"],
                    before=party_facts(before) if before else None,
                    after=facts,
                    organizations=first,
                ),
            ),
            *(
                (
                    "registry.party_org.coverage_changed",
                    PartyOrgChanged(
                        party_org_id=after["id"], name=after["name"], before=facts, after=facts, organizations=chunk
                    ),
                )
                for chunk in rest
            ),
        ],
    )


def kind_of(orgs: Sequence[dict[str, Any]]) -> str:
    return party_org_kind(o["kind"] for o in orgs)


async def _lock_party_org(session: AsyncSession, caller: Caller, party_org_id: uuid.UUID) -> dict[str, Any]:
    return await load_row(session, caller, PartyOrg, party_org_id, what="party organization", lock=True)


async def _covered_codes(session: AsyncSession, party_org_id: uuid.UUID) -> list[str | None]:
    found = await session.execute(
        text("SELECT credit_code FROM organization WHERE party_org_id = :id ORDER BY credit_code"), {"id": party_org_id}
    )
    return [r.credit_code for r in found]


async def to_public(session: AsyncSession, row: dict[str, Any]) -> PartyOrgPublic:
    return PartyOrgPublic.model_validate({**row, "covered_credit_codes": await _covered_codes(session, row["id"])})


async def to_public_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[PartyOrgPublic]:
    found = await session.execute(
        text(
            "SELECT party_org_id, array_agg(credit_code ORDER BY credit_code) AS codes FROM organization "
            "WHERE party_org_id = ANY(:ids) GROUP BY party_org_id"
        ),
        {"ids": [r["id"] for r in rows]},
    )
    codes = {r.party_org_id: r.codes for r in found}
    return [PartyOrgPublic.model_validate({**r, "covered_credit_codes": codes.get(r["id"], [])}) for r in rows]


async def _check_superior(session: AsyncSession, caller: Caller, superior_id: uuid.UUID | None) -> None:
    if superior_id is None:
        return
    found = await session.execute(text("SELECT region_code, active FROM party_org WHERE id = :id"), {"id": superior_id})
    row = found.first()
    check_reference(
        caller,
        row.region_code if row else None,
        kind="party_org",
        key=superior_id,
        field="superior_id",
        reason="no such party organization in your jurisdiction",
    )
    assert row is not None
    if not row.active:
        raise invalid("superior_id", "the superior party organization is dissolved")


async def _load_covered(
    session: AsyncSession,
    caller: Caller,
    *,
    party_region: str,
    codes: Sequence[str],
    field: str,
    own_id: uuid.UUID | None,
    transfer: bool,
) -> list[dict[str, Any]]:
    """Lock the organizations to cover and check each can be covered from this party organization."""
    if len(set(codes)) != len(codes):
        raise invalid(field, "a credit code is listed twice")
    rows = await lock_rows(session, codes=codes)
    by_code = {r["credit_code"]: r for r in rows}
    errors: list[FieldError] = []
    busy: list[str] = []
    for i, code in enumerate(codes):
        org = by_code.get(code)
        where = f"{field}[{i}]"
        if refused_row(caller, org["region_code"] if org else None, kind="credit_code", key=code) or org is None:
            errors.append(
                FieldError(field=where, reason=f"no organization with credit code {code} in your jurisdiction")
            )
        elif not regions.contains(party_region, org["region_code"]):
            errors.append(FieldError(field=where, reason=f"{org['name']} lies outside the party organization's region"))
        elif org["status"] != OrgStatus.active:
            errors.append(FieldError(field=where, reason=f"{org['name']} is {org['status']}, not active"))
        elif org["party_org_id"] is not None and org["party_org_id"] != own_id and not transfer:
            busy.append(f"{org['name']} ({code}) is covered by party organization {org['party_org_id']}")
    if errors:
        raise ProblemError(
            422,
            "; ".join(e.reason for e in errors),
            code="validation-error",
            title="Request validation failed",
            errors=errors,
        )
    if busy:
        raise conflict("; ".join(busy) + ". Send transfer=true to move them (转出) to this party organization.")
    return [by_code[c] for c in codes]


def _check_formation(formation: str, orgs: Sequence[dict[str, Any]], field: str) -> None:
    if formation == Formation.single:
        if len(orgs) != 1:
            raise invalid(field, "a single (单独组建) party organization covers exactly one organization")
        members = orgs[0]["formal_members"]
        if not single_eligible(members):
            raise invalid(
                field,
                f"{orgs[0]['name']} has {members} formal party member(s); single formation needs at least "
                f"{SINGLE_MIN_FORMAL_MEMBERS} (recommended: joint formation with nearby organizations, "
                "or an instructor)",
            )
    minimum = MULTI_FORMATIONS.get(Formation(formation), 1)
    if len(orgs) < minimum:
        raise invalid(field, f"a {formation} party organization covers at least {minimum} organizations")


async def _set_coverage(
    session: AsyncSession,
    *,
    caller: Caller,
    party_org: dict[str, Any],
    add: Sequence[dict[str, Any]],
    remove: Sequence[dict[str, Any]],
    now: datetime,
    reason: str | None,
) -> tuple[list[OrgChange], list[uuid.UUID]]:
    """Point organizations at (or away from) a party organization; returns their changes and
    the other party organizations they were taken from."""
    changes: list[OrgChange] = []
    history: list[tuple[Any, ...]] = []
    previous: list[uuid.UUID] = []
    request_id = request_id_var.get()
    moved: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for org, new_owner in [(o, party_org["id"]) for o in add] + [(o, None) for o in remove]:
        if org["party_org_id"] == new_owner:
            continue
        if new_owner is not None and org["party_org_id"] is not None:
            previous.append(org["party_org_id"])
        before = org_facts(org, org.get("covering_formation"))
        updated = {**org, "party_org_id": new_owner}
        after = org_facts(updated, party_org["formation"] if new_owner else None)
        moved.setdefault(new_owner, []).append(org["id"])
        changes.append(
            OrgChange(
                organization_id=org["id"], credit_code=org["credit_code"], name=org["name"], before=before, after=after
            )
        )
        history.append(
            (
                "organization",
                org["id"],
                org["region_code"],
                "covered" if new_owner else "uncovered",
                ChangeSource.manual.value,
                caller.label,
                reason,
                request_id,
                None,
                now,
                json.dumps({"party_org_id": jsonable(org["party_org_id"])}),
                json.dumps({"party_org_id": jsonable(new_owner), "party_org_name": party_org["name"]}),
            )
        )
    for owner, ids in moved.items():
        await session.execute(
            text(
                "UPDATE organization SET party_org_id = :p, version = version + 1, updated_at = :now "
                "WHERE id = ANY(:ids)"
            ),
            {"p": owner, "now": now, "ids": ids},
        )
    await write_history(session, history)
    return changes, previous


def _party_history(
    caller: Caller,
    row: dict[str, Any],
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    now: datetime,
    reason: str | None = None,
) -> tuple[Any, ...]:
    return (
        "party_org",
        row["id"],
        row["region_code"],
        action,
        ChangeSource.manual.value,
        caller.label,
        reason,
        request_id_var.get(),
        None,
        now,
        json.dumps(before) if before is not None else None,
        json.dumps(after),
    )


async def _refresh_kind(
    session: AsyncSession, party_org_ids: Sequence[uuid.UUID], now: datetime
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Recompute `kind` of party organizations that lost organizations; returns (before, after) rows."""
    out = []
    for pid in dict.fromkeys(party_org_ids):
        found = await session.execute(text("SELECT * FROM party_org WHERE id = :id FOR UPDATE"), {"id": pid})
        before = dict(found.mappings().one())
        kinds = await session.execute(text("SELECT kind FROM organization WHERE party_org_id = :id"), {"id": pid})
        remaining = [{"kind": k} for (k,) in kinds]
        new_kind = kind_of(remaining) if remaining else before["kind"]
        after = {**before, "kind": new_kind, "version": before["version"] + 1}
        await session.execute(
            text("UPDATE party_org SET kind = :k, version = version + 1, updated_at = :now WHERE id = :id"),
            {"k": new_kind, "now": now, "id": pid},
        )
        out.append((before, after))
    return out


async def _emit_losses(session: AsyncSession, caller: Caller, losers: Sequence[uuid.UUID], now: datetime) -> None:
    # The moved organizations' own changes travel in the receiving party organization's event;
    # the party organizations they left only report their own facts, so nothing counts twice.
    for before, after in await _refresh_kind(session, losers, now):
        await write_history(
            session,
            [_party_history(caller, after, "coverage_changed", {"kind": before["kind"]}, {"kind": after["kind"]}, now)],
        )
        await _emit(session, "coverage_changed", before, after, [])


async def establish(session: AsyncSession, *, caller: Caller, body: PartyOrgCreate) -> dict[str, Any]:
    caller.check_region(body.region_code)
    if (await session.execute(text("SELECT 1 FROM region WHERE code = :c"), {"c": body.region_code})).first() is None:
        raise invalid("region_code", f"region {body.region_code} is not registered")
    await _check_superior(session, caller, body.superior_id)
    orgs = await _load_covered(
        session,
        caller,
        party_region=body.region_code,
        codes=body.covered_credit_codes,
        field="covered_credit_codes",
        own_id=None,
        transfer=body.transfer,
    )
    _check_formation(body.formation, orgs, "covered_credit_codes")
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": body.name,
        "level": body.level.value,
        "formation": body.formation.value,
        "functional": body.functional,
        "region_code": body.region_code,
        "superior_id": body.superior_id,
        "kind": kind_of(orgs),
        "established_on": body.established_on,
        "dissolved_on": None,
        "dissolution_reason": None,
        "secretary_in_management": body.secretary_in_management,
        "secretary_is_investor": body.secretary_is_investor,
        "active": True,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    await insert_row(session, PartyOrg, row)
    changes, losers = await _set_coverage(
        session, caller=caller, party_org=row, add=orgs, remove=[], now=now, reason=None
    )
    await write_history(
        session, [_party_history(caller, row, "established", None, {k: jsonable(v) for k, v in row.items()}, now)]
    )
    await _emit(session, "established", None, row, changes)
    await _emit_losses(session, caller, losers, now)
    return row


async def change_coverage(
    session: AsyncSession, *, caller: Caller, party_org_id: uuid.UUID, body: CoveredOrganizations
) -> dict[str, Any]:
    row = await _lock_party_org(session, caller, party_org_id)
    if not row["active"]:
        raise conflict("the party organization is dissolved")
    orgs = await _load_covered(
        session,
        caller,
        party_region=row["region_code"],
        codes=body.credit_codes,
        field="credit_codes",
        own_id=row["id"],
        transfer=body.transfer,
    )
    _check_formation(row["formation"], orgs, "credit_codes")
    wanted = {o["id"] for o in orgs}
    current = await lock_rows(
        session,
        ids=[
            r.id
            for r in await session.execute(
                text("SELECT id FROM organization WHERE party_org_id = :p"), {"p": row["id"]}
            )
        ],
    )
    remove = [o for o in current if o["id"] not in wanted]
    now = datetime.now(UTC)
    before = dict(row)
    row.update(kind=kind_of(orgs), version=row["version"] + 1)
    await session.execute(
        text("UPDATE party_org SET kind = :k, version = :v, updated_at = :now WHERE id = :id"),
        {"k": row["kind"], "v": row["version"], "now": now, "id": row["id"]},
    )
    changes, losers = await _set_coverage(
        session, caller=caller, party_org=row, add=orgs, remove=remove, now=now, reason=None
    )
    if not changes and before["kind"] == row["kind"]:
        return row
    await write_history(
        session,
        [
            _party_history(
                caller,
                row,
                "coverage_changed",
                {"covered": [str(o["id"]) for o in current]},
                {"covered": [str(i) for i in wanted]},
                now,
            )
        ],
    )
    await _emit(session, "coverage_changed", before, row, changes)
    await _emit_losses(session, caller, losers, now)
    return row


async def update(
    session: AsyncSession, *, caller: Caller, party_org_id: uuid.UUID, body: PartyOrgUpdate, if_match: str | None
) -> dict[str, Any]:
    row = await _lock_party_org(session, caller, party_org_id)
    check_if_match(if_match, row["version"], what="party organization")
    if not row["active"]:
        raise conflict("the party organization is dissolved")
    values = sent_fields(body)
    if "superior_id" in values:
        if values["superior_id"] == row["id"]:
            raise invalid("superior_id", "a party organization cannot be its own superior")
        await _check_superior(session, caller, values["superior_id"])
    changed = {k: v for k, v in values.items() if jsonable(row[k]) != jsonable(v)}
    if not changed:
        return row
    now = datetime.now(UTC)
    before = dict(row)
    row.update(changed, version=row["version"] + 1)
    sets = ", ".join(f"{k} = :{k}" for k in changed)
    await session.execute(
        text(f"UPDATE party_org SET {sets}, version = :version, updated_at = :now WHERE id = :id"),
        {**changed, "version": row["version"], "now": now, "id": row["id"]},
    )
    await write_history(
        session,
        [
            _party_history(
                caller,
                row,
                "updated",
                {k: jsonable(before[k]) for k in changed},
                {k: jsonable(v) for k, v in changed.items()},
                now,
            )
        ],
    )
    await _emit(session, "updated", before, row, [])
    return row


async def dissolve(
    session: AsyncSession, *, caller: Caller, party_org_id: uuid.UUID, body: Dissolution
) -> dict[str, Any]:
    row = await _lock_party_org(session, caller, party_org_id)
    if not row["active"]:
        raise conflict(f"the party organization was already dissolved on {row['dissolved_on']}")
    if body.dissolved_on < row["established_on"]:
        raise invalid("dissolved_on", f"is before the establishment date {row['established_on']}")
    if body.dissolved_on > date.today():
        raise invalid("dissolved_on", "cannot be in the future")
    orgs = await lock_rows(
        session,
        ids=[
            r.id
            for r in await session.execute(
                text("SELECT id FROM organization WHERE party_org_id = :p"), {"p": row["id"]}
            )
        ],
    )
    for org in orgs:
        org["covering_formation"] = row["formation"]
    now = datetime.now(UTC)
    before = dict(row)
    row.update(active=False, dissolved_on=body.dissolved_on, dissolution_reason=body.reason, version=row["version"] + 1)
    await session.execute(
        text(
            "UPDATE party_org SET active = false, dissolved_on = :d, dissolution_reason = :r, version = :v, "
            "updated_at = :now WHERE id = :id"
        ),
        {"d": body.dissolved_on, "r": body.reason, "v": row["version"], "now": now, "id": row["id"]},
    )
    changes, _ = await _set_coverage(
        session, caller=caller, party_org=row, add=[], remove=orgs, now=now, reason=body.reason
    )
    await write_history(
        session,
        [
            _party_history(
                caller,
                row,
                "dissolved",
                {"active": True},
                {"active": False, "dissolved_on": body.dissolved_on.isoformat()},
                now,
                body.reason,
            )
        ],
    )
    await _emit(session, "dissolved", before, row, changes)
    return row


async def get(session: AsyncSession, *, caller: Caller, party_org_id: uuid.UUID) -> dict[str, Any]:
    return await load_row(session, caller, PartyOrg, party_org_id, what="party organization")


async def list_page(
    session: AsyncSession,
    *,
    caller: Caller,
    region: str | None,
    formation: Formation | None,
    active: bool | None,
    page: PageParams,
) -> Page[PartyOrgPublic]:
    clauses, params = [], {}
    if formation is not None:
        clauses.append("formation = :formation")
        params["formation"] = formation.value
    if active is not None:
        clauses.append(f"active IS {'TRUE' if active else 'FALSE'}")
    rows, cursor = await list_visible(
        session, caller, PartyOrg, region=region, page=page, clauses=clauses, params=params
    )
    return Page[PartyOrgPublic](items=await to_public_many(session, rows), next_cursor=cursor)
