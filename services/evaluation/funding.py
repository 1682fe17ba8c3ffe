"""Funding rules (经费) as versioned data, and the pure engine that turns them into itemized lines.

A rule set is a list of rules; each rule kind expresses one way the seed reports hand out money:

| kind | seed | what it pays a party organization for the year |
|---|---|---|
| `star_tier` | 富阳: 3,000 / 10,000 / 20,000 | a fixed amount by its star level (星级) |
| `per_member` | 富阳: 150 per member per year | an amount per party member of the organizations it covers |
| `startup` | 迪庆: 5,000 | a start-up grant when it was established that year |
| `by_level` | 迪庆: 20,000 committee or general branch, 3,000 branch | an annual amount by its level |
| `secretary_allowance` | 迪庆: 300 per month | an amount per month of the year it had a secretary |
| `designation_award` | 泸州: 100,000 / 30,000 | an amount per designation (示范点) of that year, by level and type |
| `matching` | 富阳: 1:1 by town and enterprise | a share of what earlier rules of the set gave it |

Money is integer yuan throughout. A budget cap scales every line down by the same factor and
rounds to the yuan by largest remainder, so the lines sum to the cap exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from shared.schemas import RequestModel

MAX_YUAN = 100_000_000
Money = Annotated[int, Field(ge=0, le=MAX_YUAN, description="integer yuan")]
RuleCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", examples=["star_subsidy"])]
LEVELS = ("committee", "general_branch", "branch")
LEVEL_LABELS = {"committee": "党委", "general_branch": "党总支", "branch": "党支部"}
Level = Literal["committee", "general_branch", "branch"]
DesignationLevel = Literal["province", "city", "county"]
DesignationType = Literal["leading", "model", "compliant"]
DESIGNATION_LABELS = {
    "province": "省级",
    "city": "市级",
    "county": "县级",
    "leading": "领军",
    "model": "示范",
    "compliant": "达标",
}


class _Rule(RequestModel):
    code: RuleCode
    name: Annotated[str, Field(min_length=1, max_length=100, description="what the line is called (Chinese)")]
    levels: list[Level] | None = Field(
        default=None, description="party organization levels the rule applies to (default: every level)"
    )


class StarTierRule(_Rule):
    kind: Literal["star_tier"]
    tiers: Annotated[dict[Annotated[int, Field(ge=1, le=5)], Money], Field(min_length=1)] = Field(
        description="star level → yuan; levels not listed (and unrated organizations) get nothing",
        examples=[{"3": 3000, "4": 10000, "5": 20000}],
    )


class PerMemberRule(_Rule):
    kind: Literal["per_member"]
    amount: Money
    members: Literal["formal", "formal_and_probationary"] = Field(
        default="formal_and_probationary", description="which party members count"
    )


class StartupRule(_Rule):
    kind: Literal["startup"]
    amount: Money


class LevelRule(_Rule):
    kind: Literal["by_level"]
    amounts: Annotated[dict[Level, Money], Field(min_length=1)]


class SecretaryAllowanceRule(_Rule):
    kind: Literal["secretary_allowance"]
    monthly: Money


class Award(RequestModel):
    level: DesignationLevel
    type: DesignationType
    amount: Money


class DesignationAwardRule(_Rule):
    kind: Literal["designation_award"]
    awards: Annotated[list[Award], Field(min_length=1, max_length=9)]

    @field_validator("awards")
    @classmethod
    def _one_amount_per_designation(cls, awards: list[Award]) -> list[Award]:
        pairs = [(a.level, a.type) for a in awards]
        if len(set(pairs)) != len(pairs):
            raise ValueError("each (level, type) may have one amount")
        return awards


class MatchingRule(_Rule):
    kind: Literal["matching"]
    of: Annotated[list[RuleCode], Field(min_length=1, description="codes of earlier rules whose lines are matched")]
    ratio: Annotated[str, Field(pattern=r"^[1-9]\d{0,2}:[1-9]\d{0,2}$", examples=["1:1"])] = Field(
        description="matching : matched; `1:1` adds one yuan for every yuan of the matched lines"
    )
    payer: Annotated[str, Field(max_length=100)] | None = Field(default=None, examples=["镇、企"])


Rule = Annotated[
    StarTierRule
    | PerMemberRule
    | StartupRule
    | LevelRule
    | SecretaryAllowanceRule
    | DesignationAwardRule
    | MatchingRule,
    Field(discriminator="kind"),
]
RULE_KINDS = (
    "star_tier",
    "per_member",
    "startup",
    "by_level",
    "secretary_allowance",
    "designation_award",
    "matching",
)
_rules_adapter: TypeAdapter[list[Rule]] = TypeAdapter(list[Rule])


class RuleList(RequestModel):
    """The rules of one set, checked as a whole: unique codes, matching only refers backwards."""

    rules: Annotated[list[Rule], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _consistent(self) -> RuleList:
        check_rules(self.rules)
        return self


def check_rules(rules: Sequence[Any]) -> None:
    seen: set[str] = set()
    for rule in rules:
        if rule.code in seen:
            raise ValueError(f"rule code {rule.code!r} is used twice")
        if isinstance(rule, MatchingRule):
            unknown = [c for c in rule.of if c not in seen]
            if unknown:
                raise ValueError(f"matching rule {rule.code!r} refers to {', '.join(unknown)}: not an earlier rule")
        seen.add(rule.code)


def parse_rules(data: Any) -> list[Rule]:
    """Rules as stored (JSONB) back into models."""
    return _rules_adapter.validate_python(data)


def dump_rules(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    return _rules_adapter.dump_python(list(rules), mode="json", exclude_none=True)


# ---- the engine ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartyOrgFacts:
    """What the rules look at for one party organization and one year."""

    party_org_id: uuid.UUID
    region_code: str
    name: str
    level: str
    formal_members: int
    probationary_members: int
    established_on: date
    dissolved_on: date | None = None
    star_level: int | None = None
    # (level, type) of each designation the party organization received that year.
    designations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Line:
    rule_code: str
    rule_kind: str
    rule_name: str
    position: int
    quantity: int
    unit_amount: int | None
    amount: int
    basis: str


def months_in_year(established_on: date, dissolved_on: date | None, year: int) -> int:
    """Months of `year` the party organization existed: the month it was established and the
    month it was dissolved both count (a secretary serves in each)."""
    if established_on.year > year or (dissolved_on is not None and dissolved_on.year < year):
        return 0
    first = established_on.month if established_on.year == year else 1
    last = dissolved_on.month if dissolved_on is not None and dissolved_on.year == year else 12
    return max(0, last - first + 1)


def _ratio(text: str) -> tuple[int, int]:
    left, right = text.split(":")
    return int(left), int(right)


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


# What a rule gives one party organization: (quantity, unit amount, amount, basis), or None.
Evaluate = Callable[[PartyOrgFacts, int, int, dict[str, int]], tuple[int, int | None, int, str] | None]


@dataclass(frozen=True, slots=True)
class _Compiled:
    code: str
    kind: str
    name: str
    position: int
    levels: frozenset[str] | None
    evaluate: Evaluate


class Engine:
    """A rule set prepared once and applied to many party organizations."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = [
            _Compiled(
                rule.code,
                rule.kind,
                rule.name,
                position,
                None if rule.levels is None else frozenset(rule.levels),
                _evaluator(rule),
            )
            for position, rule in enumerate(rules)
        ]

    def lines(self, facts: PartyOrgFacts, year: int) -> list[Line]:
        """The lines the rules give one party organization for `year`, in rule order; no zero lines."""
        months = months_in_year(facts.established_on, facts.dissolved_on, year)
        if months == 0:
            return []
        lines: list[Line] = []
        by_code: dict[str, int] = {}
        for rule in self._rules:
            if rule.levels is not None and facts.level not in rule.levels:
                continue
            found = rule.evaluate(facts, year, months, by_code)
            if found is not None and found[2] > 0:
                lines.append(Line(rule.code, rule.kind, rule.name, rule.position, *found))
                by_code[rule.code] = found[2]
        return lines


