"""Holds: pending balances on accounts, hold status on transactions, the hold entries of statements.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("read_accounts") as batch:
        batch.add_column(sa.Column("pending_debits_minor", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("pending_credits_minor", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("read_transactions") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="posted"))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("held_postings", sa.Text(), nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_read_transactions_status_expires_at", "read_transactions", ["status", "expires_at"])
    op.create_table(
        "read_hold_entries",
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("transaction_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("placed_position", sa.BigInteger(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=True),
        sa.Column("resolved_position", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "transaction_id", name="pk_read_hold_entries"),
    )
    op.create_index(
        "ix_read_hold_entries_account_id_placed_position", "read_hold_entries", ["account_id", "placed_position"]
    )


def downgrade() -> None:
    op.drop_table("read_hold_entries")
    op.drop_index("ix_read_transactions_status_expires_at", "read_transactions")
    with op.batch_alter_table("read_transactions") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("held_postings")
        batch.drop_column("expires_at")
        batch.drop_column("status")
    with op.batch_alter_table("read_accounts") as batch:
        batch.drop_column("pending_credits_minor")
        batch.drop_column("pending_debits_minor")
