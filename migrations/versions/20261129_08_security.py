"""security: audit tables, citizen ID hash, the services' role, row-level security, audit triggers"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.security import VISIBLE, app_role, audit, protect, unaudit, unprotect

revision, down_revision = "20261129_08", "20261129_07"


def upgrade() -> None:
    for table in AUDIT_TABLES:
        create_audit_table(table)
    op.add_column("instructor", sa.Column("citizen_id_hash", sa.String(length=64), nullable=True))
    op.add_column("instructor", sa.Column("citizen_id_last4", sa.String(length=4), nullable=True))
    op.create_index(op.f("ix_instructor_citizen_id_hash"), "instructor", ["citizen_id_hash"], unique=False)
    op.execute(AUDIT_FUNCTION)
    op.execute(PURGE_FUNCTION)
    op.execute(CREDIT_CODE_FUNCTION)
    for table in JURISDICTION_TABLES:
        protect(table)
    for table in REFERENCE_TABLES:
        protect(table, readable_from_above=True)
    for table in AUDIT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY jurisdiction ON {table} FOR SELECT USING {VISIBLE}")
        op.execute(f"CREATE POLICY append ON {table} FOR INSERT WITH CHECK (true)")
    for table, (service, masked) in AUDITED.items():
        audit(table, service, *masked)
    role = app_role()
    if role:
        grant_role(role)


def create_audit_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("object_type", sa.String(length=60), nullable=True),
        sa.Column("object_id", sa.String(length=200), nullable=True),
        sa.Column("region_code", sa.String(length=12, collation="C"), nullable=True),
        sa.Column("outcome", sa.String(length=10), server_default="ok", nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("client_addr", sa.String(length=64), nullable=True),
        sa.Column("before", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )
    op.create_index(f"ix_{name}_at", name, ["at"], unique=False)
    op.create_index(f"ix_{name}_object", name, ["object_id"], unique=False)


def grant_role(role: str) -> None:
    """The services connect as the owner's login and act as `role`: it owns nothing, so row-level
    security applies to it; it may read and write the tables but only append to the audit log."""
    op.execute(
        f"""DO $$ BEGIN
             CREATE ROLE {role} NOLOGIN;
           EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; -- made by another database
           END $$"""
    )
    op.execute(f"GRANT {role} TO current_user")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    op.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}")
    op.execute(f"DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO {role}', current_database()); END $$")
    for table in AUDIT_TABLES:
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {role}")
    op.execute("REVOKE ALL ON FUNCTION liangxin_purge_audit(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION liangxin_purge_audit(integer) TO {role}")
    op.execute("REVOKE ALL ON FUNCTION liangxin_credit_code_regions(text[]) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION liangxin_credit_code_regions(text[]) TO {role}")


def downgrade() -> None:
    role = app_role()
    if role:
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {role}")
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {role}")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        op.execute(
            f"DO $$ BEGIN EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM {role}', current_database()); END $$"
        )
    for table in AUDITED:
        unaudit(table)
    for table in (*JURISDICTION_TABLES, *REFERENCE_TABLES):
        unprotect(table)
    op.execute("DROP FUNCTION IF EXISTS liangxin_credit_code_regions(text[])")
    op.execute("DROP FUNCTION IF EXISTS liangxin_purge_audit(integer)")
    op.execute("DROP FUNCTION IF EXISTS liangxin_audit()")
    op.drop_index(op.f("ix_instructor_citizen_id_hash"), table_name="instructor")
    op.drop_column("instructor", "citizen_id_last4")
    op.drop_column("instructor", "citizen_id_hash")
    for table in AUDIT_TABLES:
        op.drop_table(table)


# Tables whose rows belong to a jurisdiction (a `region_code`). Not here: `region` (the tree is
# public reference data), `staff_user` and `api_key` (looked up to authenticate, before there is a
# caller; their endpoints filter by jurisdiction), and child tables without a `region_code`, which
# are reached only through a protected parent.
JURISDICTION_TABLES = (
    "area",
    "organization",
    "party_org",
    "instructor",
    "registry_change",
    "coverage_figure",
    "coverage_snapshot",
    "coverage_target",
    "establishment_task",
    "campaign",
    "assignment",
    "visit",
    "assessment",
    "rectification",
    "designation",
    "review_report",
    "review_score",
    "funding_allocation",
    "funding_line",
)
# Reference data issued at one level for the levels below: readable from the subtree and below,
# written only inside the caller's jurisdiction.
REFERENCE_TABLES = ("evaluation_template", "evaluation_cycle", "designation_quota", "funding_rule_set")
AUDIT_TABLES = ("registry_audit", "coverage_audit", "evaluation_audit")
# Tables whose every row change is audited by trigger (organizations have their ledger, visits
# and assignments are bulk field data; their writes are audited per request).
AUDITED: dict[str, tuple[str, tuple[str, ...]]] = {
    "party_org": ("registry", ()),
    "instructor": ("registry", ("phone", "citizen_id_hash")),
    "instructor_assignment": ("registry", ()),
    "area": ("registry", ()),
    "staff_user": ("registry", ("password_hash",)),
    "api_key": ("registry", ("key_hash",)),
    "coverage_target": ("coverage", ()),
    "establishment_task": ("coverage", ()),
    "campaign": ("coverage", ()),
    "campaign_team": ("coverage", ()),
    "evaluation_template": ("evaluation", ()),
    "evaluation_cycle": ("evaluation", ()),
    "assessment": ("evaluation", ()),
    "rectification": ("evaluation", ()),
    "designation": ("evaluation", ()),
    "designation_quota": ("evaluation", ()),
    "review_report": ("evaluation", ()),
    "review_score": ("evaluation", ()),
    "funding_rule_set": ("evaluation", ()),
}

AUDIT_FUNCTION = """
CREATE FUNCTION liangxin_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  masked text[] := coalesce(TG_ARGV[1:TG_NARGS - 1], '{}');
  old_row jsonb;
  new_row jsonb;
  before_ jsonb;
  after_ jsonb;
  k text;
