"""``invario relay``: publish committed events to the configured broker (docs/events-out.md).

The same relay runs inside ``invario worker`` (unless ``--no-relay``); this
command runs it alone, e.g. as a process of its own, with the webhook
dispatcher (unless ``INVARIO_WEBHOOKS_ENABLED=false``). Exit codes: 0 stopped (or
caught up, with ``--once``); 1 ``--once`` gave up on an unreachable broker;
2 no sink configured (and webhooks off) or a bad setting; 3 database unavailable.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated, Any

import typer

from interfaces.cli.common import EXIT_USAGE, fail, read_models_runtime, stop_on_signals, worker_logging

# Deferred imports below: the composition root loads the relay, SQLAlchemy and the
# projections, which `invario --help` would otherwise pay for.

EXIT_GAVE_UP = 1
ONCE_ATTEMPTS_MAX = 8  # with the back-off from 0.1 s: about 13 s of a broker's absence


def register(app: typer.Typer) -> None:
    app.command()(relay)


def relay(
    once: Annotated[bool, typer.Option("--once", help="Publish everything committed so far, then exit")] = False,
) -> None:
    """Publish every committed event, in log order, to NATS JetStream (INVARIO_RELAY_NATS_URL), and deliver
    the tenants' webhooks (unless INVARIO_WEBHOOKS_ENABLED=false).

    Follows the log from the sink's durable position; the position moves only
    once the broker acknowledged a batch, so a crash re-sends at most a batch,
    under the same message ids. Webhook endpoints each follow from their own
    position. Stops on SIGINT/SIGTERM after the current batch.
    """
    from interfaces.bootstrap import relay_configured, webhooks_off

    worker_logging()
    stop = threading.Event()
    with read_models_runtime() as runtime:
        webhooks_reason = webhooks_off(runtime)
        webhooks = webhooks_reason is None
        if not relay_configured(runtime) and not webhooks:
            raise fail(f"no sink configured: set INVARIO_RELAY_NATS_URL (e.g. nats://127.0.0.1:4222); webhooks "
                       f"are not delivered either: {webhooks_reason}", EXIT_USAGE)
        if not webhooks and runtime.settings.webhooks_enabled:
            typer.echo(f"invario relay: not delivering webhooks: {webhooks_reason}", err=True)
        previous = stop_on_signals(stop)
        try:
            caught_up = _run(runtime, stop, once, webhooks=webhooks)
        finally:
            _restore(previous)
    if not caught_up:
        raise fail("gave up after repeated failed attempts (see the log)", EXIT_GAVE_UP)
    logging.getLogger("invario.relay").info("relay stopped")
    typer.echo("invario relay: stopped", err=True)


def _run(runtime: Any, stop: threading.Event, once: bool, *, webhooks: bool) -> bool:
    """The broker relay in the foreground and the webhooks in a thread, or the webhooks alone."""
    from interfaces.bootstrap import build_relay_loop, build_webhook_loop, relay_configured
    from projections.relay.webhook_runner import WebhookThread

    webhook_loop = build_webhook_loop(runtime, stop) if webhooks else None
    if not relay_configured(runtime):
        assert webhook_loop is not None
        typer.echo(f"invario relay: {runtime.database.describe()}, webhooks only", err=True)
        try:
            webhook_loop.run(until_idle=once)
        finally:
            webhook_loop.dispatcher.close()
        return True
    loop = build_relay_loop(runtime, stop)
    typer.echo(f"invario relay: {runtime.database.describe()} to NATS at {loop.relay.sink.where}, "
               f"stream {runtime.settings.relay_nats_stream}" + (", and webhooks" if webhooks else ""), err=True)
    webhook_thread = None
    if webhook_loop is not None and not once:
        webhook_thread = WebhookThread(webhook_loop)
        webhook_thread.start()
    try:
        caught_up = loop.run(until_idle=once, attempts_max=ONCE_ATTEMPTS_MAX if once else None)
        if webhook_loop is not None and once:
            try:
                webhook_loop.run(until_idle=True)
            finally:
                webhook_loop.dispatcher.close()
    finally:
        loop.waiter.close()
        loop.relay.sink.close()
        if webhook_thread is not None:
            webhook_thread.stop()
    return caught_up


def _restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
