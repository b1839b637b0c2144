"""Tables the project owns beside the event store."""

from __future__ import annotations

from sqlalchemy import Engine

from projections import global_chain  # noqa: F401  (registers its table on the metadata)
from projections.follower import metadata


def ensure_schema(engine: Engine) -> None:
    """Create missing tables; existing ones are left as they are."""
    metadata.create_all(engine)
