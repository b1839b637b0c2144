"""Alembic environment: runs migrations on the connection handed in by ``infrastructure.migrate``."""

from __future__ import annotations

from alembic import context

from infrastructure.schema import metadata

connection = context.config.attributes.get("connection")
assert connection is not None, "run migrations through 'invario migrate' (infrastructure.migrate)"

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
