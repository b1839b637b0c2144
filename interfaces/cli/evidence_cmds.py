"""``invario evidence DIR``: what support needs after an incident, in one tarball, without secrets.

``DIR/invario-evidence-<UTC time>.tar.gz`` holds:

- ``version.txt``: Invario's version, Python's and the main libraries';
- ``config.json``: the settings in effect, secrets masked (the database URL's password too),
  and the names of the other ``INVARIO_*`` variables set;
- ``logs.txt``: the tail of ``INVARIO_EVIDENCE_LOG_FILE`` and/or the journal of
  ``INVARIO_EVIDENCE_JOURNAL_UNIT`` (bounded by ``INVARIO_EVIDENCE_LOG_TAIL_BYTES``), or why there is none;
- ``health.json``, ``metrics-api.txt``: ``/health``, ``/health/ready`` and ``/metrics`` of the API at
  ``INVARIO_HOST``:``INVARIO_PORT`` (or ``--api-url``); ``metrics-worker.txt``: the worker's ``/metrics``;
- ``projections-status.json``: ``invario projections status --json``;
- ``verify.json``: a full ``invario verify --json`` report (``--no-verify`` skips it; the outcome is not
  recorded: collecting evidence changes nothing);
- ``MANIFEST.json``: every file with its size and sha256, and what could not be collected.

Every HTTP call and command has a timeout; every file is scrubbed of the
configured secret values before it is written. Nothing that fails to answer
stops the collection: its file says why. The tarball is written under a
temporary name and renamed when complete. Exit codes: 0 written; 2 bad DIR;
130 interrupted (no tarball).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from infrastructure.errors import ConfigError, DatabaseUnavailable
from interfaces.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, fail, operator_errors
from interfaces.cli.projections_cmds import _status_json

if TYPE_CHECKING:
    from infrastructure.settings import Settings

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

HTTP_BODY_MAX_BYTES = 4 * 1024 * 1024
JOURNAL_LINES_MAX = 20_000
MASK = "***"
SECRET_NAME_PARTS = ("PEPPER", "TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
LIBRARIES = ("eventsourcing", "sqlalchemy", "psycopg", "fastapi", "uvicorn", "pydantic", "opentelemetry-sdk")


def register(app: typer.Typer) -> None:
    app.command()(evidence)


@dataclass
class Bundle:
    """The files collected so far; every text passes through the scrubber."""

    secrets: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, text: str) -> None:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        self.files[name] = text.encode()

    def add_json(self, name: str, document: Any) -> None:
        self.add(name, json.dumps(document, indent=2, default=str) + "\n")

    def note(self, text: str) -> None:
        self.notes.append(text)


def evidence(
    directory: Annotated[Path, typer.Argument(help="Where to write invario-evidence-<UTC time>.tar.gz")],
    api_url: Annotated[
        str | None, typer.Option(help="The API's base URL [default: http://INVARIO_HOST:INVARIO_PORT]")
    ] = None,
    verify: Annotated[bool, typer.Option(help="Include a full verification of the hash chains (can take long)")] = True,
) -> None:
    """Collect logs, metrics, health, projections status, a verify report, version and
    configuration (secrets masked) into one tarball for support."""
    from infrastructure.settings import get_settings

    if not directory.is_dir():
        raise fail(f"{directory} is not a directory", EXIT_USAGE)
    with operator_errors():
        settings = get_settings()
    moment = datetime.now(timezone.utc)
    bundle = Bundle(_secret_values(settings))
    try:
        _collect(bundle, settings, api_url or _default_api_url(settings), verify=verify)
        path = _write_tarball(bundle, directory, moment)
    except KeyboardInterrupt:
        raise fail("evidence collection interrupted: no tarball written", EXIT_INTERRUPTED) from None
    except OSError as exc:
        raise fail(f"cannot write the tarball in {directory}: {exc.strerror}", EXIT_USAGE) from None
    typer.echo(f"evidence written: {path} ({len(bundle.files)} files)")
    for note in bundle.notes:
        typer.echo(f"  note: {note}", err=True)


def _collect(bundle: Bundle, settings: Settings, api_url: str, *, verify: bool) -> None:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    steps: list[tuple[str, Callable[[], None]]] = [
        ("version", lambda: bundle.add("version.txt", _version_text())),
        ("configuration", lambda: bundle.add_json("config.json", _configuration(settings))),
        ("logs", lambda: bundle.add("logs.txt", _logs(settings, bundle))),
        ("health and API metrics", lambda: _api(bundle, settings, api_url)),
        ("worker metrics", lambda: _worker_metrics(bundle, settings)),
        ("projections status and verification", lambda: _database(bundle, verify=verify)),
    ]
    columns = (SpinnerColumn(), TextColumn("[bold]collecting {task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        for label, step in steps:
            task = progress.add_task(label, total=None)
            step()
            progress.remove_task(task)


# --- secrets -------------------------------------------------------------------------------------------


def _secret_values(settings: Settings) -> list[str]:
    """Every configured secret value, longest first (so no secret is half-masked by a shorter one)."""
    from pydantic import SecretStr

    from infrastructure.database import DatabaseURL

    values = [v.get_secret_value() for v in dict(settings).values() if isinstance(v, SecretStr)]
    with suppress(Exception):
        values.append(DatabaseURL.parse(settings.database_url).password)
    values += [value for name, value in os.environ.items() if name.startswith("INVARIO_") and _secret_name(name)]
    pepper = _sqlite_pepper(settings)
    if pepper:
        values.append(pepper)
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)  # noqa: PLR2004


def _sqlite_pepper(settings: Settings) -> str | None:
    from infrastructure.runtime import PEPPER_FILE_NAME
    from infrastructure.database import DatabaseURL

    with suppress(Exception):
        database = DatabaseURL.parse(settings.database_url)
        if database.path is not None:
            return (database.path.parent / PEPPER_FILE_NAME).read_text(encoding="utf-8").strip()
    return None


def _secret_name(name: str) -> bool:
    return any(part in name.upper() for part in SECRET_NAME_PARTS)


def _configuration(settings: Settings) -> dict[str, Any]:
    from pydantic import SecretStr

    from infrastructure.database import redact

    shown: dict[str, Any] = {}
    for name, value in sorted(dict(settings).items()):
        if isinstance(value, SecretStr):
            shown[name] = f"{MASK} (set)"
        elif name == "database_url":
            shown[name] = redact(str(value))
        elif value is not None and _secret_name(name):
            shown[name] = f"{MASK} (set)"
        else:
            shown[name] = value
    known = {f"INVARIO_{name.upper()}" for name in shown}
    others = sorted(name for name in os.environ if name.startswith("INVARIO_") and name not in known)
    return {"settings": shown, "other_invario_variables_set": others}


def _version_text() -> str:
    lines = []
    for package in ("invario", *LIBRARIES):
        try:
            lines.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"{package} not installed")
    lines += [f"python {platform.python_version()}", f"platform {platform.platform()}"]
    return "\n".join(lines) + "\n"


# --- logs ---------------------------------------------------------------------------------------------------


def _logs(settings: Settings, bundle: Bundle) -> str:
    limit = settings.evidence_log_tail_bytes
    parts = []
    if settings.evidence_log_file:
        parts.append(f"== last {limit:,} bytes of {settings.evidence_log_file} ==\n" + _tail(
            Path(settings.evidence_log_file), limit, bundle))
    if settings.evidence_journal_unit:
        parts.append(f"== journal of {settings.evidence_journal_unit} ==\n" + _journal(
            settings.evidence_journal_unit, limit, settings.evidence_http_timeout_seconds * 5, bundle))
    if not parts:
        bundle.note("no logs: set INVARIO_EVIDENCE_LOG_FILE or INVARIO_EVIDENCE_JOURNAL_UNIT")
        return ("no logs collected: neither INVARIO_EVIDENCE_LOG_FILE nor INVARIO_EVIDENCE_JOURNAL_UNIT is set "
                "(the service logs JSON lines on stdout; point one of them at where they are kept)\n")
    return "\n".join(parts)


def _tail(path: Path, limit: int, bundle: Bundle) -> str:
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(size - limit, 0))
            data = file.read(limit)
    except OSError as exc:
        bundle.note(f"log file {path}: {exc.strerror}")
        return f"cannot read {path}: {exc.strerror}\n"
    if size > limit:  # start at a line boundary
        data = data.split(b"\n", 1)[-1]
    return data.decode(errors="replace")


def _journal(unit: str, limit: int, timeout: float, bundle: Bundle) -> str:
    try:
        done = subprocess.run(["journalctl", "--no-pager", "-o", "short-iso", "-n", str(JOURNAL_LINES_MAX),  # noqa: S607
                               "-u", unit], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        bundle.note(f"journal of {unit}: {exc}")
        return f"cannot read the journal of {unit}: {exc}\n"
    return done.stdout[-limit:].decode(errors="replace") + done.stderr[-4096:].decode(errors="replace")


# --- HTTP -------------------------------------------------------------------------------------------------


def _default_api_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def _fetch(url: str, timeout: float) -> tuple[int | None, str]:
    """(status, body) of a GET, or (None, why not); bounded in time and size."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) URLs from settings
            return response.status, response.read(HTTP_BODY_MAX_BYTES).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(HTTP_BODY_MAX_BYTES).decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))


