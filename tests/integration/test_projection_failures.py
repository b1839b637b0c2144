"""A read model that cannot apply an event says which event and why, and is reported until it can.

The failure is injected into one real read model of the real follower group
(the ``transactions`` projection refuses one transaction's events), so the
follower, its tracking rows, ``projections status`` and the failing gauge are
the production ones, on both stores.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection

from infrastructure.runtime import Runtime
from infrastructure.log_notifications import SleepingWaiter
from projections.following.follower import FollowerGroup, LoggedEvent, read_tracking
from projections.following.registry import READ_MODELS, TRANSACTIONS
from projections.following.runner import FollowerLoop
from projections.following.status import CURRENT, FAILING, projection_statuses
from interfaces.bootstrap import build_read_models_group
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import open_book, open_ready, post

POISON = "poison-3"


class Refusing:
    """Wraps a read model; refuses every batch that holds an event of the poisoned transaction."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.refusing = inner, inner.name, True

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        if self.refusing and any(getattr(e.event, "external_id", None) == POISON for e in batch):
            raise ValueError("this read model cannot store the text of that event")
        self.inner.handle(connection, batch)


def poisoned_group(runtime: Runtime) -> tuple[FollowerGroup, Refusing]:
    group = build_read_models_group(runtime, batch_size=500, defer_to_rebuilds=False)
    refusing = Refusing(group.projections[TRANSACTIONS])
    group.projections[TRANSACTIONS] = refusing
    return group, refusing


def posted_book(runtime: Runtime) -> int:
    """Five transactions, the third poisoned; the position of its ``Transaction.Posted`` event."""
    book = open_book(runtime.ledger)
    positions = {}
    for n in range(1, 6):
        post(book, runtime.ledger, f"poison-{n}", date(2026, 11, 23), {"cash": 100, "wallet": -100})
        positions[n] = book.last_position
    return positions[3]  # a write's Transaction.Posted comes after its postings, last


def states(runtime: Runtime) -> dict[str, Any]:
    with runtime.engine.connect() as connection:
        return read_tracking(connection, READ_MODELS)


def test_the_failure_names_the_projection_the_event_and_the_reason(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    poisoned_at = posted_book(runtime)
    group, refusing = poisoned_group(runtime)
    loop = FollowerLoop([group], threading.Event(), SleepingWaiter(threading.Event()), idle_seconds=0.01)

    assert loop.step() is False
    error = states(runtime)[TRANSACTIONS].last_error
    assert error is not None
    assert f"projection {TRANSACTIONS} cannot apply the event at position {poisoned_at}" in error
    assert "ValueError: this read model cannot store the text of that event" in error
    assert "Transaction.Posted" in error
    assert {s.position for s in states(runtime).values()} == {0}, "a failed batch applies nothing"
    head, statuses = projection_statuses(runtime)
    assert {s.name: s.state for s in statuses if s.name in READ_MODELS} == dict.fromkeys(READ_MODELS, FAILING)
    assert loop.failing_projections()[TRANSACTIONS] is True

    refusing.refusing = False  # a release that can store it
    loop._retry_at.clear()  # noqa: SLF001 - no need to wait out the back-off here
    while loop.step():
        pass
    assert all(s.last_error is None and s.position == head for s in states(runtime).values())
    assert {s.state for s in projection_statuses(runtime)[1] if s.name in READ_MODELS} == {CURRENT}
    assert loop.failing_projections()[TRANSACTIONS] is False


def test_an_error_left_while_the_log_stood_still_is_cleared_by_the_next_success(
    database_url: str, open_rt: OpenRuntime
) -> None:
    runtime = open_ready(open_rt, database_url)
    posted_book(runtime)
    group, refusing = poisoned_group(runtime)
    refusing.refusing = False
    loop = FollowerLoop([group], threading.Event(), SleepingWaiter(threading.Event()), idle_seconds=0.01)
    while loop.step():
        pass
    loop._failed(group, ConnectionError("the database went away"))  # noqa: SLF001 - as when the database drops
    assert states(runtime)[TRANSACTIONS].last_error is not None

    loop._retry_at.clear()  # noqa: SLF001
    assert loop.step() is False  # nothing to apply, yet it works again
    assert all(s.last_error is None for s in states(runtime).values())
