"""Rebuild: replaying the whole log into the read models (issue 4).

Targets: at least 20,000 events/s on a 2-core machine with local PostgreSQL;
memory flat as the log grows (the peak while replaying twice as many events
stays within 25 % of the peak for the smaller log: reads stream in bounded
batches and writes are batched). Measured through the same code as
``invario projections rebuild`` (``start_rebuild`` + ``replay``).
"""

from __future__ import annotations

import time
import tracemalloc

from infrastructure.runtime import Runtime, open_runtime
from infrastructure.settings import Settings
from projections.following.rebuild import replay, start_rebuild
from projections.following.registry import GLOBAL_CHAIN, READ_MODELS
from projections.following.schema import ensure_schema
from tests.bench.ledger_data import populate
from tests.bench.measurement import Measurement
from tests.bench.support import on_each_store

EVENTS_PER_SECOND_TARGET = 20_000
MEMORY_GROWTH_MAX = 1.25
FULL_EVENTS = (50_000, 100_000)
SMOKE_EVENTS = (1_500, 3_000)


def run(smoke: bool) -> list[Measurement]:
    return on_each_store("rebuild", lambda store, url: _measure(store, url, smoke))


def _measure(store: str, url: str, smoke: bool) -> list[Measurement]:
    small, large = SMOKE_EVENTS if smoke else FULL_EVENTS
    runtime = open_runtime(Settings(database_url=url))
    try:
        ensure_schema(runtime.engine)
        written = populate(runtime.ledger, small // 3, tenant="bench-a")
        peak_small = _replay_peak_bytes(runtime)
        written += populate(runtime.ledger, (large - written) // 3, tenant="bench-b", seed=8)
        peak_large = _replay_peak_bytes(runtime)
        results = [_throughput(runtime, store, "all read models", READ_MODELS, written)]
        if not smoke and store == "PostgreSQL":
            results += [_throughput(runtime, store, name, (name,), written) for name in (*READ_MODELS, GLOBAL_CHAIN)]
        results.append(Measurement(
            f"{store}: peak memory, {written:,} vs {written // 2:,} events", peak_large / peak_small, "x",
            MEMORY_GROWTH_MAX, higher_is_better=False,
            note=f"{peak_small / 2**20:.1f} -> {peak_large / 2**20:.1f} MiB",
        ))
        return results
    finally:
        runtime.close()


def _throughput(runtime: Runtime, store: str, label: str, names: tuple[str, ...], events: int) -> Measurement:
    start_rebuild(runtime, names, from_scratch=True)
    began = time.perf_counter()
    applied = replay(runtime, names)
    elapsed = time.perf_counter() - began
    assert applied == runtime.ledger.recorder.max_notification_id(), (applied, events)
    return Measurement(f"{store}: rebuild {label}, {applied:,} events", applied / elapsed, "events/s",
                       EVENTS_PER_SECOND_TARGET)


def _replay_peak_bytes(runtime: Runtime) -> int:
    start_rebuild(runtime, READ_MODELS, from_scratch=True)
    tracemalloc.start()
    try:
        replay(runtime, READ_MODELS)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


