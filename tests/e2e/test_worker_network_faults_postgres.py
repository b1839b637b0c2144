"""``invario worker`` behind a TCP proxy that loses bytes it acknowledged (issue 19, found by ``make soak``).

The proxy's ``blackhole`` acknowledges and drops every byte; healed back to
``pass`` without resetting the connections, a query sent meanwhile never
reaches PostgreSQL, and its answer never comes: TCP keepalives and
``tcp_user_timeout`` cannot notice (the proxy's kernel acknowledges them). Such a
connection used to stop the worker for good (it stopped catching up and ignored
SIGTERM). Now the worker watches its database as the API does: a heartbeat cuts
off the waiting connections once the database is silent, any wait longer than
its statement timeout plus a TCP timeout is cut off, and a stop request cuts
every wait after a grace. The API writes directly to the database meanwhile; the
worker must catch up with every write and stop on SIGTERM within bounds.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.serve_support import ServedApi, prepare_ledger, serve_environment
from tests.e2e.test_cli_basics import INVARIO
from tests.support.tcp_proxy import FaultyProxy

pytestmark = pytest.mark.postgres

CATCH_UP_SECONDS = 60
STOP_SECONDS = 25  # the worker's stop grace (10 s) before it cuts every wait, and room for a busy machine
# Short bounds, so that a wait cut off by the deadline (not by the heartbeat) happens within the test.
WORKER_BOUNDS = {"INVARIO_WORKER_STATEMENT_TIMEOUT_SECONDS": "2", "INVARIO_DB_TCP_TIMEOUT_SECONDS": "2",
                 "INVARIO_WORKER_METRICS_PORT": "0", "INVARIO_LOG_LEVEL": "INFO"}


def _start_worker(database_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("w") as log:
        worker = subprocess.Popen([INVARIO, "worker", "--no-relay", "--no-webhooks"],
                                  env=serve_environment(database_url, **WORKER_BOUNDS),
                                  stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "following" not in log_path.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)
    return worker


def _post_steadily(api: ServedApi, until: threading.Event, accepted: list[str]) -> None:
    n = 0
    while not until.is_set():
        n += 1
        if api.post_transaction(f"steady-{n}", "0.01").status_code == 201:
            accepted.append(f"steady-{n}")


def _stopped_within(worker: subprocess.Popen[bytes], seconds: float, log_path: Path) -> float:
    """SIGTERM; the seconds it took to exit (the test fails if it did not)."""
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(seconds)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        pytest.fail(f"the worker ignored SIGTERM for {seconds} s:\n{log_path.read_text()[-3000:]}")
    return time.monotonic() - started


@pytest.fixture
def proxy(pg_database_url: str):  # type: ignore[no-untyped-def]
    upstream = urlsplit(pg_database_url)
    with FaultyProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as faulty:
        yield faulty


def test_the_worker_catches_up_after_lost_bytes_and_stops_on_sigterm_in_a_partition(
    pg_database_url: str, proxy: FaultyProxy, tmp_path: Path
) -> None:
    book = prepare_ledger(pg_database_url)
    log_path = tmp_path / "worker.log"
    worker = _start_worker(proxy.url_for(pg_database_url), log_path)
    try:
        with ServedApi(pg_database_url, book, tmp_path / "serve.log", "--no-followers") as api:
            # Short blackholes (below the heartbeat's probe timeout: only the deadline notices what
            # they lost) and a long one (the heartbeat notices), each healed without a reset.
            accepted = _post_during(api, lambda: _blackholes(proxy, (0.3, 0.6, 0.3, 3.0, 0.5)))
            assert len(accepted) > 20
            _assert_caught_up(api, len(accepted), worker, log_path)
            # A partition that is not healed: a stop request must not wait for it.
            _post_during(api, lambda: (time.sleep(1.0), proxy.set_mode("blackhole"), time.sleep(0.5),
                                       print(f"stopped {_stopped_within(worker, STOP_SECONDS, log_path):.1f} s "
                                             "after SIGTERM")))
        assert worker.returncode in (0, 1), log_path.read_text()[-3000:]  # 1: followers failing as it stopped
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def _post_during(api: ServedApi, faults: Callable[[], object]) -> list[str]:
    """Keyed writes straight to the database (the API is not behind the proxy) while ``faults`` run."""
    until, accepted = threading.Event(), []
    writer = threading.Thread(target=_post_steadily, args=(api, until, accepted))
    writer.start()
    try:
        faults()
    finally:
        until.set()
        writer.join()
    return accepted


def _blackholes(proxy: FaultyProxy, lengths: tuple[float, ...]) -> None:
    for length in lengths:
        time.sleep(1.0)
        proxy.set_mode("blackhole")
        time.sleep(length)
        proxy.set_mode("pass")  # healed as a proxy heals: what it dropped stays lost
    time.sleep(1.0)


def _assert_caught_up(api: ServedApi, writes: int, worker: subprocess.Popen[bytes], log_path: Path) -> None:
    expected = f"{writes * 0.01:.2f}"
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while (balance := api.balance().json().get("balance")) != expected:
        assert worker.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, (f"the worker did not catch up with {writes} writes (balance {balance}, "
                                             f"expected {expected}):\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
