"""The write-path benchmarks keep working: smoke mode runs them in seconds (numbers are never checked).

``make bench`` itself is not run here; these run each new benchmark module the
way ``python -m tests.bench --smoke`` does and check the rows they report, and
that the table keeps its reference column and machine description.
"""

from __future__ import annotations

import shutil

import pytest

from tests.bench import __main__ as bench_main
from tests.bench import bench_http, bench_inprocess, bench_lag, bench_pgbench, bench_relay
from tests.bench.measurement import REFERENCE_LATENCY, REFERENCE_TPS, Measurement


@pytest.mark.long  # the benchmark at small sizes: make test-long
@pytest.mark.postgres
def test_the_pgbench_reference_runs() -> None:
    tps, latency = bench_pgbench.run(smoke=True)
    assert (tps.role, latency.role) == (REFERENCE_TPS, REFERENCE_LATENCY)
    assert tps.value > 0 and latency.value > 0


def test_a_missing_pgbench_is_a_row_that_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_pgbench.shutil, "which", lambda _: None)
    (row,) = bench_pgbench.run(smoke=True)
    assert row.value == 0 and "pgbench not found" in row.note


@pytest.mark.long  # the benchmark at small sizes: make test-long
@pytest.mark.postgres
@pytest.mark.parametrize("tool", ["httpx", "wrk"])
def test_the_http_benchmark_serves_and_measures_every_shape(tool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if tool == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (optional: the benchmark falls back to httpx)")
    monkeypatch.setenv(bench_http.TOOL_VARIABLE, tool)
    measurements = bench_http.run(smoke=True)
    rows = [m for m in measurements if m.name.startswith("API: ")]
    batch = [m for m in rows if "batch endpoint" in m.name]
    limited = [m for m in rows if "default rate limit" in m.name]
    throughput = [m for m in rows if m not in batch and m not in limited]
    assert len(throughput) == len(bench_http.runs(bench_http.SMOKE)) == 2 * len(bench_http.SMOKE["clients"]) + 1
    assert sum("Idempotency-Key" in m.name for m in throughput) == 2 * len(bench_http.SMOKE["clients"])
    assert all(m.value > 0 and "not 201" not in m.note and tool in m.note for m in throughput), [
        m.note for m in throughput]
    assert sum(m.name.strip().startswith("p99") for m in measurements) == len(rows) == len(throughput) + 2
    # The batch endpoint: every item of every request created (none rejected), latencies per request.
    (batch_row,) = batch
    assert batch_row.name == (f"API: batch endpoint, {bench_http.SMOKE['batch_items']} per request, "
                              f"{bench_http.SMOKE['batch_clients']} clients, Idempotency-Key")
    assert batch_row.unit == "transfers/s" and batch_row.target == bench_http.BATCH_THROUGHPUT_TARGET
    assert batch_row.value > 0 and "not created" not in batch_row.note and tool in batch_row.note, batch_row.note
    assert [m.name.strip() for m in measurements[measurements.index(batch_row) + 1:][:2]] == [
        "p50 latency (request)", "p99 latency (request)"]
    # The rate limit at its default: some 201s, no target, and only 429s (counted in the note) as failures.
    (limited_row,) = limited
    assert f"{bench_http.SMOKE['limited_clients']} clients" in limited_row.name and "Idempotency-Key" in limited_row.name
    assert limited_row.value > 0 and limited_row.target is None and "default limit" in limited_row.note
    assert "not 201" not in limited_row.note and tool in limited_row.note, limited_row.note


@pytest.mark.long  # the benchmark at small sizes: make test-long
@pytest.mark.postgres
def test_the_in_process_benchmark_measures_both_settings() -> None:
    measurements = bench_inprocess.run(smoke=True)
    ungrouped, grouped, bulk = measurements
    assert "ungrouped" in ungrouped.name and "grouped (" in grouped.name
    assert ungrouped.value > 0 and grouped.value > 0
    assert bulk.value > 0 or bulk.note.startswith("skipped")


@pytest.mark.long  # the benchmark at small sizes: make test-long
@pytest.mark.postgres
def test_the_lag_benchmark_samples_the_followers_under_load() -> None:
    seconds, events = bench_lag.run(smoke=True)
    assert seconds.name.startswith("follower lag p99") and seconds.unit == "s" and "samples" in seconds.note
    assert events.unit == "events"


@pytest.mark.long  # the benchmark at small sizes: make test-long
@pytest.mark.postgres
def test_the_relay_benchmark_measures_both_brokers_and_the_lag_under_load() -> None:
    rows = {row.name.split(",")[0]: row for row in bench_relay.run(smoke=True)}
    for name in ("relay to JetStream", "relay to RabbitMQ (confirms"):
        row = next(row for key, row in rows.items() if key.startswith(name))
        assert row.unit == "events/s" and (row.value > 0 or row.note.startswith("skipped")), row.note
    lag = rows[bench_relay.LAG_NAME]
    assert lag.unit == "s" and ("samples" in lag.note or lag.note.startswith("skipped")), lag.note
    assert lag.target == bench_relay.LAG_TARGET_SECONDS and not lag.higher_is_better


def test_lag_in_seconds_is_how_long_ago_the_head_was_where_the_read_models_are() -> None:
    samples = [bench_lag.Sample(0.0, 10, 10), bench_lag.Sample(1.0, 20, 10), bench_lag.Sample(2.0, 30, 20),
               bench_lag.Sample(3.0, 30, 30)]
    assert bench_lag.lag_seconds(samples) == [0.0, 1.0, 1.0, 0.0]


def test_the_table_compares_with_pgbench_and_describes_the_machine(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [Measurement("pgbench", 2_000, "tps", role=REFERENCE_TPS),
            Measurement("latency", 2.0, "ms", role=REFERENCE_LATENCY),
            Measurement("API", 500, "transfers/s", 2_000), Measurement("p99", 20.0, "ms", 50, higher_is_better=False)]
    bench_main.print_table(rows, smoke=True, machine=["machine: test box"])
    out = capsys.readouterr().out
    assert "vs pgbench" in out and "machine: test box" in out
    assert "0.25" in out and "10.0x" in out


def test_a_benchmark_that_cannot_run_becomes_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(smoke: bool) -> list[Measurement]:
        raise RuntimeError("no luck")

    monkeypatch.setattr(bench_pgbench, "run", broken)
    rows, ran = bench_main.run_module("bench_pgbench", smoke=True)
    assert not ran and rows[0].note == "RuntimeError: no luck"


def test_the_reference_runs_first_even_with_only() -> None:
    assert bench_main.discover("http")[0] == "bench_pgbench"
    assert bench_main.discover("http", reference=False) == ["bench_http"]
    assert not any("rebuild" in name or "verify" in name for name in bench_main.discover(None, skip=["rebuild", "verify"]))
