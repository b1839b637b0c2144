"""The verification benchmark keeps working: its smoke mode runs in seconds (numbers are not checked)."""

from __future__ import annotations

import pytest

from tests.bench import bench_verify


@pytest.mark.postgres
@pytest.mark.long  # the benchmark at small sizes: make test-long
def test_the_verification_benchmark_runs() -> None:
    measurements = bench_verify.run(smoke=True)
    names = [m.name for m in measurements]
    assert any(name.startswith("PostgreSQL: verify") for name in names)
    assert any(name.startswith("SQLite: verify") for name in names)
    assert any("stage:" in name for name in names)
    assert all(m.value > 0 for m in measurements)