BEGIN
  IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
  IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
  IF TG_OP = 'UPDATE' THEN
    SELECT jsonb_object_agg(key, value) INTO before_ FROM jsonb_each(old_row) WHERE new_row -> key IS DISTINCT FROM value;
    SELECT jsonb_object_agg(key, value) INTO after_ FROM jsonb_each(new_row) WHERE old_row -> key IS DISTINCT FROM value;
    IF after_ IS NULL THEN RETURN NULL; END IF;
  ELSE
    before_ := old_row;
    after_ := new_row;
  END IF;
  FOREACH k IN ARRAY masked LOOP
    IF before_ ? k AND jsonb_typeof(before_ -> k) <> 'null' THEN before_ := jsonb_set(before_, ARRAY[k], '"***"'); END IF;
    IF after_ ? k AND jsonb_typeof(after_ -> k) <> 'null' THEN after_ := jsonb_set(after_, ARRAY[k], '"***"'); END IF;
  END LOOP;
  EXECUTE format(
    'INSERT INTO %I (actor, action, object_type, object_id, region_code, request_id, client_addr, before, after) '
    'VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)', TG_ARGV[0])
  USING coalesce(nullif(current_setting('liangxin.actor', true), ''), 'db:' || session_user),
        lower(TG_OP), TG_TABLE_NAME,
        coalesce(new_row ->> 'id', old_row ->> 'id'),
        coalesce(new_row ->> 'region_code', old_row ->> 'region_code'),
        nullif(current_setting('liangxin.request_id', true), ''),
        nullif(current_setting('liangxin.client_addr', true), ''),
        before_, after_;
  RETURN NULL;
END $$
"""

PURGE_FUNCTION = """
CREATE FUNCTION liangxin_purge_audit(keep_days integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  removed bigint := 0;
  n bigint;
  t text;
BEGIN
  IF keep_days IS NULL OR keep_days < 180 THEN
    RAISE EXCEPTION 'the audit log is kept at least 180 days, not %', keep_days USING ERRCODE = '22023';
  END IF;
  FOREACH t IN ARRAY ARRAY['registry_audit', 'coverage_audit', 'evaluation_audit'] LOOP
    EXECUTE format('DELETE FROM %I WHERE at < now() - make_interval(days => $1)', t) USING keep_days;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;
  END LOOP;
  RETURN removed;
END $$
"""

# Whether a credit code is registered, and where, whoever asks: an import must refuse a record
# for an organization of another jurisdiction rather than skip it unseen.
CREDIT_CODE_FUNCTION = """
CREATE FUNCTION liangxin_credit_code_regions(codes text[]) RETURNS TABLE (credit_code text, region_code text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT o.credit_code, o.region_code FROM organization o WHERE o.credit_code = ANY (codes)
$$
"""
