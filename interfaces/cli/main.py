"""The ``invario`` operator command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Annotated, Any

import typer

from infrastructure.errors import ConfigError
from interfaces.cli import (
    backup_cmds,
    config_cmds,
    demo_cmds,
    evidence_cmds,
    import_cmds,
    integrity_cmds,
    jobs_cmds,
    projections_cmds,
    proof_cmds,
    relay_cmds,
    tenant_cmds,
    webhook_cmds,
)
from interfaces.cli.common import EXIT_CONFIG, EXIT_PORT_BUSY, fail, operator_errors
from interfaces.cli.common import prepare_schema as _prepare_schema  # a module name: tests replace it

if TYPE_CHECKING:
    from infrastructure.runtime import Runtime

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

app = typer.Typer(
    name="invario",
    help="Invario: an event-sourced, tamper-evident double-entry ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"invario {metadata.version('invario')}")
        raise typer.Exit()


@app.callback()
def root(
    context: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Invario: an event-sourced, tamper-evident double-entry ledger.

    Settings come from INVARIO_* environment variables (INVARIO_DATABASE_URL selects
    the store: sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME).
    """
    from infrastructure.pg_connections import name_this_process

    if context.invoked_subcommand:  # pg_stat_activity says which command is connected
        name_this_process(f"invario-{context.invoked_subcommand}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: INVARIO_HOST or 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: INVARIO_PORT or 8000]")] = None,
    followers: Annotated[
        bool, typer.Option(help="Run the log followers (read models, global chain, hold expiry, Merkle tree), "
                                "the queued batch files, the relay and the webhooks in this process; "
                                "production: --no-followers beside 'invario worker'")
    ] = True,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (uvicorn workers; PostgreSQL only). Each opens its own "
                          "store; the followers and the batch runner, if run, stay in this parent process")
    ] = 1,
) -> None:
    """Serve the HTTP API on the configured store (SQLite under ./var/ by default).

    Refuses to start on unsafe settings (see 'invario check-config'; exit 2). On
    SIGTERM or SIGINT it stops accepting connections, lets the requests in flight
    finish (at most SHUTDOWN_GRACE_SECONDS), stops the batch runner after its
    current chunk and the followers after their current batch, closes the store
    (which commits what it holds) and exits 0.
    """
    from infrastructure.runtime import open_runtime
    from infrastructure.config_check import unsafe_to_serve
    from infrastructure.logging_setup import configure_logging
    from infrastructure.settings import get_settings
    from interfaces.http.app import create_app
    from projections.following.runner import FollowerThread
    from interfaces.bootstrap import build_api_services, build_followers, resume_followers_when_the_database_returns
    from interfaces.cli.publishing import start_publishing
    import threading

    with operator_errors():
        settings = get_settings()
        unsafe_to_serve()
        _refuse_a_busy_address(host or settings.host, port or settings.port)
        runtime = open_runtime(settings, serving=True)
        _prepare_schema(runtime)
        try:
            # Refuses to start without an auth pepper (one line, exit 2). With its followers, serve alone
            # is a whole ledger: it runs queued batch files too (on SQLite it always does).
            services = build_api_services(runtime, run_batches=followers)
            api = create_app(runtime, services)
        except ConfigError:
            runtime.close()
            raise
    # Only once the API can start: a refused start leaves the process's logging as it was.
    configure_logging(settings.log_level, settings.log_format)  # JSON lines on stdout, uvicorn's too
    if workers > 1 and not runtime.database.is_postgres:
        runtime.close()
        raise typer.BadParameter("several workers need PostgreSQL (the embedded SQLite store serves one process)",
                                 param_hint="--workers")
    thread = FollowerThread(build_followers(runtime), settings.follower_poll_seconds) if followers else None
    if thread:
        thread.start()
        resume_followers_when_the_database_returns(runtime, thread.loop)
    batches = services.batch_runner
    if batches is not None:
        batches.start()  # here, not in the app's lifespan: with --workers the app is not served in this process
    publishing_stop = threading.Event()  # set by publishing.stop()
    # With its followers serve is the whole ledger: it also publishes to the configured brokers and webhooks.
    publishing = start_publishing(runtime, publishing_stop, "invario", relay=followers, webhooks=followers)
    typer.echo(f"invario: serving {runtime.database.describe()} on http://{host or settings.host}:{port or settings.port}"
               + (f" with {workers} worker processes" if workers > 1 else ""), err=True)
    try:
        if workers > 1:
            _serve_workers(workers, host or settings.host, port or settings.port, settings.log_level.lower(),
                           settings.trusted_proxies)
        else:
            _serve_until_signalled(api, host or settings.host, port or settings.port, settings.log_level.lower(),
                                   settings.trusted_proxies)
    finally:
        publishing.stop()  # after the batch in flight: the relay and the webhooks resume from their positions
        if batches is not None:
            batches.stop()  # after the current chunk: the batch resumes from there
        if thread:
            thread.stop()
        runtime.close()
    typer.echo("invario: stopped", err=True)


