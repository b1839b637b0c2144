"""Deciding many commands against one working set and committing them in one save.

A *batch* runs its commands in order. Each command is a decision, called with the
batch's ``WorkingSet`` to read and save aggregates through (so it sees the effect
of the commands before it, and an in-batch duplicate ``external_id`` is found
before the store is asked); its new events are kept per command. Every accepted command's events are then written in
ONE atomic save, in command order, so each command's log position is the highest
notification id of its own events and positions ascend with the commands.

Rules that keep this exactly as safe as one save per command:

- A rejected command leaves the working set as it found it: any aggregate it
  changed before raising is rebuilt from the store plus the events the earlier
  commands left on it. Its neighbours keep their decisions.
- Each command's result keeps the aggregate state it was decided with: an
  aggregate a later command touches again is copied first (copy on write).
- A save that conflicts with another process (``IntegrityError``) finds the stale
  aggregates by comparing every working-set version with the store's, then
  re-decides only the commands that read or wrote a stale aggregate, or an
  aggregate a re-decided command writes; the others keep their events.
- Nothing is returned as accepted before its save has committed.

A command may carry a *receipt* (``Receipt``: the HTTP idempotency record of its
request). Receipts are written by the same save as the events, rendered once the
positions are known, so a receipt exists exactly when its command's outcome was
committed. A receipt whose key is already recorded (``ReceiptsTaken``, raised by
the store before it commits) withdraws its command: the batch is committed
without it, re-deciding only the commands that depended on what it wrote.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.retries import COMMIT_ATTEMPTS_MAX, back_off
from domain.errors import ConcurrencyConflict, LedgerError, LinkedTransferFailed


# The receipt travels from the interface that set it (``carrying``) to whichever save
# writes the command's outcome, through use cases whose signatures are the public API
# and know nothing of HTTP idempotency: a context variable, not an argument, for that
# one thing. What a decision reads and saves is always an argument (``WorkingSet``).
_receipt: ContextVar[Receipt | None] = ContextVar("invario_receipt", default=None)


class Receipt(Protocol):
    """What a command's caller wants stored in the same transaction as the command's
    outcome (``infrastructure.idempotency``: the stored response of an Idempotency-Key).
    The application only passes it to the store, which knows how to write it."""

    written: bool  # set once the transaction that wrote it has committed

    def render(self, outcome: Any) -> None:
        """Build what is stored for ``outcome`` (a result with its position, or the
        ``LedgerError`` that rejected the command); called inside the transaction."""


RenderReceipts = Callable[[Mapping[tuple[UUID, int], int]], Sequence[Receipt]]
"""Given each saved event's position by (aggregate id, version), the receipts to write
(rendered). The store calls it inside the transaction, after inserting the events."""


class ReceiptsTaken(Exception):  # noqa: N818 - an outcome, not a failure
    """The store found these receipts' keys already recorded; it rolled back everything."""

    def __init__(self, receipts: Collection[Receipt]) -> None:
        super().__init__(f"{len(receipts)} receipt key(s) already recorded")
        self.receipts = receipts


class ReceiptTaken(Exception):  # noqa: N818
    """This command's receipt key was recorded by an earlier command: nothing of it was saved."""


def check_written(receipts: Sequence[Receipt] | None, rendered: Sequence[Receipt]) -> None:
    """After a save: its receipts were handed to the store, not silently dropped by a
    recorder that ignores them (only ``infrastructure.recorders`` writes them)."""
    if receipts and len(rendered) != len(receipts):
        raise RuntimeError("the event store wrote no receipts: its recorder must be one of infrastructure.recorders")


@contextmanager
def carrying(receipt: Receipt | None) -> Iterator[None]:
    """The use cases called inside write ``receipt`` with their outcome, atomically."""
    token = _receipt.set(receipt)
    try:
        yield
    finally:
        _receipt.reset(token)


def current_receipt() -> Receipt | None:
    """The receipt of the command this thread is running, until it is written."""
    receipt = _receipt.get()
    return receipt if receipt is not None and not receipt.written else None


