"""Scheduled jobs: their runs, the recurring transactions read model and its catch-up progress.

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invario_job_runs",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("job", name="pk_invario_job_runs"),
    )
    op.create_table(
        "invario_recurring_progress",
        sa.Column("recurring_id", sa.String(36), nullable=False),
        sa.Column("next_run_date", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("recurring_id", name="pk_invario_recurring_progress"),
    )
    op.create_table(
        "read_recurring_transactions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("weekday", sa.String(16), nullable=True),
        sa.Column("day_of_month", sa.Integer(), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("postings", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_read_recurring_transactions"),
    )
    op.create_index("ix_read_recurring_transactions_tenant_id_created_position", "read_recurring_transactions",
                    ["tenant_id", "created_position"])


def downgrade() -> None:
    op.drop_index("ix_read_recurring_transactions_tenant_id_created_position", "read_recurring_transactions")
    op.drop_table("read_recurring_transactions")
    op.drop_table("invario_recurring_progress")
    op.drop_table("invario_job_runs")
