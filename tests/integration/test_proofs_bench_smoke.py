"""The proof benchmark's serving rows keep working (smoke sizes on SQLite; numbers are never checked)."""

from __future__ import annotations

import pytest

from tests.bench.bench_proofs import SMOKE_BUNDLES, _forged_bundles
from tests.bench.proof_serving import SMOKE, serving_rows


@pytest.mark.long  # the benchmark at small sizes: make test-long
def test_the_proof_serving_rows_measure_the_follower_the_route_and_the_path(sqlite_database_url: str) -> None:
    follower, latency, path = serving_rows("SQLite", sqlite_database_url, smoke=True)
    assert follower.unit == "events/s" and follower.value > 0 and "global chain" in follower.note
    assert latency.unit == "ms" and latency.value > 0 and f"{SMOKE['large_tree']:,} leaves" in latency.name
    # A tree of 5,000 leaves: 13 hashes of 32 bytes on the path (2**12 < 5,000 <= 2**13).
    assert (path.unit, path.value) == ("bytes", 13 * 32)


@pytest.mark.long  # the benchmark at small sizes: make test-long
def test_the_forged_bundles_row_counts_every_forgery_refused() -> None:
    (row,) = _forged_bundles(smoke=True)
    assert row.value == row.target == SMOKE_BUNDLES and row.unit == "bundles" and "FALSE" not in row.note
