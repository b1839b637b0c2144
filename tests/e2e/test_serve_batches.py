"""``invario serve`` on PostgreSQL runs queued batch files itself unless ``--no-followers``:
serve alone is the single-process layout the README presents; with ``--no-followers`` the
batches wait for ``invario worker`` (the production layout)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_support import ServedApi, prepare_ledger, serve_environment, write_side_counts
from tests.e2e.test_cli_basics import INVARIO
from tests.support.batch_files import DAY, HEADER

pytestmark = pytest.mark.postgres

LINES = 3
POLL_SECONDS = "0.2"  # INVARIO_BATCH_POLL_SECONDS: a runner, were there one, would look five times a second
FINISH_TIMEOUT_SECONDS = 60


def _upload(served: ServedApi) -> str:
    body = HEADER + "".join(f"tx-{i},{DAY},cash=1.00;revenue=-1.00,Invoice {i}\n" for i in range(LINES))
    response = served.client.post("/v1/batches", content=body.encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


def _batch(served: ServedApi, location: str) -> dict[str, Any]:
    response = served.client.get(location)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _finished(served: ServedApi, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + FINISH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        batch = _batch(served, location)
        if batch["status"] in ("completed", "rejected"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {location} did not finish:\n{served.log()[-3000:]}")


@pytest.mark.parametrize("options", [(), ("--workers", "2")], ids=["one-process", "workers"])
def test_serve_alone_runs_batches_on_postgres(pg_database_url: str, tmp_path: Path, options: tuple[str, ...]) -> None:
    """With --workers the runner stays in the parent process, beside the followers."""
    book = prepare_ledger(pg_database_url)
    with ServedApi(pg_database_url, book, tmp_path / "serve.log", *options,
                   INVARIO_BATCH_POLL_SECONDS=POLL_SECONDS) as served:
        batch = _finished(served, _upload(served))
    assert (batch["status"], batch["accepted"], batch["rejected"]) == ("completed", LINES, 0)
    _, cash_minor, revenue_minor = write_side_counts(pg_database_url)
    assert (cash_minor, revenue_minor) == (100 * LINES, -100 * LINES)


def test_serve_without_followers_leaves_batches_to_the_worker(pg_database_url: str, tmp_path: Path) -> None:
    book = prepare_ledger(pg_database_url)
    with ServedApi(pg_database_url, book, tmp_path / "serve.log", "--no-followers",
                   INVARIO_BATCH_POLL_SECONDS=POLL_SECONDS) as served:
        location = _upload(served)
        time.sleep(1.0)
        assert _batch(served, location)["status"] == "queued"
        worker = subprocess.run(  # noqa: S603 - our own console script
            [INVARIO, "worker", "--once"], capture_output=True, text=True, timeout=120,
            env=serve_environment(pg_database_url, INVARIO_WORKER_METRICS_PORT="0"),
        )
        assert worker.returncode == 0, worker.stderr
        batch = _batch(served, location)
    assert (batch["status"], batch["accepted"]) == ("completed", LINES)
