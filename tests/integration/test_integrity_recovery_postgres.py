"""After a break: writes stay refused until a good backup is restored and a verification passes;
the worker finds damage to new events by itself and clears the break by itself after a restore;
the per-tenant audit, digests over HTTP, and /health and /health/ready when things are not fine.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from pydantic import SecretStr
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from domain.digest import LedgerDigest
from domain.integrity import CHANGED, CHECKPOINT, GLOBAL_CHAIN, MISSING
from infrastructure.integrity_monitor import process_monitor
from infrastructure.integrity_store import read_checkpoint
from infrastructure.signing import SigningKey, signature_is_valid
from interfaces.http.app import create_app
from interfaces.http.routes_integrity import BoundedProbe
from projections.following.follower import Follower
from projections.jobs.global_chain import GlobalChainProjection
from projections.jobs.integrity import IntegrityVerifier, VerifierSchedule
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, leg
from tests.integration.integrity_support import (
    ADMIN,
    EVENTS,
    Books,
    Operator,
    api_for,
    assert_health_names,
    catch_up,
    fresh_monitor,  # noqa: F401 - autouse fixture
    gauge_reader,  # noqa: F401 - fixture
    gauge_value,
    open_ready,
    position_of,
    set_state,
    sql,
    stored_state,
    verify,
    write_books,
)
from tests.support import postgres

pytestmark = pytest.mark.postgres

SECRET = base64.b64encode(b"s" * 32).decode()
open_operator = contextmanager(api_for)
QUICK_RECHECK = VerifierSchedule(digest_interval_seconds=3600, recheck_seconds=0.01, full_verify_seconds=0,
                                 state_refresh_seconds=1)


@pytest.fixture
def books(pg_database_url: str, open_rt: OpenRuntime) -> Books:
    return write_books(open_rt, pg_database_url)


@pytest.fixture
def operator(books: Books) -> Iterator[Operator]:
    yield from api_for(books)


def change_one_digit(books: Books, version: int = 4) -> bytes:
    """Change one digit of cash's amount at ``version``; return the original bytes (the 'backup')."""
    original = stored_state(books.url, books.cash, version)
    digit = re.search(rb'"amount_minor":(\d)', original)
    assert digit is not None
    at = digit.start(1)
    set_state(books.url, books.cash, version,
              original[:at] + (b"9" if original[at:at + 1] != b"9" else b"8") + original[at + 1:])
    return original


def open_account(operator: Operator, code: str) -> int:
    return operator.client.post("/v1/accounts", headers=operator.headers,
                                json={"code": code, "name": code, "currency": "BRL", "type": "asset"}).status_code


