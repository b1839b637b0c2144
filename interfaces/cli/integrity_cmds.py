"""Operator commands of the integrity checks: ``invario verify``, ``invario digest`` and
``invario generate-signing-key``. Registered on the main app by ``interfaces/cli/main.py``.

Exit codes: 0 every chain verifies; 1 a chain is broken (or ``digest`` refused
to sign a broken ledger); 2 bad input or configuration (an unreadable, malformed,
forged or untrusted digest file; an unknown tenant; no signing key); 3 database
unavailable; 130 interrupted. Expected failures are one line on stderr.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from domain.digest import LedgerDigest
from domain.integrity import Damage
from infrastructure.logging_setup import CurrentStream
from interfaces.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    fail,
    operator_errors,
    prepared_runtime,
    read_bounded,
    tenant_option,
)

if TYPE_CHECKING:
    from projections.jobs.verification import LedgerVerification, VerificationReport

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

EXIT_BROKEN = 1
DIGEST_FILE_MAX_BYTES = 64 * 1024


def register(app: typer.Typer) -> None:
    app.command()(verify)
    app.command()(digest)
    app.command("generate-signing-key")(generate_signing_key)


# --- plumbing ----------------------------------------------------------------------------------


def _log_integrity_events() -> None:
    """Show the monitor's events (CRITICAL integrity_check_failed, integrity_restored) on stderr, as in a log."""
    logger = logging.getLogger("invario.integrity")
    if not logger.handlers:
        handler = CurrentStream("stderr")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def _settings() -> Any:
    from infrastructure.settings import get_settings

    with operator_errors():
        return get_settings()


def _configured_key() -> Any:
    from infrastructure.signing import load_signing_key

    secret = _settings().signing_key
    with operator_errors():
        return load_signing_key(secret.get_secret_value() if secret else None)


# --- invario verify -------------------------------------------------------------------------------


def verify(
    tenant: Annotated[str | None, typer.Option(help="Report only the damage of this tenant (name or id)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    digest_file: Annotated[
        Path | None,
        typer.Option("--digest", help="Also prove the ledger unchanged up to this signed digest (a file "
                     "written by 'invario digest')", dir_okay=False),
    ] = None,
    public_key: Annotated[
        list[str] | None,
        typer.Option("--public-key", help="Trust digests signed by this public key (base64; repeatable). "
                     "The key of INVARIO_SIGNING_KEY is always trusted"),
    ] = None,
) -> None:
    """Recompute every hash chain from the stored events and report the first broken link.

    Checks every aggregate's chain, recomputes the global chain from the events'
    own hashes and compares it with the stored one, with the worker's checkpoint
    and with --digest. Exit code 1 when anything is broken; the outcome is also
    recorded, so /health and the write guard of every process follow it.
    """
    from projections.jobs.verification import LedgerLookups, LedgerVerification, record_outcome

    digests = [_trusted_digest(digest_file, public_key or [])] if digest_file is not None else []
    _log_integrity_events()
    with prepared_runtime() as runtime:
        tenant_id = tenant_option(runtime, tenant)
        verification = LedgerVerification(runtime.ledger, runtime.engine, digests=digests)
        report = _run_with_progress(verification, quiet=as_json)
        record_outcome(runtime.engine, report, "invario verify")
        shown = report.for_tenant(tenant_id, LedgerLookups(runtime.ledger)) if tenant_id else report
    if as_json:
        typer.echo(json.dumps(shown.to_document(digests[0] if digests else None), indent=2))
    else:
        _print_report(shown, digests[0] if digests else None)
    if not shown.intact:
        raise typer.Exit(EXIT_BROKEN)


def _trusted_digest(path: Path, public_keys: list[str]) -> LedgerDigest:
    """Read the digest file and check its signature and signer before touching the database."""
    from infrastructure.signing import parse_public_key, signature_is_valid

    text = read_bounded(path, DIGEST_FILE_MAX_BYTES, "--digest", "a digest can be")
    try:
        digest = LedgerDigest.from_document(json.loads(text))
    except ValueError as exc:  # not JSON, not UTF-8, or an InvalidDigest naming the bad member
        raise fail(f"--digest: {path} is not a ledger digest: {exc}", EXIT_USAGE) from None
    if not signature_is_valid(digest):
        raise fail(f"--digest: the signature of {path} does not verify: the file was altered or forged",
                    EXIT_USAGE)
    trusted = set()
    for value in public_keys:
        try:
            trusted.add(parse_public_key(value))
        except ValueError as exc:
            raise fail(f"--public-key: {exc}", EXIT_USAGE) from None
    own_key = _configured_key()
    if own_key is not None:
        trusted.add(own_key.public_key_raw)
    if not trusted:
        raise fail("--digest: no trusted key to check its signer against: set INVARIO_SIGNING_KEY or pass "
                    "--public-key", EXIT_USAGE)
    if digest.public_key_bytes() not in trusted:
        raise fail(f"--digest: {path} is signed by key {digest.key_id}, which is not a trusted key", EXIT_USAGE)
    return digest


def _run_with_progress(verification: LedgerVerification, *, quiet: bool) -> VerificationReport:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]verifying"), BarColumn(), TextColumn("{task.fields[events]:,} events"),
        TextColumn("{task.fields[rate]} events/s"), TimeRemainingColumn(), TimeElapsedColumn(),
    )
    began = time.monotonic()
    console = Console(stderr=True, quiet=quiet and not Console(stderr=True).is_terminal)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("verify", total=max(verification.stop_position, 1), events=0, rate="-")
        try:
            while verification.step():
                events = verification.walk.events
                rate = events / max(time.monotonic() - began, 1e-9)
                progress.update(task, completed=verification.next_start - 1, events=events, rate=f"{rate:,.0f}")
        except KeyboardInterrupt:
            position = verification.next_start - 1
            raise fail(f"verification interrupted after log position {position}: nothing was recorded; "
                        "run 'invario verify' again", EXIT_INTERRUPTED) from None
    return verification.report()


