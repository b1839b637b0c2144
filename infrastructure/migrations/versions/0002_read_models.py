"""Read models (accounts, statement entries, transactions, monthly snapshots) and
tracking of the last applied event and of rebuilds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projection_tracking") as batch:
        batch.add_column(sa.Column("event_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rebuild_started_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "read_accounts",
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("balance_floor_minor", sa.BigInteger(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("posting_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_read_accounts"),
        sa.UniqueConstraint("tenant_id", "code", name="uq_read_accounts_tenant_id_code"),
    )
    op.create_table(
        "read_statement_entries",
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("transaction_id", sa.String(36), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "effective_date", "position", name="pk_read_statement_entries"),
    )
    op.create_table(
        "read_transactions",
        sa.Column("transaction_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=True),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("postings", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("reverses", sa.String(36), nullable=True),
        sa.Column("reversed_by", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_read_transactions"),
    )
    op.create_index(
        "ix_read_transactions_tenant_id_effective_date_position",
        "read_transactions",
        ["tenant_id", "effective_date", "position"],
    )
    op.create_table(
        "read_monthly_snapshots",
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("closing_balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("movement_minor", sa.BigInteger(), nullable=False),
        sa.Column("entry_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "month", name="pk_read_monthly_snapshots"),
    )
    op.create_index("ix_read_monthly_snapshots_tenant_id_month", "read_monthly_snapshots", ["tenant_id", "month"])


def downgrade() -> None:
    op.drop_table("read_monthly_snapshots")
    op.drop_table("read_transactions")
    op.drop_table("read_statement_entries")
    op.drop_table("read_accounts")
    with op.batch_alter_table("projection_tracking") as batch:
        batch.drop_column("rebuild_started_at")
        batch.drop_column("event_hash")
