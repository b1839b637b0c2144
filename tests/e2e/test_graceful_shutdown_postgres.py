"""SIGTERM under load: ``invario serve`` finishes what it acknowledged, half-writes nothing, exits 0.

Threads post transactions with unique external ids as fast as the server takes
them and note which got a 2xx. Once some are in, the server gets SIGTERM. After
it exits: every acknowledged transaction is in the ledger; every transaction in
the ledger moved both of its accounts (the accounts' balances are exactly the
count of transactions present, so none was stored without its postings); the
hash chains verify and the read models reconcile with the write side.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from application.ledger import Ledger
from domain.errors import TransactionNotFound
from domain.ids import transaction_id_for
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from tests.e2e.http_fixtures import PEPPER
from tests.e2e.serve_support import ServedApi, prepare_ledger, serve_environment, write_side_counts
from tests.e2e.test_cli_basics import INVARIO

pytestmark = pytest.mark.postgres

THREADS = 6
ACKNOWLEDGED_BEFORE_SIGTERM = 30
EXIT_DEADLINE_SECONDS = 30  # the promise of docs/failure-modes.md


class Load:
    """Threads posting until the server stops answering; what was attempted and what was acknowledged."""

    def __init__(self, api: ServedApi) -> None:
        self.api = api
        self.attempted: set[str] = set()
        self.acknowledged: set[str] = set()
        self.refused: list[int] = []
        self.enough = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, args=(n,), daemon=True) for n in range(THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(60)
            assert not thread.is_alive(), "a client thread hung"

    def _post(self, worker: int) -> None:
        with httpx.Client(base_url=self.api.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {self.api.book.key}"}) as client:
            for n in range(100_000):
                external_id = f"w{worker}-{n}"
                with self._lock:
                    self.attempted.add(external_id)
                try:
                    response = client.post("/v1/transactions", json=_body(self.api, external_id))
                except httpx.TransportError:
                    return  # the server stopped accepting
                with self._lock:
                    if 200 <= response.status_code < 300:
                        self.acknowledged.add(external_id)
                        if len(self.acknowledged) >= ACKNOWLEDGED_BEFORE_SIGTERM:
                            self.enough.set()
                    else:
                        self.refused.append(response.status_code)


def _body(api: ServedApi, external_id: str) -> dict[str, object]:
    return {"external_id": external_id, "effective_date": "2026-11-23", "postings": [
        {"account_id": api.book.cash, "amount": "1.00"}, {"account_id": api.book.revenue, "amount": "-1.00"}]}


def _present(ledger: Ledger, tenant_id: UUID, external_ids: set[str]) -> set[str]:
    present = set()
    for external_id in external_ids:
        try:
            ledger.get_transaction(tenant_id, transaction_id_for(tenant_id, external_id))
        except TransactionNotFound:
            continue
        present.add(external_id)
    return present


def test_sigterm_under_load_keeps_every_acknowledged_transaction(pg_database_url: str, tmp_path: Path) -> None:
    book = prepare_ledger(pg_database_url)
    api = ServedApi(pg_database_url, book, tmp_path / "serve.log")
    try:
        api.wait_until_healthy()
        load = Load(api)
        load.start()
        assert load.enough.wait(120), f"the load never got going: {load.refused[:5]}\n{api.log()[-2000:]}"
        api.process.terminate()  # SIGTERM
        api.process.wait(EXIT_DEADLINE_SECONDS)
        load.join()
    finally:
        api.stop()
    assert api.process.returncode == 0, api.log()[-3000:]
    assert "invario: stopped" in api.log()
    assert not [status for status in load.refused if status >= 500], load.refused

    runtime = open_runtime(Settings(database_url=pg_database_url, auth_pepper=PEPPER))
    try:
        present = _present(runtime.ledger, book.tenant_id, load.attempted)
    finally:
        runtime.close()
    assert load.acknowledged <= present, f"lost: {sorted(load.acknowledged - present)[:10]}"
    _, cash, revenue = write_side_counts(pg_database_url)
    assert (cash, revenue) == (100 * len(present), -100 * len(present))

    environment = serve_environment(pg_database_url)
    for command in (["verify"], ["reconcile"]):
        result = subprocess.run([INVARIO, *command], env=environment, capture_output=True, text=True,
                                timeout=300, check=False)
        assert result.returncode == 0, f"invario {command[0]}: {result.stdout}{result.stderr}"


def test_the_worker_stops_on_sigterm_after_its_batch(pg_database_url: str, tmp_path: Path) -> None:
    book = prepare_ledger(pg_database_url)
    environment = serve_environment(pg_database_url, INVARIO_WORKER_METRICS_PORT="0")
    with (tmp_path / "worker.log").open("w+") as log:
        worker = subprocess.Popen([INVARIO, "worker"], env=environment, stdout=log, stderr=subprocess.STDOUT,
                                  text=True)
        try:
            with ServedApi(pg_database_url, book, tmp_path / "serve.log", INVARIO_FOLLOWER_POLL_SECONDS="60") as api:
                for n in range(20):
                    assert api.post_transaction(f"t{n}").status_code == 201
            worker.terminate()
            worker.wait(EXIT_DEADLINE_SECONDS)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        log.seek(0)
        output = log.read()
    assert worker.returncode == 0, output[-3000:]
    assert "invario worker: stopped" in output
    result = subprocess.run([INVARIO, "reconcile"], env=environment, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