def compute_lines(facts: PartyOrgFacts, rules: Sequence[Rule], year: int) -> list[Line]:
    """The lines `rules` give one party organization for `year`, in rule order; no zero lines."""
    return Engine(rules).lines(facts, year)


def _evaluator(rule: Rule) -> Evaluate:
    if isinstance(rule, StarTierRule):
        tiers = dict(rule.tiers)

        def star_tier(f: PartyOrgFacts, year: int, months: int, by_code: dict[str, int]) -> Any:
            amount = tiers.get(f.star_level) if f.star_level is not None else None
            return None if amount is None else (1, amount, amount, f"{f.star_level}星")

        return star_tier
    if isinstance(rule, PerMemberRule):
        unit, probationary = rule.amount, rule.members != "formal"

        def per_member(f: PartyOrgFacts, year: int, months: int, by_code: dict[str, int]) -> Any:
            members = f.formal_members + (f.probationary_members if probationary else 0)
            return members, unit, members * unit, f"{members}名党员 × {unit}元"

        return per_member
    if isinstance(rule, StartupRule):
        grant = rule.amount

        def startup(f: PartyOrgFacts, year: int, months: int, by_code: dict[str, int]) -> Any:
            if f.established_on.year != year:
                return None
            return 1, grant, grant, f"{f.established_on.isoformat()}新建"

        return startup
    if isinstance(rule, LevelRule):
        amounts: dict[str, int] = {str(k): v for k, v in rule.amounts.items()}

        def by_level(f: PartyOrgFacts, year: int, months: int, by_code: dict[str, int]) -> Any:
            amount = amounts.get(f.level)
            return None if amount is None else (1, amount, amount, LEVEL_LABELS.get(f.level, f.level))

        return by_level
    if isinstance(rule, SecretaryAllowanceRule):
        monthly = rule.monthly

        def allowance(f: PartyOrgFacts, year: int, months: int, by_code: dict[str, int]) -> Any:
            return months, monthly, months * monthly, f"{months}个月 × {monthly}元"

        return allowance
    if isinstance(rule, DesignationAwardRule):
        awards = {(a.level, a.type): a.amount for a in rule.awards}

        def designation_award(f: PartyOrgFacts, year: int, months: int, by_code: dict[str, int]) -> Any:
            won = [d for d in f.designations if d in awards]
            if not won:
                return None
            basis = "、".join(DESIGNATION_LABELS[lv] + DESIGNATION_LABELS[t] for lv, t in won)
            return len(won), None, sum(awards[d] for d in won), basis

        return designation_award
    if isinstance(rule, MatchingRule):
        of, (share, matched) = tuple(rule.of), _ratio(rule.ratio)
        suffix = f"（{rule.payer}）" if rule.payer else ""
        label = rule.ratio

        def matching(f: PartyOrgFacts, year: int, months: int, by_code: dict[str, int]) -> Any:
            base = sum(by_code.get(code, 0) for code in of)
            return base, None, _round_half_up(base * share, matched), f"{label}配套{base}元{suffix}"

        return matching
    raise AssertionError(f"unknown rule kind {rule.kind}")


