"""The relay against the real RabbitMQ and the real stores (docs/events-out.md).

Every committed event reaches a queue bound to the relay's exchange in log order,
persistent, with its position as ``message_id`` and the NATS subject's words as
routing key; the durable position survives restarts and kill -9. RabbitMQ does
not de-duplicate: after a cut connection or a killed relay a queue may hold a
message twice, but only one whose ``message_id`` it already had, so a consumer
that skips ids it has seen gets every event once, in order.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from infrastructure.runtime import Runtime
from infrastructure.telemetry import _relay_lag
from interfaces.bootstrap import build_relay_loop, build_relay_loops, relay_sinks
from projections.relay.position import read_position
from tests.integration.amqp_support import AmqpReceived, Exchange, amqp_exchange, through
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import FIRST_DAY, open_book, open_ready, post, post_random
from tests.integration.relay_support import (
    Stream,
    assert_chained,
    cli_process,
    nats_stream,
    relay_once,
    relayed_positions,
    started_relay,
    stop_process,
    stream_messages,
    wait_for,
)
from tests.support.brokers import address, bind_queue, delete_exchange
from tests.support.tcp_proxy import FaultyProxy

__all__ = ["amqp_exchange", "nats_stream"]  # the fixtures, used by name

CONTENT_TYPE = "application/cloudevents+json"


def first_copies(received: list[AmqpReceived]) -> list[AmqpReceived]:
    """What a consumer that skips the ids it has seen applies, and a check that it may skip them:
    a message that comes again is one the queue already delivered, never a new one out of turn."""
    seen: set[str] = set()
    firsts = []
    for message in received:
        if message.message_id not in seen:
            seen.add(message.message_id)
            firsts.append(message)
    return firsts


def assert_every_event_in_order(
    received: list[AmqpReceived], runtime: Runtime, *, duplicates: bool, prefix: str = "invario"
) -> None:
    firsts = first_copies(received)
    if not duplicates:
        assert firsts == received, "a message came twice without a fault"
    assert [int(m.message_id) for m in firsts] == relayed_positions(runtime)
    for message in firsts:
        event = message.event
        assert message.message_id == event["id"]
        assert (message.content_type, message.delivery_mode, message.app_id) == (CONTENT_TYPE, 2, "invario")
        tenant = event["source"].rsplit("/", 1)[1]
        aggregate, name = event["type"].removeprefix("io.invario.").split(".")
        assert message.routing_key == f"{prefix}.{tenant}.{aggregate}.{name}"  # the NATS subject's words
    assert_chained([m.event for m in firsts])
    by_tenant: dict[str, list[int]] = {}
    for message in firsts:
        by_tenant.setdefault(message.routing_key.split(".")[1], []).append(int(message.message_id))
    assert all(ids == sorted(ids) for ids in by_tenant.values())


def test_events_arrive_in_log_order_and_a_restart_resumes(
    database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange
) -> None:
    runtime = open_ready(open_rt, database_url, **amqp_exchange.settings(relay_batch_size=7))
    assert relay_sinks(runtime) == ["amqp"]
    books = [open_book(runtime.ledger, name) for name in ("acme", "globex")]
    for book in books:
        post_random(book, runtime.ledger, 6, prefix=f"a-{book.tenant_id}")
    relay_once(runtime)
    first = amqp_exchange.received()
    assert_every_event_in_order(first, runtime, duplicates=False)
    assert {m.event["type"] for m in first} >= {"io.invario.tenant.created", "io.invario.transaction.posted",
                                                 "io.invario.account.posting_recorded"}
    assert len({m.routing_key.split(".")[1] for m in first}) == 2

    post(books[1], runtime.ledger, "later", FIRST_DAY, {"cash": 500, "fees": -500})
    relay_once(runtime)  # a new relay: from the durable position, not from the start
    received = amqp_exchange.received()
    assert_every_event_in_order(received, runtime, duplicates=False)
    assert received[: len(first)] == first
    assert read_position(runtime.engine, amqp_exchange.position_key).position == relayed_positions(runtime)[-1]


@pytest.mark.postgres
def test_a_connection_cut_mid_stream_delays_and_duplicates_only_what_was_sent(
    pg_database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange
) -> None:
    host, port = address(amqp_exchange.url, 5672)
    with FaultyProxy(host, port) as proxy:
        settings = {**amqp_exchange.settings(relay_batch_size=5), "relay_amqp_url": through(amqp_exchange.url, proxy.port),
                    "relay_retry_max_seconds": 0.3}
        runtime = open_ready(open_rt, pg_database_url, **settings)
        book = open_book(runtime.ledger)
        post_random(book, runtime.ledger, 150)
        relay = started_relay(runtime)
        try:
            wait_for(lambda: amqp_exchange.count() >= 40, "the first messages")
            proxy.set_mode("drop")  # reset mid-stream, and every reconnection too
            wait_for(lambda: relay.loop.failures >= 3, "failed attempts")
            cut_at = read_position(runtime.engine, amqp_exchange.position_key)
            assert cut_at.position < relayed_positions(runtime)[-1], "the relay finished before the cut"
            assert "RabbitMQ at 127.0.0.1:" in (cut_at.last_error or "")
            post_random(book, runtime.ledger, 5, prefix="while-down")
            proxy.set_mode("pass")  # the broker is back
            head = relayed_positions(runtime)[-1]
            wait_for(lambda: read_position(runtime.engine, amqp_exchange.position_key).position == head, "catching up")
            assert relay.loop.failures == 0
        finally:
            relay.stop()
    assert_every_event_in_order(amqp_exchange.received(), runtime, duplicates=True)
    assert read_position(runtime.engine, amqp_exchange.position_key).last_error is None


@pytest.mark.postgres
def test_kill_9_mid_batch_then_restart_delivers_every_event_in_order(
    pg_database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange, tmp_path: Path
) -> None:
    runtime = open_ready(open_rt, pg_database_url)
    post_random(open_book(runtime.ledger), runtime.ledger, 300)
    expected = len(relayed_positions(runtime))
    environ = amqp_exchange.environ(database_url=pg_database_url, relay_batch_size=3)
    first = cli_process("relay", environ, tmp_path / "relay-1.log")
    try:
        wait_for(lambda: amqp_exchange.count() >= 60 or first.poll() is not None, "the first messages")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = read_position(runtime.engine, amqp_exchange.position_key).position
    assert amqp_exchange.count() < expected and killed_at < relayed_positions(runtime)[-1], "killed too late"

    second = cli_process("relay", environ, tmp_path / "relay-2.log")
    try:
        wait_for(lambda: read_position(runtime.engine, amqp_exchange.position_key).position
                 == relayed_positions(runtime)[-1] or second.poll() is not None, "the durable position at the head")
    finally:
        stop_process(second, tmp_path / "relay-2.log")
    assert_every_event_in_order(amqp_exchange.received(), runtime, duplicates=True)
    log_text = (tmp_path / "relay-2.log").read_text()
    assert "to RabbitMQ at 127.0.0.1:5672 (position amqp:" in log_text and "invario relay: stopped" in log_text
    assert ":guest@" not in log_text + (tmp_path / "relay-1.log").read_text()


def test_no_secret_reaches_a_log_line_an_error_or_a_message(
    sqlite_database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wr0ng-s3cret-Pa55"
    wrong = amqp_exchange.url.replace("guest:guest@", f"guest:{secret}@")
    assert secret in wrong
    caplog.set_level(logging.DEBUG)  # the clients' own debug lines too
    refused = open_ready(open_rt, sqlite_database_url, **amqp_exchange.settings(relay_amqp_url=wrong))
    open_book(refused.ledger)
    loop = build_relay_loop(refused, threading.Event())
    try:
        assert loop.run(until_idle=True, attempts_max=1) is False
    finally:
        loop.waiter.close()
        loop.relay.sink.close()
    last_error = read_position(refused.engine, amqp_exchange.position_key).last_error or ""
    assert "RabbitMQ at 127.0.0.1:5672" in last_error
    assert secret not in last_error and secret not in caplog.text
    assert not amqp_exchange.received()

    runtime = open_ready(open_rt, sqlite_database_url, **amqp_exchange.settings())
    relay_once(runtime)
    received = amqp_exchange.received()
    assert received and ":guest@" not in caplog.text
    assert all(b"guest" not in m.body and secret.encode() not in m.body for m in received)


def test_with_both_brokers_each_sink_has_its_own_position(
    sqlite_database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange, nats_stream: Stream
) -> None:
    runtime = open_ready(open_rt, sqlite_database_url, **{**nats_stream.settings(), **amqp_exchange.settings()})
    assert relay_sinks(runtime) == ["nats", "amqp"]
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 4)
    relay_once(runtime, "amqp")  # only the AMQP sink moves: the NATS one has published nothing yet
    assert read_position(runtime.engine, amqp_exchange.position_key).position == relayed_positions(runtime)[-1]
    assert read_position(runtime.engine, f"nats:{nats_stream.name}").position == 0
    assert stream_messages(nats_stream) == []

    post_random(book, runtime.ledger, 2, prefix="more")
    loops = build_relay_loops(runtime, threading.Event())
    try:
        assert [loop.relay.name for loop in loops] == [f"nats:{nats_stream.name}", amqp_exchange.position_key]
        assert all(loop.run(until_idle=True, attempts_max=3) for loop in loops)
    finally:
        for loop in loops:
            loop.waiter.close()
            loop.relay.sink.close()
    head = relayed_positions(runtime)[-1]
    assert {loop.relay.name: read_position(runtime.engine, loop.relay.name).position for loop in loops} == {
        f"nats:{nats_stream.name}": head, amqp_exchange.position_key: head}
    assert [int(m.event["id"]) for m in stream_messages(nats_stream)] == relayed_positions(runtime)
    assert_every_event_in_order(amqp_exchange.received(), runtime, duplicates=False, prefix=nats_stream.prefix)
    assert _relay_lag["nats"] == 0 and _relay_lag["amqp"] == 0  # one metrics label per sink


def test_a_replay_from_a_position_to_an_exchange_of_its_own(
    sqlite_database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange
) -> None:
    """The runbook's replay (INC-16 step 5): a position row with no hash, then 'invario relay --once'."""
    runtime = open_ready(open_rt, sqlite_database_url, **amqp_exchange.settings())
    post_random(open_book(runtime.ledger), runtime.ledger, 5)
    positions = relayed_positions(runtime)
    replay = Exchange(amqp_exchange.url, f"{amqp_exchange.name}-replay", f"{amqp_exchange.queue}-replay")
    bind_queue(replay.url, replay.name, replay.queue)
    try:
        with runtime.engine.begin() as connection:
            connection.execute(text("INSERT INTO invario_relay_positions (sink, position, updated_at) "
                                    "VALUES (:sink, :position, CURRENT_TIMESTAMP)"),
                               {"sink": replay.position_key, "position": positions[9]})
        replayer = open_ready(open_rt, sqlite_database_url, **replay.settings())
        relay_once(replayer)
        assert [int(m.message_id) for m in replay.received()] == positions[10:]
    finally:
        delete_exchange(replay.url, replay.name, (replay.queue,))
    assert amqp_exchange.received() == []  # the live sink's exchange got nothing, its position is untouched
    assert read_position(runtime.engine, amqp_exchange.position_key).position == 0


