"""Bring the project's tables to the current schema before followers use them."""

from __future__ import annotations

from sqlalchemy import Engine

from infrastructure.migrate import upgrade_to_head


def ensure_schema(engine: Engine) -> None:
    """Apply pending migrations (idempotent)."""
    upgrade_to_head(engine)
