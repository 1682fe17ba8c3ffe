"""field app, second round: campaign forms, answers, paradata and flags, photo names, devices,
organization coordinates

Revision ID: 20261202_15
Revises: 20261201_11
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.security import audit, protect, unaudit, unprotect

revision: str = "20261202_15"
down_revision: str | None = "20261201_11"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_form",
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("published_by", sa.String(length=120), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "version", name=op.f("pk_campaign_form")),
    )
    op.create_index(op.f("ix_campaign_form_region_code"), "campaign_form", ["region_code"], unique=False)
    protect("campaign_form")
    audit("campaign_form", "coverage")

    op.add_column("visit", sa.Column("form_version", sa.Integer(), nullable=True))
    op.add_column("visit", sa.Column("answers", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("visit", sa.Column("paradata", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("visit", sa.Column("device_id", sa.String(length=100), nullable=True))
    op.add_column(
        "visit",
        sa.Column(
            "flags", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
    )
    # Many visits from one phone in a few minutes: looked up per device and time at submission.
    op.create_index(
        "ix_visit_device_time",
        "visit",
        ["device_id", "visited_at"],
        unique=False,
        postgresql_where=sa.text("device_id IS NOT NULL"),
    )
    op.add_column("visit_photo", sa.Column("file_name", sa.String(length=200), nullable=True))

    op.add_column("organization", sa.Column("latitude", sa.Float(), nullable=True))
    op.add_column("organization", sa.Column("longitude", sa.Float(), nullable=True))

    op.create_table(
        "staff_device",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("refresh_hash", sa.String(length=64), nullable=False),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_staff_device_region_code_region")),
        sa.ForeignKeyConstraint(["user_id"], ["staff_user.id"], name=op.f("fk_staff_device_user_id_staff_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_device")),
    )
    op.create_index(op.f("ix_staff_device_user_id"), "staff_device", ["user_id"], unique=False)
    op.create_index(
        "uq_staff_device_live",
        "staff_device",
        ["user_id", "device_id"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    # Like staff_user, read to authenticate before there is a caller: no row-level security; its
    # endpoints filter by the user's jurisdiction. Every change audited, the refresh hash masked.
    audit("staff_device", "registry", "refresh_hash")


def downgrade() -> None:
    unaudit("staff_device")
    op.drop_index("uq_staff_device_live", table_name="staff_device", postgresql_where=sa.text("revoked_at IS NULL"))
    op.drop_index(op.f("ix_staff_device_user_id"), table_name="staff_device")
    op.drop_table("staff_device")
    op.drop_column("organization", "longitude")
    op.drop_column("organization", "latitude")
    op.drop_column("visit_photo", "file_name")
    op.drop_index("ix_visit_device_time", table_name="visit", postgresql_where=sa.text("device_id IS NOT NULL"))
    op.drop_column("visit", "flags")
    op.drop_column("visit", "device_id")
    op.drop_column("visit", "paradata")
    op.drop_column("visit", "answers")
    op.drop_column("visit", "form_version")
    unaudit("campaign_form")
    unprotect("campaign_form")
    op.drop_index(op.f("ix_campaign_form_region_code"), table_name="campaign_form")
    op.drop_table("campaign_form")
