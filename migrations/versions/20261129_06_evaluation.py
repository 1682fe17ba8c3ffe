"""evaluation: templates (with the built-ins), cycles, assessments, rectifications, designations, reviews"""

import json
import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision, down_revision = "20261129_06", "20261122_05"


def upgrade() -> None:
    op.create_table(
        "designation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("party_org_id", sa.UUID(), nullable=False),
        sa.Column("party_org_name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_designation_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_designation")),
    )
    op.create_index("ix_designation_count", "designation", ["year", "level", "type", "status"], unique=False)
    op.create_index(op.f("ix_designation_party_org_id"), "designation", ["party_org_id"], unique=False)
    op.create_index(op.f("ix_designation_region_code"), "designation", ["region_code"], unique=False)
    op.create_table(
        "designation_quota",
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=120), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_designation_quota_region_code_region")),
        sa.PrimaryKeyConstraint("region_code", "year", "level", "type", name=op.f("pk_designation_quota")),
    )
    op.create_table(
        "evaluation_template",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("builtin", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_code"], ["region.code"], name=op.f("fk_evaluation_template_region_code_region")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_template")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_evaluation_template_code_version")),
    )
    op.create_index(op.f("ix_evaluation_template_code"), "evaluation_template", ["code"], unique=False)
    op.create_index(op.f("ix_evaluation_template_region_code"), "evaluation_template", ["region_code"], unique=False)
    op.create_table(
        "evaluation_cycle",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("quarter", sa.Integer(), nullable=True),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("approval_levels", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_evaluation_cycle_region_code_region")),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["evaluation_template.id"],
            name=op.f("fk_evaluation_cycle_template_id_evaluation_template"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_cycle")),
    )
    op.create_index(op.f("ix_evaluation_cycle_region_code"), "evaluation_cycle", ["region_code"], unique=False)
    op.create_index(op.f("ix_evaluation_cycle_year"), "evaluation_cycle", ["year"], unique=False)
    op.create_table(
        "assessment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cycle_id", sa.Uuid(), nullable=False),
        sa.Column("party_org_id", sa.UUID(), nullable=False),
        sa.Column("party_org_name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column(
            "scores", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("total", sa.Numeric(precision=10, scale=2), server_default="0", nullable=False),
        sa.Column("star_level", sa.Integer(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column(
            "approvals", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("submitted_by", sa.String(length=120), nullable=True),
        sa.Column("submitted_level", sa.Integer(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("returned_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["evaluation_cycle.id"], name=op.f("fk_assessment_cycle_id_evaluation_cycle")
        ),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_assessment_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessment")),
        sa.UniqueConstraint("cycle_id", "party_org_id", name=op.f("uq_assessment_cycle_id_party_org_id")),
    )
    op.create_index("ix_assessment_party_org", "assessment", ["party_org_id", "status"], unique=False)
    op.create_index(op.f("ix_assessment_region_code"), "assessment", ["region_code"], unique=False)
    op.create_table(
        "review_report",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cycle_id", sa.Uuid(), nullable=False),
        sa.Column("party_org_id", sa.UUID(), nullable=False),
        sa.Column("party_org_name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("secretary_name", sa.String(length=100), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("reported_on", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["evaluation_cycle.id"], name=op.f("fk_review_report_cycle_id_evaluation_cycle")
        ),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_review_report_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_report")),
        sa.UniqueConstraint("cycle_id", "party_org_id", name=op.f("uq_review_report_cycle_id_party_org_id")),
    )
    op.create_index(op.f("ix_review_report_region_code"), "review_report", ["region_code"], unique=False)
    op.create_table(
        "rectification",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("party_org_id", sa.UUID(), nullable=False),
        sa.Column("party_org_name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("assessment_id", sa.Uuid(), nullable=False),
        sa.Column("star_level", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by_assessment_id", sa.UUID(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("reminded_on", sa.Date(), nullable=True),
        sa.Column("reminders", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["assessment_id"], ["assessment.id"], name=op.f("fk_rectification_assessment_id_assessment")
        ),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_rectification_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rectification")),
    )
    op.create_index(op.f("ix_rectification_region_code"), "rectification", ["region_code"], unique=False)
    op.create_index("ix_rectification_status_due", "rectification", ["status", "due_on"], unique=False)
    op.create_index(
        "uq_rectification_open",
        "rectification",
        ["party_org_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "review_score",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("report_id", sa.Uuid(), nullable=False),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=False),
        sa.Column("evaluator_kind", sa.String(length=10), nullable=False),
        sa.Column("evaluator", sa.String(length=100), nullable=True),
        sa.Column("score", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_review_score_region_code_region")),
        sa.ForeignKeyConstraint(
            ["report_id"], ["review_report.id"], name=op.f("fk_review_score_report_id_review_report")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_score")),
    )
    op.create_index(op.f("ix_review_score_region_code"), "review_score", ["region_code"], unique=False)
    op.create_index(op.f("ix_review_score_report_id"), "review_score", ["report_id"], unique=False)
    _seed_builtins()


def downgrade() -> None:
    op.drop_index(op.f("ix_review_score_report_id"), table_name="review_score")
    op.drop_index(op.f("ix_review_score_region_code"), table_name="review_score")
    op.drop_table("review_score")
    op.drop_index("uq_rectification_open", table_name="rectification", postgresql_where=sa.text("status = 'open'"))
    op.drop_index("ix_rectification_status_due", table_name="rectification")
    op.drop_index(op.f("ix_rectification_region_code"), table_name="rectification")
    op.drop_table("rectification")
    op.drop_index(op.f("ix_review_report_region_code"), table_name="review_report")
    op.drop_table("review_report")
    op.drop_index(op.f("ix_assessment_region_code"), table_name="assessment")
    op.drop_index("ix_assessment_party_org", table_name="assessment")
    op.drop_table("assessment")
    op.drop_index(op.f("ix_evaluation_cycle_year"), table_name="evaluation_cycle")
    op.drop_index(op.f("ix_evaluation_cycle_region_code"), table_name="evaluation_cycle")
    op.drop_table("evaluation_cycle")
    op.drop_index(op.f("ix_evaluation_template_region_code"), table_name="evaluation_template")
    op.drop_index(op.f("ix_evaluation_template_code"), table_name="evaluation_template")
    op.drop_table("evaluation_template")
    op.drop_table("designation_quota")
    op.drop_index(op.f("ix_designation_region_code"), table_name="designation")
    op.drop_index(op.f("ix_designation_party_org_id"), table_name="designation")
    op.drop_index("ix_designation_count", table_name="designation")
    op.drop_table("designation")


# Same namespace and file as services.evaluation.builtin, so ids agree with the idempotent seeding step.
_NAMESPACE = uuid.UUID("6c6a2f0e-1d7b-4c1e-9a55-0b5d7e1f2a10")
_BUILTIN = Path(__file__).resolve().parents[2] / "services" / "evaluation" / "builtin.json"


def _seed_builtins() -> None:
    """Version 1 of every built-in template (the file as it stood when this revision shipped)."""
    table = sa.table(
        "evaluation_template",
        sa.column("id", sa.Uuid()),
        sa.column("code", sa.String()),
        sa.column("version", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("name", sa.String()),
        sa.column("region_code", sa.String()),
        sa.column("definition", postgresql.JSONB()),
        sa.column("builtin", sa.Boolean()),
        sa.column("created_by", sa.String()),
    )
    doc = json.loads(_BUILTIN.read_text(encoding="utf-8"))
    op.bulk_insert(
        table,
        [
            {
                "id": uuid.uuid5(_NAMESPACE, f"{t['code']}:1"),
                "code": t["code"],
                "version": 1,
                "kind": t["kind"],
                "name": t["name"],
                "region_code": "000000000000",
                "definition": t["definition"],
                "builtin": True,
                "created_by": "system:builtin",
            }
            for t in doc["templates"]
        ],
    )
