"""What the relay hands a sink: one committed event, already encoded.

Declared here, below the relay, so a sink knows nothing of the log or of the
domain: it sends bytes under a subject and an id, in the order given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    """One event: ``id`` is its log position (the brokers' de-duplication key)."""

    id: str
    tenant: str
    aggregate_type: str  # snake_case, e.g. "transaction"
    event: str  # snake_case, e.g. "posted"
    body: bytes  # a CloudEvent in JSON structured mode
    content_type: str = "application/cloudevents+json"

    def subject(self, prefix: str) -> str:
        """``<prefix>.<tenant>.<aggregate type>.<event>``: the NATS subject and the AMQP routing key alike."""
        return f"{prefix}.{self.tenant}.{self.aggregate_type}.{self.event}"


class SinkUnavailable(Exception):
    """The broker did not acknowledge a batch (unreachable, refused, too slow)."""


class Sink(Protocol):
    """A broker the relay publishes to."""

    name: str  # the metrics label and the position row's first part: "nats", "amqp"
    broker: str  # for people: "NATS", "RabbitMQ"
    where: str  # the broker's host and port, never its credentials

    def publish(self, messages: list[OutboundMessage]) -> None:
        """Send every message, in order, and return once the broker acknowledged them all; raise otherwise."""

    def close(self) -> None:
        """Let go of the connection."""
