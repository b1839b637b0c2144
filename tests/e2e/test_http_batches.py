"""POST /v1/batches and GET /v1/batches/{id}: the flow a new user follows with curl.

Upload a file, poll the batch to completed, see the balances move and the
rejected lines explained, upload the same file again: nothing posted twice.
On SQLite the API process runs the batch itself; on PostgreSQL the worker's
code path (``BatchRunner``) is run here in its place.
"""

from __future__ import annotations

import time
from typing import Any

from interfaces.bootstrap import build_batch_runner
from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem, globex  # noqa: F401
from tests.e2e.test_metrics_endpoint import moved, scrape
from tests.support.batch_files import HEADER, good_line

CSV = {"Content-Type": "text/csv"}
POLLS_MAX = 600


def _upload(api: Api, tenant: Tenant, body: bytes, mode: str | None = None, **headers: str) -> Any:
    query = f"?mode={mode}" if mode else ""
    return api.client.post(f"/v1/batches{query}", content=body, headers={**tenant.headers, **CSV, **headers})


def _finished(api: Api, tenant: Tenant, location: str) -> dict[str, Any]:
    if api.runtime.database.is_postgres:
        build_batch_runner(api.runtime).run_pending()  # what `invario worker` does
    for _ in range(POLLS_MAX):
        body = api.client.get(location, headers=tenant.headers).json()
        if body["status"] in ("completed", "rejected"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"batch {location} did not finish: {body}")


def _file(*bad: str) -> bytes:
    return (HEADER + "".join(good_line(i) for i in range(5)) + "".join(bad)).encode()


def test_upload_poll_balances_errors_and_reupload(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    api.open_account(acme, "sales", type="income")
    body = _file("bad-1,2026-11-23,cash=1.00;sales=-2.00,unbalanced\n", "bad-2,2026-11-23,cash=1.00;ghost=-1.00,x\n")
    metrics_before = scrape(api)

    rejected = _upload(api, acme, body)
    assert rejected.status_code == 202, rejected.text
    assert rejected.headers["location"] == f"/v1/batches/{rejected.json()['id']}"
    assert rejected.json()["status"] == "queued" and rejected.json()["mode"] == "atomic"
    report = _finished(api, acme, rejected.headers["location"])
    assert (report["status"], report["accepted"], report["rejected"]) == ("rejected", 0, 2)
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(7, "transaction_unbalanced"),
                                                                  (8, "account_not_found")]
    assert "ghost" in report["errors"][1]["message"]
    assert api.balance(acme, cash) == "0.00"

    partial = _upload(api, acme, body, "partial")
    report = _finished(api, acme, partial.headers["location"])
    assert (report["status"], report["accepted"], report["replayed"], report["rejected"]) == ("completed", 5, 0, 2)
    assert api.balance(acme, cash) == "50.00"

    again = _upload(api, acme, body, "partial")
    report = _finished(api, acme, again.headers["location"])
    assert (report["accepted"], report["replayed"], report["rejected"]) == (0, 5, 2)
    assert api.balance(acme, cash) == "50.00"
    metrics_after = scrape(api)
    assert moved(metrics_before, metrics_after, "invario_batch_outcomes_total", outcome="rejected") == 1
    assert moved(metrics_before, metrics_after, "invario_batch_outcomes_total", outcome="accepted") == 2


def test_jsonl_files(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    api.open_account(acme, "sales", type="income")
    line = ('{"external_id": "j-%d", "effective_date": "2026-11-23", "postings": [{"account": "cash", '
            '"amount": "2.50"}, {"account": "sales", "amount": "-2.50"}]}\n')
    body = "".join(line % i for i in range(4)).encode()
    response = api.client.post("/v1/batches", content=body,
                               headers={**acme.headers, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 202, response.text
    assert _finished(api, acme, response.headers["location"])["accepted"] == 4
    assert api.balance(acme, cash) == "10.00"


def test_errors_are_paginated(api: Api, acme: Tenant) -> None:
    api.open_account(acme, "cash")
    api.open_account(acme, "sales", type="income")
    body = (HEADER + "".join(f"b-{i},2026-11-23,cash=1.00;sales=-3.00,x\n" for i in range(7))).encode()
    location = _upload(api, acme, body, "partial").headers["location"]
    first = _finished(api, acme, location)
    seen = [e["line"] for e in first["errors"]]
    page = api.client.get(f"{location}?limit=3", headers=acme.headers).json()
    lines = [e["line"] for e in page["errors"]]
    while page["next_cursor"]:
        page = api.client.get(f"{location}?limit=3&cursor={page['next_cursor']}", headers=acme.headers).json()
        lines += [e["line"] for e in page["errors"]]
    assert lines == seen == list(range(2, 9))


def test_bad_uploads_are_problems(api: Api, acme: Tenant, globex: Tenant) -> None:
    assert_problem(api.client.post("/v1/batches", content=b"x", headers={**acme.headers,
                                                                         "Content-Type": "application/pdf"}),
                   415, "unsupported_media_type")
    assert_problem(_upload(api, acme, b"external_id,color\nx,y\n"), 422, "invalid_batch")
    assert_problem(_upload(api, acme, HEADER.encode()), 422, "invalid_batch")
    assert_problem(_upload(api, acme, b"\xff\xfe\n"), 422, "invalid_encoding")
    assert_problem(_upload(api, acme, _file(), mode="all"), 400, "invalid_request")
    location = _upload(api, acme, _file()).headers["location"]
    assert_problem(api.client.get(location, headers=globex.headers), 404, "batch_not_found")
    assert_problem(api.client.get(f"{location}?cursor=x", headers=acme.headers), 400, "invalid_cursor")
    assert_problem(api.client.post("/v1/batches", content=_file(), headers=CSV), 401, "unauthenticated")


def test_the_body_has_its_own_bound(database_url: str) -> None:
    from tests.e2e.http_fixtures import make_api

    apps = make_api(database_url, batch_body_max_bytes=2048)
    api = next(apps)
    try:
        tenant = api.tenant("acme")
        body = (HEADER + "".join(good_line(i) for i in range(100))).encode()
        assert len(body) > 2048
        assert_problem(_upload(api, tenant, body), 413, "body_too_large")
        chunked = iter([body[:1000], body[1000:]])  # no Content-Length: counted as it streams
        assert_problem(_upload(api, tenant, chunked), 413, "body_too_large")  # type: ignore[arg-type]
        # The API's own bound (256 KiB) does not apply to batches, only theirs.
        assert _upload(api, tenant, body[:2000].rsplit(b"\n", 1)[0] + b"\n").status_code == 202
    finally:
        apps.close()
