"""kill -9 of ``invario serve`` under keyed load: no key is left in flight, and
every acknowledged key replays exactly what was answered.

Threads post transfers, each with its own Idempotency-Key, and note every answer.
Once some are in, the server is killed with SIGKILL. The key of a request is
written by the transaction of its events, so afterwards no row is in flight, and
a second server, asked every key again, replays each acknowledged answer byte
for byte; a request that was cut off either replays (it had committed) or runs
now, and the ledger holds each transfer once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select

from domain.ids import account_id_for
from infrastructure.database import DatabaseURL
from infrastructure.idempotency import idempotency_keys
from tests.e2e.http_fixtures import DAY
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from tests.e2e.http_fixtures import PEPPER
from tests.e2e.serve_support import ServedApi, prepare_ledger

THREADS = 6
ACKNOWLEDGED_BEFORE_KILL = 40


def _body(api: ServedApi, external_id: str) -> dict[str, Any]:
    return {"external_id": external_id, "effective_date": DAY, "postings": [
        {"account_id": api.book.cash, "amount": "1.00"}, {"account_id": api.book.revenue, "amount": "-1.00"}]}


class KeyedLoad:
    def __init__(self, api: ServedApi) -> None:
        self.api = api
        self.attempted: list[str] = []
        self.answers: dict[str, httpx.Response] = {}
        self.enough = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, args=(n,), daemon=True) for n in range(THREADS)]

    def run_until_killed(self) -> None:
        for thread in self._threads:
            thread.start()
        assert self.enough.wait(60), f"too few answers before the kill:\n{self.api.log()[-3000:]}"
        self.api.process.send_signal(signal.SIGKILL)
        self.api.process.wait()
        for thread in self._threads:
            thread.join(60)

    def _post(self, worker: int) -> None:
        with httpx.Client(base_url=self.api.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {self.api.book.key}"}) as client:
            for n in range(100_000):
                key = f"w{worker}-{n}"
                with self._lock:
                    self.attempted.append(key)
                try:
                    response = client.post("/v1/transactions", json=_body(self.api, key),
                                           headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    return  # the server is gone
                assert response.status_code == 201, response.text
                with self._lock:
                    self.answers[key] = response
                    if len(self.answers) >= ACKNOWLEDGED_BEFORE_KILL:
                        self.enough.set()


def test_kill_9_under_keyed_load_leaves_no_key_in_flight(database_url: str, tmp_path: Path) -> None:
    book = prepare_ledger(database_url)
    with ServedApi(database_url, book, tmp_path / "serve-1.log") as first:
        load = KeyedLoad(first)
        load.run_until_killed()

    engine = create_engine(DatabaseURL.parse(database_url).sqlalchemy_url())
    try:
        with engine.connect() as connection:
            rows = {row.key: row for row in connection.execute(select(idempotency_keys))}
    finally:
        engine.dispose()
    assert all(row.state == "done" for row in rows.values())
    assert set(load.answers) <= set(rows)

    with ServedApi(database_url, book, tmp_path / "serve-2.log") as second:
        for key in load.attempted:
            again = second.client.post("/v1/transactions", json=_body(second, key), headers={"Idempotency-Key": key})
            assert again.status_code == 201, again.text
            if key in rows:  # committed before the kill, acknowledged or not
                assert again.headers["Idempotent-Replayed"] == "true"
            if key in load.answers:
                first_answer = load.answers[key]
                assert again.content == first_answer.content
                assert again.headers["Invario-Position"] == first_answer.headers["Invario-Position"]
                assert again.headers["ETag"] == first_answer.headers["ETag"]
    cash, revenue = _balances(database_url)
    assert cash == 100 * len(load.attempted) == -revenue  # each transfer exactly once



def _balances(database_url: str) -> tuple[int, int]:
    runtime = open_runtime(Settings(database_url=database_url, auth_pepper=PEPPER))
    try:
        tenant = runtime.ledger.get_tenant_by_name("acme")
        return tuple(runtime.ledger.get_account(tenant.id, account_id_for(tenant.id, code)).balance_minor
                     for code in ("cash", "revenue"))  # type: ignore[return-value]
    finally:
        runtime.close()
