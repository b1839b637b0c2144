"""The ``invario`` operator command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from infrastructure.errors import ConfigError, DatabaseUnavailable

if TYPE_CHECKING:
    from infrastructure.bootstrap import Runtime

app = typer.Typer(
    name="invario",
    help="Invario: an event-sourced, tamper-evident double-entry ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_PROJECTION_FAILED = 1  # like a failing follower of 'worker --once' or an inconsistent restore


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn expected failures into one clear line and an exit code, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        typer.secho(f"invario: configuration error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_CONFIG) from None
    except DatabaseUnavailable as exc:
        typer.secho(f"invario: database unavailable: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_DATABASE) from None
    except Exception as exc:
        from infrastructure.db_errors import classify_database_error
        from projections.follower import ProjectionFailed

        if isinstance(exc, ProjectionFailed):  # a rebuild or restore met an event a read model cannot apply
            typer.secho(f"invario: {exc}; the events are untouched: see ops/RUNBOOK.md, INC-14 Failing projection",
                        err=True, fg=typer.colors.RED)
            raise typer.Exit(EXIT_PROJECTION_FAILED) from None
        failure = classify_database_error(exc)  # the database failed mid-command (docs/failure-modes.md)
        if failure is None:
            raise
        typer.secho(f"invario: {failure.code.replace('_', ' ')}: {failure.reason}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_DATABASE) from None


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"invario {version('invario')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Invario: an event-sourced, tamper-evident double-entry ledger.

    Settings come from INVARIO_* environment variables (INVARIO_DATABASE_URL selects
    the store: sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME).
    """


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: INVARIO_HOST or 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: INVARIO_PORT or 8000]")] = None,
    followers: Annotated[
        bool, typer.Option(help="Run the log followers (global chain) in this process")
    ] = True,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (uvicorn workers; PostgreSQL only). Each opens its own "
                          "store; the followers, if run, stay in this parent process")
    ] = 1,
) -> None:
    """Serve the HTTP API on the configured store (SQLite under ./var/ by default).

    Refuses to start on unsafe settings (see 'invario check-config'; exit 2). On
    SIGTERM or SIGINT it stops accepting connections, lets the requests in flight
    finish (at most SHUTDOWN_GRACE_SECONDS), stops the followers after their
    current batch, closes the store (which commits what it holds) and exits 0.
    """
    from infrastructure.bootstrap import open_runtime
    from infrastructure.config_check import unsafe_to_serve
    from infrastructure.logging_setup import configure_logging
    from infrastructure.settings import get_settings
    from interfaces.http.app import create_app
    from projections.runner import FollowerThread
    from projections.wiring import build_followers

    with operator_errors():
        settings = get_settings()
        unsafe_to_serve()
        runtime = open_runtime(settings, serving=True)
        _prepare_schema(runtime)
        try:
            api = create_app(runtime)  # refuses to start without an auth pepper (one line, exit 2)
        except ConfigError:
            runtime.close()
            raise
    # Only once the API can start: a refused start leaves the process's logging as it was.
    configure_logging(settings.log_level, settings.log_format)  # JSON lines on stdout, uvicorn's too
    thread = FollowerThread(build_followers(runtime), settings.follower_poll_seconds) if followers else None
    if thread:
        thread.start()
        _resume_followers_when_the_database_returns(runtime, thread)
    if workers > 1 and not runtime.database.is_postgres:
        runtime.close()
        raise typer.BadParameter("several workers need PostgreSQL (the embedded SQLite store serves one process)",
                                 param_hint="--workers")
    typer.echo(f"invario: serving {runtime.database.describe()} on http://{host or settings.host}:{port or settings.port}"
               + (f" with {workers} worker processes" if workers > 1 else ""), err=True)
    try:
        if workers > 1:
            _serve_workers(workers, host or settings.host, port or settings.port, settings.log_level.lower())
        else:
            _serve_until_signalled(api, host or settings.host, port or settings.port, settings.log_level.lower())
    finally:
        if thread:
            thread.stop()
        runtime.close()
    typer.echo("invario: stopped", err=True)


def _resume_followers_when_the_database_returns(runtime: Runtime, thread: Any) -> None:
    """At the liveness probe's first answer after an outage, the followers retry at once."""
    if runtime.watch is None:
        return
    was_down = False

    def follow(failure: Any) -> None:
        nonlocal was_down
        if failure is not None:
            was_down = True
        elif was_down:
            was_down = False
            thread.loop.retry_now()

    runtime.watch.subscribe(follow)


SHUTDOWN_GRACE_SECONDS = 15  # in-flight requests; then <= 10 s for the followers' batch, and closing the store: < 30 s


def _serve_until_signalled(api: object, host: str, port: int, log_level: str) -> None:
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
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)
    Server(config).run()


def _serve_workers(workers: int, host: str, port: int, log_level: str) -> None:
    """uvicorn's process supervisor: each worker builds its own app (and store) with the factory."""
    import uvicorn

    uvicorn.run("interfaces.http.app:create_app_in_worker", factory=True, workers=workers, host=host, port=port,
                log_level=log_level, log_config=None, access_log=False,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)


def _prepare_schema(runtime: Runtime) -> None:
    """The embedded store migrates itself; on PostgreSQL that is an explicit operator step."""
    from infrastructure.migrate import current_revision, head_revision, is_current, upgrade_to_head

    if not runtime.database.is_postgres:
        upgrade_to_head(runtime.engine)
    elif not is_current(runtime.engine):
        runtime.close()
        raise ConfigError(
            f"the schema is at revision {current_revision(runtime.engine)}, not {head_revision()}: "
            "run 'invario migrate' first"
        )


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (alembic upgrade head) to INVARIO_DATABASE_URL."""
    from infrastructure.bootstrap import open_runtime
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


from interfaces.cli import tenant_cmds  # noqa: E402 - registers its commands on ``app``

tenant_cmds.register(app)

from interfaces.cli import projections_cmds  # noqa: E402 - the read side's operator commands

app.add_typer(projections_cmds.projections_app)
app.command()(projections_cmds.worker)
app.command()(projections_cmds.reconcile)

from interfaces.cli import integrity_cmds  # noqa: E402 - verify, digest, generate-signing-key

integrity_cmds.register(app)

from interfaces.cli import backup_cmds  # noqa: E402 - backup, restore

backup_cmds.register(app)

from interfaces.cli import evidence_cmds  # noqa: E402 - evidence

evidence_cmds.register(app)

from interfaces.cli import demo_cmds  # noqa: E402 - invario demo

app.command()(demo_cmds.demo)

from interfaces.cli import import_cmds  # noqa: E402 - import FILE (batch files, docs/batches.md)

import_cmds.register(app)

from interfaces.cli import config_cmds  # noqa: E402 - check-config

app.command("check-config")(config_cmds.check_config)

from interfaces.cli import jobs_cmds  # noqa: E402 - jobs status|run (docs/jobs.md)

jobs_cmds.register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
