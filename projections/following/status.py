"""Where each projection stands: position, lag behind the log, state and last error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import inspect

from infrastructure.runtime import Runtime
from projections.following.follower import TrackingState, event_identity, read_tracking
from projections.following.registry import ALL_PROJECTIONS, tables_of

# States, most urgent first.
MISSING = "missing"  # a table of the projection does not exist: rebuild it
DIVERGED = "diverged"  # the log no longer holds the event it last applied: rebuild it
FAILING = "failing"  # its last batch failed; the follower retries
REBUILDING = "rebuilding"
BEHIND = "behind"
CURRENT = "current"


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    lag: int  # log positions not yet applied
    state: str
    updated_at: datetime | None
    last_error: str | None
    rebuild_started_at: datetime | None


def projection_statuses(runtime: Runtime) -> tuple[int, list[ProjectionStatus]]:
    """The log's head position and the status of every projection."""
    head = runtime.ledger.recorder.max_notification_id() or 0
    with runtime.engine.connect() as connection:
        existing = set(inspect(connection).get_table_names())
        states = read_tracking(connection, ALL_PROJECTIONS) if "projection_tracking" in existing else {
            name: TrackingState(name, 0) for name in ALL_PROJECTIONS
        }
    statuses = []
    for name in ALL_PROJECTIONS:
        state = states[name]
        tables_present = all(table.name in existing for table in tables_of(name))
        statuses.append(ProjectionStatus(
            name=name,
            position=state.position,
            lag=max(head - state.position, 0),
            state=_state_of(runtime, state, head, tables_present=tables_present),
            updated_at=state.updated_at,
            last_error=state.last_error,
            rebuild_started_at=state.rebuild_started_at,
        ))
    return head, statuses


def _state_of(runtime: Runtime, state: TrackingState, head: int, *, tables_present: bool) -> str:
    if not tables_present:
        return MISSING
    if state.position > head or not _log_still_holds(runtime, state):
        return DIVERGED
    if state.last_error:
        return FAILING
    if state.rebuild_started_at is not None:
        return REBUILDING
    return CURRENT if state.position >= head else BEHIND


def _log_still_holds(runtime: Runtime, state: TrackingState) -> bool:
    """Whether the event at the projection's position is still the one it applied."""
    if state.position == 0:
        return True
    found = runtime.ledger.recorder.select_notifications(start=state.position, limit=1)
    if not found or found[0].id != state.position:
        return False
    if state.event_hash is None:
        return True
    return event_identity(runtime.ledger.mapper.to_domain_event(found[0])) == state.event_hash


def describe_event(runtime: Runtime, position: int) -> dict[str, Any] | None:
    """The event at ``position`` of the log, as plain data for an operator (``None``: no such event).

    Read-only: it is how a failing projection's event is inspected, never changed.
    """
    found = runtime.ledger.recorder.select_notifications(start=position, limit=1)
    if not found or found[0].id != position:
        return None
    event = runtime.ledger.mapper.to_domain_event(found[0])
    envelope = ("originator_id", "originator_version", "originator_topic", "timestamp")
    data = {name: value for name, value in vars(event).items() if not name.startswith("_") and name not in envelope}
    return {
        "position": position, "event_type": type(event).__qualname__, "topic": found[0].topic,
        "aggregate_id": event.originator_id, "aggregate_version": event.originator_version,
        "timestamp": event.timestamp, "data": data,
    }
