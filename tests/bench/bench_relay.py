"""The relay to NATS JetStream (issue 17): events/s from the log to acknowledged messages.

A throwaway PostgreSQL database gets a log of transfers (three events each,
``ledger_data.populate``), then one relay publishes it from position 0 to a stream of its
own (a unique name and subject prefix, deleted afterwards) until it has caught
up. The rate counts log events covered per second of the relay's run; the
relay's CPU is given beside it. End-to-end lag under load is measured by
``bench_lag`` for the read models; the relay's is not measured yet.
"""

from __future__ import annotations

import secrets
import time

from infrastructure.migrate import upgrade_to_head
from infrastructure.runtime import Runtime, open_runtime
from infrastructure.settings import Settings
from interfaces.bootstrap import build_relay
from tests.bench.ledger_data import populate
from tests.bench.measurement import Measurement
from tests.bench.support import throwaway_postgres
from tests.support.brokers import NATS_URL, delete_stream, nats_reachable

TARGET_EVENTS_PER_SECOND = 20_000  # issue 17
FULL_TRANSFERS, SMOKE_TRANSFERS = 10_000, 200
ACCOUNTS = 100


def run(smoke: bool) -> list[Measurement]:
    name = "relay to JetStream"
    if not nats_reachable():
        return [Measurement(name, 0, "events/s", note=f"skipped: no NATS at {NATS_URL}")]
    with throwaway_postgres() as found:
        if found is None:
            return [Measurement(name, 0, "events/s", note="skipped: no PostgreSQL server found")]
        tag = secrets.token_hex(4)
        settings = Settings(database_url=found[1], auth_pepper="p" * 32, relay_nats_url=NATS_URL,
                            relay_nats_stream=f"INVARIO_BENCH_{tag}", relay_nats_subject_prefix=f"invbench{tag}")
        runtime = open_runtime(settings)
        try:
            upgrade_to_head(runtime.engine)
            populate(runtime.ledger, SMOKE_TRANSFERS if smoke else FULL_TRANSFERS, accounts=ACCOUNTS)
            events, seconds, cpu = _relay_everything(runtime)
        finally:
            delete_stream(NATS_URL, settings.relay_nats_stream)
            runtime.close()
    rate = events / seconds if seconds else 0.0
    note = f"{events:,} events in {seconds:.1f} s, relay CPU {cpu / seconds if seconds else 0:.2f} core"
    return [Measurement(name, rate, "events/s", TARGET_EVENTS_PER_SECOND, note=note)]


def _relay_everything(runtime: Runtime) -> tuple[int, float, float]:
    relay = build_relay(runtime)
    try:
        began, cpu_began, events = time.perf_counter(), time.process_time(), 0
        while covered := relay.process_batch():  # bounded: each batch is at most relay_batch_size events
            events += covered
        return events, time.perf_counter() - began, time.process_time() - cpu_began
    finally:
        relay.sink.close()
