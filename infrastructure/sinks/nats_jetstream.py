"""The relay's NATS JetStream sink (nats-py).

Messages go to ``<prefix>.<tenant>.<aggregate type>.<event>`` in one stream
(created, capturing ``<prefix>.>``, when missing). Each carries the header
``Nats-Msg-Id`` = its log position, so JetStream drops a re-sent one within the
stream's duplicate window. A batch's messages are sent without waiting for each
acknowledgement (one round trip per batch, not per message), and chained: each
carries ``Nats-Expected-Last-Msg-Id`` = the id of the message before it, so the
stream stores a message only right after its predecessor. A failure therefore
leaves a prefix of the batch in the stream and nothing after it, and a retry
never reorders: it starts after the stream's last message id, read back from
the stream whenever the sink is not sure of it (at start, after any failure).

nats-py is asyncio; the ledger's relay is not. The sink owns an event loop in a
daemon thread of its own and ``publish`` waits on it, boundedly. The connection
does not reconnect by itself: a lost one fails the batch, and the relay's own
back-off decides when to connect again.

Nothing of the URL but its host and port reaches a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from infrastructure.sinks.event_loop import AsyncioSink
from infrastructure.sinks.message import OutboundMessage, SinkUnavailable
from infrastructure.sinks.urls import safe_error

log = logging.getLogger(__name__)

SINK_NAME = "nats"
DEFAULT_PORT = 4222
ACKS_PER_SECOND_MIN = 1_000  # a batch's acknowledgements may take this long beyond the timeout


class NatsJetStreamSink(AsyncioSink):
    """Publishes batches to one JetStream stream, acks awaited in order."""

    name = SINK_NAME
    broker = "NATS"

    def __init__(self, url: str, stream: str, subject_prefix: str, timeout_seconds: float) -> None:
        super().__init__(url, DEFAULT_PORT, timeout_seconds)
        self.stream = stream
        self.subject_prefix = subject_prefix
        self._client: Any = None
        self._jetstream: Any = None
        self._last_id: str | None = None  # the stream's last message id, as this sink last knew it
        self._client_error: Exception | None = None  # the client's last one: why a connection failed

    def subject(self, message: OutboundMessage) -> str:
        return message.subject(self.subject_prefix)

    def _bound(self, count: int) -> float:
        return self.timeout_seconds * (3 + count)  # connecting, the stream, then each ack

    # --- on the sink's event loop -------------------------------------------------------

    async def _publish(self, messages: list[OutboundMessage]) -> None:
        jetstream = await self._connected()
        last = self._last_id if self._last_id is not None else await self._stream_last_id()
        acks = []
        for message in messages:
            if last is not None and int(message.id) <= int(last):
                continue  # stored by an earlier attempt whose acknowledgement never came back
            headers = {"Nats-Msg-Id": message.id, "Content-Type": message.content_type}
            if last is None:
                headers["Nats-Expected-Last-Sequence"] = "0"  # the first message of an empty stream
            else:
                headers["Nats-Expected-Last-Msg-Id"] = last
            # wait_stall=None: with a time limit nats-py wraps every publish in a task and so
            # yields to its flusher, one socket write per message (py-spy: the relay's largest
            # cost). Without it a batch is written at once; the batch's own wait stays bounded
            # (_bound), and a batch is far below nats-py's limit of pending acknowledgements.
            acks.append(await jetstream.publish_async(self.subject(message), message.body, stream=self.stream,
                                                      headers=headers, wait_stall=None))
            last = message.id
        # Bounded: nats-py leaves an acknowledgement that is an error (a broken chain)
        # unresolved instead of failing it, so only the time limit ends that wait.
        await asyncio.wait_for(asyncio.gather(*acks), self.timeout_seconds * (1 + len(acks) / ACKS_PER_SECOND_MIN))
        self._last_id = last

    async def _stream_last_id(self) -> str | None:
        """The id of the stream's last message (None: the stream is empty)."""
        info = await self._jetstream.stream_info(self.stream)
        if not info.state.last_seq:
            return None
        stored = await self._jetstream.get_msg(self.stream, info.state.last_seq)
        last = (stored.headers or {}).get("Nats-Msg-Id")
        if last is None or not last.isdigit():
            raise SinkUnavailable(f"stream {self.stream} ends with a message the relay did not publish")
        return str(last)

    async def _connected(self) -> Any:
        if self._client is not None and self._client.is_connected:
            return self._jetstream
        await self._disconnect()
        import nats  # deferred: only processes that relay load the client

        # max_reconnect_attempts=0 would make nats-py retry the first connection forever: one
        # retry, at once, then NoServersError; the relay's back-off paces the next attempts.
        connecting = nats.connect(
            servers=[self._url], connect_timeout=self.timeout_seconds, allow_reconnect=False,
            max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=self._on_error, name="invario-relay",
        )
        self._client_error = None
        try:
            self._client = await asyncio.wait_for(connecting, 2 * self.timeout_seconds)
        except Exception as exc:
            cause = self._client_error
            raise SinkUnavailable(f"cannot connect: {safe_error(cause or exc, self._url)}") from None
        self._jetstream = self._client.jetstream(timeout=self.timeout_seconds)
        await self._ensure_stream()
        log.info("relay connected to NATS at %s, stream %s", self.where, self.stream)
        return self._jetstream

    async def _ensure_stream(self) -> None:
        from nats.js.errors import NotFoundError

        try:
            await self._jetstream.stream_info(self.stream)
        except NotFoundError:
            await self._jetstream.add_stream(name=self.stream, subjects=[f"{self.subject_prefix}.>"])
            log.info("created JetStream stream %s for subjects %s.>", self.stream, self.subject_prefix)

    async def _disconnect(self) -> None:
        client, self._client, self._jetstream = self._client, None, None
        self._last_id = None  # read back from the stream on the next connection
        if client is not None and not client.is_closed:
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - a connection that is going anyway
                log.debug("closing the NATS connection failed", exc_info=True)

    async def _on_error(self, exc: Exception) -> None:
        # nats-py's default callback logs the error as it is; ours keeps the URL out.
        self._client_error = exc
        log.debug("NATS client error at %s: %s", self.where, safe_error(exc, self._url))
