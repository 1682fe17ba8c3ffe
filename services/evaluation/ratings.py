"""Star levels other parts of the evaluation service (funding) read."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def star_levels_for_year(session: AsyncSession, year: int, region_prefix: str) -> dict[uuid.UUID, int]:
    """party_org_id → star level of its latest approved star_rating assessment in a cycle of `year`,
    for party organizations whose region code starts with `region_prefix` ('' for the country).

    "Latest" is by cycle (a later quarter beats an earlier one; a yearly cycle counts as the year's
    end), then by approval time.
    """
    found = await session.execute(
        text(
            "SELECT DISTINCT ON (a.party_org_id) a.party_org_id, a.star_level "
            "FROM assessment a JOIN evaluation_cycle c ON c.id = a.cycle_id "
            "JOIN evaluation_template t ON t.id = c.template_id "
            "WHERE c.year = :year AND t.kind = 'star_rating' AND a.status = 'approved' "
            "AND a.star_level IS NOT NULL AND a.region_code LIKE :prefix "
            "ORDER BY a.party_org_id, COALESCE(c.quarter, 5) DESC, a.approved_at DESC, a.id"
        ),
        {"year": year, "prefix": region_prefix.replace("%", r"\%").replace("_", r"\_") + "%"},
    )
    return {r.party_org_id: r.star_level for r in found}
