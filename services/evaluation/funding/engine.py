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

What the seeds leave open is a rule set's `options` (`FundingOptions`), each with a default that
keeps the reading the engine always had, and each listed among the assumptions of every computation:
how part months count, whether a party organization that existed only part of the year gets the
yearly amounts in full, and whether the secretary allowance assumes a secretary the registry does
not record.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from shared.schemas import RequestModel

MAX_YUAN = 100_000_000
Money = Annotated[int, Field(ge=0, le=MAX_YUAN, description="integer yuan")]
RuleCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", examples=["star_subsidy"])]
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
_rules_adapter: TypeAdapter[list[Rule]] = TypeAdapter(list[Rule])
# Rules that give a yearly amount: what `part_year` may prorate.
YEARLY_KINDS = ("star_tier", "per_member", "by_level")


class FundingOptions(RequestModel):
    """How a rule set reads what the seed reports leave open. The defaults keep the readings the
    engine always had; every computation lists the ones its rules depend on as assumptions."""

    months: Literal["any_day", "whole_months", "by_day"] = Field(
        default="any_day",
        description="How months of the year the party organization existed count (the secretary allowance, "
        "and prorated yearly amounts): `any_day` a month it existed on any day counts whole (the months it was "
        "established and dissolved both count); `whole_months` only months it existed every day of; `by_day` "
        "part months by their days",
    )
    part_year: Literal["full", "prorated", "prorated_when_dissolved"] = Field(
        default="full",
        description="Yearly amounts (`star_tier`, `per_member`, `by_level`) of a party organization that existed "
        "only part of the year: `full` in full; `prorated` × months existed / 12; `prorated_when_dissolved` "
        "prorated only when it was dissolved that year (one established that year gets them in full)",
    )
    secretaries: Literal["assumed", "recorded"] = Field(
        default="assumed",
        description="The registry records no secretary as such. `assumed`: every party organization a "
        "`secretary_allowance` rule applies to had a secretary every month it existed; `recorded`: only those "
        "whose record says something of their secretary (in management, or the investor)",
    )


# Each option's readings as an official reads them among a computation's assumptions.
OPTION_TEXTS: dict[str, dict[str, str]] = {
    "months": {
        "any_day": "不足一个月的按整月计（成立、撤销当月均计入）",
        "whole_months": "只计整月：成立、撤销当月不满整月的不计",
        "by_day": "不足一个月的按实际存续天数折算",
    },
    "part_year": {
        "full": "年度定额（星级补助、党员经费、按层级核定的经费）不论当年存续几个月均全额计算",
        "prorated": "年度定额按当年存续月数/12折算（年中新建、年中撤销的均折算）",
        "prorated_when_dissolved": "年中撤销的党组织年度定额按存续月数/12折算；年中新建的全额计算",
    },
    "secretaries": {
        "assumed": "登记系统未登记党组织书记：书记工作补助按每个适用的党组织在存续各月均有书记计算",
        "recorded": "书记工作补助只计登记信息表明有书记的党组织（书记进入管理层或由出资人担任）",
    },
}
STAR_LEVEL_TEXT = (
    "星级取该年度评定中最终有效的一次：按审定先后，后审定的取代先前的（含年度评定后的复评），"
    "补审的更早年度或更早季度不取代"
)


def option_assumptions(options: FundingOptions, rules: Sequence[Any]) -> list[tuple[str, str, str]]:
    """(code, value, text) of each reading the rules depend on."""
    kinds = {rule.kind for rule in rules}
    monthly, yearly = "secretary_allowance" in kinds, bool(kinds & set(YEARLY_KINDS))
    found: list[tuple[str, str]] = []
    if yearly:
        found.append(("part_year", options.part_year))
    if monthly or (yearly and options.part_year != "full"):
        found.append(("months", options.months))
    if monthly:
        found.append(("secretaries", options.secretaries))
    out = [(code, value, OPTION_TEXTS[code][value]) for code, value in found]
    if "star_tier" in kinds:
        out.append(("star_level", "standing", STAR_LEVEL_TEXT))
    return out


def parse_options(data: Any) -> FundingOptions:
    """Options as stored (JSONB; `{}` for rule sets published before options existed)."""
    return FundingOptions.model_validate(data or {})


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
    # The registry says something of its secretary (in management, or the investor).
    secretary_recorded: bool = False


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


def _days_in_year(established_on: date, dissolved_on: date | None, year: int) -> tuple[date, date] | None:
    """First and last day of `year` the party organization existed (both dates count as days it existed)."""
    first = max(established_on, date(year, 1, 1))
    last = min(dissolved_on, date(year, 12, 31)) if dissolved_on is not None else date(year, 12, 31)
    return (first, last) if first <= last else None


def months_in_year(established_on: date, dissolved_on: date | None, year: int) -> int:
    """Months of `year` the party organization existed on any day: the month it was established and
    the month it was dissolved both count (a secretary serves in each)."""
    span = _days_in_year(established_on, dissolved_on, year)
    return 0 if span is None else span[1].month - span[0].month + 1


@dataclass(frozen=True, slots=True)
class Presence:
    """How much of a year a party organization existed, months counted as the rule set's options say."""

    months: Fraction
    days: int
    whole_year: bool
    dissolved: bool  # dissolved within the year
    label: str  # the months, as a basis text shows them
    # What yearly amounts are multiplied by (months / 12) when `part_year` prorates them; None: in full.
    share: Fraction | None = None