def test_invario_relay_once_with_one_broker_down_delivers_to_the_other_and_names_the_one_that_gave_up(
    sqlite_database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange, nats_stream: Stream, tmp_path: Path
) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    post_random(open_book(runtime.ledger), runtime.ledger, 3)
    log = tmp_path / "relay.log"
    with FaultyProxy(*address(amqp_exchange.url, 5672)) as proxy:
        proxy.set_mode("refuse")  # RabbitMQ down
        environ = {**nats_stream.environ(), "INVARIO_DATABASE_URL": sqlite_database_url,
                   **amqp_exchange.environ(relay_amqp_url=through(amqp_exchange.url, proxy.port),
                                           relay_retry_max_seconds=0.2)}
        assert cli_process("relay", environ, log, "--once").wait(60) == 1, log.read_text()
    output = log.read_text()
    assert f"gave up on {amqp_exchange.position_key}" in output and "guest" not in output
    assert [int(m.event["id"]) for m in stream_messages(nats_stream)] == relayed_positions(runtime)
    assert read_position(runtime.engine, amqp_exchange.position_key).position == 0
    assert amqp_exchange.received() == []


def test_invario_relay_without_a_sink_names_both_variables(sqlite_database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    assert not any(name.startswith("INVARIO_RELAY_") and name.endswith("_URL") for name in os.environ)
    # With webhooks off too: otherwise 'invario relay' delivers them, a broker sink or not.
    process = cli_process("relay", {"INVARIO_DATABASE_URL": sqlite_database_url, "INVARIO_WEBHOOKS_ENABLED": "false"},
                          log, "--once")
    assert process.wait(60) == 2, log.read_text()
    assert "INVARIO_RELAY_NATS_URL" in log.read_text() and "INVARIO_RELAY_AMQP_URL" in log.read_text()


def test_invario_worker_relays_to_both_brokers_in_threads_of_their_own(
    sqlite_database_url: str, open_rt: OpenRuntime, amqp_exchange: Exchange, nats_stream: Stream, tmp_path: Path
) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    post_random(open_book(runtime.ledger), runtime.ledger, 4)
    head = relayed_positions(runtime)[-1]
    environ = {**nats_stream.environ(), **amqp_exchange.environ(), "INVARIO_DATABASE_URL": sqlite_database_url,
               "INVARIO_WORKER_METRICS_PORT": "0", "INVARIO_FOLLOWER_POLL_SECONDS": "0.2"}
    log = tmp_path / "worker.log"
    worker = cli_process("worker", environ, log)
    try:
        wait_for(lambda: all(read_position(runtime.engine, key).position == head for key in (
            f"nats:{nats_stream.name}", amqp_exchange.position_key)) or worker.poll() is not None, "both sinks")
    finally:
        stop_process(worker, log)
    assert_every_event_in_order(amqp_exchange.received(), runtime, duplicates=False, prefix=nats_stream.prefix)
    output = log.read_text()
    assert "relaying to NATS at 127.0.0.1:4222" in output and "relaying to RabbitMQ at 127.0.0.1:5672" in output
