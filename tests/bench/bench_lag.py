"""Follower lag while the write side runs flat out: does the read side keep up?

A reader that passes ``?min_position=`` waits for the read models, so a write
rate the followers cannot follow overstates what clients see (issue 15: lag
p99 under 1 s at the sustained maximum write rate). Here N threads post
two-posting transfers in-process with group commit, as fast as they return,
while a real ``invario worker`` process follows the log. Every 50 ms a sampler
reads the head of the log and the read models' tracking position; a sample's
lag in seconds is how long ago the head was where the read models are now
(the time between a write's commit and its appearance in the read models).

Rows: the write rate during the window, and the lag's p99 and maximum in
seconds and in events.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import TextClause, text

from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from projections.following.registry import READ_MODELS
from tests.bench.bench_http import _worker
from tests.bench.bench_inprocess import _open_book, _post_for_a_while
from tests.bench.measurement import Measurement
from tests.bench.support import environment, percentile, throwaway_postgres

LAG_TARGET_SECONDS = 1.0
SAMPLE_SECONDS = 0.05
WORKER_START_SECONDS = 60
FULL = {"accounts": 2_000, "threads": 16, "warmup": 1.0, "seconds": 10.0}
SMOKE = {"accounts": 100, "threads": 2, "warmup": 0.2, "seconds": 1.5}
GROUPED = {"INVARIO_WRITE_BATCH_SIZE_MAX": "256", "INVARIO_WRITE_BATCH_WAIT_MS": "2"}


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    head: int
    applied: int  # the slowest read model's position


def run(smoke: bool) -> list[Measurement]:
    shape = SMOKE if smoke else FULL
    with throwaway_postgres() as found:
        if found is None:
            return [Measurement("follower lag under write load", 0, "s", note="skipped: no PostgreSQL server found")]
        url = found[1]
        tenant_id, accounts = _open_book(url, shape["accounts"])
        with _worker(url):
            wait_until_caught_up(url, _APPLIED, "invario worker")
            done, samples = load_and_sample(url, tenant_id, accounts, shape, _APPLIED)
    return lag_rows("follower lag p99", samples, under_load(shape, done), "invario worker in its own process")


def under_load(shape: dict[str, Any], transfers: int) -> str:
    return f"while {shape['threads']} threads post {transfers / shape['seconds']:,.0f} transfers/s in-process " \
           "(group commit)"


def load_and_sample(url: str, tenant_id: UUID, accounts: list[UUID], shape: dict[str, Any],
                    applied: TextClause) -> tuple[int, list[Sample]]:
    """Transfers posted in the window, and samples of the head and of the position ``applied`` selects."""
    with environment(**GROUPED):
        runtime = open_runtime(Settings(database_url=url))
    stop = threading.Event()
    samples: list[Sample] = []
    sampler = threading.Thread(target=_sample, args=(runtime, applied, stop, samples), daemon=True)
    try:
        sampler.start()
        done = _post_for_a_while(runtime.ledger, tenant_id, accounts, shape)
    finally:
        stop.set()
        sampler.join()
        runtime.close()
    return done, samples


_APPLIED = text("SELECT min(position) FROM projection_tracking WHERE name IN ({})".format(  # noqa: S608 - constants
    ", ".join(f"'{name}'" for name in READ_MODELS)))


def wait_until_caught_up(url: str, applied: TextClause, what: str) -> None:
    """Start the clock only once the follower (``what``) is up and has caught up with the book."""
    runtime = open_runtime(Settings(database_url=url))
    try:
        deadline = time.monotonic() + WORKER_START_SECONDS
        while time.monotonic() < deadline:
            with runtime.engine.connect() as connection:
                position = connection.execute(applied).scalar() or 0
            if position >= (runtime.ledger.recorder.max_notification_id() or 0):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not catch up within {WORKER_START_SECONDS} s")
    finally:
        runtime.close()


def _sample(runtime: Any, query: TextClause, stop: threading.Event, samples: list[Sample]) -> None:
    with runtime.engine.connect() as connection:
        while not stop.wait(SAMPLE_SECONDS):
            head = runtime.ledger.recorder.max_notification_id() or 0
            applied = connection.execute(query).scalar() or 0
            connection.commit()  # a fresh snapshot each time
            samples.append(Sample(time.monotonic(), head, int(applied)))


def lag_seconds(samples: list[Sample]) -> list[float]:
    """For each sample, how long ago the head of the log first reached what the read models have applied."""
    moments, heads = [s.at for s in samples], [s.head for s in samples]
    lags = []
    for sample in samples:
        first = bisect.bisect_left(heads, sample.applied)  # heads only grow
        reached = moments[first] if first < len(moments) else sample.at
        lags.append(max(sample.at - reached, 0.0) if sample.applied < sample.head else 0.0)
    return lags


def lag_rows(name: str, samples: list[Sample], load: str, where: str) -> list[Measurement]:
    """The lag's p99 in seconds (against the target) and in events, with their maximums."""
    seconds = sorted(lag_seconds(samples))
    events = sorted(max(s.head - s.applied, 0) for s in samples)
    return [
        Measurement(f"{name}, {load}", percentile(seconds, 0.99), "s", LAG_TARGET_SECONDS,
                    higher_is_better=False, note=f"max {seconds[-1] if seconds else 0:.2f} s; {len(samples)} samples"),
        Measurement(f"{name.split(' (')[0]} in events", percentile(events, 0.99), "events",
                    note=f"max {events[-1] if events else 0:,}; {where}"),
    ]
