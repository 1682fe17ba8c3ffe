"""recalculation jurisdiction: a region for each recount, row-level security, one active at a time"""

import sqlalchemy as sa
from alembic import op

from migrations.security import protect, unprotect

revision, down_revision = "20261201_09", "20261129_08"


def upgrade() -> None:
    # Every recount so far counted the whole country: they belong to the national jurisdiction.
    op.add_column(
        "coverage_recalculation",
        sa.Column("region_code", sa.String(length=12, collation="C"), server_default="000000000000", nullable=False),
    )
    op.alter_column("coverage_recalculation", "region_code", server_default=None)
    op.create_foreign_key(
        op.f("fk_coverage_recalculation_region_code_region"),
        "coverage_recalculation",
        "region",
        ["region_code"],
        ["code"],
    )
    # Requests that arrive while one is queued or running share it; older duplicates end as failed.
    op.execute(
        "UPDATE coverage_recalculation r SET status = 'failed', finished_at = now(), "
        "error = 'superseded by an earlier recount still queued or running' "
        "WHERE status IN ('queued', 'running') AND EXISTS (SELECT 1 FROM coverage_recalculation o "
        "WHERE o.status IN ('queued', 'running') AND (o.requested_at, o.id) < (r.requested_at, r.id))"
    )
    op.create_index(
        "uq_coverage_recalculation_active",
        "coverage_recalculation",
        ["region_code"],
        unique=True,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    protect("coverage_recalculation")


def downgrade() -> None:
    unprotect("coverage_recalculation")
    op.drop_index(
        "uq_coverage_recalculation_active",
        table_name="coverage_recalculation",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_constraint(
        op.f("fk_coverage_recalculation_region_code_region"), "coverage_recalculation", type_="foreignkey"
    )
    op.drop_column("coverage_recalculation", "region_code")