def _api(bundle: Bundle, settings: Settings, base: str) -> None:
    timeout = settings.evidence_http_timeout_seconds
    health = {}
    for path in ("/health", "/health/ready"):
        status, body = _fetch(base.rstrip("/") + path, timeout)
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body
        health[path] = {"status": status, "body": parsed} if status is not None else {"unreachable": body}
    if health["/health"].get("unreachable"):
        bundle.note(f"API at {base} did not answer: {health['/health']['unreachable']}")
    bundle.add_json("health.json", {"api": base, **health})
    status, body = _fetch(base.rstrip("/") + "/metrics", timeout)
    bundle.add("metrics-api.txt", body if status == 200 else f"no metrics from {base}/metrics: {status or body}\n")  # noqa: PLR2004


def _worker_metrics(bundle: Bundle, settings: Settings) -> None:
    if settings.worker_metrics_port == 0:
        bundle.add("metrics-worker.txt", "the worker's metrics are disabled (INVARIO_WORKER_METRICS_PORT=0)\n")
        return
    url = f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics"
    status, body = _fetch(url, settings.evidence_http_timeout_seconds)
    if status != 200:  # noqa: PLR2004
        bundle.note(f"worker metrics at {url}: {status or body}")
    bundle.add("metrics-worker.txt", body if status == 200 else f"no metrics from {url}: {status or body}\n")  # noqa: PLR2004


