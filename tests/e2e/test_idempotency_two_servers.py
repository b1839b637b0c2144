"""Two ``invario serve`` processes on one database, one Idempotency-Key sent to both at once.

Neither process sees the other's request in flight: the key is recorded by the
transaction of the first one's events, and the second one's insert of the same
key finds it (the events table's lock orders the two), rolls back, and answers
with the stored response. So each key is written once, both clients get the
same answer, and the ledger holds each transfer once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from domain.ids import account_id_for
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from tests.e2e.http_fixtures import DAY, PEPPER
from tests.e2e.serve_support import ServedApi, prepare_ledger

KEYS = 30


def _post(api: ServedApi, key: str, barrier: threading.Barrier) -> httpx.Response:
    body: dict[str, Any] = {"external_id": key, "effective_date": DAY, "postings": [
        {"account_id": api.book.cash, "amount": "1.00"}, {"account_id": api.book.revenue, "amount": "-1.00"}]}
    barrier.wait(30)
    return api.client.post("/v1/transactions", json=body, headers={"Idempotency-Key": key})


def test_one_key_at_two_servers_at_once_is_written_once(database_url: str, tmp_path: Path) -> None:
    book = prepare_ledger(database_url)
    with ServedApi(database_url, book, tmp_path / "a.log") as a, ServedApi(database_url, book, tmp_path / "b.log") as b, \
            ThreadPoolExecutor(max_workers=2) as pool:
        for n in range(KEYS):
            key = f"both-{n}"
            barrier = threading.Barrier(2)
            first, second = pool.map(lambda api: _post(api, key, barrier), (a, b))
            assert first.status_code == second.status_code == 201, (first.text, second.text)
            assert first.content == second.content
            replayed = sorted(str(r.headers.get("Idempotent-Replayed")) for r in (first, second))
            assert replayed == ["None", "true"], replayed
    runtime = open_runtime(Settings(database_url=database_url, auth_pepper=PEPPER))
    try:
        tenant = runtime.ledger.get_tenant_by_name("acme")
        cash = runtime.ledger.get_account(tenant.id, account_id_for(tenant.id, "cash")).balance_minor
    finally:
        runtime.close()
    assert cash == 100 * KEYS