def _refuse_a_busy_address(host: str, port: int) -> None:
    """Exit 5 with one line when another process listens on the address, before opening anything:
    uvicorn would only find out after the store was opened, and say so in a traceback-like log."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}", EXIT_CONFIG) from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror} (another process listens there? "
                       "stop it, or choose --port / INVARIO_PORT)", EXIT_PORT_BUSY) from None


SHUTDOWN_GRACE_SECONDS = 15  # in-flight requests; then <= 10 s for the followers' batch, and closing the store: < 30 s


def _proxy_options(trusted_proxies: str) -> dict[str, Any]:
    """uvicorn believes X-Forwarded-For from these peers only (INVARIO_TRUSTED_PROXIES, never its own
    FORWARDED_ALLOW_IPS): the client address of the logs and of the failed-authentication throttle."""
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted_proxies}


def _serve_until_signalled(api: object, host: str, port: int, log_level: str, trusted_proxies: str) -> None:
    """Run uvicorn until SIGTERM/SIGINT, then return (instead of dying by the signal) so the caller can close."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal once it has shut down, which would kill the process
            # before the follower thread and the store are closed; the caller exits 0 instead.
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    # log_config=None: uvicorn's error logger reaches the JSON handler set up by the caller. Its access
    # log is off: the middleware's http_request line says the same and more, once per request.
    config = uvicorn.Config(api, host=host, port=port, log_level=log_level, log_config=None, access_log=False,
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS, **_proxy_options(trusted_proxies))
    Server(config).run()


def _serve_workers(workers: int, host: str, port: int, log_level: str, trusted_proxies: str) -> None:
    """uvicorn's process supervisor: each worker builds its own app (and store) with the factory."""
    import uvicorn

    uvicorn.run("interfaces.http.app:create_app_in_worker", factory=True, workers=workers, host=host, port=port,
                log_level=log_level, log_config=None, access_log=False,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS, **_proxy_options(trusted_proxies))


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (alembic upgrade head) to INVARIO_DATABASE_URL."""
    from infrastructure.runtime import open_runtime
    from infrastructure.migrate import upgrade_to_head

    with operator_errors():
        runtime = open_runtime()
        try:
            before, after = upgrade_to_head(runtime.engine)
        finally:
            runtime.close()
    if before == after:
        typer.echo(f"schema already at revision {after}")
    else:
        typer.echo(f"schema migrated from revision {before or 'empty'} to {after}")


# --- the other commands, each module's own -------------------------------------------------

tenant_cmds.register(app)
app.add_typer(projections_cmds.projections_app)  # the read side's operator commands
app.command()(projections_cmds.worker)
app.command()(projections_cmds.reconcile)
integrity_cmds.register(app)  # verify, digest, generate-signing-key
backup_cmds.register(app)  # backup, restore
relay_cmds.register(app)  # relay (docs/events-out.md)
webhook_cmds.register(app)  # webhooks list|replay (docs/events-out.md)
evidence_cmds.register(app)  # evidence
app.command()(demo_cmds.demo)  # invario demo
import_cmds.register(app)  # import FILE (batch files, docs/batches.md)
app.command("check-config")(config_cmds.check_config)
jobs_cmds.register(app)  # jobs status|run (docs/jobs.md)
proof_cmds.register(app)  # proof verify|consistency|public-key (docs/proofs.md)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
