"""Which approved star rating stands: the one rule funding (a year's star level) and 整转 (opening and
closing a rectification) both follow.

A party organization's approved star ratings are taken in the order they were approved; each one
replaces the rating standing before it, except
- a rating of an earlier year than the standing one (an old year approved late), and
- a quarterly rating of an earlier quarter than a quarterly rating that already stood that year
  (an old quarter approved late).
So the annual rating replaces the quarters before it, and a re-rating (复评) approved after the
annual rating replaces the annual rating, whatever its quarter. The rating standing after a year's
ratings is that year's star level; a rating acts on 整转 only when it becomes the standing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Approved star ratings with their cycle's period, in approval order (an approval time unknown,
# as in rows loaded by hand, sorts first).
_RATINGS = (
    "SELECT a.id, a.party_org_id, c.year, c.quarter, a.star_level "
    "FROM assessment a JOIN evaluation_cycle c ON c.id = a.cycle_id "
    "JOIN evaluation_template t ON t.id = c.template_id "
    "WHERE t.kind = 'star_rating' AND a.status = 'approved' AND a.star_level IS NOT NULL AND {where} "
    "ORDER BY a.party_org_id, a.approved_at NULLS FIRST, a.id"
)


@dataclass(frozen=True, slots=True)
class Rating:
    id: uuid.UUID
    year: int
    quarter: int | None
    star_level: int


def standing(ratings: Iterable[Rating]) -> Rating | None:
    """The rating that stands after `ratings`: one party organization's approved star ratings, in
    the order they were approved (see the module's rule)."""
    current: Rating | None = None
    latest_quarter = 0  # the latest quarter that stood in the current rating's year
    for rating in ratings:
        if current is not None:
            if rating.year < current.year:
                continue
            if rating.year == current.year and rating.quarter is not None and rating.quarter < latest_quarter:
                continue
            if rating.year > current.year:
                latest_quarter = 0
        current = rating
        latest_quarter = max(latest_quarter, rating.quarter or 0)
    return current


def _escape(prefix: str) -> str:
    return prefix.replace("%", r"\%").replace("_", r"\_")


async def star_levels_for_year(session: AsyncSession, year: int, region_prefix: str) -> dict[uuid.UUID, int]:
    """party_org_id → its star level of `year`: the rating standing after the approved star ratings of
    that year's cycles, for party organizations whose region code starts with `region_prefix` ('' for
    the country)."""
    found = await session.execute(
        text(_RATINGS.format(where="c.year = :year AND a.region_code LIKE :prefix")),
        {"year": year, "prefix": _escape(region_prefix) + "%"},
    )
    by_org: dict[uuid.UUID, list[Rating]] = {}
    for r in found:
        by_org.setdefault(r.party_org_id, []).append(Rating(r.id, r.year, r.quarter, r.star_level))
    levels = {}
    for party_org_id, ratings in by_org.items():
        if (stands := standing(ratings)) is not None:
            levels[party_org_id] = stands.star_level
    return levels


async def stands_after_approval(session: AsyncSession, party_org_id: uuid.UUID, approved: Rating) -> bool:
    """Whether `approved`, just approved (so the latest approval), becomes the party organization's
    standing rating."""
    found = await session.execute(
        text(_RATINGS.format(where="a.party_org_id = :p AND a.id <> :id")), {"p": party_org_id, "id": approved.id}
    )
    earlier = [Rating(r.id, r.year, r.quarter, r.star_level) for r in found]
    return standing([*earlier, approved]) is approved
