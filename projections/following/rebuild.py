"""Rebuilding projections: truncate, then replay the whole log.

``start_rebuild`` empties a projection's tables and resets its tracking row in
one transaction, after locking that row, so a follower that is applying a
batch at that moment either commits first (and its rows are emptied too) or
finds the position moved and rolls back. The tracking row keeps
``rebuild_started_at`` until the replay reaches the head of the log:

- **Resumable.** Starting a rebuild of a projection whose previous rebuild did
  not finish continues from where it stopped instead of truncating again.
- **Safe while writes continue.** Replay is an ordinary ``FollowerGroup``: it
  applies whole transactions with compare-and-set, so new events are simply
  replayed too. Workers leave a projection alone while its rebuild is active
  (``REBUILD_LEASE``) and take over if the rebuild process goes away.
- **Identical.** Every stored value is a function of the events and their
  positions, so the rebuilt rows equal the rows they replace.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, update

from infrastructure.runtime import Runtime
from infrastructure.schema import metadata
from projections.following.follower import FollowerGroup, ensure_tracking_row, projection_tracking, read_tracking
from projections.following.registry import ALL_PROJECTIONS, TRACKING_TABLE, make_projection, tables_of

REBUILD_BATCH_SIZE = 5_000  # large batches amortise the per-account and per-month updates
FULL_COLLECTION_EVERY = 50  # batches


@dataclass(frozen=True)
class RebuildStart:
    names: tuple[str, ...]
    resumed: tuple[str, ...]  # continuing an unfinished rebuild rather than truncating
    position: int  # the lowest position the replay starts from
    head: int  # the log's last position when the rebuild started


def start_rebuild(runtime: Runtime, names: Sequence[str], *, from_scratch: bool = False) -> RebuildStart:
    """Truncate and reset the named projections (or resume their unfinished rebuild)."""
    names = tuple(sorted(set(names)))
    assert names and all(name in ALL_PROJECTIONS for name in names), names
    with runtime.engine.begin() as connection:
        _ensure_tables(connection, names)
        for name in names:
            _lock_tracking_row(connection, name)
        states = read_tracking(connection, names)
        resumed = tuple(n for n in names if not from_scratch and states[n].rebuild_started_at is not None)
        fresh = [n for n in names if n not in resumed]
        _truncate(connection, fresh)
        _reset_tracking(connection, fresh)
        starts = [0 if name in fresh else states[name].position for name in names]
    return RebuildStart(names, resumed, min(starts), log_head(runtime))


def replay(
    runtime: Runtime,
    names: Sequence[str],
    *,
    batch_size: int = REBUILD_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Replay the log into the named projections until they reach its head; return the events applied."""
    group = FollowerGroup(
        runtime.ledger, runtime.engine, [make_projection(n) for n in sorted(names)], batch_size,
        name="rebuild", read_ahead=True,
    )
    with _garbage_collected_per_batch() as collect:

        def after_batch(count: int) -> None:
            collect()
            if on_batch is not None:
                on_batch(count)

        return group.catch_up(on_batch=after_batch)


@contextmanager
def _garbage_collected_per_batch() -> Iterator[Callable[[], None]]:
    """Collect garbage between batches rather than every few hundred allocations.

    A replay allocates millions of short-lived objects that reference counting
    frees; the cyclic collector's frequent passes over them cost a quarter of a
    replay. Collecting once per batch keeps memory just as flat.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    batches = 0

    def collect() -> None:
        nonlocal batches
        batches += 1
        gc.collect(2 if batches % FULL_COLLECTION_EVERY == 0 else 0)

    try:
        yield collect
    finally:
        if was_enabled:
            gc.enable()


def log_head(runtime: Runtime) -> int:
    return runtime.ledger.recorder.max_notification_id() or 0


def _ensure_tables(connection: Connection, names: Sequence[str]) -> None:
    """Recreate tables that were lost (dropped, or never restored) exactly as declared."""
    tables = [TRACKING_TABLE] + [table for name in names for table in tables_of(name)]
    metadata.create_all(connection, tables=tables, checkfirst=True)


def _lock_tracking_row(connection: Connection, name: str) -> None:
    # Writing the row first waits for any follower transaction that holds it, so
    # the truncation below sees (and removes) everything that follower wrote.
    ensure_tracking_row(connection, name)
    connection.execute(
        update(projection_tracking)
        .where(projection_tracking.c.name == name)
        .values(updated_at=datetime.now(timezone.utc))
    )


def _truncate(connection: Connection, names: Sequence[str]) -> None:
    tables = [table for name in names for table in tables_of(name)]
    if not tables:
        return
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("TRUNCATE TABLE " + ", ".join(table.name for table in tables))
    else:
        for table in tables:
            connection.execute(table.delete())


def _reset_tracking(connection: Connection, names: Sequence[str]) -> None:
    if not names:
        return
    now = datetime.now(timezone.utc)
    connection.execute(
        update(projection_tracking)
        .where(projection_tracking.c.name.in_(names))
        .values(position=0, event_hash=None, last_error=None, rebuild_started_at=now, updated_at=now)
    )
