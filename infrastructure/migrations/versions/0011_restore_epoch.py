"""The restore epoch: one row that ``invario restore`` sets, so running processes notice a restore.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-07

Each database starts with an epoch of its own (a random id), so a backup
restored from an older release, migrated here, is a new epoch too. The table
may exist already: ``pg_restore --clean`` of a backup taken before this
revision leaves the current database's table in place while ``alembic_version``
goes back, and the upgrade then runs again.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLE = "invario_restore_epoch"


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table(TABLE):
        op.create_table(
            TABLE,
            sa.Column("id", sa.SmallInteger(), nullable=False),
            sa.Column("epoch", sa.String(36), nullable=False),
            sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id", name="pk_invario_restore_epoch"),
            sa.CheckConstraint("id = 1", name="ck_invario_restore_epoch_one_row"),
        )
    op.execute(sa.text(f"DELETE FROM {TABLE}"))  # noqa: S608 - a constant
    op.execute(sa.text(f"INSERT INTO {TABLE} (id, epoch) VALUES (1, :epoch)").bindparams(  # noqa: S608
        epoch=str(uuid.uuid4())))


def downgrade() -> None:
    op.drop_table(TABLE)
