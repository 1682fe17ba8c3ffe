"""The brief's counting rules, each written once: in Python, and in SQL where a query needs it.

The registry applies them when it publishes an organization (its `work_covered`, the facts its
events carry); coverage when it keeps its counters, lists gaps and plans establishment tasks. The
Python forms read an organization's facts (`org_facts`, the projection every event carries); the
SQL forms read the columns of the `organization` table (`p` is the table's alias with its dot) and,
like the Python forms, never answer NULL. tests/shared/test_rules.py holds each pair equal over
generated rows. The scope rule (摸排范围) is in shared/scope.py, the township of a region and the
other region rules in shared/regions.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from shared.events import OrgFacts

# ---- kinds and formations ---------------------------------------------------------------------


class OrgKind(StrEnum):
    enterprise = "enterprise"
    social_org = "social_org"
    individual_business = "individual_business"


ORG_KINDS: tuple[str, ...] = tuple(k.value for k in OrgKind)
KIND_LABELS = {"enterprise": "非公有制企业", "social_org": "社会组织", "individual_business": "个体工商户"}
# The two new organizations (两新) that figures, gaps and survey campaigns are cut by.
SURVEYED_KINDS: tuple[str, ...] = (OrgKind.enterprise.value, OrgKind.social_org.value)
# The kind of a party organization covering organizations of several kinds.
MIXED = "mixed"
# Coverage keeps a figure row per region and each of these kinds.
FIGURE_KINDS: tuple[str, ...] = (*ORG_KINDS, MIXED)


# How a party organization was formed (组建方式).
class Formation(StrEnum):
    single = "single"
    joint = "joint"
    industry = "industry"
    regional = "regional"
    affiliated = "affiliated"


FORMATIONS: tuple[str, ...] = tuple(f.value for f in Formation)


def one_of(values: Iterable[str]) -> str:
    """A regular expression (for a request field or query parameter) matching exactly one of `values`."""
    return "^(" + "|".join(values) + ")$"


def party_org_kind(kinds: Iterable[str]) -> str:
    """A party organization's kind: that of the organizations it covers when they share one, else `mixed`."""
    found = set(kinds)
    return found.pop() if len(found) == 1 else MIXED


# ---- counted (纳入统计) ----------------------------------------------------------------------

ACTIVE = "active"


def counted(status: str | None, in_scope: bool | None) -> bool:
    """What the coverage figures count (their denominator): an active organization in scope. A zombie,
    a closed one, or one whose scope is still unknown is not counted."""
    return status == ACTIVE and in_scope is True


def counted_sql(p: str = "", in_scope: str | None = None) -> str:
    """`counted` over `<p>status` and `<p>in_scope` (or an `in_scope` expression: a campaign's own criteria)."""
    return f"{p}status = '{ACTIVE}' AND ({in_scope or p + 'in_scope'}) IS TRUE"


# ---- coverage (组织覆盖 / 工作覆盖 / 单独组建) ----------------------------------------------------

SINGLE_MIN_FORMAL_MEMBERS = 3


def org_covered(facts: OrgFacts) -> bool:
    """Organization coverage: an active party organization covers it (dissolving one uncovers its organizations)."""
    return facts.covered


def org_covered_sql(p: str = "") -> str:
    return f"{p}party_org_id IS NOT NULL"


def group_org(has_trade_union: bool | None, has_youth_league: bool | None) -> bool:
    """Group organizations (群团组织): a trade union or a youth league organization."""
    return bool(has_trade_union or has_youth_league)


def group_org_sql(p: str = "") -> str:
    return f"({p}has_trade_union OR {p}has_youth_league)"


def work_covered(facts: OrgFacts) -> bool:
    """Work coverage: organization coverage, an instructor assigned today, or a group organization."""
    return facts.covered or facts.instructed or facts.group_org


def work_covered_sql(p: str = "") -> str:
    return f"({org_covered_sql(p)} OR {p}instructed OR {group_org_sql(p)})"


def single_eligible(formal_members: int) -> bool:
    """Eligible for single formation (单独组建): at least three formal party members."""
    return formal_members >= SINGLE_MIN_FORMAL_MEMBERS


def single_eligible_sql(p: str = "") -> str:
    return f"{p}formal_members >= {SINGLE_MIN_FORMAL_MEMBERS}"


def single_formed(facts: OrgFacts) -> bool:
    """Eligible for single formation and covered by a party organization formed that way."""
    return single_eligible(facts.formal_members) and facts.covered and facts.formation == Formation.single


def single_formed_sql(p: str = "", formation: str = "p.formation") -> str:
    """`formation`: the covering party organization's formation (NULL when uncovered)."""
    return (
        f"({single_eligible_sql(p)} AND {org_covered_sql(p)} "
        f"AND {formation} IS NOT DISTINCT FROM '{Formation.single.value}')"
    )


# ---- the facts an event carries for an organization ---------------------------------------------


def org_facts(row: Mapping[str, Any], formation: str | None) -> OrgFacts:
    """What coverage depends on, from an organization row (`formation`: that of its party organization)."""
    covered = row.get("party_org_id") is not None
    return OrgFacts(
        region_code=row["region_code"],
        kind=row["kind"],
        area_id=row.get("area_id"),
        industry_code=row.get("industry_code"),
        sector=row.get("sector"),
        status=row["status"],
        in_scope=row.get("in_scope"),
        formal_members=row.get("formal_members") or 0,
        covered=covered,
        formation=formation if covered else None,
        instructed=bool(row.get("instructed")),
        group_org=group_org(row.get("has_trade_union"), row.get("has_youth_league")),
        charter=bool(row.get("charter_includes_party_building")),
    )


def org_facts_sql(p: str = "", formation: str = "p.formation") -> str:
    """`org_facts` as a SQL json object over `<p>region_code`, `<p>kind`, … (`formation`: that of its party
    organization, NULL when uncovered)."""
    fields = {
        "region_code": f"{p}region_code",
        "kind": f"{p}kind",
        "area_id": f"{p}area_id",
        "industry_code": f"{p}industry_code",
        "sector": f"{p}sector",
        "status": f"{p}status",
        "in_scope": f"{p}in_scope",
        "formal_members": f"{p}formal_members",
        "covered": org_covered_sql(p),
        "formation": f"CASE WHEN {org_covered_sql(p)} THEN {formation} END",
        "instructed": f"{p}instructed",
        "group_org": group_org_sql(p),
        "charter": f"{p}charter_includes_party_building",
    }
    assert set(fields) == set(OrgFacts.model_fields), "every fact, once"
    return "json_build_object(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"
