"""Helpers of the integrity tests: books with a known layout, tampering by SQL, and what an operator sees.

The damage is always done behind the application's back, with plain SQL on the
event store's tables; verification then runs on a fresh runtime (nothing cached).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from application.ledger import Ledger
from domain.chain import compute_event_hash
from infrastructure.runtime import Runtime
from interfaces.bootstrap import build_followers, open_access
from infrastructure.integrity_monitor import GAUGE_NAME, process_monitor, register_integrity_gauge
from interfaces.http.app import create_app
from projections.following.schema import ensure_schema
from projections.jobs.verification import LedgerVerification, VerificationReport, record_outcome
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, leg

EVENTS = "invario_events"
EVENT_SEQUENCE = "invario_events_notification_id_seq"
PEPPER = "integrity-test-pepper-0123456789-abcdefghij"
ADMIN_TOKEN = "integrity-test-admin-token-0123456789-abcdefghij"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POSTINGS = 6


@dataclass
class Books:
    url: str
    runtime: Runtime
    tenant_id: UUID
    cash: UUID
    wallet: UUID
    other_tenant_id: UUID
    key: str = field(default="", repr=False)  # acme's read+write API key
    gap: list[int] = field(default_factory=list)  # notification ids skipped on purpose


def open_ready(open_rt: OpenRuntime, url: str) -> Runtime:
    runtime = open_rt(url, auth_pepper=PEPPER, admin_token=ADMIN_TOKEN, rate_limit_per_second=0)
    ensure_schema(runtime.engine)
    return runtime


def write_books(open_rt: OpenRuntime, url: str) -> Books:
    """Tenant acme (cash, wallet, six transfers) and tenant globex, every event chained and verified.

    Two notification ids are skipped in the middle of the log (as rolled-back
    writes do), so that a forged event can be slipped in there.
    """
    runtime = open_ready(open_rt, url)
    ledger = runtime.ledger
    tenant_id = ledger.create_tenant("acme").aggregate.id
    cash = ledger.open_account(tenant_id, "cash", "Cash", "BRL", "asset").aggregate.id
    wallet = ledger.open_account(tenant_id, "wallet", "Wallet", "BRL", "liability").aggregate.id
    other = ledger.create_tenant("globex").aggregate.id
    other_cash = ledger.open_account(other, "cash", "Cash", "BRL", "asset").aggregate.id
    other_bank = ledger.open_account(other, "bank", "Bank", "BRL", "asset").aggregate.id
    books = Books(url, runtime, tenant_id, cash, wallet, other)
    for n in range(POSTINGS):
        if n == 3:
            books.gap = [sql_scalar(url, f"SELECT nextval('{EVENT_SEQUENCE}')") for _ in range(2)]
        ledger.post_transaction(tenant_id, f"t-{n}", DAY, [leg(cash, f"{n + 1}2.34"), leg(wallet, f"-{n + 1}2.34")])
    ledger.post_transaction(other, "g-1", DAY, [leg(other_cash, "1.00"), leg(other_bank, "-1.00")])
    books.key = open_access(runtime).issue_key(tenant_id, ("read", "write")).secret
    catch_up(runtime)
    return books


def catch_up(runtime: Runtime) -> None:
    for follower in build_followers(runtime):
        follower.catch_up()


# --- SQL behind the application's back ------------------------------------------------------


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(statement, params).rowcount  # type: ignore[arg-type]


def sql_scalar(url: str, statement: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as connection:
        row = connection.execute(statement, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def position_of(url: str, aggregate_id: UUID, version: int) -> int:
    return int(sql_scalar(url, f"SELECT notification_id FROM {EVENTS} "  # noqa: S608
                               "WHERE originator_id = %s AND originator_version = %s", (aggregate_id, version)))


def sequence_of(url: str, position: int) -> int:
    """The place of the event at ``position`` in the global chain (before any tampering)."""
    return int(sql_scalar(url, f"SELECT count(*) FROM {EVENTS} WHERE notification_id <= %s", (position,)))  # noqa: S608


def stored_state(url: str, aggregate_id: UUID, version: int) -> bytes:
    return bytes(sql_scalar(url, f"SELECT state FROM {EVENTS} "  # noqa: S608
                                 "WHERE originator_id = %s AND originator_version = %s", (aggregate_id, version)))


def set_state(url: str, aggregate_id: UUID, version: int, state: bytes) -> None:
    assert sql(url, f"UPDATE {EVENTS} SET state = %s WHERE originator_id = %s "  # noqa: S608
                    "AND originator_version = %s", (state, aggregate_id, version)) == 1


def rewritten_state(ledger: Ledger, aggregate_id: UUID, version: int, prev_hash: str, **changes: Any) -> tuple[
        bytes, str]:
    """What an attacker who knows the hashing would store: the event changed, its hash recomputed."""
    stored = ledger.recorder.select_events(aggregate_id, gt=version - 1, lte=version)[0]
    event = ledger.mapper.to_domain_event(stored)
    values = {**vars(event), **changes, "prev_hash": prev_hash, "hash": ""}
    forged = object.__new__(type(event))
    object.__setattr__(forged, "__dict__", values)
    values["hash"] = compute_event_hash(forged)
    return ledger.mapper.to_stored_event(forged).state, values["hash"]


# --- what the operator sees -----------------------------------------------------------------------


def verify(open_rt: OpenRuntime, url: str, digests: tuple[Any, ...] = ()) -> VerificationReport:
    """``invario verify`` in-process, on a fresh runtime; the outcome is recorded like the command does."""
    runtime = open_ready(open_rt, url)
    report = LedgerVerification(runtime.ledger, runtime.engine, digests=digests).run()
    record_outcome(runtime.engine, report, "test verify")
    return report


@pytest.fixture(scope="session")
def gauge_reader() -> InMemoryMetricReader:
    """The integrity gauge, read through an in-memory metric reader (the exporter arrives with another issue)."""
    reader = InMemoryMetricReader()
    register_integrity_gauge(MeterProvider(metric_readers=[reader]).get_meter("invario"))
    return reader


def gauge_value(reader: InMemoryMetricReader) -> float:
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == GAUGE_NAME:
                    return metric.data.data_points[-1].value
    raise AssertionError(f"{GAUGE_NAME} was not exported")


@pytest.fixture(autouse=True)
def fresh_monitor() -> Iterator[None]:
    """The monitor is process-wide: no test may leave the ledger 'broken' for the next one."""
    process_monitor().reset()
    yield
    process_monitor().reset()


@dataclass
class Operator:
    client: TestClient
    headers: dict[str, str]


def api_for(books: Books) -> Iterator[Operator]:
    with TestClient(create_app(books.runtime), raise_server_exceptions=False) as client:
        yield Operator(client, {"Authorization": f"Bearer {books.key}"})


def assert_health_names(operator: Operator, **location: Any) -> dict[str, Any]:
    """/health is 503 and its break names the given location."""
    response = operator.client.get("/health")
    assert response.status_code == 503, response.text
    body = response.json()
    assert (body["status"], body["database"], body["integrity"]) == ("error", "ok", "broken")
    assert {name: body["break"][name] for name in location} == location
    return body