# --- the report ---------------------------------------------------------------------------------------


def _print_report(report: VerificationReport, digest: LedgerDigest | None) -> None:
    typer.echo(f"verified {report.events:,} events up to sequence {report.head_sequence} (log position "
               f"{report.head_position}) in {report.elapsed_seconds:.1f} s ({report.events_per_second:,.0f} events/s)")
    typer.echo(f"global chain: {report.compared_rows:,} stored rows compared, "
               f"{report.unchained_events:,} events not chained yet")
    for result in report.anchors:
        verdict = "matches" if result.checked and result.damage is None else "DOES NOT MATCH"
        signer = f" (key {digest.key_id}, signed {digest.time})" if digest and result.anchor.chain == "digest" else ""
        typer.echo(f"{result.anchor.chain} at sequence {result.anchor.sequence}{signer}: {verdict}")
    if report.damages_elsewhere:
        typer.secho(f"warning: {report.damages_elsewhere} break(s) in other tenants' data", err=True,
                    fg=typer.colors.YELLOW)
    first = report.first_damage
    if first is None:
        typer.secho(f"INTACT: every hash chain verifies; head {report.head_hash}", fg=typer.colors.GREEN)
        return
    typer.secho(f"BROKEN: {len(report.damages)} break(s) found; the first:", fg=typer.colors.RED, bold=True)
    _print_damage(first)
    if len(report.damages) > 1:
        _print_damage_table(report.damages)


def _print_damage(damage: Damage) -> None:
    rows = [
        ("sequence", damage.sequence), ("log position", damage.position),
        ("aggregate", f"{damage.aggregate_id} version {damage.aggregate_version}" if damage.aggregate_id else "-"),
        ("event type", damage.event_type or "-"), ("damage", f"{damage.kind} ({damage.chain} chain)"),
        ("detail", damage.detail), ("expected hash", damage.expected_hash or "-"),
        ("found hash", damage.found_hash or "-"),
    ]
    for label, value in rows:
        typer.echo(f"  {label:<14}{value if value is not None else '-'}")


def _print_damage_table(damages: tuple[Damage, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="every break found (log order)")
    for column in ("sequence", "position", "chain", "kind", "aggregate", "version", "detail"):
        table.add_column(column, overflow="fold")
    for d in damages:
        table.add_row(str(d.sequence), str(d.position), d.chain, d.kind, d.aggregate_id or "-",
                      str(d.aggregate_version or "-"), d.detail)
    Console(width=max(160, Console().width)).print(table)


# --- invario digest -----------------------------------------------------------------------------------


def digest() -> None:
    """Sign the verified head of the global chain and print the digest (JSON): invario digest > FILE.

    Brings the global chain and the incremental verification up to the head of
    the log first. Keep the file outside the database (print it, publish it,
    store it in a write-once bucket); 'invario verify --digest FILE' proves the
    ledger unchanged up to it.
    """
    from infrastructure.integrity_monitor import process_monitor
    from infrastructure.integrity_store import read_checkpoint, store_digest
    from projections.following.follower import Follower
    from projections.jobs.global_chain import GlobalChainProjection
    from interfaces.bootstrap import build_integrity_verifier

    key = _configured_key()
    if key is None:
        raise fail("INVARIO_SIGNING_KEY is not set: digests need a signing key "
                    "(generate one: invario generate-signing-key)", EXIT_USAGE)
    _log_integrity_events()
    with prepared_runtime() as runtime:
        batch = runtime.settings.follower_batch_size
        with _counting("chaining new events") as counted:
            Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch).catch_up(on_batch=counted)
        with _counting("verifying new events") as counted:
            build_integrity_verifier(runtime, batch, signing_key=key).catch_up(on_batch=counted)
        status = process_monitor().status()
        if status.broken:
            where = Damage.from_document(status.damage).describe() if status.damage else "unknown"
            raise fail(f"the ledger's hash chain is broken ({where}); no digest signed", EXIT_BROKEN)
        with runtime.engine.connect() as connection:
            checkpoint = read_checkpoint(connection)
        signed = key.sign_head(checkpoint.sequence, checkpoint.position, checkpoint.hash)
        store_digest(runtime.engine, signed)
    typer.echo(json.dumps(signed.to_document(), indent=2))


@contextmanager
def _counting(label: str) -> Iterator[Any]:
    """A transient progress line on stderr counting events; yields the callback that advances it."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn(f"[bold]{label}"), TextColumn("{task.completed:,} events"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda count: progress.advance(task, count)


def generate_signing_key() -> None:
    """Print a new Ed25519 signing key for INVARIO_SIGNING_KEY (stdout) and its public key (stderr).

    Keep the key in your secret store, never in the database or its backups.
    """
    from infrastructure.signing import SigningKey, generate_signing_key as new_key

    secret = new_key()
    key = SigningKey.from_setting(secret)
    typer.echo(secret)
    typer.echo(f"invario: public key {key.public_key} (key id {key.key_id}); set INVARIO_SIGNING_KEY to the line "
               "above and keep it out of the database and its backups", err=True)