class BatchStore(Protocol):
    """What a batch needs from the application's event store."""

    def load(self, aggregate_id: UUID) -> Any | None: ...

    def load_many(self, aggregate_ids: Sequence[UUID], *, held: bool = False) -> dict[UUID, Any | None]:
        """``held``: aggregates this process holds are taken as they are, unread."""

    def load_at(self, aggregate_id: UUID, version: int) -> Any: ...

    def changed_since(self, versions: dict[UUID, int]) -> set[UUID]:
        """The aggregates whose stored version is no longer the one given."""

    def save_events(self, events: Sequence[Any], aggregates: Iterable[Any], receipts: RenderReceipts | None = None,
                    expected_versions: Mapping[UUID, int] | None = None) -> dict[tuple[UUID, int], int]:
        """One atomic write of the events, and of the receipts if any (it may raise ``ReceiptsTaken``),
        made only if each aggregate in ``expected_versions`` is still at its version (else ``IntegrityError``)."""

    def keep_committed(self, aggregates: Iterable[tuple[Any, bool]]) -> None:
        """Stored aggregates as just committed, each with whether a result still holds it."""


@dataclass
class _Entry:
    aggregate: Any | None
    base_version: int  # the store's version when loaded; 0: not in the store


@dataclass
class _Trace:
    """What one command read and what it wrote."""

    pending_at_touch: dict[UUID, int] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    written: set[UUID] = field(default_factory=set)


