"""campaigns"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision, down_revision = "20261122_05", "20261122_03"


def upgrade() -> None:
    op.create_table(
        "assignment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("surveyor_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment")),
    )
    op.create_index("ix_assignment_organization", "assignment", ["organization_id"], unique=False)
    op.create_index("ix_assignment_surveyor", "assignment", ["surveyor_id"], unique=False)
    op.create_index(
        "uq_assignment_campaign_round_org", "assignment", ["campaign_id", "round", "organization_id"], unique=True
    )
    op.create_table(
        "campaign_round",
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "number", name=op.f("pk_campaign_round")),
    )
    op.create_table(
        "campaign_team",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("surveyor_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("townships", postgresql.ARRAY(sa.String(length=12, collation="C")), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_team")),
    )
    op.create_index(op.f("ix_campaign_team_campaign_id"), "campaign_team", ["campaign_id"], unique=False)
    op.create_table(
        "mobile_change",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "txid", sa.BigInteger(), server_default=sa.text("pg_current_xact_id()::text::bigint"), nullable=False
        ),
        sa.Column("surveyor_id", sa.UUID(), nullable=False),
        sa.Column("assignment_id", sa.UUID(), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_mobile_change")),
    )
    op.create_index("ix_mobile_change_feed", "mobile_change", ["surveyor_id", "txid", "seq"], unique=False)
    op.create_table(
        "visit",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.UUID(), nullable=True),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("surveyor_id", sa.UUID(), nullable=False),
        sa.Column("visited_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("observation", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("new_organization", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("willing_to_establish", sa.Boolean(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("review_status", sa.String(length=10), nullable=False),
        sa.Column("reviewed_by", sa.String(length=120), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("registration_status", sa.String(length=12), nullable=True),
        sa.Column("registered_organization_id", sa.UUID(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit")),
    )
    op.create_index("ix_visit_assignment", "visit", ["assignment_id"], unique=False)
    op.create_index("ix_visit_review", "visit", ["campaign_id", "review_status"], unique=False)
    op.create_table(
        "visit_photo",
        sa.Column("visit_id", sa.UUID(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=20), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("visit_id", "sha256", name=op.f("pk_visit_photo")),
    )
    op.create_table(
        "campaign",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("kinds", postgresql.ARRAY(sa.String(length=24)), nullable=False),
        sa.Column("criteria", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("target_rate", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_campaign_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
    )
    op.create_index(op.f("ix_campaign_region_code"), "campaign", ["region_code"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_campaign_region_code"), table_name="campaign")
    op.drop_table("campaign")
    op.drop_table("visit_photo")
    op.drop_index("ix_visit_review", table_name="visit")
    op.drop_index("ix_visit_assignment", table_name="visit")
    op.drop_table("visit")
    op.drop_index("ix_mobile_change_feed", table_name="mobile_change")
    op.drop_table("mobile_change")
    op.drop_index(op.f("ix_campaign_team_campaign_id"), table_name="campaign_team")
    op.drop_table("campaign_team")
    op.drop_table("campaign_round")
    op.drop_index("uq_assignment_campaign_round_org", table_name="assignment")
    op.drop_index("ix_assignment_surveyor", table_name="assignment")
    op.drop_index("ix_assignment_organization", table_name="assignment")
    op.drop_table("assignment")
