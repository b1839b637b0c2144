"""The rebuild benchmark keeps working: its smoke mode runs in seconds (numbers are not checked)."""

from __future__ import annotations

import pytest

from tests.bench import bench_rebuild


@pytest.mark.postgres
@pytest.mark.long  # the benchmark at small sizes: make test-long
def test_the_rebuild_benchmark_runs() -> None:
    measurements = bench_rebuild.run(smoke=True)
    names = [m.name for m in measurements]
    assert any(name.startswith("PostgreSQL: rebuild all read models") for name in names)
    assert any(name.startswith("SQLite: rebuild all read models") for name in names)
    assert all(m.value > 0 for m in measurements)
