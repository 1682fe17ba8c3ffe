"""registry: areas, organizations, party organizations, instructors, ledger, imports"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision, down_revision = "20261122_02", "20261122_01"


def upgrade() -> None:
    op.create_table(
        "import_batch",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("caller", sa.String(length=120), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_batch")),
    )
    op.create_index(
        "uq_import_batch_idempotency",
        "import_batch",
        ["caller", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "registry_change",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "txid", sa.BigInteger(), server_default=sa.text("pg_current_xact_id()::text::bigint"), nullable=False
        ),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_registry_change")),
    )
    op.create_index("ix_registry_change_entity", "registry_change", ["entity_id", "seq"], unique=False)
    op.create_index("ix_registry_change_feed", "registry_change", ["txid", "seq"], unique=False)
    op.create_table(
        "area",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=17), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_area_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_area")),
    )
    op.create_index(op.f("ix_area_region_code"), "area", ["region_code"], unique=False)
    op.create_table(
        "instructor",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=9), nullable=False),
        sa.Column("source", sa.String(length=19), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_instructor_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instructor")),
    )
    op.create_index(op.f("ix_instructor_region_code"), "instructor", ["region_code"], unique=False)
    op.create_table(
        "party_org",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=14), nullable=False),
        sa.Column("formation", sa.String(length=10), nullable=False),
        sa.Column("functional", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("superior_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("established_on", sa.Date(), nullable=False),
        sa.Column("dissolved_on", sa.Date(), nullable=True),
        sa.Column("dissolution_reason", sa.Text(), nullable=True),
        sa.Column("secretary_in_management", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("secretary_is_investor", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_party_org_region_code_region")),
        sa.ForeignKeyConstraint(["superior_id"], ["party_org.id"], name=op.f("fk_party_org_superior_id_party_org")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_party_org")),
    )
    op.create_index(op.f("ix_party_org_active"), "party_org", ["active"], unique=False)
    op.create_index(op.f("ix_party_org_region_code"), "party_org", ["region_code"], unique=False)
    op.create_table(
        "organization",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("credit_code", sa.String(length=18, collation="C"), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=19), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("area_id", sa.Uuid(), nullable=True),
        sa.Column("industry_code", sa.String(length=5), nullable=True),
        sa.Column("registration_authority", sa.String(length=17), nullable=True),
        sa.Column("sector", sa.String(length=16), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("status", sa.String(length=12), server_default="active", nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("employees", sa.Integer(), nullable=True),
        sa.Column("has_fixed_premises", sa.Boolean(), nullable=True),
        sa.Column("has_business_activity", sa.Boolean(), nullable=True),
        sa.Column("social_org_level", sa.String(length=8), nullable=True),
        sa.Column("formal_members", sa.Integer(), server_default="0", nullable=False),
        sa.Column("probationary_members", sa.Integer(), server_default="0", nullable=False),
        sa.Column("activists", sa.Integer(), server_default="0", nullable=False),
        sa.Column("floating_members", sa.Integer(), server_default="0", nullable=False),
        sa.Column("has_trade_union", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("has_youth_league", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("leader_political_status", sa.String(length=19), nullable=True),
        sa.Column("investor_is_party_member", sa.Boolean(), nullable=True),
        sa.Column("charter_includes_party_building", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("in_scope", sa.Boolean(), nullable=True),
        sa.Column("party_org_id", sa.Uuid(), nullable=True),
        sa.Column("instructed", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["area_id"], ["area.id"], name=op.f("fk_organization_area_id_area")),
        sa.ForeignKeyConstraint(
            ["party_org_id"], ["party_org.id"], name=op.f("fk_organization_party_org_id_party_org")
        ),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_organization_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization")),
    )
    op.create_index(op.f("ix_organization_area_id"), "organization", ["area_id"], unique=False)
    op.create_index(op.f("ix_organization_in_scope"), "organization", ["in_scope"], unique=False)
    op.create_index(op.f("ix_organization_industry_code"), "organization", ["industry_code"], unique=False)
    op.create_index(
        "ix_organization_party_org_id",
        "organization",
        ["party_org_id"],
        unique=False,
        postgresql_where=sa.text("party_org_id IS NOT NULL"),
    )
    op.create_index("ix_organization_region_kind", "organization", ["region_code", "kind"], unique=False)
    op.create_index(
        "uq_organization_credit_code",
        "organization",
        ["credit_code"],
        unique=True,
        postgresql_where=sa.text("credit_code IS NOT NULL"),
    )
    op.create_table(
        "instructor_assignment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("instructor_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["instructor_id"], ["instructor.id"], name=op.f("fk_instructor_assignment_instructor_id_instructor")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organization.id"], name=op.f("fk_instructor_assignment_organization_id_organization")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instructor_assignment")),
    )
    op.create_index(
        op.f("ix_instructor_assignment_instructor_id"), "instructor_assignment", ["instructor_id"], unique=False
    )
    op.create_index(
        op.f("ix_instructor_assignment_organization_id"), "instructor_assignment", ["organization_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_instructor_assignment_organization_id"), table_name="instructor_assignment")
    op.drop_index(op.f("ix_instructor_assignment_instructor_id"), table_name="instructor_assignment")
    op.drop_table("instructor_assignment")
    op.drop_index(
        "uq_organization_credit_code", table_name="organization", postgresql_where=sa.text("credit_code IS NOT NULL")
    )
    op.drop_index("ix_organization_region_kind", table_name="organization")
    op.drop_index(
        "ix_organization_party_org_id", table_name="organization", postgresql_where=sa.text("party_org_id IS NOT NULL")
    )
    op.drop_index(op.f("ix_organization_industry_code"), table_name="organization")
    op.drop_index(op.f("ix_organization_in_scope"), table_name="organization")
    op.drop_index(op.f("ix_organization_area_id"), table_name="organization")
    op.drop_table("organization")
    op.drop_index(op.f("ix_party_org_region_code"), table_name="party_org")
    op.drop_index(op.f("ix_party_org_active"), table_name="party_org")
    op.drop_table("party_org")
    op.drop_index(op.f("ix_instructor_region_code"), table_name="instructor")
    op.drop_table("instructor")
    op.drop_index(op.f("ix_area_region_code"), table_name="area")
    op.drop_table("area")
    op.drop_index("ix_registry_change_feed", table_name="registry_change")
    op.drop_index("ix_registry_change_entity", table_name="registry_change")
    op.drop_table("registry_change")
    op.drop_index(
        "uq_import_batch_idempotency",
        table_name="import_batch",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_table("import_batch")
