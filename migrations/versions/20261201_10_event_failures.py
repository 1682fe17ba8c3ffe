"""event failures: the jurisdiction of a failed or refused event in every inbox (row-level security
on it), an index of those rows for operators, readiness and metrics, the count of failed counter
events behind stale figures; what the registry made of a verified visit"""

import sqlalchemy as sa
from alembic import op

from migrations.security import protect, unprotect

revision, down_revision = "20261201_10", "20261201_09"

INBOXES = ("registry_inbox", "coverage_inbox", "evaluation_inbox")

# Whether counter events touching a region failed, whoever asks: a county's figures are stale when
# an event spanning the city failed, though row-level security hides that event from the county.
UNCOUNTED_FUNCTION = """
CREATE FUNCTION liangxin_uncounted_events(above text[], prefix text, types text[]) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT count(*) FROM coverage_inbox
  WHERE status = 'failed' AND event_type = ANY (types)
    AND (coalesce(region_code, '000000000000') = ANY (above) OR starts_with(region_code, prefix))
$$
"""


def upgrade() -> None:
    for table in INBOXES:
        op.add_column(table, sa.Column("region_code", sa.String(length=12, collation="C"), nullable=True))
        op.create_index(
            f"ix_{table}_attention",
            table,
            ["processed_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('failed', 'refused')"),
        )
        # Workers, the relay and readiness act for the whole country; an operator sees the events
        # of their jurisdiction (an event naming no region belongs to the country).
        protect(table)
    op.execute(UNCOUNTED_FUNCTION)
    op.add_column("visit", sa.Column("ledger_status", sa.String(length=10), nullable=True))
    op.add_column("visit", sa.Column("ledger_error", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("visit", "ledger_error")
    op.drop_column("visit", "ledger_status")
    op.execute("DROP FUNCTION liangxin_uncounted_events(text[], text, text[])")
    for table in INBOXES:
        unprotect(table)
        op.drop_index(
            f"ix_{table}_attention", table_name=table, postgresql_where=sa.text("status IN ('failed', 'refused')")
        )
        op.drop_column(table, "region_code")
