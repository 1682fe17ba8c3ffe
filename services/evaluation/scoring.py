"""Scores against a template version: validation, totals, star level, pass — pure and deterministic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from services.evaluation.models import TemplateDefinition, TemplateKind
from shared.errors import FieldError

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Result:
    group_totals: dict[str, Decimal]
    total: Decimal
    star_level: int | None
    passed: bool | None


def _q(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def max_total(definition: TemplateDefinition) -> Decimal:
    return _q(sum((g.weight * sum((i.max_score for i in g.items), Decimal(0)) for g in definition.groups), Decimal(0)))


def item_max(definition: TemplateDefinition) -> dict[str, Decimal]:
    return {i.key: i.max_score for g in definition.groups for i in g.items}


def check(definition: TemplateDefinition, scores: Mapping[str, Decimal], *, complete: bool = False) -> list[FieldError]:
    """Every problem with `scores`, each naming its field; `complete` also requires every item."""
    maxima = item_max(definition)
    errors: list[FieldError] = []
    for key in sorted(scores):
        value = scores[key]
        field = f"scores.{key}"
        if key not in maxima:
            errors.append(FieldError(field=field, reason="unknown item: this template version has no such item"))
        elif not value.is_finite():
            errors.append(FieldError(field=field, reason="must be a number"))
        elif value < 0:
            errors.append(FieldError(field=field, reason="must not be negative"))
        elif value > maxima[key]:
            errors.append(FieldError(field=field, reason=f"exceeds the item's maximum of {maxima[key]}"))
        elif value != value.quantize(CENT):
            errors.append(FieldError(field=field, reason="at most 2 decimal places"))
    if complete:
        errors.extend(FieldError(field=f"scores.{key}", reason="not scored yet") for key in maxima if key not in scores)
    return errors


def compute(definition: TemplateDefinition, kind: str, scores: Mapping[str, Decimal]) -> Result:
    """Totals, star level and pass from validated scores; an unscored item counts 0."""
    group_totals: dict[str, Decimal] = {}
    groups_met = 0
    for group in definition.groups:
        raw = sum((Decimal(scores.get(i.key, 0)) for i in group.items), Decimal(0))
        group_totals[group.key] = _q(group.weight * raw)
        if group.star_min_ratio is not None:
            group_max = sum((i.max_score for i in group.items), Decimal(0))
            groups_met += raw >= group.star_min_ratio * group_max
    total = _q(sum(group_totals.values(), Decimal(0)))
    star_level: int | None = None
    if kind == TemplateKind.star_rating and definition.stars is not None:
        if definition.stars.method == "dimensions":
            star_level = min(5, max(definition.stars.min_stars, groups_met))
        else:
            reached = [t.stars for t in definition.stars.thresholds if total >= t.min_total]
            star_level = max(reached, default=0)
    rule = definition.pass_rule
    passed = True
    if rule.min_total is not None and total < rule.min_total:
        passed = False
    if rule.min_item_ratio is not None:
        for group in definition.groups:
            for item in group.items:
                if Decimal(scores.get(item.key, 0)) < rule.min_item_ratio * item.max_score:
                    passed = False
    return Result(group_totals=group_totals, total=total, star_level=star_level, passed=passed)
