"""event failures: the jurisdiction of a failed or refused event in every inbox, an index of those
rows for operators, readiness and metrics; what the registry made of a verified visit

Revision ID: 20261201_10
Revises: 20261129_08
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_10"
down_revision: str | None = "20261129_08"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INBOXES = ("registry_inbox", "coverage_inbox", "evaluation_inbox")


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
    op.add_column("visit", sa.Column("ledger_status", sa.String(length=10), nullable=True))
    op.add_column("visit", sa.Column("ledger_error", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("visit", "ledger_error")
    op.drop_column("visit", "ledger_status")
    for table in INBOXES:
        op.drop_index(
            f"ix_{table}_attention", table_name=table, postgresql_where=sa.text("status IN ('failed', 'refused')")
        )
        op.drop_column(table, "region_code")