# --- the database ----------------------------------------------------------------------------------------------


def _database(bundle: Bundle, *, verify: bool) -> None:
    from infrastructure.runtime import open_runtime
    from projections.following.status import projection_statuses

    try:
        runtime = open_runtime()
    except (ConfigError, DatabaseUnavailable) as exc:
        bundle.note(f"database: {exc}")
        for name in ("projections-status.json", "verify.json"):
            bundle.add_json(name, {"error": f"database unavailable: {exc}"})
        return
    try:
        try:
            head, statuses = projection_statuses(runtime)
            bundle.add_json("projections-status.json", {"head": head, "projections": [_status_json(s) for s in statuses]})
        except Exception as exc:  # noqa: BLE001 - whatever fails is evidence too, never a crash
            bundle.add_json("projections-status.json", {"error": " ".join(str(exc).split())[:500]})
        bundle.add_json("verify.json", _verify_document(runtime) if verify else {"skipped": "--no-verify"})
    finally:
        runtime.close()


def _verify_document(runtime: Any) -> dict[str, Any]:
    from projections.jobs.verification import LedgerVerification

    began = time.monotonic()
    try:
        report = LedgerVerification(runtime.ledger, runtime.engine).run()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001
        return {"error": " ".join(str(exc).split())[:500]}
    return {**report.to_document(None), "collected_in_seconds": round(time.monotonic() - began, 3)}


# --- the tarball ------------------------------------------------------------------------------------------------


def _write_tarball(bundle: Bundle, directory: Path, moment: datetime) -> Path:
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    name = f"invario-evidence-{stamp}"
    bundle.add_json("MANIFEST.json", {
        "collected_at": moment.isoformat(),
        "files": {n: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for n, data in sorted(bundle.files.items())},
        "notes": bundle.notes,
    })
    target = directory / f"{name}.tar.gz"
    for attempt in range(2, 100):  # two collections within one second keep both tarballs
        if not target.exists():
            break
        target = directory / f"{name}-{attempt}.tar.gz"
    partial = directory / f".{name}.tar.gz.{os.getpid()}.partial"
    try:
        with tarfile.open(partial, "w:gz") as tar:
            for file_name, data in bundle.files.items():
                info = tarfile.TarInfo(f"{name}/{file_name}")
                info.size, info.mtime, info.mode = len(data), int(moment.timestamp()), 0o600
                tar.addfile(info, io.BytesIO(data))
        os.chmod(partial, 0o600)
        os.replace(partial, target)
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()
    return target
