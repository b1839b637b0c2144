"""`invario worker` serves its own /metrics (INVARIO_WORKER_METRICS_PORT) and logs JSON lines on stdout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.integration.conftest import OpenRuntime, open_rt  # noqa: F401 - the fixture
from tests.integration.projections_support import open_book, open_ready, post_random

INVARIO = str(Path(sys.executable).parent / "invario")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape_until(url: str, wanted: str, timeout_seconds: float = 30) -> str:
    deadline = time.monotonic() + timeout_seconds
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own local port
                text = response.read().decode()
            if wanted in text:
                return text
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{wanted!r} never appeared at {url}; last scrape:\n{text[-2000:]}")


def test_the_worker_serves_metrics_and_logs_json(
    sqlite_database_url: str, open_rt: OpenRuntime, tmp_path: Path  # noqa: F811
) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    post_random(open_book(runtime.ledger), runtime.ledger, 5)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("INVARIO_", "OTEL_"))}
    environment.update(INVARIO_DATABASE_URL=sqlite_database_url, INVARIO_FOLLOWER_POLL_SECONDS="0.1",
                       INVARIO_WORKER_METRICS_PORT=str(port))
    worker = subprocess.Popen(  # noqa: S603 - our own console script
        [INVARIO, "worker"], env=environment, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        text = scrape_until(f"http://127.0.0.1:{port}/metrics", 'invario_projection_lag_events{projection="accounts"} 0.0')
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert "invario_ledger_integrity_status 1.0" in text
    assert 'job_last_success_timestamp_seconds{job="read_models"}' in text
    assert 'job_duration_seconds_count{job="read_models"}' in text
    assert 'invario_projection_failing{projection="transactions"} 0' in text
    records = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert records and all({"timestamp", "level", "event"} <= set(r) for r in records)
