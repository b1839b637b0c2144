"""``invario import FILE --tenant NAME [--mode partial]``: a batch file, processed here and now.

The same code path as ``POST /v1/batches`` and the worker: the file is stored
as a batch in chunks, then processed in this process with a progress bar.
Interrupted (Ctrl-C), it stops after the current chunk; running the same
command again resumes that batch where it stopped (found by the file's SHA-256).

Exit codes: 0 every line posted (or already recorded); 1 the batch was rejected
or has rejected lines; 2 bad usage or a file that cannot be read as a batch;
3 database unavailable; 4 the batch is being processed by a worker right now;
130 interrupted.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from interfaces.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, fail, read_models_runtime, tenant_option

if TYPE_CHECKING:
    from application.batches import BatchInfo
    from infrastructure.batch_runner import BatchRunner
    from infrastructure.batch_store import BatchStore
    from infrastructure.runtime import Runtime

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

EXIT_REJECTED = 1
EXIT_BUSY = 4
READ_BYTES = 1 << 20
ERRORS_SHOWN = 20
_FORMAT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="A CSV or JSONL batch file (see docs/batches.md)")],
    tenant: Annotated[str, typer.Option(help="The tenant (name or id) the transactions belong to")],
    mode: Annotated[str, typer.Option(help="atomic: any invalid line rejects the whole file; "
                                           "partial: post the valid lines, report the rest")] = "atomic",
    file_format: Annotated[str | None, typer.Option("--format", help="csv or jsonl [default: from the file "
                                                                     "name: .csv, .jsonl, .ndjson]")] = None,
) -> None:
    """Post a file of transactions (CSV or JSONL), with a progress bar and a summary."""
    from interfaces.bootstrap import build_batch_runner, build_batch_store

    if mode not in ("atomic", "partial"):
        raise fail(f"--mode must be atomic or partial, not {mode!r}", EXIT_USAGE)
    format_ = _format_of(file, file_format)
    with read_models_runtime() as runtime:
        tenant_id = tenant_option(runtime, tenant)
        assert tenant_id is not None
        store = build_batch_store(runtime)
        runner = build_batch_runner(runtime, role="cli", store=store)
        batch = _resume_or_store(store, runner, file, tenant_id, mode, format_)
        try:
            _process_with_progress(runner, batch)
        except KeyboardInterrupt:
            store.release(batch.id, runner.owner)
            raise fail(f"import interrupted; run the same command again to resume batch {batch.id}",
                       EXIT_INTERRUPTED) from None
        done = store.get(tenant_id, batch.id)
    assert done is not None
    _print_summary(done, store)
    if done.status == "rejected" or done.rejected_count > 0:
        raise typer.Exit(EXIT_REJECTED)


def _format_of(file: Path, given: str | None) -> str:
    if given is not None:
        if given not in ("csv", "jsonl"):
            raise fail(f"--format must be csv or jsonl, not {given!r}", EXIT_USAGE)
        return given
    format_ = _FORMAT_BY_SUFFIX.get(file.suffix.lower())
    if format_ is None:
        raise fail(f"cannot tell the format of {file.name}: name it .csv or .jsonl, or pass --format", EXIT_USAGE)
    return format_


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while piece := handle.read(READ_BYTES):
            digest.update(piece)
    return digest.hexdigest()


def _resume_or_store(store: BatchStore, runner: BatchRunner, file: Path, tenant_id: UUID, mode: str,
                     format_: str) -> BatchInfo:
    """The unfinished batch of this very file, taken over; else the file stored as a new batch."""
    from infrastructure.batch_files import InvalidBatch
    from infrastructure.batch_runner import Upload

    earlier = store.find_unfinished(tenant_id, _sha256(file), mode)
    if earlier is not None:
        claimed = store.claim(earlier.id, runner.owner)
        if claimed is None:
            raise fail(f"batch {earlier.id} of this file is being processed by a worker right now; "
                       f"follow it with GET /v1/batches/{earlier.id}", EXIT_BUSY)
        typer.echo(f"resuming batch {claimed.id} ({claimed.phase}, chunk {claimed.next_chunk + 1} of "
                   f"{claimed.chunk_count})", err=True)
        return claimed
    upload = Upload(store, tenant_id, mode, format_)
    try:
        with file.open("rb") as handle:
            while piece := handle.read(READ_BYTES):
                upload.feed(piece)
                upload.check_header_early()
        batch = upload.finish(owner=runner.owner)
    except InvalidBatch as exc:
        upload.abort()
        raise fail(f"{file.name} cannot be imported: {exc.message}", EXIT_USAGE) from None
    except BaseException:
        upload.abort()
        raise
    typer.echo(f"stored {file.name} as batch {batch.id}: {batch.line_count:,} lines in {batch.chunk_count} "
               f"chunk(s), {mode}", err=True)
    return batch


def _process_with_progress(runner: BatchRunner, batch: BatchInfo) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
               TimeRemainingColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        tasks: dict[str, Any] = {}
        began = time.monotonic()

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        runner.process(batch, on_progress)
    typer.echo(f"processed in {time.monotonic() - began:.1f} s", err=True)


def _print_summary(batch: BatchInfo, store: BatchStore) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    summary = Table(title=f"batch {batch.id}")
    for column in ("status", "mode", "lines", "accepted", "replayed", "rejected"):
        summary.add_column(column, justify="left" if column in ("status", "mode") else "right")
    summary.add_row(batch.status, batch.mode, f"{batch.line_count:,}", f"{batch.accepted_count:,}",
                    f"{batch.replayed_count:,}", f"{batch.rejected_count:,}")
    console.print(summary)
    if batch.reason:
        console.print(f"rejected: {batch.reason}")
    errors = store.errors_page(batch.id, 0, ERRORS_SHOWN)
    if not errors:
        return
    table = Table(title=f"rejected lines (first {len(errors)} of {batch.rejected_count:,})")
    for column in ("line", "code", "message"):
        table.add_column(column, justify="right" if column == "line" else "left")
    for error in errors:
        table.add_row(str(error.line_no), error.code, error.message)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("import")(import_file)
