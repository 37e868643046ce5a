"""Initial schema: users, jobs, tasks, results, usage, settings, ledger.

Written out in full (not derived from ``schema.py``) so that this revision never changes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from objectjobs.store.schema import BigId, Json, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ACTIVE = "state IN ('EXAMINING', 'EXECUTING', 'PROCESSING')"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, autoincrement=False),
        sa.Column("job_type", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("prefix", sa.Text, nullable=False, server_default=""),
        sa.Column("params", Json, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("start_time", UTCDateTime, nullable=False),
        sa.Column("complete_time", UTCDateTime, nullable=True),
        sa.Column("processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("skipped", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("totals", Json, nullable=True),
        sa.Column("plan", Json, nullable=True),
        sa.Column("usage", Json, nullable=True),
        sa.Column("failure_reasons", Json, nullable=False),
        sa.Column("rate", sa.Float, nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_jobs_owner_id_users"),
        sa.UniqueConstraint("owner_id", "idempotency_key", name="uq_jobs_owner_id_idempotency_key"),
    )
    op.create_index(
        "ix_jobs_start_time_id", "jobs", [sa.text("start_time DESC"), sa.text("id DESC")]
    )
    op.create_index("ix_jobs_owner_start_time_id", "jobs", ["owner_id", "start_time", "id"])
    op.create_index("ix_jobs_bucket_start_time_id", "jobs", ["bucket", "start_time", "id"])
    op.create_index(
        "uq_jobs_active",
        "jobs",
        ["job_type", "bucket", "prefix"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE),
        sqlite_where=sa.text(_ACTIVE),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("start_key", sa.Text, nullable=False),
        sa.Column("end_key", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("checkpoint", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("objects", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("state_data", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_tasks_job_id_jobs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("job_id", "phase", "seq", name="uq_tasks_job_id_phase_seq"),
    )
    op.create_index("ix_tasks_state_lease_until", "tasks", ["state", "lease_until"])
    op.create_table(
        "results",
        sa.Column("seq", BigId, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("version_id", sa.Text, nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(255), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_results"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_results_job_id_jobs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_results_job_id_seq", "results", ["job_id", "seq"])
    op.create_index("ix_results_job_id_outcome_seq", "results", ["job_id", "outcome", "seq"])
    op.create_table(
        "usage",
        sa.Column("bucket", sa.String(255)),
        sa.Column("usage", Json, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("bucket", name="pk_usage"),
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.String(255)),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_settings"),
    )
    op.create_table(
        "ledger",
        sa.Column("ledger", sa.String(255), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("ledger", "key", name="pk_ledger"),
    )


def downgrade() -> None:
    for table in ("ledger", "settings", "usage", "results", "tasks", "jobs", "users"):
        op.drop_table(table)
