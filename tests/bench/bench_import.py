"""Batch import (issue 7): a file of two-posting transactions on local PostgreSQL.

``make bench`` imports 100,000 lines so that the whole suite stays near ten
minutes; ``make bench-import`` (INVARIO_BENCH_IMPORT_LINES=1000000) runs the
1,000,000-line file the issue names, which takes several minutes on its own.

Target: at least 10,000 transactions/s through the same code path as
``invario import`` (Upload in chunks, then BatchProcessor, atomic: a dry run of
every chunk, then the posts). Memory stays flat: the file is generated into a
temporary file and streamed, never held whole; peak RSS is reported, and the
peak (tracemalloc) while importing twice the lines must stay within 25 % (plus
the 24 bytes a line of the duplicate check).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from infrastructure.batch_runner import Upload
from interfaces.bootstrap import build_batch_runner
from infrastructure.runtime import open_runtime
from infrastructure.migrate import upgrade_to_head
from infrastructure.settings import Settings
from tests.bench.measurement import Measurement
from tests.bench.support import postgres_database
from tests.support.batch_files import HEADER

TRANSACTIONS_PER_SECOND_TARGET = 10_000
MEMORY_GROWTH_MAX = 1.25
FULL_LINES = int(os.environ.get("INVARIO_BENCH_IMPORT_LINES", "100000"))
SMOKE_LINES = 2_000
READ_BYTES = 1 << 20


def run(smoke: bool) -> list[Measurement]:
    lines = SMOKE_LINES if smoke else FULL_LINES
    with postgres_database() as url:
        if url is None:
            return [Measurement("import on PostgreSQL", 0, "tx/s", note="skipped: no server found")]
        return _measure(url, lines)


def _measure(url: str, lines: int) -> list[Measurement]:
    runtime = open_runtime(Settings(database_url=url))
    try:
        upgrade_to_head(runtime.engine)
        tenant_id = runtime.ledger.create_tenant("bench").aggregate.id
        for code, kind in (("cash", "asset"), ("sales", "income")):
            runtime.ledger.open_account(tenant_id, code, code, "BRL", kind)
        small = max(lines // 10, 1_000)
        peak_small, _ = _import(runtime, tenant_id, small, start=0, traced=True)
        peak_large, _ = _import(runtime, tenant_id, small * 2, start=small, traced=True)
        _, elapsed = _import(runtime, tenant_id, lines, start=small * 3, traced=False)
    finally:
        runtime.close()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        Measurement(f"import {lines:,} two-posting lines (PostgreSQL, atomic)", lines / elapsed, "tx/s",
                    TRANSACTIONS_PER_SECOND_TARGET, note=f"{elapsed:.1f} s; peak RSS {rss_mib:.0f} MiB"),
        Measurement(f"import peak memory, {small * 2:,} vs {small:,} lines", peak_large / peak_small, "x",
                    MEMORY_GROWTH_MAX, higher_is_better=False,
                    note=f"{peak_small / 2**20:.1f} -> {peak_large / 2**20:.1f} MiB (tracemalloc)"),
    ]


def _import(runtime, tenant_id, lines: int, *, start: int, traced: bool) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "batch.csv"
        _write_file(path, lines, start)
        if traced:
            tracemalloc.start()
        began = time.perf_counter()
        runner = build_batch_runner(runtime, role="bench")
        upload = Upload(runner.store, tenant_id, "atomic", "csv")
        with path.open("rb") as handle:
            while piece := handle.read(READ_BYTES):
                upload.feed(piece)
        batch = upload.finish(owner=runner.owner)
        runner.process(batch)
        elapsed = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        if traced:
            tracemalloc.stop()
    done = runner.store.get(tenant_id, batch.id)
    assert done is not None and done.status == "completed" and done.accepted_count == lines, done
    return peak, elapsed


def _write_file(path: Path, lines: int, start: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(HEADER)
        for block in range(start, start + lines, 10_000):
            handle.write("".join(f"b-{i},2026-11-23,cash=1.00;sales=-1.00,\n"
                                 for i in range(block, min(block + 10_000, start + lines))))