class WorkingSet:
    """The aggregates of one batch, each loaded once and changed in command order.

    ``held``: the batch decides on the state this process holds (its cache, as its
    last commit left it) and reads only what it does not hold; the save then checks
    that nothing the batch read has moved on (a version it writes, or
    ``expected_versions``), and a conflict re-decides on fresh state."""

    def __init__(self, store: BatchStore, *, held: bool = False) -> None:
        self._store = store
        self._held = held
        self.entries: dict[UUID, _Entry] = {}
        self._trace = _Trace()
        self._shared: set[UUID] = set()  # objects an earlier command's result still holds

    def prefetch(self, aggregate_ids: Iterable[UUID], presumed_new: Iterable[UUID] = ()) -> None:
        """Load, all at once, aggregates the commands are expected to read (a hint:
        what a command reads without it is still loaded when it asks).

        Held, ``presumed_new`` aggregates (a transaction named by a new external id)
        are taken as absent without a read: if one exists after all, the save finds
        its version taken (or not 0, as expected) and the batch decides again."""
        if self._held:
            for aggregate_id in presumed_new:
                self.entries.setdefault(aggregate_id, _Entry(None, 0))
        else:
            aggregate_ids = [*aggregate_ids, *presumed_new]
        missing = [i for i in dict.fromkeys(aggregate_ids) if i not in self.entries]
        if missing:
            for aggregate_id, aggregate in self._store.load_many(missing, held=self._held).items():
                self.entries[aggregate_id] = _Entry(aggregate, aggregate.version if aggregate is not None else 0)

    def get(self, aggregate_id: UUID) -> Any | None:
        entry = self.entries.get(aggregate_id)
        if entry is None:
            aggregate = self._store.load(aggregate_id)
            entry = self.entries[aggregate_id] = _Entry(aggregate, aggregate.version if aggregate is not None else 0)
        elif aggregate_id in self._shared:
            entry.aggregate = copy.deepcopy(entry.aggregate)
            self._shared.discard(aggregate_id)
        self._touch(aggregate_id, entry)
        return entry.aggregate

    def save(self, *aggregates: Any) -> None:
        """A decision's save: the batch saves every command's aggregates in one write,
        and only then gives each result its position."""
        self.stage(*aggregates)

    def stage(self, *aggregates: Any) -> None:
        """Take the aggregates a command saves; new ones join the working set."""
        for aggregate in aggregates:
            entry = self.entries.setdefault(aggregate.id, _Entry(None, 0))
            self._touch(aggregate.id, entry)  # before adopting it: all of a new aggregate's events are new
            if entry.aggregate is None:
                entry.aggregate = aggregate
            assert entry.aggregate is aggregate, "a command saves the working set's own objects"

    def _touch(self, aggregate_id: UUID, entry: _Entry) -> None:
        pending = len(entry.aggregate.pending_events) if entry.aggregate is not None else 0
        self._trace.pending_at_touch.setdefault(aggregate_id, pending)

    def begin(self) -> None:
        self._trace = _Trace()

    def finish(self, result: Any) -> _Trace:
        """Close an accepted command: its new events, and its result kept as decided."""
        trace = self._trace
        for aggregate_id, pending in trace.pending_at_touch.items():
            aggregate = self.entries[aggregate_id].aggregate
            new = aggregate.pending_events[pending:] if aggregate is not None else []
            trace.events.extend(new)
            if new:
                trace.written.add(aggregate_id)
        result_id = getattr(getattr(result, "aggregate", None), "id", None)
        if result_id in self.entries and self.entries[result_id].aggregate is result.aggregate:
            self._shared.add(result_id)
        return trace

    def abort(self) -> _Trace:
        """Close a rejected command: undo whatever it changed before it raised."""
        trace = self._trace
        for aggregate_id, pending in trace.pending_at_touch.items():
            entry = self.entries[aggregate_id]
            if entry.aggregate is not None and len(entry.aggregate.pending_events) > pending:
                kept = list(entry.aggregate.pending_events[:pending])
                entry.aggregate = self._rebuilt(aggregate_id, entry.base_version, kept)
                self._shared.discard(aggregate_id)
        return trace

    def reset(self, aggregate_ids: set[UUID], stale: set[UUID], kept: dict[UUID, list[Any]]) -> None:
        """Stale aggregates are reloaded; the others are rebuilt with only ``kept`` events."""
        for aggregate_id in aggregate_ids:
            entry = self.entries[aggregate_id]
            if aggregate_id in stale:
                assert not kept.get(aggregate_id), "no kept command touched a stale aggregate"
                fresh = self._store.load(aggregate_id)
                entry.aggregate, entry.base_version = fresh, fresh.version if fresh is not None else 0
            else:
                entry.aggregate = self._rebuilt(aggregate_id, entry.base_version, kept.get(aggregate_id, []))
            self._shared.discard(aggregate_id)

    def _rebuilt(self, aggregate_id: UUID, base_version: int, events: list[Any]) -> Any | None:
        aggregate = self._store.load_at(aggregate_id, base_version) if base_version else None
        for event in events:
            aggregate = event.mutate(aggregate)
        if aggregate is not None:
            aggregate.pending_events.extend(events)
        return aggregate

    def read_only_versions(self, traces: Iterable[_Trace]) -> dict[UUID, int]:
        """What the commands read but no accepted one writes, at the version they read:
        the save checks these, as the store's version constraint checks what is written."""
        read: set[UUID] = set()
        written: set[UUID] = set()
        for trace in traces:
            read.update(trace.pending_at_touch)
            written |= trace.written
        return {i: self.entries[i].base_version for i in read - written if i in self.entries}

    def stale_ids(self) -> set[UUID]:
        return self._store.changed_since({i: e.base_version for i, e in self.entries.items()})

    def committed(self) -> list[tuple[Any, bool]]:
        """After the commit: the aggregates that were in the store before the batch,
        each with whether a command's result holds that very object."""
        return [(e.aggregate, i in self._shared) for i, e in self.entries.items()
                if e.base_version and e.aggregate is not None]

    def aggregates(self) -> list[Any]:
        return [e.aggregate for e in self.entries.values() if e.aggregate is not None]


@dataclass(frozen=True)
class _Failed:
    error: Exception


_NEEDS_FRESH_STATE = object()  # a decision that read inconsistent state (it raised IntegrityError)
_WITHDRAWN = object()  # its receipt's key was already recorded: never saved, never decided again

Outcome = Any  # a Recorded, a LedgerError, or _NEEDS_FRESH_STATE while undecided


