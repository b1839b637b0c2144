"""The relay (issue 17): events/s from the log to acknowledged messages, and the lag under write load.

Throughput, one row per broker (NATS JetStream, RabbitMQ): a throwaway PostgreSQL
database gets a log of transfers (three events each, ``ledger_data.populate``),
then one relay publishes it from position 0 until it has caught up, to a stream
of its own (JetStream) or to an exchange of its own with one durable queue bound
to it (RabbitMQ: a persistent message routed to a durable queue is confirmed
once that queue has it on disk; with no queue bound RabbitMQ confirms at once).
The rate counts log events covered per second of the relay's run; the relay's
CPU is given beside it.

Lag: N threads post transfers in-process with group commit, as fast as they
return (the maximum write rate, as ``bench_lag`` does for the read models),
while ``invario relay`` to RabbitMQ runs in a process of its own. Every 50 ms a
sampler reads the head of the log and the relay's durable position, which moves
only after the broker confirmed a batch; a sample's lag is how long ago the
head was where the position is now: from a write's commit to its broker
acknowledgement (and the position's own commit).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import TextClause, text

from infrastructure.migrate import upgrade_to_head
from infrastructure.runtime import Runtime, open_runtime
from infrastructure.settings import Settings
from interfaces.bootstrap import build_relay
from tests.bench import bench_lag
from tests.bench.bench_inprocess import _open_book
from tests.bench.bench_lag import LAG_TARGET_SECONDS, lag_rows, load_and_sample, under_load, wait_until_caught_up
from tests.bench.ledger_data import populate
from tests.bench.measurement import Measurement
from tests.bench.support import REPOSITORY, throwaway_postgres
from tests.support.brokers import (
    AMQP_URL,
    NATS_URL,
    address,
    amqp_reachable,
    bind_queue,
    delete_exchange,
    delete_stream,
    nats_reachable,
)

TARGET_EVENTS_PER_SECOND = 20_000  # issue 17 (stated for JetStream; the same bar for RabbitMQ)
FULL_TRANSFERS, SMOKE_TRANSFERS = 10_000, 200
ACCOUNTS = 100
LAG_NAME = "relay lag p99 (commit to RabbitMQ confirm)"


def run(smoke: bool) -> list[Measurement]:
    return [*_jetstream_throughput(smoke), *_rabbitmq_throughput(smoke), *_rabbitmq_lag(smoke)]


# --- throughput --------------------------------------------------------------------------------


def _jetstream_throughput(smoke: bool) -> list[Measurement]:
    name = "relay to JetStream"
    if not nats_reachable():
        return [Measurement(name, 0, "events/s", note=f"skipped: no NATS at {NATS_URL}")]
    tag = secrets.token_hex(4)
    stream = f"INVARIO_BENCH_{tag}"
    sink = {"relay_nats_url": NATS_URL, "relay_nats_stream": stream, "relay_nats_subject_prefix": f"invbench{tag}"}
    return _throughput(name, smoke, sink, "nats", lambda: delete_stream(NATS_URL, stream))


def _rabbitmq_throughput(smoke: bool) -> list[Measurement]:
    name = "relay to RabbitMQ (confirms, 1 durable queue)"
    if not amqp_reachable():
        host, port = address(AMQP_URL, 5672)
        return [Measurement(name, 0, "events/s", note=f"skipped: no RabbitMQ at {host}:{port}")]
    exchange = f"invario-bench-{secrets.token_hex(4)}"
    bind_queue(AMQP_URL, exchange, exchange)
    sink = {"relay_amqp_url": AMQP_URL, "relay_amqp_exchange": exchange}
    return _throughput(name, smoke, sink, "amqp", lambda: delete_exchange(AMQP_URL, exchange, (exchange,)))


def _throughput(name: str, smoke: bool, sink: dict[str, Any], sink_name: str,
                cleanup: Callable[[], None]) -> list[Measurement]:
    try:
        with throwaway_postgres() as found:
            if found is None:
                return [Measurement(name, 0, "events/s", note="skipped: no PostgreSQL server found")]
            runtime = open_runtime(Settings(database_url=found[1], auth_pepper="p" * 32, **sink))
            try:
                upgrade_to_head(runtime.engine)
                populate(runtime.ledger, SMOKE_TRANSFERS if smoke else FULL_TRANSFERS, accounts=ACCOUNTS)
                events, seconds, cpu = _relay_everything(runtime, sink_name)
            finally:
                runtime.close()
    finally:
        cleanup()
    rate = events / seconds if seconds else 0.0
    note = f"{events:,} events in {seconds:.1f} s, relay CPU {cpu / seconds if seconds else 0:.2f} core"
    return [Measurement(name, rate, "events/s", TARGET_EVENTS_PER_SECOND, note=note)]


def _relay_everything(runtime: Runtime, sink: str) -> tuple[int, float, float]:
    relay = build_relay(runtime, sink)
    try:
        began, cpu_began, events = time.perf_counter(), time.process_time(), 0
        while covered := relay.process_batch():  # bounded: each batch is at most relay_batch_size events
            events += covered
        return events, time.perf_counter() - began, time.process_time() - cpu_began
    finally:
        relay.sink.close()


# --- lag under write load ----------------------------------------------------------------------


def _rabbitmq_lag(smoke: bool) -> list[Measurement]:
    if not amqp_reachable():
        return [Measurement(LAG_NAME, 0, "s", note="skipped: no RabbitMQ")]
    shape = bench_lag.SMOKE if smoke else bench_lag.FULL  # the followers' load, for the same comparison
    exchange = f"invario-bench-{secrets.token_hex(4)}"
    bind_queue(AMQP_URL, exchange, exchange)
    try:
        with throwaway_postgres() as found:
            if found is None:
                return [Measurement(LAG_NAME, 0, "s", note="skipped: no PostgreSQL server found")]
            url = found[1]
            tenant_id, accounts = _open_book(url, shape["accounts"])
            with _relay_process(url, exchange):
                wait_until_caught_up(url, _position_query(exchange), "invario relay")
                done, samples = load_and_sample(url, tenant_id, accounts, shape, _position_query(exchange))
    finally:
        delete_exchange(AMQP_URL, exchange, (exchange,))
    return lag_rows(LAG_NAME, samples, under_load(shape, done), "invario relay in its own process, 1 durable queue")


@contextlib.contextmanager
def _relay_process(database_url: str, exchange: str) -> Iterator[None]:
    """``invario relay`` to RabbitMQ in a process of its own, as in production; stopped with SIGTERM."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPOSITORY), os.environ.get("PYTHONPATH")))),
           "INVARIO_DATABASE_URL": database_url, "INVARIO_RELAY_AMQP_URL": AMQP_URL,
           "INVARIO_RELAY_AMQP_EXCHANGE": exchange}
    env.pop("INVARIO_RELAY_NATS_URL", None)  # this row measures one sink
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen([sys.executable, "-m", "interfaces.cli.main", "relay"],  # noqa: S603
                                   cwd=REPOSITORY, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield
        except Exception:
            output.seek(0)
            tail = output.read().decode(errors="replace")[-1500:]
            raise RuntimeError(f"the relay's run failed; its output ends: {tail}") from None
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _position_query(exchange: str) -> TextClause:
    return text("SELECT position FROM invario_relay_positions WHERE sink = :sink").bindparams(sink=f"amqp:{exchange}")
