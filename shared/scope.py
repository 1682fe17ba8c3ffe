"""摸排范围: which organizations the survey and the coverage figures count, in Python and in SQL.

An enterprise is in scope with fixed premises, business activity and enough employees; a social
organization when registered at a listed level or with enough staff; an individual business
never. While an input the answer depends on is unknown, so is the answer (None / NULL). The
thresholds come from settings, and a survey campaign may override them for its own counts.
A property test holds the Python and the SQL versions equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.settings import Settings


@dataclass(frozen=True)
class ScopeCriteria:
    enterprise_min_employees: int
    social_org_min_staff: int
    social_org_levels: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings, overrides: Mapping[str, Any] | None = None) -> ScopeCriteria:
        values: dict[str, Any] = {
            "enterprise_min_employees": settings.scope_enterprise_min_employees,
            "social_org_min_staff": settings.scope_social_org_min_staff,
            "social_org_levels": tuple(settings.scope_social_org_levels),
        }
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        values["social_org_levels"] = tuple(values["social_org_levels"])
        return cls(**values)


def derive_in_scope(values: Mapping[str, Any], criteria: ScopeCriteria) -> bool | None:
    """True, False, or None while an input it depends on is unknown."""
    kind = values.get("kind")
    employees = values.get("employees")
    if kind == "enterprise":
        checks = [
            values.get("has_fixed_premises"),
            None if employees is None else employees >= criteria.enterprise_min_employees,
            values.get("has_business_activity"),
        ]
        if False in checks:
            return False
        return None if None in checks else True
    if kind == "social_org":
        level = values.get("social_org_level")
        if level in criteria.social_org_levels:
            return True
        if employees is not None and employees >= criteria.social_org_min_staff:
            return True
        if level is not None and employees is not None:
            return False
        return None
    return False


def in_scope_sql(criteria: ScopeCriteria, p: str = "") -> str:
    """The same rule as a SQL expression over columns named `<p>kind`, `<p>employees`, …"""
    levels = ", ".join("'" + level.replace("'", "''") + "'" for level in criteria.social_org_levels) or "NULL"
    return f"""CASE {p}kind
      WHEN 'enterprise' THEN CASE
        WHEN {p}has_fixed_premises IS FALSE OR {p}has_business_activity IS FALSE
          OR {p}employees < {int(criteria.enterprise_min_employees)} THEN false
        WHEN {p}has_fixed_premises IS NULL OR {p}has_business_activity IS NULL OR {p}employees IS NULL THEN NULL
        ELSE true END
      WHEN 'social_org' THEN CASE
        WHEN {p}social_org_level IN ({levels}) THEN true
        WHEN {p}employees >= {int(criteria.social_org_min_staff)} THEN true
        WHEN {p}social_org_level IS NOT NULL AND {p}employees IS NOT NULL THEN false
        ELSE NULL END
      ELSE false END"""