class Batch:
    """Commands decided in order against one working set, committed in one save."""

    def __init__(self, store: BatchStore, commands: Sequence[Callable[[WorkingSet], Any]],
                 conflict_lane: Callable[[], AbstractContextManager[Any]] = nullcontext,
                 prefetch: Iterable[UUID] = (), receipts: Sequence[Receipt | None] = (),
                 batch_receipt: Receipt | None = None, presumed_new: Iterable[UUID] = (),
                 held: bool = True) -> None:
        """Each command is a decision, called with the batch's working set to read and
        save through. Decisions raise ``LedgerError`` to reject; any other exception (a
        bug, the database gone) becomes that command's outcome and is never committed.

        ``conflict_lane`` serialises, across processes, the batches that have met a
        conflict: without it, writers of one hot account in several processes can keep
        invalidating each other's fresh reads until their retries run out.

        ``prefetch`` names aggregates the commands will read, loaded in one go first,
        or taken as this process holds them (``WorkingSet``: held); ``presumed_new``
        those expected not to exist yet, taken as absent unread. ``held=False``: read
        everything (worth it while other processes write the same aggregates).
        ``receipts`` (one per command, or none) are written with the commands' outcomes;
        ``batch_receipt`` (one for the whole batch, e.g. a bulk request's Idempotency-Key)
        is rendered with the list of every command's final outcome, in the same save."""
        assert not receipts or len(receipts) == len(commands)
        self._batch_receipt = batch_receipt
        self._atomic = False
        self._receipts = list(receipts) or [None] * len(commands)
        self._store = store
        self._conflict_lane = conflict_lane
        self._commands = commands
        self._prefetch = list(prefetch)
        self._presumed_new = list(presumed_new)
        self.ws = WorkingSet(store, held=held)
        self._traces: list[_Trace] = [_Trace() for _ in commands]
        self.outcomes: list[Outcome] = [None] * len(commands)
        self.decisions = 0  # how many times any command was decided (tests read it)
        self.conflicts = 0  # saves refused because another writer got there first

    def run(self, *, commit: bool = True, failure_stops_all: bool = False, atomic: bool = False) -> list[Any]:
        """Each command's outcome: its ``Recorded`` (with its position once committed)
        or the exception it raised. With ``failure_stops_all`` an exception that is not
        a ``LedgerError`` is raised instead, before anything is committed.

        ``atomic``: all or nothing. If any command is rejected (or given up after
        conflicts), no command's events are saved, and every command that was not
        rejected itself gets ``LinkedTransferFailed`` naming the first one that was."""
        self._atomic = atomic
        self.ws.prefetch(self._prefetch, self._presumed_new)
        for index in range(len(self._commands)):
            self._decide(index)
        failed = [o.error for o in self.outcomes if isinstance(o, _Failed)]
        if failure_stops_all and failed:
            raise failed[0]
        if commit:
            self._commit_with_retries()
        return [self._final(o) for o in self.outcomes]

    @staticmethod
    def _final(outcome: Outcome) -> Any:
        if isinstance(outcome, _Failed):
            return outcome.error
        if outcome is _NEEDS_FRESH_STATE:
            return ConcurrencyConflict("the state changed under this request too often; retry the request")
        if outcome is _WITHDRAWN:
            return ReceiptTaken()
        return outcome

    def _decide(self, index: int) -> None:
        self.decisions += 1
        self.ws.begin()
        try:
            result = self._commands[index](self.ws)
        except LedgerError as error:
            self._traces[index], self.outcomes[index] = self.ws.abort(), error
        except IntegrityError:
            self._traces[index], self.outcomes[index] = self.ws.abort(), _NEEDS_FRESH_STATE
        except Exception as error:  # noqa: BLE001 - the caller of this one command gets it
            self._traces[index], self.outcomes[index] = self.ws.abort(), _Failed(error)
        else:
            self._traces[index], self.outcomes[index] = self.ws.finish(result), result

    def _commit_with_retries(self) -> None:
        with ExitStack() as lane:
            for attempt in range(COMMIT_ATTEMPTS_MAX):
                if _NEEDS_FRESH_STATE not in self.outcomes:
                    try:
                        self._commit()
                        return
                    except IntegrityError:
                        self.conflicts += 1
                    except ReceiptsTaken as taken:  # another request's record: not a conflict of state
                        self._withdraw(taken.receipts)
                        continue
                if attempt == 0:
                    lane.enter_context(self._conflict_lane())
                else:  # in the lane, only writers that have not met a conflict yet compete
                    back_off(attempt)
                self._redecide_affected(give_up=attempt == COMMIT_ATTEMPTS_MAX - 1)
            self._commit_last_try()

    def _commit_last_try(self) -> None:
        try:
            self._commit()  # only commands untouched by the conflicts are left
        except (IntegrityError, ReceiptsTaken) as error:
            taken = {id(r) for r in error.receipts} if isinstance(error, ReceiptsTaken) else set()
            if id(self._batch_receipt) in taken:  # the whole request was recorded before
                self.outcomes = [_WITHDRAWN] * len(self.outcomes)
                return
            self.outcomes = [
                _WITHDRAWN if id(self._receipts[i]) in taken
                else o if isinstance(o, (LedgerError, _Failed)) or o is _WITHDRAWN else _NEEDS_FRESH_STATE
                for i, o in enumerate(self.outcomes)
            ]

    def _commit(self) -> None:
        if self._atomic:
            self._all_or_nothing()
        events = [event for trace in self._traces for event in trace.events]
        receipts = self._receipts_to_write()
        batch_receipt = self._batch_receipt_to_write()
        if batch_receipt is not None:
            receipts.append((-1, batch_receipt))
        # Even a batch that writes nothing checks what it decided on: a rejection
        # decided on held state that another process has moved on must be decided again.
        expected = self.ws.read_only_versions(self._traces)
        if not events and not receipts and not expected:
            return
        pending = sum(len(a.pending_events) for a in self.ws.aggregates())
        assert pending == len(events), f"{pending} pending events but {len(events)} traced: none may be lost"
        rendered: list[Receipt] = []
        positions = self._store.save_events(events, self.ws.aggregates(),
                                            self._rendering(receipts, rendered) if receipts else None, expected)
        check_written(receipts and [r for _i, r in receipts], rendered)
        for index, trace in enumerate(self._traces):
            outcome = self.outcomes[index]
            if trace.events:
                self.outcomes[index] = replace(outcome, position=self._position(trace, positions))
            if hasattr(getattr(outcome, "aggregate", None), "collect_events"):
                outcome.aggregate.collect_events()  # its events are stored now
        for _index, receipt in receipts:
            receipt.written = True
        self._store.keep_committed(self.ws.committed())

    @staticmethod
    def _position(trace: _Trace, positions: Mapping[tuple[UUID, int], int]) -> int:
        return max(positions[(e.originator_id, e.originator_version)] for e in trace.events)

    def _receipts_to_write(self) -> list[tuple[int, Receipt]]:
        # Only final outcomes are recorded: an accepted result or a rejection. A
        # failure (HTTP 500) or a give-up after conflicts is for the client to retry.
        return [(index, receipt) for index, receipt in enumerate(self._receipts)
                if receipt is not None and not receipt.written
                and _is_final(self.outcomes[index])]

    def _batch_receipt_to_write(self) -> Receipt | None:
        receipt = self._batch_receipt
        if receipt is None or receipt.written or _WITHDRAWN in self.outcomes:
            return None
        return receipt

    def _rendering(self, receipts: list[tuple[int, Receipt]], rendered: list[Receipt]) -> RenderReceipts:
        def render(positions: Mapping[tuple[UUID, int], int]) -> list[Receipt]:
            rendered.clear()
            for index, receipt in receipts:
                if index < 0:  # the whole batch's: every outcome, in command order
                    receipt.render([self._final(self._positioned(i, positions)) for i in range(len(self.outcomes))])
                else:
                    receipt.render(self._positioned(index, positions))
                rendered.append(receipt)
            return rendered

        return render

    def _positioned(self, index: int, positions: Mapping[tuple[UUID, int], int]) -> Outcome:
        outcome, trace = self.outcomes[index], self._traces[index]
        return replace(outcome, position=self._position(trace, positions)) if trace.events else outcome

    def _all_or_nothing(self) -> None:
        """Atomic batches: one command not accepted and none is saved. The decided state
        is dropped with the working set (never cached); the others are told why."""
        failed = [index for index, outcome in enumerate(self.outcomes) if not _is_accepted(outcome)]
        if not failed:
            return
        first = failed[0]
        linked = LinkedTransferFailed(
            f"not posted: the batch is all or nothing, and transaction {first} of it was rejected",
            failed_index=first)
        self.outcomes = [outcome if index in failed else linked for index, outcome in enumerate(self.outcomes)]
        self._traces = [_Trace() for _ in self._commands]
        self.ws = WorkingSet(self._store)

    def _withdraw(self, taken: Collection[Receipt]) -> None:
        """Drop the commands whose receipt's key was already recorded, and decide
        again the commands that read what they wrote."""
        dirty: set[UUID] = set()
        taken_ids = {id(receipt) for receipt in taken}
        if self._batch_receipt is not None and id(self._batch_receipt) in taken_ids:
            # The whole request was recorded before: nothing of it is saved, or decided again.
            self._traces = [_Trace() for _ in self._commands]
            self.outcomes = [_WITHDRAWN] * len(self._commands)
            self.ws = WorkingSet(self._store)
            return
        for index, receipt in enumerate(self._receipts):
            if receipt is not None and id(receipt) in taken_ids:
                dirty |= self._traces[index].written
                self._traces[index], self.outcomes[index] = _Trace(), _WITHDRAWN
        self._redecide_after(set(), dirty, give_up=False)

    def _redecide_affected(self, *, give_up: bool) -> None:
        """Reload what another writer changed and decide again only what depended on it."""
        stale = self.ws.stale_ids() or set(self.ws.entries)  # nothing visible: trust nothing
        self._redecide_after(stale, set(stale), give_up=give_up)

    def _redecide_after(self, stale: set[UUID], dirty: set[UUID], *, give_up: bool) -> None:
        """Reload ``stale`` aggregates, rebuild the ``dirty`` ones from the events of the
        commands that stay, and decide again every command that read a dirty one."""
        redo = []
        for index, trace in enumerate(self._traces):
            if self.outcomes[index] is _NEEDS_FRESH_STATE or dirty & trace.pending_at_touch.keys():
                redo.append(index)
                dirty |= trace.written
        kept: dict[UUID, list[Any]] = {}
        for index, trace in enumerate(self._traces):
            if index not in redo:
                for event in trace.events:
                    kept.setdefault(event.originator_id, []).append(event)
        self.ws.reset(dirty & self.ws.entries.keys(), stale, kept)
        for index in redo:
            if give_up:
                self._traces[index], self.outcomes[index] = _Trace(), _NEEDS_FRESH_STATE
            else:
                self._decide(index)
        if not give_up and not _versions_ascend(self._traces):
            self._redecide_everything()

    def _redecide_everything(self) -> None:
        # A re-decided command wrote an aggregate a kept later command also wrote:
        # their order in the log would contradict their versions, so start over.
        self.ws = WorkingSet(self._store)
        self.ws.prefetch(self._prefetch, self._presumed_new)
        for index in range(len(self._commands)):
            if self.outcomes[index] is not _WITHDRAWN:
                self._decide(index)


