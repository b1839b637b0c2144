"""Full verification (``invario verify``): events per second, where the time goes, and flat memory.

Target (issue 5): at least 100,000 events/s on a 2-core machine with local
PostgreSQL. Measured through the same code as the command
(``LedgerVerification``), on a realistic history (``ledger_data.populate``)
whose global chain has been written by its follower. Beside the total, the
same events are timed stage by stage (reading the log, decoding, recomputing
hashes, walking both chains) so that the table says where the time goes.
Memory: the peak while verifying twice as many events stays within 25 % of
the peak for the smaller log (pages, a bounded LRU of aggregate heads).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Iterator

from domain.chain import compute_event_hash
from domain.integrity import ChainWalk
from infrastructure.runtime import Runtime, open_runtime
from infrastructure.settings import Settings
from projections.following.follower import Follower
from projections.jobs.global_chain import GlobalChainProjection
from projections.following.schema import ensure_schema
from projections.jobs.verification import PAGE_SIZE, LedgerLookups, LedgerVerification, check_event, stored_chain_rows
from tests.bench.ledger_data import populate
from tests.bench.measurement import Measurement
from tests.bench.support import on_each_store

EVENTS_PER_SECOND_TARGET = 100_000
MEMORY_GROWTH_MAX = 1.25
FULL_EVENTS = (50_000, 100_000)
SMOKE_EVENTS = (1_500, 3_000)


def run(smoke: bool) -> list[Measurement]:
    return on_each_store("verify", lambda store, url: _measure(store, url, smoke))


def _measure(store: str, url: str, smoke: bool) -> list[Measurement]:
    small, large = SMOKE_EVENTS if smoke else FULL_EVENTS
    runtime = open_runtime(Settings(database_url=url))
    try:
        ensure_schema(runtime.engine)
        written = _grow(runtime, small, "bench-a", seed=7)
        peak_small = _peak_bytes(runtime)
        written = _grow(runtime, large - written, "bench-b", seed=8) + written
        peak_large = _peak_bytes(runtime)
        report = LedgerVerification(runtime.ledger, runtime.engine).run()
        assert report.intact and report.events == written, (report.damages, report.events, written)
        results = [Measurement(f"{store}: verify {report.events:,} events", report.events_per_second, "events/s",
                               EVENTS_PER_SECOND_TARGET)]
        if store == "PostgreSQL":
            results += _stages(runtime, report.events)
        results.append(Measurement(
            f"{store}: verify peak memory, {written:,} vs {small:,} events", peak_large / peak_small, "x",
            MEMORY_GROWTH_MAX, higher_is_better=False,
            note=f"{peak_small / 2**20:.1f} -> {peak_large / 2**20:.1f} MiB",
        ))
        return results
    finally:
        runtime.close()


def _grow(runtime: Runtime, events: int, tenant: str, seed: int) -> int:
    """Write about ``events`` events and chain them, as the worker would have."""
    written = populate(runtime.ledger, max(events // 3, 1), tenant=tenant, seed=seed)
    Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch_size=2_000).catch_up()
    return written


def _peak_bytes(runtime: Runtime) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        LedgerVerification(runtime.ledger, runtime.engine).run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _stages(runtime: Runtime, events: int) -> list[Measurement]:
    """The same work as a verification, one stage at a time, each as events/s of that stage alone."""
    ledger = runtime.ledger
    pages = list(_pages(runtime))  # held in memory here only, to time the stages apart
    decoded: list[object] = []
    checked = []
    rows: list[dict[int, object]] = []
    timings = {
        "read the log (select_notifications)": lambda: list(_pages(runtime)),
        "decode (mapper.to_domain_event)": lambda: decoded.extend(
            ledger.mapper.to_domain_event(n) for page in pages for n in page),
        "recompute hashes (compute_event_hash)": lambda: [compute_event_hash(e) for e in decoded],
        "decode + hash (check_event)": lambda: checked.extend(check_event(ledger, n) for page in pages for n in page),
        "read the stored global chain": lambda: rows.extend(_chain_pages(runtime, events)),
        "walk both chains (ChainWalk)": lambda: _walk(checked, rows, LedgerLookups(ledger)),
    }
    return [Measurement(f"  stage: {label}", events / _seconds(work), "events/s", note="where the time goes")
            for label, work in timings.items()]


def _pages(runtime: Runtime) -> Iterator[list[object]]:
    start = 1
    while page := list(runtime.ledger.recorder.select_notifications(start=start, limit=PAGE_SIZE)):
        yield page
        start = page[-1].id + 1  # type: ignore[attr-defined]


def _chain_pages(runtime: Runtime, events: int) -> Iterator[dict[int, object]]:
    with runtime.engine.connect() as connection:
        for after in range(0, events, PAGE_SIZE):
            yield stored_chain_rows(connection, after, PAGE_SIZE)


def _walk(checked: list[object], rows: list[dict[int, object]], lookups: LedgerLookups) -> None:
    walk = ChainWalk()
    merged = {sequence: row for page in rows for sequence, row in page.items()}
    for event in checked:
        walk.visit(event, merged.get(walk.sequence + 1), lookups)  # type: ignore[arg-type]
    assert not walk.damages


def _seconds(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return max(time.perf_counter() - began, 1e-9)


