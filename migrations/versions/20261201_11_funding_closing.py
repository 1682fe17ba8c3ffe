"""funding: computations an official can close (cap, facts, assumptions, totals), rule-set options"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.security import audit, protect, unaudit, unprotect

revision, down_revision = "20261201_11", "20261201_10"


def upgrade() -> None:
    op.create_table(
        "funding_computation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("rule_set_code", sa.String(length=40), nullable=False),
        sa.Column("scope_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("rule_set_id", sa.Uuid(), nullable=False),
        sa.Column("rule_set_version", sa.Integer(), nullable=False),
        sa.Column("budget_cap", sa.BigInteger(), nullable=True),
        sa.Column("facts", sa.String(length=16), nullable=False),
        sa.Column("assumptions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("party_orgs", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("uncapped_total", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("computed_by", sa.String(length=120), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_by", sa.String(length=120), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_set_id"], ["funding_rule_set.id"], name=op.f("fk_funding_computation_rule_set_id_funding_rule_set")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funding_computation")),
        sa.UniqueConstraint("year", "rule_set_code", "scope_code", name="uq_funding_computation_key"),
    )
    op.create_index(op.f("ix_funding_computation_region_code"), "funding_computation", ["region_code"], unique=False)
    op.add_column(
        "funding_rule_set",
        sa.Column(
            "options", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
    )
    # Allocations computed before this revision: one computation each, keeping the cap they were
    # computed under (the next computation keeps it too). Their facts were read as they were then.
    op.execute(
        """
        INSERT INTO funding_computation (id, year, rule_set_code, scope_code, region_code, rule_set_id,
          rule_set_version, budget_cap, facts, assumptions, party_orgs, lines, uncapped_total, total,
          computed_by, computed_at)
        SELECT gen_random_uuid(), a.year, a.rule_set_code, a.scope_code, a.scope_code,
               (array_agg(a.rule_set_id ORDER BY a.computed_at DESC))[1],
               (array_agg(a.rule_set_version ORDER BY a.computed_at DESC))[1],
               max(a.budget_cap), 'current', '[]'::jsonb, count(*), sum(l.n), sum(a.uncapped_total), sum(a.total),
               'migration', max(a.computed_at)
        FROM funding_allocation a
        CROSS JOIN LATERAL (SELECT count(*) AS n FROM funding_line l WHERE l.allocation_id = a.id) l
        GROUP BY a.year, a.rule_set_code, a.scope_code
        """
    )
    protect("funding_computation")
    audit("funding_computation", "evaluation")


def downgrade() -> None:
    unaudit("funding_computation")
    unprotect("funding_computation")
    op.drop_column("funding_rule_set", "options")
    op.drop_index(op.f("ix_funding_computation_region_code"), table_name="funding_computation")
    op.drop_table("funding_computation")
