"""foundation: regions, accounts, outbox and inbox per service, coverage figures"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision, down_revision = "20261122_01", None


def upgrade() -> None:
    op.create_table(
        "coverage_figure",
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("registered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("active", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("in_scope", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("org_covered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("work_covered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("single_eligible", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("single_formed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("charter_included", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("region_code", "kind", name=op.f("pk_coverage_figure")),
    )
    op.create_table(
        "region",
        sa.Column("code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("parent_code", sa.String(length=12, collation="C"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["parent_code"], ["region.code"], name=op.f("fk_region_parent_code_region")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_region")),
    )
    op.create_index(op.f("ix_region_parent_code"), "region", ["parent_code"], unique=False)
    op.create_table(
        "api_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_api_key_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_prefix", name=op.f("uq_api_key_key_prefix")),
    )
    op.create_table(
        "staff_user",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_staff_user_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_user")),
        sa.UniqueConstraint("username", name=op.f("uq_staff_user_username")),
    )
    for service in SERVICES:
        _create_inbox(service)
        _create_outbox(service)
    op.execute("INSERT INTO region (code, name, level, parent_code) VALUES ('000000000000', '全国', 0, NULL)")


def downgrade() -> None:
    for service in SERVICES:
        op.drop_table(f"{service}_outbox")  # its indexes go with it
        op.drop_table(f"{service}_inbox")
    op.drop_table("staff_user")
    op.drop_table("api_key")
    op.drop_index(op.f("ix_region_parent_code"), table_name="region")
    op.drop_table("region")
    op.drop_table("coverage_figure")


# Each service has an outbox and an inbox of the same shape (shared/outbox.py).
SERVICES = ("registry", "coverage", "evaluation")


def _create_inbox(service: str) -> None:
    op.create_table(
        f"{service}_inbox",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("consumer", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "consumer", name=f"pk_{service}_inbox"),
    )


def _create_outbox(service: str) -> None:
    table = f"{service}_outbox"
    op.create_table(
        table,
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeliveries", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.UniqueConstraint("seq", name=f"uq_{table}_seq"),
    )
    op.create_index(
        f"ix_{table}_incomplete",
        table,
        ["published_at"],
        unique=False,
        postgresql_where=sa.text("completed_at IS NULL AND published_at IS NOT NULL"),
    )
    op.create_index(
        f"ix_{table}_unpublished", table, ["seq"], unique=False, postgresql_where=sa.text("published_at IS NULL")
    )
