"""Integrity: the shared integrity state, the incremental verifier's checkpoint, signed digests.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integrity_state",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detection_id", sa.String(32), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detected_by", sa.String(64), nullable=True),
        sa.Column("damage", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_by", sa.String(64), nullable=True),
        sa.Column("verified_sequence", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_integrity_state"),
    )
    op.create_table(
        "integrity_checkpoint",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("event_hash", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_integrity_checkpoint"),
    )
    op.create_table(
        "integrity_digests",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "sequence", name="pk_integrity_digests"),
    )
    op.create_index("ix_integrity_digests_signed_at", "integrity_digests", ["signed_at"])


def downgrade() -> None:
    op.drop_index("ix_integrity_digests_signed_at", table_name="integrity_digests")
    op.drop_table("integrity_digests")
    op.drop_table("integrity_checkpoint")
    op.drop_table("integrity_state")