def test_writes_resume_without_a_restart_once_the_restored_ledger_verifies(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    backup = change_one_digit(books)
    assert not verify(open_rt, books.url).intact
    assert open_account(operator, "during") == 503

    set_state(books.url, books.cash, 4, backup)  # the operator restores the backup taken before the edit
    assert open_account(operator, "before-verifying") == 503  # a restore alone is not a verification
    assert verify(open_rt, books.url).intact
    assert operator.client.get("/health").json()["integrity"] == "ok"
    assert gauge_value(gauge_reader) == 1
    assert open_account(operator, "after") == 201


def test_a_restored_ok_state_does_not_clear_the_break_a_verification_does(
    books: Books, operator: Operator, open_rt: OpenRuntime,
) -> None:
    sql(books.url, "CREATE TABLE state_backup AS SELECT * FROM integrity_state")
    backup = change_one_digit(books)
    assert not verify(open_rt, books.url).intact
    set_state(books.url, books.cash, 4, backup)
    sql(books.url, "DELETE FROM integrity_state")
    sql(books.url, "INSERT INTO integrity_state SELECT * FROM state_backup")  # the whole database came back

    process_monitor().refresh()
    assert operator.client.get("/health").status_code == 503
    assert verify(open_rt, books.url).intact
    assert operator.client.get("/health").status_code == 200


def test_the_worker_finds_a_changed_new_event_and_clears_the_break_after_a_restore(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader,
) -> None:
    runtime = books.runtime
    runtime.ledger.post_transaction(books.tenant_id, "late", DAY, [leg(books.cash, "7.00"), leg(books.wallet, "-7.00")])
    version = runtime.ledger.get_account(books.tenant_id, books.cash).version
    verifier = IntegrityVerifier(runtime.ledger, runtime.engine, 500, schedule=QUICK_RECHECK)
    Follower(runtime.ledger, runtime.engine, GlobalChainProjection()).catch_up()  # chained, not yet verified
    backup = change_one_digit(books, version)

    assert verifier.catch_up() == 0
    assert_health_names(operator, kind=CHANGED, aggregate_id=str(books.cash), aggregate_version=version)
    assert gauge_value(gauge_reader) == 0

    set_state(books.url, books.cash, version, backup)
    time.sleep(QUICK_RECHECK.recheck_seconds)
    verifier.catch_up()  # the re-verification is due: it passes, and clears the break
    assert operator.client.get("/health").status_code == 200
    assert open_account(operator, "resumed") == 201


def test_the_worker_notices_a_dropped_tip_at_its_checkpoint(books: Books, operator: Operator) -> None:
    head = int(books.runtime.ledger.recorder.max_notification_id() or 0)
    sql(books.url, f"DELETE FROM {EVENTS} WHERE notification_id = %s", (head,))  # noqa: S608
    IntegrityVerifier(books.runtime.ledger, books.runtime.engine, schedule=QUICK_RECHECK).process_batch()
    assert_health_names(operator, chain=CHECKPOINT, kind=MISSING, position=head)


def test_the_tenant_audit_reports_only_that_tenants_damage(
    books: Books, operator: Operator,
) -> None:
    change_one_digit(books)
    theirs = operator.client.get(f"/admin/tenants/{books.other_tenant_id}/audit/verify", headers=ADMIN)
    assert theirs.status_code == 200
    assert theirs.json()["intact"] and theirs.json()["breaks"] == []
    assert theirs.json()["breaks_elsewhere"] == 3  # cash's event, its global link, and the checkpoint after it
    ours = operator.client.get(f"/admin/tenants/{books.tenant_id}/audit/verify", headers=ADMIN).json()
    assert not ours["intact"]
    assert (ours["first_break"]["aggregate_id"], ours["first_break"]["kind"]) == (str(books.cash), CHANGED)
    assert operator.client.get("/health").status_code == 503  # any damage found is a detection
    unknown = operator.client.get("/admin/tenants/00000000-0000-0000-0000-000000000000/audit/verify", headers=ADMIN)
    assert unknown.status_code == 404


def test_the_digest_is_served_signed_and_proves_the_ledger(
    books: Books, open_rt: OpenRuntime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with open_operator(books) as operator:
        missing = operator.client.get("/v1/ledger/digest", headers=operator.headers)
        assert (missing.status_code, missing.json()["code"]) == (404, "digest_unavailable")
    signed = books.runtime.settings.model_copy(update={"signing_key": SecretStr(SECRET)})
    monkeypatch.setattr(books.runtime, "settings", signed)
    with open_operator(books) as operator:
        response = operator.client.get("/v1/ledger/digest", headers=operator.headers)
    assert response.status_code == 200
    digest = LedgerDigest.from_document(response.json())
    with books.runtime.engine.connect() as connection:
        checkpoint = read_checkpoint(connection)
    assert (digest.sequence, digest.position, digest.hash) == (checkpoint.sequence, checkpoint.position,
                                                               checkpoint.hash)
    assert signature_is_valid(digest) and digest.key_id == SigningKey.from_setting(SECRET).key_id
    assert verify(open_rt, books.url, digests=(digest,)).intact


def test_the_worker_signs_digests_periodically(books: Books) -> None:
    key = SigningKey.from_setting(SECRET)
    hourly = VerifierSchedule(digest_interval_seconds=3600, recheck_seconds=30, full_verify_seconds=86400,
                              state_refresh_seconds=1)
    IntegrityVerifier(books.runtime.ledger, books.runtime.engine, signing_key=key, schedule=hourly).process_batch()
    with open_operator(books) as operator:  # an API without the key serves the worker's digest
        served = operator.client.get("/v1/ledger/digest", headers=operator.headers).json()
    assert served["key_id"] == key.key_id and signature_is_valid(LedgerDigest.from_document(served))


def test_health_says_database_error_and_readiness_waits(
    pg_server_url: str, make_pg_database: object, open_rt: OpenRuntime,
) -> None:
    url = make_pg_database()  # type: ignore[operator]
    runtime = open_rt(url, auth_pepper="x" * 40)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()["migrations"]) == (503, "pending")
        open_ready(open_rt, url)
        runtime.ledger.create_tenant("acme")
        assert client.get("/health/ready").status_code == 200  # one event behind is within the limit
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{postgres.database_name(url)}" WITH (FORCE)')
        health = client.get("/health")
        assert health.status_code == 503
        assert (health.json()["database"], health.json()["status"]) == ("error", "error")
        assert client.get("/health/ready").json()["reasons"] == ["the database does not answer"]


def test_the_health_probe_never_waits_longer_than_its_bound() -> None:
    probe, release = BoundedProbe(0.05), threading.Event()
    began = time.monotonic()
    assert probe.run(lambda: release.wait(5)) is None
    assert probe.run(lambda: True) is None  # the stuck check still holds the database: no pile-up
    assert time.monotonic() - began < 1
    release.set()
    time.sleep(0.05)
    assert probe.run(lambda: True) is True
    probe.close()


def test_readiness_counts_projection_lag(books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(books.runtime, "settings", books.runtime.settings.model_copy(update={"ready_max_lag": 0}))
    with open_operator(books) as operator:
        assert operator.client.get("/health/ready").json()["status"] == "ready"
        books.runtime.ledger.post_transaction(books.tenant_id, "behind", DAY,
                                              [leg(books.cash, "1.00"), leg(books.wallet, "-1.00")])
        behind = operator.client.get("/health/ready")
        assert behind.status_code == 503 and behind.json()["projection_lag"] == 3
        catch_up(books.runtime)
        assert operator.client.get("/health/ready").status_code == 200
