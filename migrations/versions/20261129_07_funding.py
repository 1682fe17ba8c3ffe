"""funding: rule sets (versioned rules as data), allocations per party organization, their lines"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision, down_revision = "20261129_07", "20261129_06"


def upgrade() -> None:
    op.create_table(
        "funding_rule_set",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("rules", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_funding_rule_set_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funding_rule_set")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_funding_rule_set_code_version")),
    )
    op.create_index(op.f("ix_funding_rule_set_region_code"), "funding_rule_set", ["region_code"], unique=False)
    op.create_table(
        "funding_allocation",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("rule_set_code", sa.String(length=40), nullable=False),
        sa.Column("scope_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("party_org_id", sa.UUID(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("party_org_name", sa.String(length=200), nullable=False),
        sa.Column("party_org_level", sa.String(length=16), nullable=False),
        sa.Column("rule_set_id", sa.Uuid(), nullable=False),
        sa.Column("rule_set_version", sa.Integer(), nullable=False),
        sa.Column("budget_cap", sa.BigInteger(), nullable=True),
        sa.Column("uncapped_total", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_set_id"], ["funding_rule_set.id"], name=op.f("fk_funding_allocation_rule_set_id_funding_rule_set")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funding_allocation")),
        sa.UniqueConstraint("year", "rule_set_code", "scope_code", "party_org_id", name="uq_funding_allocation_key"),
    )
    op.create_index("ix_funding_allocation_region", "funding_allocation", ["region_code", "year", "id"], unique=False)
    op.create_table(
        "funding_line",
        sa.Column("allocation_id", sa.UUID(), nullable=False),
        sa.Column("rule_code", sa.String(length=40), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("rule_kind", sa.String(length=24), nullable=False),
        sa.Column("rule_name", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=True),
        sa.Column("uncapped_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["allocation_id"],
            ["funding_allocation.id"],
            name=op.f("fk_funding_line_allocation_id_funding_allocation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("allocation_id", "rule_code", name=op.f("pk_funding_line")),
    )


def downgrade() -> None:
    op.drop_table("funding_line")
    op.drop_index("ix_funding_allocation_region", table_name="funding_allocation")
    op.drop_table("funding_allocation")
    op.drop_index(op.f("ix_funding_rule_set_region_code"), table_name="funding_rule_set")
    op.drop_table("funding_rule_set")