def presence_in_year(
    established_on: date, dissolved_on: date | None, year: int, months: str = "any_day"
) -> Presence | None:
    """None when the party organization did not exist at all during `year`."""
    span = _days_in_year(established_on, dissolved_on, year)
    if span is None:
        return None
    first, last = span
    days = (last - first).days + 1
    whole_year = days == (date(year, 12, 31) - date(year, 1, 1)).days + 1
    dissolved = dissolved_on is not None and dissolved_on.year == year
    if months == "any_day":
        count = last.month - first.month + 1
        return Presence(Fraction(count), days, whole_year, dissolved, f"{count}个月")
    month_days = [calendar.monthrange(year, m)[1] for m in range(1, 13)]
    if months == "whole_months":
        count = sum(
            1
            for m in range(first.month, last.month + 1)
            if (m > first.month or first.day == 1) and (m < last.month or last.day == month_days[m - 1])
        )
        return Presence(Fraction(count), days, whole_year, dissolved, f"{count}个整月")
    fraction = Fraction(0)
    for m in range(first.month, last.month + 1):
        start = first.day if m == first.month else 1
        end = last.day if m == last.month else month_days[m - 1]
        fraction += Fraction(end - start + 1, month_days[m - 1])
    return Presence(fraction, days, whole_year, dissolved, f"{float(fraction):.2f}个月（{days}天）")


def _ratio(text: str) -> tuple[int, int]:
    left, right = text.split(":")
    return int(left), int(right)


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


# What a rule gives one party organization: (quantity, unit amount, amount, basis), or None.
Evaluate = Callable[[PartyOrgFacts, int, Presence, dict[str, int]], tuple[int, int | None, int, str] | None]


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

    def __init__(self, rules: Sequence[Rule], options: FundingOptions | None = None) -> None:
        self._options = options = options or FundingOptions()
        self._rules = [
            _Compiled(
                rule.code,
                rule.kind,
                rule.name,
                position,
                None if rule.levels is None else frozenset(rule.levels),
                _prorated(_evaluator(rule, options)) if rule.kind in YEARLY_KINDS else _evaluator(rule, options),
            )
            for position, rule in enumerate(rules)
        ]

    def lines(self, facts: PartyOrgFacts, year: int) -> list[Line]:
        """The lines the rules give one party organization for `year`, in rule order; no zero lines."""
        presence = presence_in_year(facts.established_on, facts.dissolved_on, year, self._options.months)
        if presence is None:
            return []
        part_year = self._options.part_year
        if (part_year == "prorated" and not presence.whole_year) or (
            part_year == "prorated_when_dissolved" and presence.dissolved
        ):
            presence = replace(presence, share=presence.months / 12)
        lines: list[Line] = []
        by_code: dict[str, int] = {}
        for rule in self._rules:
            if rule.levels is not None and facts.level not in rule.levels:
                continue
            found = rule.evaluate(facts, year, presence, by_code)
            if found is not None and found[2] > 0:
                lines.append(Line(rule.code, rule.kind, rule.name, rule.position, *found))
                by_code[rule.code] = found[2]
        return lines


def compute_lines(
    facts: PartyOrgFacts, rules: Sequence[Rule], year: int, options: FundingOptions | None = None
) -> list[Line]:
    """The lines `rules` give one party organization for `year`, in rule order; no zero lines."""
    return Engine(rules, options).lines(facts, year)


def _prorated(evaluate: Evaluate) -> Evaluate:
    """A yearly amount × months existed / 12 when the engine says the year is prorated (rounded half up)."""

    def prorated(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
        found, share = evaluate(f, year, presence, by_code), presence.share
        if found is None or share is None:
            return found
        quantity, _, amount, basis = found
        return (
            quantity,
            None,
            _round_half_up(amount * share.numerator, share.denominator),
            f"{basis}，按存续{presence.label}/12折算",
        )

    return prorated


def _evaluator(rule: Rule, options: FundingOptions) -> Evaluate:
    if isinstance(rule, StarTierRule):
        tiers = dict(rule.tiers)

        def star_tier(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
            amount = tiers.get(f.star_level) if f.star_level is not None else None
            return None if amount is None else (1, amount, amount, f"{f.star_level}星")

        return star_tier
    if isinstance(rule, PerMemberRule):
        unit, probationary = rule.amount, rule.members != "formal"

        def per_member(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
            members = f.formal_members + (f.probationary_members if probationary else 0)
            return members, unit, members * unit, f"{members}名党员 × {unit}元"

        return per_member
    if isinstance(rule, StartupRule):
        grant = rule.amount

        def startup(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
            if f.established_on.year != year:
                return None
            return 1, grant, grant, f"{f.established_on.isoformat()}新建"

        return startup
    if isinstance(rule, LevelRule):
        amounts: dict[str, int] = {str(k): v for k, v in rule.amounts.items()}

        def by_level(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
            amount = amounts.get(f.level)
            return None if amount is None else (1, amount, amount, LEVEL_LABELS.get(f.level, f.level))

        return by_level
    if isinstance(rule, SecretaryAllowanceRule):
        monthly, by_day, assumed = rule.monthly, options.months == "by_day", options.secretaries == "assumed"

        def allowance(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
            if not (assumed or f.secretary_recorded):
                return None
            months = presence.months
            if by_day:
                amount = _round_half_up(monthly * months.numerator, months.denominator)
                return presence.days, None, amount, f"{presence.label} × {monthly}元"
            return int(months), monthly, int(months) * monthly, f"{presence.label} × {monthly}元"

        return allowance
    if isinstance(rule, DesignationAwardRule):
        awards = {(a.level, a.type): a.amount for a in rule.awards}

        def designation_award(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
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

        def matching(f: PartyOrgFacts, year: int, presence: Presence, by_code: dict[str, int]) -> Any:
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
