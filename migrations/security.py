"""Building blocks of the second wall, for migrations: row-level security by jurisdiction, the
services' database role, and audit triggers. A migration that adds a table calls these for it;
`tests/shared/test_security_schema.py` fails for a jurisdiction table left without them."""

from __future__ import annotations

from alembic import op

from shared.settings import get_settings

# What a transaction may see: `liangxin.region_prefix` is the caller's region prefix ("*" for the
# whole country); unset, nothing. `(SELECT …)` makes Postgres read the setting once per query.
PREFIX = "(SELECT current_setting('liangxin.region_prefix', true))"
VISIBLE = f"({PREFIX} = '*' OR starts_with(region_code, nullif({PREFIX}, '')))"
# Reference data (templates, quotas) set at a higher level is readable below it.
# (the prefix of a 12-digit code: segments of 2, 2, 2, 3 and 3 digits, trailing zero segments dropped)
CODE_PREFIX = (
    "(CASE WHEN region_code = '000000000000' THEN '' "
    "WHEN substr(region_code, 3) = '0000000000' THEN left(region_code, 2) "
    "WHEN substr(region_code, 5) = '00000000' THEN left(region_code, 4) "
    "WHEN substr(region_code, 7) = '000000' THEN left(region_code, 6) "
    "WHEN substr(region_code, 10) = '000' THEN left(region_code, 9) ELSE region_code END)"
)
VISIBLE_OR_ABOVE = f"({VISIBLE} OR starts_with(nullif({PREFIX}, ''), {CODE_PREFIX}))"


def app_role() -> str:
    """The role the services act as (`LIANGXIN_DB_ROLE`); "" when they act as the owner."""
    return get_settings().db_role


def protect(table: str, *, readable_from_above: bool = False) -> None:
    """Rows of `table` are visible and writable only inside the caller's jurisdiction."""
    using = VISIBLE_OR_ABOVE if readable_from_above else VISIBLE
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY jurisdiction ON {table} FOR SELECT USING {using}")
    op.execute(f"CREATE POLICY jurisdiction_insert ON {table} FOR INSERT WITH CHECK {VISIBLE}")
    op.execute(f"CREATE POLICY jurisdiction_update ON {table} FOR UPDATE USING {VISIBLE} WITH CHECK {VISIBLE}")
    op.execute(f"CREATE POLICY jurisdiction_delete ON {table} FOR DELETE USING {VISIBLE}")


def unprotect(table: str) -> None:
    for name in ("jurisdiction", "jurisdiction_insert", "jurisdiction_update", "jurisdiction_delete"):
        op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def audit(table: str, service: str, *masked: str) -> None:
    """Every insert, update and delete of `table` lands in `<service>_audit`, `masked` columns hidden."""
    args = ", ".join(f"'{a}'" for a in (f"{service}_audit", *masked))
    op.execute(
        f"CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION liangxin_audit({args})"
    )


def unaudit(table: str) -> None:
    op.execute(f"DROP TRIGGER IF EXISTS audit ON {table}")
