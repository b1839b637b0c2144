"""``invario relay``: publish committed events to the configured broker (docs/events-out.md).

The same relay runs inside ``invario worker`` (unless ``--no-relay``); this
command runs it alone, e.g. as a process of its own, with the webhook
dispatcher (unless ``INVARIO_WEBHOOKS_ENABLED=false``). Exit codes: 0 stopped (or
caught up, with ``--once``); 1 ``--once`` gave up on an unreachable broker;
2 no sink configured (and no webhooks) or a bad setting; 3 database unavailable.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from interfaces.cli.common import (
    EXIT_USAGE, cut_database_waits_on_stop, fail, read_models_runtime, stop_on_signals, worker_logging,
)

if TYPE_CHECKING:
    from projections.relay.runner import RelayLoop
    from projections.relay.webhook_runner import WebhookLoop

# Deferred imports below: the composition root loads the relay, SQLAlchemy and the
# projections, which `invario --help` would otherwise pay for.

EXIT_GAVE_UP = 1
ONCE_ATTEMPTS_MAX = 8  # with the back-off from 0.1 s: about 13 s of a broker's absence
STOP_SECONDS_MAX = 30.0  # a sink's current batch: bounded by its publish timeout


def register(app: typer.Typer) -> None:
    app.command()(relay)


def relay(
    once: Annotated[bool, typer.Option("--once", help="Publish everything committed so far, then exit")] = False,
) -> None:
    """Publish every committed event, in log order, to NATS JetStream (INVARIO_RELAY_NATS_URL) and/or
    RabbitMQ (INVARIO_RELAY_AMQP_URL), and deliver the tenants' webhooks (unless INVARIO_WEBHOOKS_ENABLED=false).

    Follows the log from each sink's durable position; a position moves only
    once its broker acknowledged a batch, so a crash re-sends at most a batch,
    under the same message ids. Webhook endpoints each follow from their own
    position. Stops on SIGINT/SIGTERM after the current batch.
    """
    from interfaces.bootstrap import build_relay_loops, build_webhook_loop, relay_configured, webhooks_off

    worker_logging()
    stop = threading.Event()
    with read_models_runtime(following=not once) as runtime:
        webhooks_reason = webhooks_off(runtime)
        if not relay_configured(runtime) and webhooks_reason is not None:
            raise fail("no sink configured: set INVARIO_RELAY_NATS_URL (e.g. nats://127.0.0.1:4222) and/or "
                       "INVARIO_RELAY_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/); webhooks are not "
                       f"delivered either: {webhooks_reason}", EXIT_USAGE)
        if webhooks_reason is not None and runtime.settings.webhooks_enabled:
            typer.echo(f"invario relay: not delivering webhooks: {webhooks_reason}", err=True)
        loops = build_relay_loops(runtime, stop)
        for loop in loops:
            sink = loop.relay.sink
            typer.echo(f"invario relay: {runtime.database.describe()} to {sink.broker} at {sink.where} "
                       f"(position {loop.relay.name})", err=True)
        webhook_loop = build_webhook_loop(runtime, stop) if webhooks_reason is None else None
        if webhook_loop is not None:
            typer.echo(f"invario relay: {runtime.database.describe()}: delivering webhooks", err=True)
        previous = stop_on_signals(stop)
        cut_database_waits_on_stop(runtime, stop)
        try:
            gave_up = _run_with_webhooks(loops, webhook_loop, once)
        finally:
            for loop in loops:
                loop.waiter.close()
                loop.relay.sink.close()
            _restore(previous)
    if gave_up:
        raise fail(f"gave up on {', '.join(gave_up)} after {ONCE_ATTEMPTS_MAX} failed attempts (see the log)",
                   EXIT_GAVE_UP)
    logging.getLogger("invario.relay").info("relay stopped")
    typer.echo("invario relay: stopped", err=True)


def _run_with_webhooks(loops: list[RelayLoop], webhook_loop: WebhookLoop | None, once: bool) -> list[str]:
    """The sinks' loops (``_run``) with the webhook dispatcher beside them: in a thread of its own until
    stopped, or with ``--once`` after them until nothing is due."""
    from projections.relay.webhook_runner import WebhookThread

    if webhook_loop is None:
        return _run(loops, once)
    if once or not loops:
        gave_up = _run(loops, once) if loops else []
        try:
            webhook_loop.run(until_idle=once)
        finally:
            webhook_loop.dispatcher.close()
        return gave_up
    thread = WebhookThread(webhook_loop)
    thread.start()
    try:
        return _run(loops, once)
    finally:
        thread.stop()


def _run(loops: list[RelayLoop], once: bool) -> list[str]:
    """Run every sink's loop (one per thread, the first in this one); the names of those that gave up."""
    if once:
        return [loop.relay.name for loop in loops if not loop.run(until_idle=True, attempts_max=ONCE_ATTEMPTS_MAX)]
    others = [threading.Thread(target=loop.run, name=f"invario-relay-{loop.relay.sink.name}", daemon=True)
              for loop in loops[1:]]
    for thread in others:
        thread.start()
    loops[0].run()  # until stopped; so are the others
    for thread in others:
        thread.join(STOP_SECONDS_MAX)
    return []


def _restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
