"""The relay against the real NATS JetStream and the real stores (docs/events-out.md).

Every committed event reaches the stream once, in log order, with its position
as id and Nats-Msg-Id; the durable position survives restarts and kill -9; an
unreachable broker delays delivery and loses, duplicates or reorders nothing.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from infrastructure.runtime import Runtime
from interfaces.bootstrap import build_relay_loop
from projections.relay.position import read_position
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import FIRST_DAY, open_book, open_ready, post, post_random
from tests.integration.relay_support import (
    Proxy,
    Received,
    Stream,
    assert_chained,
    cli_process,
    nats_stream,
    relay_once,
    relayed_positions,
    stream_count,
    started_relay,
    stop_process,
    stream_messages,
    wait_for,
)

__all__ = ["nats_stream"]  # the fixture, used by name


def _assert_delivered_once_in_order(received: list[Received], runtime: Runtime, stream: Stream) -> None:
    assert [int(r.event["id"]) for r in received] == relayed_positions(runtime)
    for message in received:
        event = message.event
        assert message.msg_id == event["id"]
        tenant = event["source"].rsplit("/", 1)[1]
        aggregate, name = event["type"].removeprefix("io.invario.").split(".")
        assert message.subject == f"{stream.prefix}.{tenant}.{aggregate}.{name}"
    assert_chained([message.event for message in received])


def test_events_arrive_in_log_order_and_a_restart_resumes(
    database_url: str, open_rt: OpenRuntime, nats_stream: Stream
) -> None:
    runtime = open_ready(open_rt, database_url, **nats_stream.settings(relay_batch_size=7))
    books = [open_book(runtime.ledger, name) for name in ("acme", "globex")]
    for book in books:
        post_random(book, runtime.ledger, 6, prefix=f"a-{book.tenant_id}")
    relay_once(runtime)
    first = stream_messages(nats_stream)
    _assert_delivered_once_in_order(first, runtime, nats_stream)
    assert {m.event["type"] for m in first} >= {"io.invario.tenant.created", "io.invario.transaction.posted",
                                                 "io.invario.account.posting_recorded"}

    post(books[0], runtime.ledger, "later", FIRST_DAY, {"cash": 500, "fees": -500})
    relay_once(runtime)  # a new relay: from the durable position, not from the start
    received = stream_messages(nats_stream)
    _assert_delivered_once_in_order(received, runtime, nats_stream)
    assert received[: len(first)] == first
    assert read_position(runtime.engine, f"nats:{nats_stream.name}").position == relayed_positions(runtime)[-1]


@pytest.mark.postgres
def test_an_unreachable_broker_delays_but_loses_nothing(
    pg_database_url: str, open_rt: OpenRuntime, nats_stream: Stream
) -> None:
    proxy = Proxy(nats_stream.url)  # closed: the broker is unreachable
    settings = {**nats_stream.settings(relay_batch_size=5), "relay_nats_url": proxy.url,
                "relay_retry_max_seconds": 0.3}
    runtime = open_ready(open_rt, pg_database_url, **settings)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 10)
    relay = started_relay(runtime)
    try:
        wait_for(lambda: relay.loop.failures >= 3, "failed attempts")
        assert read_position(runtime.engine, f"nats:{nats_stream.name}").position == 0
        assert "nats" in (read_position(runtime.engine, f"nats:{nats_stream.name}").last_error or "").lower()
        proxy.open()  # the broker is back
        post_random(book, runtime.ledger, 5, prefix="while-down")
        head = relayed_positions(runtime)[-1]
        wait_for(lambda: read_position(runtime.engine, f"nats:{nats_stream.name}").position == head, "catching up")
        assert relay.loop.failures == 0
    finally:
        relay.stop()
        proxy.close()
    _assert_delivered_once_in_order(stream_messages(nats_stream), runtime, nats_stream)
    assert read_position(runtime.engine, f"nats:{nats_stream.name}").last_error is None


def _relay_process(url: str, stream: Stream, log: Path) -> subprocess.Popen[bytes]:
    return cli_process("relay", {**stream.environ(), "INVARIO_DATABASE_URL": url, "INVARIO_RELAY_BATCH_SIZE": "3"},
                       log)


@pytest.mark.postgres
def test_kill_9_mid_run_then_restart_delivers_every_event_once_in_order(
    pg_database_url: str, open_rt: OpenRuntime, nats_stream: Stream, tmp_path: Path
) -> None:
    runtime = open_ready(open_rt, pg_database_url)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 300)
    expected = len(relayed_positions(runtime))
    first = _relay_process(pg_database_url, nats_stream, tmp_path / "relay-1.log")
    try:
        wait_for(lambda: stream_count(nats_stream) >= 60 or first.poll() is not None, "the first messages")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = read_position(runtime.engine, f"nats:{nats_stream.name}").position
    assert stream_count(nats_stream) < expected and killed_at < relayed_positions(runtime)[-1], "killed too late"

    second = _relay_process(pg_database_url, nats_stream, tmp_path / "relay-2.log")
    try:
        wait_for(lambda: stream_count(nats_stream) >= expected or second.poll() is not None, "every message")
        wait_for(lambda: read_position(runtime.engine, f"nats:{nats_stream.name}").position
                  == relayed_positions(runtime)[-1], "the durable position at the head")
    finally:
        stop_process(second, tmp_path / "relay-2.log")
    _assert_delivered_once_in_order(stream_messages(nats_stream), runtime, nats_stream)
    log_text = (tmp_path / "relay-2.log").read_text()
    assert "invario relay: stopped" in log_text


@pytest.mark.postgres
def test_a_rewritten_log_stops_the_relay(pg_database_url: str, open_rt: OpenRuntime, nats_stream: Stream) -> None:
    runtime = open_ready(open_rt, pg_database_url, **nats_stream.settings())
    open_book(runtime.ledger)
    relay_once(runtime)
    before = stream_count(nats_stream)
    with runtime.engine.begin() as connection:
        connection.execute(text("UPDATE invario_relay_positions SET event_hash = :h"), {"h": "f" * 64})
    loop = build_relay_loop(runtime, threading.Event())
    try:
        assert loop.run(until_idle=True, attempts_max=1) is False
    finally:
        loop.waiter.close()
        loop.relay.sink.close()
    assert (read_position(runtime.engine, f"nats:{nats_stream.name}").last_error or "").startswith("LogDiverged")
    assert stream_count(nats_stream) == before


def test_invario_worker_runs_the_relay_when_a_sink_is_configured(
    sqlite_database_url: str, open_rt: OpenRuntime, nats_stream: Stream, tmp_path: Path
) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    post_random(open_book(runtime.ledger), runtime.ledger, 5)
    expected = len(relayed_positions(runtime))
    environ = {**nats_stream.environ(), "INVARIO_DATABASE_URL": sqlite_database_url,
               "INVARIO_WORKER_METRICS_PORT": "0", "INVARIO_FOLLOWER_POLL_SECONDS": "0.2"}
    log = tmp_path / "worker.log"
    worker = cli_process("worker", environ, log)
    try:
        wait_for(lambda: stream_count(nats_stream) >= expected or worker.poll() is not None, "the relayed events")
    finally:
        stop_process(worker, log)
    _assert_delivered_once_in_order(stream_messages(nats_stream), runtime, nats_stream)
    assert "relaying to NATS at 127.0.0.1:4222" in log.read_text()
