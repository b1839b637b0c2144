"""The ledger's event store as its use cases see it: aggregates in, aggregates out.

``AggregateStore`` loads aggregates (through the repository's cache, fast-forwarded
from the store on each use so other processes' writes are seen, and many at once
where the store has bulk reads), saves them with the calling command's receipt in
the same transaction, saves a group-commit batch's events in command order, and
snapshots and caches what a batch committed. It is the ``BatchStore`` that
``application.group_commit`` batches run against. It holds no rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from copy import copy, deepcopy
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Cache, LRUCache, ProcessingEvent
from eventsourcing.persistence import StoredEvent

from application.decisions import Recorded
from application.group_commit import (
    Receipt,
    ReceiptsTaken,
    ReceiptTaken,
    RenderReceipts,
    check_written,
    current_receipt,
)

CHAIN_EVENTS_PAGE = 1000


class BulkReads(Protocol):
    """Stored events of many aggregates in one round trip (``infrastructure.bulk_reads``)."""

    def events_after(self, after_versions: Mapping[UUID, int]) -> dict[UUID, list[StoredEvent]]: ...

    def latest_snapshots(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, StoredEvent]: ...


class AggregateStore:
    """Loading and saving aggregates of one eventsourcing ``Application`` (the ledger)."""

    def __init__(self, app: Application) -> None:
        self._app = app
        # Reads many aggregates' events at once for a batch; open_runtime sets one per store
        # that has it. Without it a batch loads its aggregates one at a time.
        self.bulk_reads: BulkReads | None = None

    def forget_cached(self) -> None:
        """Empty the repository's cache (a new one: ``LRUCache.clear`` keeps its entries' index).

        A thread that read an aggregate before a restore and puts it in the cache only after the
        restore was noticed would bring it back; that needs the whole restore to fit between one
        read (or commit) and the put that follows it: in practice a restore (it waits for the
        readers' and writers' locks, then drops, loads and commits every table) takes far longer,
        but a thread paused that long is not ruled out."""
        repository = self._app.repository
        cache = repository.cache
        if cache is not None:
            repository.cache = LRUCache(cache.maxsize) if isinstance(cache, LRUCache) else Cache()

    # --- reading ----------------------------------------------------------------

    def load(self, aggregate_id: UUID) -> Any | None:
        try:
            return self._app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def load_fresh(self, aggregate_id: UUID) -> Any | None:
        """As stored now, never from the cache: one round trip, as fast-forwarding a cached one costs.
        For small aggregates whose read must see a restore of the store (API keys): a cached one
        is only ever moved forward, so it outlives a restore that does not hold it."""
        aggregate = None
        for event in self._app.events.get(aggregate_id):
            aggregate = event.mutate(aggregate)
        return aggregate

    def load_many(self, aggregate_ids: Sequence[UUID], *, held: bool = False) -> dict[UUID, Any | None]:
        """What ``load`` gives for each id, with the reads of all of them in one or
        two queries (``bulk_reads``) instead of one to three round trips per id.

        ``held``: an aggregate this process holds (cached, as its last commit left
        it) is taken as it is, without asking the store whether another process moved
        it on; only the others are read. The caller must then have the save check it
        (``save_events``' ``expected_versions``, or a version it writes)."""
        cached = self._cached(aggregate_ids)
        if not held:
            return self._read(aggregate_ids, cached)
        loaded = {i: self._fast_forwarded(i, aggregate, ()) for i, aggregate in cached.items()}
        rest = [i for i in aggregate_ids if i not in cached]
        return {**loaded, **self._read(rest, {})} if rest else loaded

    def _cached(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]:
        cache = self._app.repository.cache
        cached: dict[UUID, Any] = {}
        if cache is not None:
            for aggregate_id in aggregate_ids:
                with suppress(KeyError):
                    cached[aggregate_id] = cache.get(aggregate_id)
        return cached

    def _read(self, aggregate_ids: Sequence[UUID], cached: dict[UUID, Any]) -> dict[UUID, Any | None]:
        """The aggregates as stored: ``cached`` ones fast-forwarded, the others rebuilt."""
        if self.bulk_reads is None:
            return {aggregate_id: self.load(aggregate_id) for aggregate_id in aggregate_ids}
        uncached = [i for i in aggregate_ids if i not in cached]
        snapshots = self.bulk_reads.latest_snapshots(uncached) if self._app.snapshots is not None else {}
        after = {i: a.version for i, a in cached.items()}
        after.update((i, snapshots[i].originator_version if i in snapshots else 0) for i in uncached)
        stored = self.bulk_reads.events_after(after)
        loaded = {i: self._fast_forwarded(i, a, stored.get(i, ())) for i, a in cached.items()}
        for aggregate_id in uncached:
            loaded[aggregate_id] = self._reconstructed(aggregate_id, snapshots.get(aggregate_id),
                                                       stored.get(aggregate_id, ()))
        return loaded

    def _fast_forwarded(self, aggregate_id: UUID, cached: Any, stored: Iterable[StoredEvent]) -> Any:
        # As Repository.get does: the cached object moves forward under its
        # fast-forward lock (other threads may read it too), the caller gets a copy.
        repository = self._app.repository
        lock = repository._use_fastforward_lock(aggregate_id)  # noqa: SLF001
        try:
            with lock:
                for stored_event in stored:
                    if stored_event.originator_version > cached.version:  # another reader may be ahead
                        cached = self._app.mapper.to_domain_event(stored_event).mutate(cached)
                return _copied(cached) if repository.deepcopy_from_cache else cached
        finally:
            repository._disuse_fastforward_lock(aggregate_id)  # noqa: SLF001

    def _reconstructed(self, aggregate_id: UUID, snapshot: StoredEvent | None, stored: Iterable[StoredEvent]) -> Any:
        aggregate = None
        if snapshot is not None:
            assert self._app.snapshots is not None
            aggregate = self._app.snapshots.mapper.to_domain_event(snapshot).mutate(None)
        for stored_event in stored:
            aggregate = self._app.mapper.to_domain_event(stored_event).mutate(aggregate)
        cache = self._app.repository.cache
        if aggregate is None or cache is None:
            return aggregate
        cache.put(aggregate_id, aggregate)
        return _copied(aggregate) if self._app.repository.deepcopy_from_cache else aggregate

    def load_at(self, aggregate_id: UUID, version: int) -> Any:
        latest = self.load(aggregate_id)
        if latest is not None and latest.version == version:
            return latest  # the usual case, served from the cache
        return self._app.repository.get(aggregate_id, version=version)

    def changed_since(self, versions: Mapping[UUID, int]) -> set[UUID]:
        # After a conflict, which of a batch's aggregates another writer has moved on:
        # one query for all of them where the store has bulk reads.
        if self.bulk_reads is not None:
            return set(self.bulk_reads.events_after(versions))
        return {i for i, version in versions.items() if self._stored_version(i) != version}

    def _stored_version(self, aggregate_id: UUID) -> int:
        last = self._app.recorder.select_events(aggregate_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def stored_events(self, aggregate_id: UUID) -> Iterator[Any]:
        """One aggregate's stored events, in order, paged so that a long-lived
        account never has to fit in memory at once."""
        after = 0
        while True:
            page = list(self._app.events.get(aggregate_id, gt=after or None, limit=CHAIN_EVENTS_PAGE))
            yield from page
            if len(page) < CHAIN_EVENTS_PAGE:
                return
            after = page[-1].originator_version

    def get(self, aggregate_id: UUID) -> Any | None:
        """A decision's read outside a batch (``application.decisions.Aggregates``)."""
        return self.load(aggregate_id)

    # --- saving -----------------------------------------------------------------

    def save(self, *aggregates: Any) -> int | None:
        """A decision's save outside a batch: now, with the command's receipt; the
        highest position it wrote (``application.decisions.Aggregates``)."""
        recordings = self.save_with_receipt(*aggregates)
        positions = [r.notification.id for r in recordings if r.notification.id is not None]
        return max(positions) if positions else None

    def save_with_receipt(self, *objs: Any, **kwargs: Any) -> Any:
        """``Application.save``; outside a batch, the calling command's receipt (if any)
        is written in the same transaction, rendered as ``Recorded(first object, the
        highest position)``: every use case saves its result first."""
        receipt = current_receipt()
        if receipt is None or "receipts" in kwargs:
            return Application.save(self._app, *objs, **kwargs)
        result = next(obj for obj in objs if obj is not None)
        rendered: list[Receipt] = []

        def render(positions: Mapping[tuple[UUID, int], int]) -> list[Receipt]:
            receipt.render(Recorded(result, max(positions.values(), default=None)))
            rendered[:] = [receipt]
            return rendered

        try:
            recordings = Application.save(self._app, *objs, receipts=render, **kwargs)
        except ReceiptsTaken:  # nothing of this command was saved, as in a batch
            raise ReceiptTaken from None
        check_written([receipt], rendered)
        receipt.written = True
        return recordings

    def record_receipt(self, receipt: Receipt, outcome: Any) -> None:
        """Write the receipt of a command that saved nothing (rejected before any save,
        or a replay), in a transaction of its own. ``ReceiptTaken`` if its key is."""
        rendered: list[Receipt] = []

        def render(_positions: Mapping[tuple[UUID, int], int]) -> list[Receipt]:
            receipt.render(outcome)
            rendered[:] = [receipt]
            return rendered

        try:
            self._app.recorder.insert_events([], receipts=render)
        except ReceiptsTaken:
            raise ReceiptTaken from None
        check_written([receipt], rendered)
        receipt.written = True

    def save_events(self, events: Sequence[Any], aggregates: Iterable[Any], receipts: RenderReceipts | None = None,
                    expected_versions: Mapping[UUID, int] | None = None) -> dict[tuple[UUID, int], int]:
        """One atomic write of a batch's events, in the order given (``Application.save``
        collects per aggregate, which would not keep the commands' order in the log),
        with its commands' receipts (the recorder writes them in the same transaction).
        ``expected_versions``: aggregates the batch decided on without writing, at the
        version each must still have (0: absent); else ``IntegrityError``, nothing saved."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        if receipts is not None:
            processing_event.saved_kwargs["receipts"] = receipts
        if expected_versions:
            processing_event.saved_kwargs["expected_versions"] = expected_versions
        processing_event.events.extend(events)
        processing_event.aggregates.update((a.id, a) for a in aggregates)
        recordings = self._app._record(processing_event)  # noqa: SLF001 - Application.save's own write
        for aggregate in processing_event.aggregates.values():
            aggregate.collect_events()  # stored now
        self._snapshot_committed(events, processing_event.aggregates)
        self._app._notify(recordings)  # noqa: SLF001 - as Application.save does after writing
        return {(r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
                for r in recordings}

    def _snapshot_committed(self, events: Sequence[Any], aggregates: Mapping[UUID, Any]) -> None:
        # Where Application._take_snapshots would rebuild an aggregate from the store
        # at each event whose version is a multiple of the interval (a hot account
        # crosses one every few batches), snapshot the committed aggregate in hand at
        # its current version: still at most one interval of events after a snapshot.
        snapshots = self._app.snapshots
        if snapshots is None:
            return
        due: dict[UUID, Any] = {}
        for event in events:
            aggregate = aggregates.get(event.originator_id)
            interval = self._app.snapshotting_intervals.get(type(aggregate))
            if interval is not None and event.originator_version % interval == 0:
                due[aggregate.id] = aggregate
        if due:
            snapshot_class = type(self._app).snapshot_class
            snapshots.put([getattr(type(a), "Snapshot", snapshot_class).take(a) for a in due.values()])

    def keep_committed(self, aggregates: Iterable[tuple[Any, bool]]) -> None:
        # The next batch then finds these aggregates current in the cache instead of
        # decoding and replaying this batch's events again. A committed state is always
        # a safe cache entry: every read fast-forwards it from the store first.
        repository = self._app.repository
        if repository.cache is None or not repository.fastforward:
            return  # without fast-forwarding, Application._record has cached them already
        for aggregate, held_by_a_result in aggregates:
            repository.cache.put(aggregate.id, _copied(aggregate) if held_by_a_result else aggregate)


# Values that are immutable: a copy may share them (deepcopy copies UUIDs and datetimes anyway).
_SHAREABLE = (str, int, float, bool, type(None), UUID, Enum, datetime, date, Decimal, bytes)


def _copied(aggregate: Any) -> Any:
    """``copy.deepcopy(aggregate)`` at a fraction of the cost (a batch copies every
    aggregate it loads): the object is copied as deepcopy does, immutable attribute
    values are shared, and every other value (lists, dicts, tuples, ...) is
    deep-copied with one memo, as deepcopy would."""
    duplicate = copy(aggregate)
    memo: dict[int, Any] = {id(aggregate): duplicate}
    state = duplicate.__dict__
    for name, value in state.items():
        if not isinstance(value, _SHAREABLE):
            state[name] = deepcopy(value, memo)
    return duplicate
