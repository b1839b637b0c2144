"""The relay to NATS JetStream (issue 17): events/s from the log to acknowledged messages.

A throwaway PostgreSQL database gets a log of transfers (three events each,
posted in bulk), then one relay publishes it from position 0 to a stream of its
own (a unique name and subject prefix, deleted afterwards) until it has caught
up. The rate counts log events covered per second of the relay's run; the
relay's CPU is given beside it. End-to-end lag under load is measured by
``bench_lag`` for the read models; the relay's is not measured yet.
"""

from __future__ import annotations

import secrets
import time
from datetime import date

from domain.account import Account
from infrastructure.migrate import upgrade_to_head
from infrastructure.runtime import Runtime, open_runtime
from infrastructure.settings import Settings
from interfaces.bootstrap import build_relay
from application.ledger import PostingInstruction, TransactionRequest
from tests.bench.measurement import Measurement
from tests.bench.support import throwaway_postgres
from tests.support.brokers import NATS_URL, delete_stream, nats_reachable

TARGET_EVENTS_PER_SECOND = 20_000  # issue 17
FULL_TRANSFERS, SMOKE_TRANSFERS = 10_000, 200
ACCOUNTS = 100
CHUNK = 1_000  # post_transactions' bound


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
            _write_log(runtime, SMOKE_TRANSFERS if smoke else FULL_TRANSFERS)
            events, seconds, cpu = _relay_everything(runtime)
        finally:
            delete_stream(NATS_URL, settings.relay_nats_stream)
            runtime.close()
    rate = events / seconds if seconds else 0.0
    note = f"{events:,} events in {seconds:.1f} s, relay CPU {cpu / seconds if seconds else 0:.2f} core"
    return [Measurement(name, rate, "events/s", TARGET_EVENTS_PER_SECOND, note=note)]


def _write_log(runtime: Runtime, transfers: int) -> None:
    tenant = runtime.ledger.create_tenant("bench").aggregate
    accounts = [Account.open(tenant.id, f"a{n}", f"Account {n}", "BRL", "asset") for n in range(ACCOUNTS)]
    runtime.ledger.save(*accounts)
    for start in range(0, transfers, CHUNK):
        requests = [
            TransactionRequest(f"t{n}", date(2026, 12, 1), [
                PostingInstruction(accounts[n % ACCOUNTS].id, "1.00", None),
                PostingInstruction(accounts[(n + 1) % ACCOUNTS].id, "-1.00", None),
            ])
            for n in range(start, min(transfers, start + CHUNK))
        ]
        runtime.ledger.post_transactions(tenant.id, requests)


def _relay_everything(runtime: Runtime) -> tuple[int, float, float]:
    relay = build_relay(runtime)
    try:
        began, cpu_began, events = time.perf_counter(), time.process_time(), 0
        while covered := relay.process_batch():  # bounded: each batch is at most relay_batch_size events
            events += covered
        return events, time.perf_counter() - began, time.process_time() - cpu_began
    finally:
        relay.sink.close()
