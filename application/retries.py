"""The one save-and-retry path of the write side.

A use case decides on the state it read and saves with optimistic concurrency: a
version conflict (``IntegrityError``) means another writer got there first, so the
whole decision runs again on fresh state, a bounded number of times. Ledger,
access and recurring use cases all retry here, with the same limit and back-off.

A group-commit batch (``application.group_commit``) retries its own commit with
the same back-off but its own limit, ``COMMIT_ATTEMPTS_MAX``: it re-decides only
the commands a conflict touched, inside the cross-process conflict lane, so it
needs fewer rounds than a lone command competing without the lane.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

from domain.errors import ConcurrencyConflict

T = TypeVar("T")

SAVE_ATTEMPTS_MAX = 30
COMMIT_ATTEMPTS_MAX = 20
BACKOFF_BASE_SECONDS = 0.001
BACKOFF_CEILING_SECONDS = 0.05


def back_off(attempt: int) -> None:
    """Sleep before attempt ``attempt + 1``: exponential with full jitter, which keeps
    a hot aggregate moving when several processes compete for it."""
    ceiling = min(BACKOFF_CEILING_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
    time.sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security


class StoreReplaced(ConcurrencyConflict):
    """The store was replaced under this process (a restore) after the decision read it; nothing was
    saved. The process has dropped what it held (``infrastructure.restore_epoch``), so deciding again
    reads the restored state: the write path does, once; a caller that still gets it retries (HTTP 409)."""


def save_with_retries(decide_and_save: Callable[[], T]) -> T:
    """Run a decision until it saves, deciding again on fresh state after a conflict (or once after a
    restore); ``ConcurrencyConflict`` (HTTP 409, "retry the request") once the attempts run out."""
    replaced = False
    for attempt in range(SAVE_ATTEMPTS_MAX):
        try:
            return decide_and_save()
        except IntegrityError:
            back_off(attempt)
        except StoreReplaced:
            if replaced:
                raise
            replaced = True
    raise ConcurrencyConflict(f"gave up after {SAVE_ATTEMPTS_MAX} conflicting attempts; retry the request")


def once_more_if_replaced(run: Callable[[], T]) -> T:
    """``run()``, and once again if the store was replaced under it (the second run reads afresh)."""
    try:
        return run()
    except StoreReplaced:
        return run()
