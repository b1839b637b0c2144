"""The relay's RabbitMQ sink (aio-pika, AMQP 0-9-1).

Messages go to one durable topic exchange (declared when missing) under the
routing key ``<prefix>.<tenant>.<aggregate type>.<event>``, the same words as
the NATS subjects, so a consumer binds its own queue with a pattern such as
``invario.<tenant>.#``. Each is persistent (delivery mode 2) and carries
``message_id`` = its log position, the consumers' de-duplication key, and
``content_type`` = ``application/cloudevents+json``.

The channel is in publisher-confirm mode. A batch is sent without waiting for
each confirm (one round trip per batch, not per message), and ``publish``
returns only once RabbitMQ confirmed every message: for a persistent message
routed to a durable queue, once that queue has it on disk. aio-pika connects
and declares; the publishes go through its channel's aiormq channel, which can
hand a message to the connection's writer without waiting for it to reach the
socket (aio-pika's ``Exchange.publish`` waits, one message at a time). Order: the
publishes are started in log order and each takes the channel's lock (FIFO) in
its first step, so the frames leave in log order, and RabbitMQ keeps one
channel's order into each queue. A failure (connection lost, a negative
confirm, no confirm in time) fails the whole batch; the relay then re-sends it
from its durable position, so a queue may hold some of its messages twice,
under their same ``message_id``, and never an event that was not sent before
in its place: duplicates only, never a gap or a reordering of first copies.

An exchange drops what no queue is bound to (RabbitMQ confirms it all the
same): consumers declare and bind their durable queues before the events they
need are relayed (docs/events-out.md).

aio-pika is asyncio; the relay is not. The sink drives it on an event loop in a
daemon thread of its own. The connection is not a robust one: a lost connection
fails the batch, and the relay's own back-off decides when to connect again.
Nothing of the URL but its host and port reaches a log line or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from infrastructure.sinks.event_loop import AsyncioSink
from infrastructure.sinks.message import OutboundMessage, SinkUnavailable
from infrastructure.sinks.urls import safe_error

log = logging.getLogger(__name__)

SINK_NAME = "amqp"
CONFIRMS_PER_SECOND_MIN = 1_000  # a batch's confirms may take this long beyond the timeout
APP_ID = "invario"
PERSISTENT = 2  # AMQP delivery mode: written to disk by a durable queue


class AmqpSink(AsyncioSink):
    """Publishes batches to one durable topic exchange, every message confirmed before ``publish`` returns."""

    name = SINK_NAME
    broker = "RabbitMQ"

    def __init__(self, url: str, exchange: str, routing_prefix: str, timeout_seconds: float) -> None:
        super().__init__(url, 5671 if urlsplit(url).scheme == "amqps" else 5672, timeout_seconds)
        self.exchange = exchange
        self.routing_prefix = routing_prefix
        self._connection: Any = None
        self._channel: Any = None

    def routing_key(self, message: OutboundMessage) -> str:
        return message.subject(self.routing_prefix)

    def _bound(self, count: int) -> float:
        return self.timeout_seconds * (4 + count / CONFIRMS_PER_SECOND_MIN)  # connect, declare, then the confirms

    # --- on the sink's event loop -------------------------------------------------------

    async def _publish(self, messages: list[OutboundMessage]) -> None:
        channel = await self._connected()
        # ensure_future runs each publish's first step in creation order: see the module's "Order".
        # wait=False: a publish hands its frames to the connection's writer and lets the next one
        # go without waiting for them to reach the socket; its confirm is still awaited.
        confirms = [asyncio.ensure_future(channel.basic_publish(
            m.body, exchange=self.exchange, routing_key=self.routing_key(m), properties=_properties(m),
            mandatory=False, wait=False)) for m in messages]
        try:
            await asyncio.wait_for(asyncio.gather(*confirms),
                                   self.timeout_seconds * (1 + len(confirms) / CONFIRMS_PER_SECOND_MIN))
        finally:
            for confirm in confirms:
                confirm.cancel()
            await asyncio.gather(*confirms, return_exceptions=True)  # nothing left running or unretrieved

    async def _connected(self) -> Any:
        if self._connection is not None and not self._connection.is_closed and not self._channel.is_closed:
            return self._channel
        await self._disconnect()
        import aio_pika  # deferred: only processes that relay load the client

        from aio_pika.connection import make_url

        # Not aio_pika.connect(): a connection that failed is closed here, on this loop, rather than
        # by its finalizer in whichever thread collects it.
        connection = aio_pika.Connection(make_url(self._url), client_properties={"connection_name": "invario-relay"})
        try:
            await asyncio.wait_for(connection.connect(self.timeout_seconds), 2 * self.timeout_seconds)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), self.timeout_seconds)
            raise SinkUnavailable(f"cannot connect: {safe_error(exc, self._url)}") from None
        self._connection = connection
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        self._channel = await channel.get_underlay_channel()  # aiormq's: see _publish
        log.info("relay connected to RabbitMQ at %s, exchange %s", self.where, self.exchange)
        return self._channel

    async def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), self.timeout_seconds)
            except Exception:  # noqa: BLE001 - a connection that is going anyway
                log.debug("closing the RabbitMQ connection failed", exc_info=True)


def _properties(message: OutboundMessage) -> Any:
    from aiormq import spec

    return spec.Basic.Properties(content_type=message.content_type, delivery_mode=PERSISTENT,
                                 message_id=message.id, app_id=APP_ID)
