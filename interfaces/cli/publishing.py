"""The threads that publish committed events: the relay to each configured broker, and the
webhook dispatcher (docs/events-out.md).

Run by 'invario worker', and by 'invario serve' with its followers: serve alone is the
single-process ledger ('make run'), so a transfer posted to it reaches NATS, RabbitMQ and
the tenants' webhooks without a second process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from infrastructure.runtime import Runtime


class Publishing:
    """The relay threads and the webhook thread of one process, stopped together."""

    def __init__(self, relays: list[Any], webhooks: Any | None) -> None:
        self.relays = relays
        self.webhooks = webhooks

    def stop(self) -> None:
        for relay in self.relays:
            relay.stop()
        if self.webhooks is not None:
            self.webhooks.stop()


def start_publishing(runtime: Runtime, stop: threading.Event, who: str, *, relay: bool = True,
                     webhooks: bool = True) -> Publishing:
    """Start what is configured and asked for; ``who`` names the process in the lines it prints."""
    return Publishing(_start_relays(runtime, stop, who) if relay else [],
                      _start_webhooks(runtime, stop, who) if webhooks else None)


def _start_relays(runtime: Runtime, stop: threading.Event, who: str) -> list[Any]:
    """The relay to each configured sink in a thread of its own: the followers never wait on a broker,
    nor one sink on another."""
    from interfaces.bootstrap import build_relay_loops
    from projections.relay.runner import RelayThread

    threads = [RelayThread(loop) for loop in build_relay_loops(runtime, stop)]
    for thread in threads:
        thread.start()
        sink = thread.loop.relay.sink
        typer.echo(f"{who}: relaying to {sink.broker} at {sink.where}", err=True)
    return threads


def _start_webhooks(runtime: Runtime, stop: threading.Event, who: str) -> Any:
    """The webhook dispatcher in a thread of its own, unless switched off."""
    from interfaces.bootstrap import build_webhook_loop, webhooks_off
    from projections.relay.webhook_runner import WebhookThread

    reason = webhooks_off(runtime)
    if reason is not None:
        if runtime.settings.webhooks_enabled:
            typer.echo(f"{who}: not delivering webhooks: {reason}", err=True)
        return None
    thread = WebhookThread(build_webhook_loop(runtime, stop))
    thread.start()
    return thread
