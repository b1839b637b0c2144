"""Schema migrations (Alembic) of the tables the project owns.

The event store's own tables are created by the eventsourcing library; every
other table is created and changed only by the revisions in ``migrations/``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _label(revisions: tuple[str, ...]) -> str | None:
    # Independent features may add revisions on separate branches; a merge
    # revision joins them later. Several heads print as "a+b".
    return "+".join(sorted(revisions)) or None


def head_revision() -> str:
    label = _label(tuple(ScriptDirectory.from_config(_config()).get_heads()))
    assert label is not None
    return label


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _label(tuple(MigrationContext.configure(connection).get_current_heads()))


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def upgrade_to_head(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending revision; return (revision before, revision after)."""
    before = current_revision(engine)
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")
    return before, head_revision()