def _is_final(outcome: Outcome) -> bool:
    return not (outcome is None or outcome is _NEEDS_FRESH_STATE or outcome is _WITHDRAWN
                or isinstance(outcome, _Failed))


def _is_accepted(outcome: Outcome) -> bool:
    return _is_final(outcome) and not isinstance(outcome, LedgerError)


def _versions_ascend(traces: Sequence[_Trace]) -> bool:
    last: dict[UUID, int] = {}
    for trace in traces:
        for event in trace.events:
            if event.originator_version <= last.get(event.originator_id, 0):
                return False
            last[event.originator_id] = event.originator_version
    return True


# --- the group-commit writer ------------------------------------------------------


class CallerContext(Protocol):
    """Carries a caller's ambient context (a trace) to the writer thread, which runs
    the batch under its first command's context; the infrastructure supplies one."""

    def capture(self) -> Any: ...

    def attached(self, captured: Any) -> AbstractContextManager[Any]: ...


@dataclass
class _Submission:
    decide: Callable[[WorkingSet], Any]
    lock_keys: Sequence[UUID]
    reads: Sequence[UUID]  # what the decision is expected to read (prefetched with the batch)
    context: Any = None  # the caller's, from CallerContext.capture()
    receipt: Receipt | None = None  # written with the outcome
    presumed_new: Sequence[UUID] = ()  # what it creates if absent (WorkingSet.prefetch)
    future: Future[Any] = field(default_factory=Future)


