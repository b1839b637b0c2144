"""The SQLAlchemy metadata of every table the project owns beside the event store.

Tables are declared next to the code that uses them, on this one ``metadata``;
Alembic migrations in ``infrastructure/migrations`` create and change them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import MetaData

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def stored_utc(moment: datetime) -> datetime:
    """A timestamp read back from the store, timezone-aware: SQLite hands back naive
    datetimes, and every one was stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
