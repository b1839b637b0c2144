"""The ``invario`` operator command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

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
) -> None:
    """Serve the HTTP API on the configured store (SQLite under ./var/ by default)."""
    import uvicorn

    from infrastructure.bootstrap import open_runtime
    from infrastructure.logging_setup import configure_logging
    from infrastructure.settings import get_settings
    from interfaces.http.app import create_app
    from projections.runner import FollowerThread
    from projections.wiring import build_followers

    with operator_errors():
        settings = get_settings()
        runtime = open_runtime(settings)
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
    typer.echo(f"invario: serving {runtime.database.describe()} on http://{host or settings.host}:{port or settings.port}",
               err=True)
    try:
        # log_config=None: uvicorn's access and error loggers reach the JSON handler set up above.
        uvicorn.run(api, host=host or settings.host, port=port or settings.port,
                    log_level=settings.log_level.lower(), log_config=None, access_log=True)
    finally:
        if thread:
            thread.stop()
        runtime.close()


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


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
