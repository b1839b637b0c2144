"""The Merkle tree over the global log and its signed checkpoints (issue 18, docs/proofs.md).

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merkle_leaves",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.String(36), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name="pk_merkle_leaves"),
        sa.UniqueConstraint("position", name="uq_merkle_leaves_position"),
    )
    op.create_index("ix_merkle_leaves_transaction_id", "merkle_leaves", ["transaction_id"])
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("node_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("node_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name="pk_merkle_nodes"),
    )
    op.create_table(
        "merkle_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_merkle_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("merkle_checkpoints")
    op.drop_table("merkle_nodes")
    op.drop_index("ix_merkle_leaves_transaction_id", table_name="merkle_leaves")
    op.drop_table("merkle_leaves")
