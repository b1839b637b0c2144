"""``invario evidence DIR``: a tarball of logs, metrics, health, projections status, a verify report,
version and configuration, with a manifest, and not one secret in it."""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from prometheus_client import start_http_server
from typer.testing import CliRunner, Result

import interfaces.cli.evidence_cmds as evidence_module
from infrastructure.settings import get_settings
from interfaces.cli.main import app
from interfaces.http.app import create_app
from tests.e2e.test_metrics_worker import free_port
from tests.integration.conftest import OpenRuntime, open_rt  # noqa: F401 - the fixture, for this suite too
from tests.integration.projections_support import catch_up, open_book, open_ready, post_random

PEPPER = "pepper-for-the-evidence-test-0123456789abcdef"
ADMIN_TOKEN = "admin-token-for-the-evidence-test-0123456789"
PASSWORD = "db-Passw0rd-evidence"
SIGNING_KEY = base64.b64encode(b"k" * 32).decode()
FILES = {"MANIFEST.json", "version.txt", "config.json", "logs.txt", "health.json", "metrics-api.txt",
         "metrics-worker.txt", "projections-status.json", "verify.json"}


def invoke(env: dict[str, str], *args: str) -> Result:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        get_settings.cache_clear()


def unpacked(tarball: Path) -> dict[str, bytes]:
    with tarfile.open(tarball) as tar:
        return {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.fixture
def live_api(pg_database_url: str, open_rt: OpenRuntime) -> Iterator[str]:  # noqa: F811
    """A served API (real HTTP on a free port) over a small ledger, and its base URL."""
    runtime = open_ready(open_rt, pg_database_url, auth_pepper=PEPPER, admin_token=ADMIN_TOKEN)
    post_random(open_book(runtime.ledger), runtime.ledger, 10)
    catch_up(runtime)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_config=None,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.postgres
def test_evidence_collects_everything_and_no_secret(live_api: str, pg_database_url: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    metrics_server, _thread = start_http_server(metrics_port, addr="127.0.0.1")  # stands in for the worker's
    log_file = tmp_path / "invario.log"
    lines = [json.dumps({"event": "request", "n": n, "note": f"token {ADMIN_TOKEN}"}) for n in range(2000)]
    log_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {
        "INVARIO_DATABASE_URL": pg_database_url.replace("postgres@", f"postgres:{PASSWORD}@"),
        "INVARIO_AUTH_PEPPER": PEPPER, "INVARIO_ADMIN_TOKEN": ADMIN_TOKEN, "INVARIO_SIGNING_KEY": SIGNING_KEY,
        "INVARIO_WORKER_METRICS_PORT": str(metrics_port), "INVARIO_EVIDENCE_LOG_FILE": str(log_file),
        "INVARIO_EVIDENCE_LOG_TAIL_BYTES": "4096",
    }
    try:
        result = invoke(env, "evidence", str(out), "--api-url", live_api)
    finally:
        metrics_server.shutdown()
    assert result.exit_code == 0, result.output
    (tarball,) = out.iterdir()
    assert tarball.name.startswith("invario-evidence-") and tarball.name.endswith(".tar.gz")
    files = unpacked(tarball)
    assert set(files) == FILES

    manifest = json.loads(files["MANIFEST.json"])
    for name, entry in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]
    assert set(manifest["files"]) == FILES - {"MANIFEST.json"}
    health = json.loads(files["health.json"])
    assert health["/health"]["status"] == 200 and health["/health"]["body"]["status"] == "ok"
    assert b"invario_" in files["metrics-api.txt"] and b"python_gc" in files["metrics-worker.txt"]
    assert json.loads(files["verify.json"])["intact"] is True
    status = json.loads(files["projections-status.json"])
    assert {p["state"] for p in status["projections"]} == {"current"}
    assert len(files["logs.txt"]) < 4096 + 200 and b'"n": 1999' in files["logs.txt"]  # the tail, bounded
    config = json.loads(files["config.json"])["settings"]
    assert config["auth_pepper"] == config["admin_token"] == config["signing_key"] == "*** (set)"
    assert ":***@" in config["database_url"]

    raw = b"".join(files.values()) + tarball.read_bytes() + result.output.encode()
    for secret in (PEPPER, ADMIN_TOKEN, PASSWORD, SIGNING_KEY):
        assert secret.encode() not in raw


def test_evidence_notes_what_did_not_answer(tmp_path: Path) -> None:
    env = {"INVARIO_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing", "INVARIO_PORT": str(free_port()),
           "INVARIO_WORKER_METRICS_PORT": str(free_port()), "INVARIO_EVIDENCE_HTTP_TIMEOUT_SECONDS": "0.5",
           "INVARIO_DB_CONNECT_TIMEOUT_SECONDS": "1"}
    result = invoke(env, "evidence", str(tmp_path))
    assert result.exit_code == 0, result.output
    files = unpacked(next(tmp_path.iterdir()))
    notes = json.loads(files["MANIFEST.json"])["notes"]
    assert any("did not answer" in n for n in notes) and any(n.startswith("database:") for n in notes)
    assert any("no logs" in n for n in notes)
    assert "database unavailable" in json.loads(files["verify.json"])["error"]


def test_interrupted_evidence_leaves_no_tarball(tmp_path: Path, sqlite_database_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(evidence_module, "_database", interrupted)
    result = invoke({"INVARIO_DATABASE_URL": sqlite_database_url, "INVARIO_EVIDENCE_HTTP_TIMEOUT_SECONDS": "0.2",
                     "INVARIO_PORT": str(free_port()), "INVARIO_WORKER_METRICS_PORT": "0"},
                    "evidence", str(tmp_path))
    assert result.exit_code == 130 and "no tarball" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".tar.gz", ".partial"))] == []


def test_evidence_needs_a_directory(tmp_path: Path, sqlite_database_url: str) -> None:
    result = invoke({"INVARIO_DATABASE_URL": sqlite_database_url}, "evidence", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "not a directory" in result.stderr
