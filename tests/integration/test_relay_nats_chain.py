"""The NATS sink's chained, pipelined publishing, against the real JetStream.

A batch is sent without waiting for each acknowledgement; each message names its
predecessor (``Nats-Expected-Last-Msg-Id``), so the stream can only ever hold a
prefix of what was sent, in order. A sink that does not know the stream's last
message id reads it back, and sends only what comes after it.
"""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.sinks.message import OutboundMessage
from infrastructure.sinks.message import SinkUnavailable
from infrastructure.sinks.nats_jetstream import NatsJetStreamSink
from tests.integration.relay_support import Stream, nats_stream, stream_messages  # noqa: F401 - the fixture


def messages(positions: range) -> list[OutboundMessage]:
    return [OutboundMessage(str(p), "acme", "transaction", "posted", b'{"n": %d}' % p) for p in positions]


def sink_on(stream: Stream) -> NatsJetStreamSink:
    return NatsJetStreamSink(stream.url, stream.name, stream.prefix, timeout_seconds=2.0)


def test_a_new_sink_sends_only_what_follows_the_streams_last_message(nats_stream: Stream) -> None:
    first = sink_on(nats_stream)
    try:
        first.publish(messages(range(1, 6)))
    finally:
        first.close()
    second = sink_on(nats_stream)  # as after a restart: the relay's position was 2, the stream holds 1-5
    try:
        second.publish(messages(range(3, 9)))
        second.publish(messages(range(9, 12)))
    finally:
        second.close()

    assert [m.msg_id for m in stream_messages(nats_stream)] == [str(p) for p in range(1, 12)]


def test_a_message_the_relay_did_not_publish_stops_the_sink(nats_stream: Stream) -> None:
    sink = sink_on(nats_stream)
    try:
        sink.publish(messages(range(1, 3)))
        asyncio.run(_publish_foreign(nats_stream))
        sink.close()
        sink = sink_on(nats_stream)
        with pytest.raises(SinkUnavailable, match="did not publish"):
            sink.publish(messages(range(3, 5)))
    finally:
        sink.close()

    assert [m.msg_id for m in stream_messages(nats_stream)] == ["1", "2", ""]


async def _publish_foreign(stream: Stream) -> None:
    import nats

    client = await nats.connect(stream.url)
    try:
        await client.jetstream().publish(f"{stream.prefix}.acme.other.thing", b'{"foreign": true}')
    finally:
        await client.close()
