"""How a use case's decision gets run and saved.

With no group-commit writer, a decision runs on its own against the store, under
striped locks, and is retried after a conflict (``application.retries``). With
one (``start_group_commit``), it is queued and decided with other callers'
decisions in one batch (``application.group_commit``). Callers see the same
result or error either way.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, TypeVar
from uuid import UUID

from application.aggregate_store import AggregateStore
from application.decisions import Decision
from application.group_commit import Batch, CallerContext, GroupCommitWriter, current_receipt
from application.retries import once_more_if_replaced, save_with_retries

T = TypeVar("T")

WRITE_LOCK_STRIPES = 1024
WRITE_QUEUE_MIN = 64
# After a batch met another process's write, batches read what they decide on for
# this long: with writers in several processes the held state is often stale, and
# a stale decision costs a refused save and a second one.
HELD_STATE_PAUSE_SECONDS = 5.0


class _Deferral(enum.Enum):
    WAITING_FOR_ROOM = "wait while the writer's queue is full"
    NOT_WAITING = "raise queue.Full while the writer's queue is full"


# Set by WritePath.deferred(): execute() hands back the writer's future instead of
# waiting. A context variable because deferred() wraps any use case as a
# zero-argument callable (interfaces/http builds them), and the public use cases
# would otherwise all need a parameter that only says "do not wait". It never
# reaches a decision: it is read once, in the caller's thread, by execute().
_deferring: ContextVar[_Deferral | None] = ContextVar("invario_deferring", default=None)


class StripedLocks:
    """Per-aggregate mutual exclusion within one process, in bounded memory.

    Keys hash onto a fixed set of locks, always taken in ascending order, so two
    commands over overlapping accounts can never deadlock.
    """

    def __init__(self, stripes: int = WRITE_LOCK_STRIPES) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextmanager
    def holding(self, keys: Iterable[UUID]) -> Iterator[None]:
        indices = sorted({hash(key) % len(self._locks) for key in keys})
        for index in indices:
            self._locks[index].acquire()
        try:
            yield
        finally:
            for index in reversed(indices):
                self._locks[index].release()


class WritePath:
    """Runs decisions against one ``AggregateStore``: alone, or batched by a writer thread."""

    def __init__(self, store: AggregateStore) -> None:
        self._store = store
        self._locks = StripedLocks()
        self._writer: GroupCommitWriter | None = None
        self._reading_until = 0.0  # monotonic time until which batches read, not trust, their state
        # Serialises conflicted batches across processes; open_runtime sets one per store.
        self.conflict_lane: Callable[[], AbstractContextManager[Any]] = nullcontext
        # Around each batch and each direct decision: its reads and its save share one view of the
        # store (open_runtime pins the restore epoch, so a save decided before a restore is refused).
        self.pin_writes: Callable[[], AbstractContextManager[Any]] = nullcontext

    def start_group_commit(self, batch_size_max: int, wait_seconds: float,
                           caller_context: CallerContext | None = None) -> None:
        """From now on, decisions are queued and committed in batches by one writer
        thread (see ``application.group_commit``); ``stop()`` drains the queue first."""
        assert self._writer is None, "group commit is started once"
        if batch_size_max > 1:
            self._writer = GroupCommitWriter(self._run_submissions, batch_size_max, wait_seconds,
                                             queue_max=max(WRITE_QUEUE_MIN, 8 * batch_size_max),
                                             caller_context=caller_context)

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.stop()  # acknowledged writes are committed before the store closes

    def execute(self, decide: Decision[T], lock_keys: Iterable[UUID] = (), reads: Iterable[UUID] = (),
                presumed_new: Iterable[UUID] = ()) -> T:
        """Run a use case's decision: queued for the group-commit writer when there is
        one, else on its own with retries. ``lock_keys`` are the aggregates it writes;
        ``reads`` (beside them) what it will read: a batch loads them all at once first;
        ``presumed_new`` what it reads expecting it not to exist yet (taken as absent
        unread by a batch; the commit checks it)."""
        if self._writer is None:
            with self._locks.holding(lock_keys):
                # Writers of the same aggregates in this process queue on the locks, so
                # only other processes' writes make a decision run again.
                return save_with_retries(lambda: self._pinned(decide))
        lock_keys = list(lock_keys)
        deferral = _deferring.get()
        future = self._writer.enqueue(decide, lock_keys, [*reads, *lock_keys], current_receipt(),
                                      block=deferral is not _Deferral.NOT_WAITING, presumed_new=list(presumed_new))
        if deferral is not None:
            return future  # type: ignore[return-value] # deferred(): the use case hands the future back
        return future.result()  # type: ignore[no-any-return]

    @property
    def writes_in_batches(self) -> bool:
        """Whether writes go through the group-commit writer (queued, never run in the caller)."""
        return self._writer is not None

    def deferred(self, use_case: Callable[[], T], *, wait_for_room: bool = True) -> Future[T]:
        """Run ``use_case`` up to its write, and return the future of its outcome instead
        of waiting for the commit: async callers await it without holding a thread.
        What the use case does before writing (checks, reads) runs here. A use case
        that writes on its own (not through the group-commit writer, or with none
        configured) runs whole, here, and its future is already done.
        ``wait_for_room=False``: ``queue.Full`` instead of waiting while the writer's
        queue is full (for callers on an event loop, which must never block)."""
        token = _deferring.set(_Deferral.WAITING_FOR_ROOM if wait_for_room else _Deferral.NOT_WAITING)
        try:
            outcome = use_case()
        finally:
            _deferring.reset(token)
        if isinstance(outcome, Future):  # every use case returns its execute() as is
            return outcome
        done: Future[T] = Future()
        done.set_result(outcome)
        return done

    def decide_together(self, decisions: Sequence[Decision[Any]], lock_keys: Iterable[UUID], reads: Iterable[UUID],
                        *, commit: bool, atomic: bool, presumed_new: Iterable[UUID] = ()) -> list[Any]:
        """One caller's decisions as one batch in this thread (``Batch.run``), the
        calling command's receipt (if any) rendered with the list of outcomes."""
        with self._locks.holding(lock_keys):
            receipt = current_receipt() if commit else None

            def run() -> list[Any]:
                with self.pin_writes():
                    batch = Batch(self._store, decisions, self.conflict_lane, reads, batch_receipt=receipt,
                                  presumed_new=presumed_new, held=self._holds_state())
                    return self._run(batch, commit=commit, failure_stops_all=True, atomic=atomic)

            return once_more_if_replaced(run)

    def _run_submissions(self, submissions: Sequence[Any]) -> list[Any]:
        # The writer thread is this process's only batch writer; the locks keep the
        # direct writers (e.g. post_transactions) off the same aggregates meanwhile.
        keys = [key for submission in submissions for key in submission.lock_keys]
        with self._locks.holding(keys):
            reads = [key for submission in submissions for key in submission.reads]
            new = [key for submission in submissions for key in submission.presumed_new]

            def run() -> list[Any]:
                with self.pin_writes():  # the batch's reads and its save, in one restore epoch
                    batch = Batch(self._store, [s.decide for s in submissions], self.conflict_lane, reads,
                                  [s.receipt for s in submissions], presumed_new=new, held=self._holds_state())
                    return self._run(batch)

            return once_more_if_replaced(run)

    def _pinned(self, decide: Decision[T]) -> T:
        with self.pin_writes():
            return decide(self._store)

    def read_state_for_a_while(self) -> None:
        """Batches read what they decide on, for ``HELD_STATE_PAUSE_SECONDS`` (the held state is suspect)."""
        self._reading_until = time.monotonic() + HELD_STATE_PAUSE_SECONDS

    def _holds_state(self) -> bool:
        """Whether a batch may decide on the state this process holds (issue 15, item 3)."""
        return time.monotonic() >= self._reading_until

    def _run(self, batch: Batch, **options: Any) -> list[Any]:
        """``batch.run``; after a conflict the next batches read their state for a while."""
        try:
            return batch.run(**options)
        finally:
            if batch.conflicts:
                self._reading_until = time.monotonic() + HELD_STATE_PAUSE_SECONDS
