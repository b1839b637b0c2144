"""`invario worker` delivers webhooks in a thread of its own, exports their metrics, and logs no secret;
``--no-webhooks`` switches that off."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from standardwebhooks import Webhook

from infrastructure.runtime import Runtime
from interfaces.bootstrap import build_webhook_store
from tests.e2e.test_metrics_worker import INVARIO, free_port, scrape_until
from tests.integration.conftest import OpenRuntime, open_rt  # noqa: F401 - the fixture
from tests.integration.projections_support import FIRST_DAY, open_book, open_ready, post
from tests.integration.webhook_support import receiver, wait_for

PEPPER = "test-pepper-for-the-worker-webhooks-0123456789"


def _worker(runtime_url: str, tmp_path: Path, port: int, *options: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("INVARIO_", "OTEL_"))}
    environment.update(INVARIO_DATABASE_URL=runtime_url, INVARIO_FOLLOWER_POLL_SECONDS="0.1",
                       INVARIO_WORKER_METRICS_PORT=str(port), INVARIO_AUTH_PEPPER=PEPPER,
                       INVARIO_WEBHOOK_ALLOW_PRIVATE_TARGETS="true", INVARIO_LOG_LEVEL="DEBUG")
    return subprocess.Popen(  # noqa: S603 - our own console script
        [INVARIO, "worker", *options], env=environment, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _stop(worker: subprocess.Popen[str]) -> tuple[str, str]:
    worker.send_signal(signal.SIGTERM)
    stdout, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    return stdout, stderr


def _book_with_endpoint(runtime: Runtime, url: str) -> tuple[str, object]:
    book = open_book(runtime.ledger)
    endpoint, secret = build_webhook_store(runtime).register(
        book.tenant_id, url, ["io.invario.transaction.posted"], int(runtime.ledger.recorder.max_notification_id()))
    post(book, runtime.ledger, "t1", FIRST_DAY, {"cash": 7, "bank": -7})
    return secret.reveal(), endpoint


def test_the_worker_delivers_webhooks(sqlite_database_url: str, open_rt: OpenRuntime,  # noqa: F811
                                      tmp_path: Path) -> None:
    runtime = open_ready(open_rt, sqlite_database_url, auth_pepper=PEPPER, webhook_allow_private_targets=True)
    with receiver() as hook:
        secret, _ = _book_with_endpoint(runtime, hook.url)
        port = free_port()
        worker = _worker(sqlite_database_url, tmp_path, port)
        try:
            wait_for(lambda: len(hook.accepted) == 1, "the worker's delivery")
            text = scrape_until(f"http://127.0.0.1:{port}/metrics",
                                'invario_webhook_deliveries_total{outcome="delivered"} 1.0')
        finally:
            stdout, stderr = _stop(worker)
    assert Webhook(secret).verify(hook.requests[0].body, hook.requests[0].headers)["data"]["external_id"] == "t1"
    assert 'invario_webhook_deliveries_total{outcome="dead_lettered"} 0.0' in text
    assert "invario_webhook_dead_letters 0.0" in text
    assert secret not in stdout + stderr and secret.removeprefix("whsec_") not in stdout + stderr


def test_no_webhooks_switches_them_off(sqlite_database_url: str, open_rt: OpenRuntime,  # noqa: F811
                                       tmp_path: Path) -> None:
    runtime = open_ready(open_rt, sqlite_database_url, auth_pepper=PEPPER, webhook_allow_private_targets=True)
    with receiver() as hook:
        _book_with_endpoint(runtime, hook.url)
        port = free_port()
        worker = _worker(sqlite_database_url, tmp_path, port, "--no-webhooks")
        try:
            scrape_until(f"http://127.0.0.1:{port}/metrics", 'invario_projection_lag_events{projection="accounts"} 0.0')
        finally:
            _stop(worker)
        assert hook.requests == []
