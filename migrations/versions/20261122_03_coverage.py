"""coverage: figures by formation, snapshots, recalculations, targets, establishment tasks"""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "20261122_03", "20261122_02"


def upgrade() -> None:
    op.create_table(
        "coverage_recalculation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("figures_changed", sa.Integer(), nullable=True),
        sa.Column("events_absorbed", sa.Integer(), nullable=True),
        sa.Column("snapshot_date", sa.Date(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverage_recalculation")),
    )
    op.create_table(
        "coverage_snapshot",
        sa.Column("registered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("active", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("in_scope", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("org_covered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("work_covered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("single_eligible", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("single_formed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("charter_included", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("party_orgs", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("party_orgs_single", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("party_orgs_joint", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("party_orgs_industry", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("party_orgs_regional", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("party_orgs_affiliated", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("secretary_in_management", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("secretary_is_investor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("snapshot_date", "region_code", "kind", name=op.f("pk_coverage_snapshot")),
    )
    op.create_table(
        "establishment_task_member",
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("covered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "organization_id", name=op.f("pk_establishment_task_member")),
    )
    op.create_index(
        "uq_establishment_task_member_live",
        "establishment_task_member",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "coverage_target",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=True),
        sa.Column("metric", sa.String(length=24), nullable=False),
        sa.Column("target_rate", sa.Float(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_coverage_target_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverage_target")),
    )
    op.create_index(op.f("ix_coverage_target_region_code"), "coverage_target", ["region_code"], unique=False)
    op.create_table(
        "establishment_task",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("recommended_formation", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("responsible_unit", sa.String(length=200), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by_party_org", sa.UUID(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_code"], ["region.code"], name=op.f("fk_establishment_task_region_code_region")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_establishment_task")),
    )
    op.create_index(op.f("ix_establishment_task_region_code"), "establishment_task", ["region_code"], unique=False)
    op.create_index("ix_establishment_task_status_due", "establishment_task", ["status", "due_date"], unique=False)
    op.add_column("coverage_figure", sa.Column("party_orgs", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column(
        "coverage_figure", sa.Column("party_orgs_single", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column("coverage_figure", sa.Column("party_orgs_joint", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column(
        "coverage_figure", sa.Column("party_orgs_industry", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "coverage_figure", sa.Column("party_orgs_regional", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "coverage_figure", sa.Column("party_orgs_affiliated", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "coverage_figure", sa.Column("secretary_in_management", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "coverage_figure", sa.Column("secretary_is_investor", sa.BigInteger(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("coverage_figure", "secretary_is_investor")
    op.drop_column("coverage_figure", "secretary_in_management")
    op.drop_column("coverage_figure", "party_orgs_affiliated")
    op.drop_column("coverage_figure", "party_orgs_regional")
    op.drop_column("coverage_figure", "party_orgs_industry")
    op.drop_column("coverage_figure", "party_orgs_joint")
    op.drop_column("coverage_figure", "party_orgs_single")
    op.drop_column("coverage_figure", "party_orgs")
    op.drop_index("ix_establishment_task_status_due", table_name="establishment_task")
    op.drop_index(op.f("ix_establishment_task_region_code"), table_name="establishment_task")
    op.drop_table("establishment_task")
    op.drop_index(op.f("ix_coverage_target_region_code"), table_name="coverage_target")
    op.drop_table("coverage_target")
    op.drop_index(
        "uq_establishment_task_member_live", table_name="establishment_task_member", postgresql_where=sa.text("active")
    )
    op.drop_table("establishment_task_member")
    op.drop_table("coverage_snapshot")
    op.drop_table("coverage_recalculation")