_STOP = object()


class GroupCommitWriter:
    """One thread that turns the commands of concurrent callers into batches.

    It waits at most ``wait_seconds`` after a batch's first command for more, takes
    at most ``batch_size_max`` commands, and runs them through ``run_batch`` (one
    save). Callers block until their own outcome is known, i.e. after the commit.
    The queue is bounded, so a flood of callers waits instead of growing memory.
    """

    def __init__(self, run_batch: Callable[[list[_Submission]], list[Any]], batch_size_max: int,
                 wait_seconds: float, queue_max: int, caller_context: CallerContext | None = None) -> None:
        assert batch_size_max >= 1 and wait_seconds >= 0 and queue_max >= batch_size_max
        self._run_batch = run_batch
        self._caller_context = caller_context
        self._batch_size_max, self._wait_seconds = batch_size_max, wait_seconds
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max)
        self._accepting = True
        self._accepting_lock = threading.Lock()  # no submission slips in behind the stop marker
        self._thread = threading.Thread(target=self._loop, name="invario-group-commit", daemon=True)
        self._thread.start()

    def submit(self, decide: Callable[[WorkingSet], Any], lock_keys: Sequence[UUID] = (), reads: Sequence[UUID] = (),
               receipt: Receipt | None = None) -> Any:
        """The command's outcome (a result, or the exception it raised), once committed."""
        return self.enqueue(decide, lock_keys, reads, receipt).result()

    def enqueue(self, decide: Callable[[WorkingSet], Any], lock_keys: Sequence[UUID] = (), reads: Sequence[UUID] = (),
                receipt: Receipt | None = None, *, block: bool = True, presumed_new: Sequence[UUID] = ()) -> Future[Any]:
        """Queue the command and return at once: the future of its outcome, resolved
        (with its result or its exception) after its batch's commit. Blocks only while
        the queue is full; with ``block=False`` raises ``queue.Full`` instead."""
        assert threading.current_thread() is not self._thread, "a decision must not submit another command"
        context = self._caller_context.capture() if self._caller_context is not None else None
        submission = _Submission(decide, lock_keys, reads, context, receipt, presumed_new)
        with self._accepting_lock:
            if not self._accepting:
                raise ConcurrencyConflict("the ledger is shutting down and takes no more writes; retry the request")
            self._queue.put(submission, block=block)
        return submission.future

    def stop(self) -> None:
        """Stop accepting; finish every queued command and the current batch first."""
        with self._accepting_lock:
            if not self._accepting:
                return
            self._accepting = False
            self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            batch, stopping = self._next_batch()
            if batch:
                self._complete(batch)
            if stopping:
                return

    def _next_batch(self) -> tuple[list[_Submission], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, deadline = [first], time.monotonic() + self._wait_seconds
        while len(batch) < self._batch_size_max:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _complete(self, batch: list[_Submission]) -> None:
        try:
            if self._caller_context is None:
                outcomes = self._run_batch(batch)
            else:  # the batch's commit (one for all) shows in its first command's trace
                with self._caller_context.attached(batch[0].context):
                    outcomes = self._run_batch(batch)
        except BaseException as error:  # noqa: BLE001 - every waiting caller must hear of it
            for submission in batch:
                submission.future.set_exception(error)
            return
        for submission, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                submission.future.set_exception(outcome)
            else:
                submission.future.set_result(outcome)
