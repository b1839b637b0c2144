"""The relay: follows the log from a durable position and hands each batch to a sink.

One batch: read the position row; read the log from that position on (the event
at the position itself, to check it is still the one relayed, as followers do);
build a CloudEvent per event; hand them to the sink, which returns once the
broker acknowledged every one, in order; only then advance the position. A crash
at any point re-sends at most the batch in flight, under the same message ids
(log positions), which the broker and consumers de-duplicate: delivery is at
least once, in log order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from application.ledger import Ledger
from infrastructure.sinks.message import OutboundMessage, Sink
from infrastructure.telemetry import instruments, relay_lag
from projections.following.follower import BATCH_SIZE_MAX, LogDiverged, event_identity, read_log_after
from projections.relay.messages import build_message
from projections.relay.origins import store_origins
from projections.relay.position import advance_position, read_position, record_error

log = logging.getLogger(__name__)


class Relay:
    """Moves one sink along the notification log; ``process_batch`` is one bounded step."""

    def __init__(  # noqa: PLR0913
        self, ledger: Ledger, engine: Engine, sink: Sink, batch_size: int, ledger_name: str,
        *, position_key: str | None = None,
    ) -> None:
        assert 0 < batch_size <= BATCH_SIZE_MAX
        self.ledger = ledger
        self.engine = engine
        self.sink = sink
        self.batch_size = batch_size
        self.ledger_name = ledger_name
        self.name = position_key or sink.name  # the position row's key
        self.origins = store_origins(ledger)

    def process_batch(self) -> int:
        """Publish the next batch; return how many log events it covered (0: caught up)."""
        state = read_position(self.engine, self.name)
        events = self._read_after(state.position, state.event_hash)
        if not events:
            self._report_lag(state.position)
            return 0
        messages = self._messages(events)
        if messages:
            self.sink.publish(messages)  # raises unless every message was acknowledged
            instruments().relay_published.add(len(messages), {"sink": self.sink.name})
        last_position, last_event = events[-1]
        if not advance_position(self.engine, self.name, state.position, last_position, event_identity(last_event)):
            log.info("relay %s: another relay moved the position first; its batch was the same", self.name)
        self._report_lag(last_position)
        return len(events)

    def record_error(self, message: str | None) -> None:
        record_error(self.engine, self.name, message)

    def lag(self) -> int:
        return max(self._head() - read_position(self.engine, self.name).position, 0)

    # --- internals --------------------------------------------------------------

    def _read_after(self, position: int, event_hash: str | None) -> list[tuple[int, Any]]:
        """The next batch after ``position``, once the event at ``position`` is checked to be the relayed one."""
        after = read_log_after(self.ledger, position, self.batch_size + (1 if position > 0 else 0))
        if position > 0:
            if after.identity is None:
                raise LogDiverged(f"the event log no longer holds the event relayed at position {position}: "
                                  "restored from an older backup or rewritten")
            if event_hash is not None and after.identity != event_hash:
                raise LogDiverged(f"the event at position {position} is not the one relayed: the log was "
                                  "restored from an older backup or rewritten")
        return [(n.id, self.ledger.mapper.to_domain_event(n)) for n in after.notifications]

    def _messages(self, events: Sequence[tuple[int, Any]]) -> list[OutboundMessage]:
        self.origins.learn(event for _, event in events)
        messages = []
        for position, event in events:
            origin = self.origins.origin(event)
            if origin is not None:
                messages.append(build_message(position, event, origin, self.ledger_name))
        return messages

    def _head(self) -> int:
        return int(self.ledger.recorder.max_notification_id() or 0)

    def _report_lag(self, position: int) -> None:
        relay_lag(self.sink.name, max(self._head() - position, 0))