def scale_to_cap(amounts: Sequence[int], cap: int) -> list[int]:
    """Scale `amounts` down so they sum to `cap` exactly (largest remainder; ties go to earlier
    items). A cap at or above the total changes nothing: a cap never scales up."""
    total = sum(amounts)
    if cap >= total:
        return list(amounts)
    parts = [divmod(a * cap, total) for a in amounts]
    floors = [q for q, _ in parts]
    short = cap - sum(floors)
    if short:
        remainders = [r for _, r in parts]
        # A stable sort, reversed, keeps equal remainders in their original order.
        for i in sorted(range(len(amounts)), key=remainders.__getitem__, reverse=True)[:short]:
            floors[i] += 1
    return floors


# ---- the seed examples as rule data -------------------------------------------------------------

SEED_RULE_SETS: dict[str, dict[str, Any]] = {
    "fuyang": {
        "name": "富阳区非公党建经费（星级补助、党员活动经费、镇企1:1配套）",
        "rules": [
            {
                "code": "star_subsidy",
                "kind": "star_tier",
                "name": "区财政星级补助",
                "tiers": {"3": 3000, "4": 10000, "5": 20000},
            },
            {"code": "member_activity", "kind": "per_member", "name": "党员活动经费", "amount": 150},
            {
                "code": "town_enterprise_matching",
                "kind": "matching",
                "name": "镇、企1:1配套",
                "of": ["star_subsidy", "member_activity"],
                "ratio": "1:1",
                "payer": "镇、企",
            },
        ],
    },
    "diqing": {
        "name": "迪庆州两类组织党建经费保障",
        "rules": [
            {"code": "startup_grant", "kind": "startup", "name": "新建党组织启动经费", "amount": 5000},
            {
                "code": "annual_activity",
                "kind": "by_level",
                "name": "党组织活动经费",
                "amounts": {"committee": 20000, "general_branch": 20000, "branch": 3000},
            },
            {
                "code": "secretary_allowance",
                "kind": "secretary_allowance",
                "name": "党支部书记工作补助",
                "monthly": 300,
                "levels": ["branch"],
            },
        ],
    },
    "luzhou": {
        "name": "泸州市两新组织党建阵地以奖代补",
        "rules": [
            {
                "code": "site_award",
                "kind": "designation_award",
                "name": "市级示范阵地、标准化阵地奖励",
                "awards": [
                    {"level": "city", "type": "model", "amount": 100000},
                    {"level": "city", "type": "compliant", "amount": 30000},
                ],
            }
        ],
    },
}
