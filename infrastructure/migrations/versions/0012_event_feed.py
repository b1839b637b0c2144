"""The event feed read model: a tenant's log positions, for GET /v1/events (docs/events-out.md).

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "read_event_feed",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "position", name="pk_read_event_feed"),
    )
    op.create_table(
        "read_event_feed_origins",
        sa.Column("aggregate_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.PrimaryKeyConstraint("aggregate_id", name="pk_read_event_feed_origins"),
    )


def downgrade() -> None:
    op.drop_table("read_event_feed_origins")
    op.drop_table("read_event_feed")
