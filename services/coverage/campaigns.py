"""Survey campaigns (摸底排查): scope, rounds, teams, assignments, progress."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.coverage.models import (
    Assignment,
    AssignmentMove,
    Campaign,
    CampaignCreate,
    CampaignProgress,
    CampaignPublic,
    CampaignRound,
    CampaignStatus,
    GenerationResult,
    ProgressCounts,
    RoundIn,
    Team,
    TeamCreate,
)
from services.coverage.service import region_ref
from shared import regions
from shared.auth import Caller
from shared.concurrency import check_if_match
from shared.errors import conflict, invalid
from shared.pagination import Page, PageParams, trim
from shared.rules import SURVEYED_KINDS, counted_sql
from shared.schemas import from_row
from shared.scope import ScopeCriteria, in_scope_sql
from shared.settings import get_settings
from shared.visible import check_reference, load


def criteria_of(campaign: Campaign) -> ScopeCriteria:
    return ScopeCriteria.from_settings(get_settings(), campaign.criteria)


async def create(session: AsyncSession, *, caller: Caller, body: CampaignCreate) -> Campaign:
    await region_ref(session, caller, body.region_code)
    if not set(body.kinds) <= set(SURVEYED_KINDS) or len(set(body.kinds)) != len(body.kinds):
        raise invalid("kinds", f"list {' and/or '.join(SURVEYED_KINDS)}, each once")
    rounds = sorted(body.rounds, key=lambda r: r.number)
    if [r.number for r in rounds] != list(range(1, len(rounds) + 1)):
        raise invalid("rounds", "number the rounds 1, 2, 3 without gaps")
    for i, r in enumerate(rounds):
        if r.ends_on < r.starts_on:
            raise invalid(f"rounds[{i}].ends_on", "is before starts_on")
        if i and r.starts_on <= rounds[i - 1].ends_on:
            raise invalid(f"rounds[{i}].starts_on", "must come after the previous round ends")
    campaign = Campaign(
        name=body.name,
        region_code=body.region_code,
        kinds=body.kinds,
        criteria=body.criteria.model_dump(exclude_none=True),
        target_rate=body.target_rate,
        status=CampaignStatus.active.value,
        created_by=caller.label,
    )
    session.add(campaign)
    await session.flush()
    session.add_all(
        CampaignRound(campaign_id=campaign.id, number=r.number, starts_on=r.starts_on, ends_on=r.ends_on)
        for r in rounds
    )
    await session.flush()
    return campaign


async def get(session: AsyncSession, *, caller: Caller, campaign_id: uuid.UUID, lock: bool = False) -> Campaign:
    return await load(session, caller, Campaign, campaign_id, what="campaign", lock=lock)


async def rounds_of(session: AsyncSession, campaign_id: uuid.UUID) -> list[CampaignRound]:
    found = await session.execute(
        select(CampaignRound).where(col(CampaignRound.campaign_id) == campaign_id).order_by(col(CampaignRound.number))
    )
    return list(found.scalars())


async def public(session: AsyncSession, campaign: Campaign) -> CampaignPublic:
    rounds = [
        RoundIn(number=r.number, starts_on=r.starts_on, ends_on=r.ends_on)
        for r in await rounds_of(session, campaign.id)
    ]
    return from_row(CampaignPublic, campaign, rounds=rounds)


async def list_page(session: AsyncSession, *, caller: Caller, page: PageParams) -> Page[CampaignPublic]:
    query = select(Campaign).where(col(Campaign.region_code).startswith(caller.region_prefix))
    if (after := page.after(uuid.UUID)) is not None:
        query = query.where(col(Campaign.id) > after[0])
    found = list((await session.execute(query.order_by(col(Campaign.id)).limit(page.limit + 1))).scalars())
    rows, cursor = trim(found, page, lambda c: (str(c.id),))
    return Page[CampaignPublic](items=[await public(session, c) for c in rows], next_cursor=cursor)


async def close(session: AsyncSession, *, caller: Caller, campaign_id: uuid.UUID) -> Campaign:
    """Closing takes every assignment off the phones."""
    campaign = await get(session, caller=caller, campaign_id=campaign_id, lock=True)
    if campaign.status == CampaignStatus.closed:
        raise conflict("the campaign is already closed")
    campaign.status = CampaignStatus.closed.value
    campaign.version += 1
    await session.execute(
        text(
            "INSERT INTO mobile_change (surveyor_id, assignment_id, op) "
            "SELECT surveyor_id, id, 'remove' FROM assignment WHERE campaign_id = :c"
        ),
        {"c": campaign.id},
    )
    await session.flush()
    return campaign


def check_active(campaign: Campaign) -> None:
    if campaign.status != CampaignStatus.active:
        raise conflict(f"the campaign is {campaign.status}")


async def add_team(session: AsyncSession, *, caller: Caller, campaign_id: uuid.UUID, body: TeamCreate) -> Team:
    campaign = await get(session, caller=caller, campaign_id=campaign_id)
    check_active(campaign)
    if len(set(body.townships)) != len(body.townships) or len(set(body.surveyor_ids)) != len(body.surveyor_ids):
        raise invalid("townships", "list each township and each surveyor once")
    found = await session.execute(text("SELECT code, level FROM region WHERE code = ANY(:c)"), {"c": body.townships})
    levels = {r.code: r.level for r in found}
    for i, code in enumerate(body.townships):
        if not regions.contains(campaign.region_code, code) or code not in levels:
            raise invalid(f"townships[{i}]", f"{code} is not a registered region of the campaign")
        if levels[code] != 4:
            raise invalid(f"townships[{i}]", "must be a township (level 4)")
    users = await session.execute(
        text("SELECT id, role, region_code, is_active FROM staff_user WHERE id = ANY(:ids)"), {"ids": body.surveyor_ids}
    )
    known = {r.id: r for r in users}
    for i, uid in enumerate(body.surveyor_ids):
        user = known.get(uid)
        check_reference(
            caller,
            user.region_code if user else None,
            kind="staff_user",
            key=uid,
            field=f"surveyor_ids[{i}]",
            reason="no such user in your jurisdiction",
        )
        assert user is not None
        if user.role != "surveyor" or not user.is_active:
            raise invalid(f"surveyor_ids[{i}]", "must be an active user with the surveyor role")
    team = Team(campaign_id=campaign.id, name=body.name, surveyor_ids=body.surveyor_ids, townships=body.townships)
    session.add(team)
    await session.flush()
    return team


async def teams_of(session: AsyncSession, *, caller: Caller, campaign_id: uuid.UUID) -> list[Team]:
    await get(session, caller=caller, campaign_id=campaign_id)
    found = await session.execute(select(Team).where(col(Team.campaign_id) == campaign_id).order_by(col(Team.name)))
    return list(found.scalars())


async def generate(session: AsyncSession, *, caller: Caller, campaign_id: uuid.UUID, round_no: int) -> GenerationResult:
    """Assign every organization in scope, or whose scope is unknown, to the team of its township.

    Within a township, organizations are dealt in turn to the team members covering it, the
    least loaded first; running it again assigns only what is new.
    """
    campaign = await get(session, caller=caller, campaign_id=campaign_id, lock=True)
    check_active(campaign)
    if round_no not in {r.number for r in await rounds_of(session, campaign.id)}:
        raise invalid("round", f"the campaign has no round {round_no}")
    township = regions.township_sql("o.region_code")
    params = {
        "c": campaign.id,
        "r": round_no,
        "prefix": regions.prefix(campaign.region_code) + "%",
        "kinds": campaign.kinds,
    }
    eligible = f"""
      SELECT o.id, o.region_code, {township} AS township,
             row_number() OVER (PARTITION BY {township} ORDER BY o.id) - 1 AS rn
      FROM organization o
      WHERE o.region_code LIKE :prefix AND o.kind = ANY(:kinds) AND o.status = 'active'
        AND ({in_scope_sql(criteria_of(campaign), "o.")}) IS NOT FALSE
        -- NOT IN over a hashed list, not NOT EXISTS: row-level security hides the row counts from
        -- the planner, which would otherwise scan the round's assignments once per organization.
        AND o.id NOT IN (SELECT a.organization_id FROM assignment a WHERE a.campaign_id = :c AND a.round = :r
                         AND a.organization_id IS NOT NULL)"""
    slots = """
      SELECT tw.township, t.id AS team_id, s.surveyor_id,
             row_number() OVER (PARTITION BY tw.township ORDER BY coalesce(l.load, 0), t.id, s.surveyor_id) - 1
               AS slot,
             count(*) OVER (PARTITION BY tw.township) AS slots
      FROM campaign_team t
      CROSS JOIN LATERAL unnest(t.townships) AS tw(township)
      CROSS JOIN LATERAL unnest(t.surveyor_ids) AS s(surveyor_id)
      LEFT JOIN (SELECT surveyor_id, count(*) AS load FROM assignment WHERE campaign_id = :c AND round = :r
                 GROUP BY surveyor_id) l ON l.surveyor_id = s.surveyor_id
      WHERE t.campaign_id = :c"""
    made = await session.execute(
        text(f"""
      WITH eligible AS ({eligible}), slots AS ({slots}),
      made AS (
        INSERT INTO assignment (id, campaign_id, round, organization_id, region_code, team_id, surveyor_id, status,
                                version, created_at, updated_at)
        SELECT gen_random_uuid(), :c, :r, e.id, e.region_code, s.team_id, s.surveyor_id, 'pending', 1, now(), now()
        FROM eligible e JOIN slots s ON s.township = e.township AND s.slot = e.rn % s.slots
        ON CONFLICT DO NOTHING
        RETURNING id, team_id, surveyor_id),
      told AS (INSERT INTO mobile_change (surveyor_id, assignment_id, op) SELECT surveyor_id, id, 'upsert' FROM made)
      SELECT team_id, count(*) AS n FROM made GROUP BY team_id"""),
        params,
    )
    by_team = {str(r.team_id): int(r.n) for r in made}
    left = await session.execute(
        text(f"""
      WITH eligible AS ({eligible})
      SELECT e.township, count(*) AS n FROM eligible e
      WHERE NOT EXISTS (SELECT 1 FROM campaign_team t WHERE t.campaign_id = :c AND e.township = ANY(t.townships))
      GROUP BY e.township ORDER BY e.township"""),
        params,
    )
    uncovered = {r.township: int(r.n) for r in left}
    already = await session.execute(
        text("SELECT count(*) FROM assignment WHERE campaign_id = :c AND round = :r"), params
    )
    assigned = sum(by_team.values())
    return GenerationResult(
        round=round_no,
        assigned=assigned,
        already_assigned=int(already.scalar_one()) - assigned,
        unassigned=sum(uncovered.values()),
        townships_without_team=list(uncovered),
        by_team=by_team,
    )


async def get_assignment(
    session: AsyncSession, *, caller: Caller, assignment_id: uuid.UUID, lock: bool = False
) -> Assignment:
    return await load(session, caller, Assignment, assignment_id, what="assignment", lock=lock)


async def move(
    session: AsyncSession, *, caller: Caller, assignment_id: uuid.UUID, body: AssignmentMove, if_match: str | None
) -> Assignment:
    assignment = await get_assignment(session, caller=caller, assignment_id=assignment_id, lock=True)
    check_if_match(if_match, assignment.version, what="assignment")
    team = await session.get(Team, body.team_id or assignment.team_id)
    if team is None or team.campaign_id != assignment.campaign_id:
        raise invalid("team_id", "no such team in this campaign")
    surveyor = body.surveyor_id or (
        assignment.surveyor_id if assignment.surveyor_id in team.surveyor_ids else team.surveyor_ids[0]
    )
    if surveyor not in team.surveyor_ids:
        raise invalid("surveyor_id", "is not a member of the team")
    if (team.id, surveyor) == (assignment.team_id, assignment.surveyor_id):
        return assignment
    if assignment.surveyor_id != surveyor:
        await session.execute(
            text(
                "INSERT INTO mobile_change (surveyor_id, assignment_id, op) VALUES (:old, :a, 'remove'), "
                "(:new, :a, 'upsert')"
            ),
            {"old": assignment.surveyor_id, "new": surveyor, "a": assignment.id},
        )
    assignment.team_id, assignment.surveyor_id = team.id, surveyor
    assignment.version += 1
    assignment.updated_at = datetime.now(UTC)
    await session.flush()
    return assignment


async def progress(session: AsyncSession, *, caller: Caller, campaign_id: uuid.UUID) -> CampaignProgress:
    campaign = await get(session, caller=caller, campaign_id=campaign_id)
    found = await session.execute(
        text(f"""
      SELECT a.round, t.name AS team, {regions.township_sql("a.region_code")} AS township, a.status, count(*) AS n
      FROM assignment a JOIN campaign_team t ON t.id = a.team_id
      WHERE a.campaign_id = :c GROUP BY 1, 2, 3, 4"""),
        {"c": campaign.id},
    )
    by: dict[str, dict[str, dict[str, int]]] = {
        "round": defaultdict(lambda: defaultdict(int)),
        "team": defaultdict(lambda: defaultdict(int)),
        "township": defaultdict(lambda: defaultdict(int)),
    }
    for r in found:
        for axis, key in (("round", str(r.round)), ("team", r.team), ("township", r.township)):
            counts = by[axis][key]
            counts["assigned"] += r.n
            counts[r.status] += r.n

    def tally(rows: dict[str, dict[str, int]]) -> dict[str, ProgressCounts]:
        out = {}
        for key, c in sorted(rows.items()):
            visited = c["visited"] + c["verified"] + c["rejected"]
            out[key] = ProgressCounts(
                assigned=c["assigned"],
                visited=visited,
                verified=c["verified"],
                rejected=c["rejected"],
                remaining=c["assigned"] - visited,
            )
        return out

    outcomes = await session.execute(
        text(
            "SELECT outcome, count(*) FROM visit WHERE campaign_id = :c AND review_status = 'verified' GROUP BY outcome"
        ),
        {"c": campaign.id},
    )
    verified = {r[0]: int(r[1]) for r in outcomes}
    found_new = await session.execute(
        text(
            "SELECT count(*) FILTER (WHERE new_organization IS NOT NULL), "
            "count(*) FILTER (WHERE registration_status = 'registered') FROM visit WHERE campaign_id = :c"
        ),
        {"c": campaign.id},
    )
    new_found, new_registered = found_new.one()
    scope = in_scope_sql(criteria_of(campaign), "o.")
    counted = await session.execute(
        text(
            f"SELECT count(*), count(*) FILTER (WHERE {counted_sql('o.', in_scope=scope)}), "
            f"count(*) FILTER (WHERE o.status = 'active' AND ({scope}) IS NULL) "
            "FROM organization o WHERE o.region_code LIKE :prefix AND o.kind = ANY(:kinds)"
        ),
        {"prefix": regions.prefix(campaign.region_code) + "%", "kinds": campaign.kinds},
    )
    registered, in_scope, unknown = counted.one()
    return CampaignProgress(
        campaign_id=campaign.id,
        by_round=tally(by["round"]),
        by_team=tally(by["team"]),
        by_township=tally(by["township"]),
        outcomes=verified,
        zombies_cleared=verified.get("zombie", 0),
        closed=verified.get("closed", 0),
        new_found=int(new_found),
        new_registered=int(new_registered),
        registered=int(registered),
        in_scope=int(in_scope),
        scope_unknown=int(unknown),
    )


def assignment_public(a: Assignment) -> dict[str, Any]:
    return {
        "id": a.id,
        "campaign_id": a.campaign_id,
        "round": a.round,
        "organization_id": a.organization_id,
        "region_code": a.region_code,
        "team_id": a.team_id,
        "surveyor_id": a.surveyor_id,
        "status": a.status,
        "version": a.version,
    }
