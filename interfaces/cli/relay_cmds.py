"""``invario relay``: publish committed events to the configured broker (docs/events-out.md).

The same relay runs inside ``invario worker`` (unless ``--no-relay``); this
command runs it alone, e.g. as a process of its own. Exit codes: 0 stopped (or
caught up, with ``--once``); 1 ``--once`` gave up on an unreachable broker;
2 no sink configured or a bad setting; 3 database unavailable.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

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
    """Publish every committed event, in log order, to NATS JetStream (INVARIO_RELAY_NATS_URL).

    Follows the log from the sink's durable position; the position moves only
    once the broker acknowledged a batch, so a crash re-sends at most a batch,
    under the same message ids. Stops on SIGINT/SIGTERM after the current batch.
    """
    from interfaces.bootstrap import build_relay_loop, relay_configured

    worker_logging()
    stop = threading.Event()
    with read_models_runtime() as runtime:
        if not relay_configured(runtime):
            raise fail("no sink configured: set INVARIO_RELAY_NATS_URL (e.g. nats://127.0.0.1:4222)", EXIT_USAGE)
        loop = build_relay_loop(runtime, stop)
        typer.echo(f"invario relay: {runtime.database.describe()} to NATS at {loop.relay.sink.where}, "
                   f"stream {runtime.settings.relay_nats_stream}", err=True)
        previous = stop_on_signals(stop)
        try:
            caught_up = loop.run(until_idle=once, attempts_max=ONCE_ATTEMPTS_MAX if once else None)
        finally:
            loop.waiter.close()
            loop.relay.sink.close()
            _restore(previous)
    if not caught_up:
        raise fail(f"gave up after {loop.failures} failed attempts (see the log)", EXIT_GAVE_UP)
    logging.getLogger("invario.relay").info("relay stopped")
    typer.echo("invario relay: stopped", err=True)


def _restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
