"""Logs are JSON lines carrying the request's correlation id, tenant and trace id; secrets never appear.

Also: a request's spans (server span, application command, database commit)
share one trace, and that trace id is the one in the request's log lines.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infrastructure.logging_setup import configure_logging
from infrastructure.settings import Settings
from tests.e2e.http_fixtures import ADMIN_TOKEN, DAY, PEPPER, Api, sqlite_api  # noqa: F401


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The process's logging routed through ``configure_logging`` into a buffer, restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        structlog.reset_defaults()


@pytest.fixture
def spans(sqlite_api: Api) -> Iterator[InMemorySpanExporter]:  # noqa: ARG001 - the app sets the provider up
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    yield exporter
    exporter.shutdown()  # the provider is process-wide: from now on this exporter keeps nothing


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The service's lines (the test's own HTTP client, httpx, logs too: not the service's)."""
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [record for record in records if record.get("logger") != "httpx"]


def test_every_line_of_a_request_is_json_with_its_correlation_id(
    sqlite_api: Api, log_stream: io.StringIO, spans: InMemorySpanExporter
) -> None:
    api = sqlite_api
    acme = api.tenant("acme")
    cash, wallet = api.open_account(acme, "cash"), api.open_account(acme, "wallet", type="liability")
    log_stream.truncate(0)
    log_stream.seek(0)
    spans.clear()
    body = {"external_id": "t-1", "effective_date": DAY,
            "postings": [{"account_id": cash, "amount": "10.00"}, {"account_id": wallet, "amount": "-10.00"}]}
    response = api.client.post("/v1/transactions", json=body, headers={**acme.headers, "X-Request-ID": "abc"})
    assert response.status_code == 201
    records = lines(log_stream)
    assert records, "the request logged nothing"
    for record in records:
        assert {"timestamp", "level", "event"} <= set(record), record
        assert record["correlation_id"] == "abc", record
        assert record["timestamp"].endswith("Z")
    processed = [r for r in records if r["event"] == "transaction_processed"]
    assert len(processed) == 1
    assert processed[0]["transaction_id"] == response.json()["id"]
    assert processed[0]["tenant"] == "acme" and processed[0]["level"] == "info"
    access = [r for r in records if r["event"] == "http_request"]
    assert access[0]["route"] == "/v1/transactions" and access[0]["status"] == 201

    finished = {span.name: span for span in spans.get_finished_spans()}
    server, command, commit = finished["POST /v1/transactions"], finished["ledger.post_transaction"], finished["db.commit"]
    assert command.parent.span_id == server.context.span_id
    assert commit.parent.span_id == command.context.span_id
    trace_id = format(server.context.trace_id, "032x")
    assert {record["trace_id"] for record in records} == {trace_id}


def test_rejections_are_logged_with_their_code_and_secrets_never(
    sqlite_api: Api, log_stream: io.StringIO
) -> None:
    api = sqlite_api
    acme = api.tenant("acme")
    cash, wallet = api.open_account(acme, "cash"), api.open_account(acme, "wallet", type="liability")
    body = {"external_id": "t-2", "effective_date": DAY,
            "postings": [{"account_id": cash, "amount": "10.00"}, {"account_id": wallet, "amount": "-9.99"}]}
    rejected = api.client.post("/v1/transactions", json=body, headers={**acme.headers, "X-Request-ID": "req-7"})
    assert rejected.status_code == 422
    api.client.get("/v1/accounts", headers={"Authorization": f"Bearer {acme.key}x"})
    api.client.get("/internal/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    api.client.get("/internal/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"})
    logging.getLogger("invario.test").info("a careless caller", extra={"api_key": acme.key, "password": PEPPER})
    records = lines(log_stream)
    rejection = [r for r in records if r["event"] == "transaction_rejected"]
    assert len(rejection) == 1
    assert rejection[0]["code"] == "transaction_unbalanced" and rejection[0]["correlation_id"] == "req-7"
    careless = [r for r in records if r["event"] == "a careless caller"]
    assert careless[0]["api_key"] == "[redacted]" and careless[0]["password"] == "[redacted]"
    text = log_stream.getvalue()
    for secret in (acme.key, acme.key[9:], PEPPER, ADMIN_TOKEN, "-9.99"):
        assert secret not in text


def test_console_format_and_level_come_from_settings() -> None:
    settings = Settings(log_level="warning", log_format="console")
    assert (settings.log_level, settings.log_format) == ("WARNING", "console")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure_logging(settings.log_level, settings.log_format, stream=stream)
        logging.getLogger("invario.test").info("hidden")
        logging.getLogger("invario.test").warning("shown", extra={"event": "something_happened"})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        structlog.reset_defaults()
    output = stream.getvalue()
    assert "hidden" not in output and "something_happened" in output
    assert not output.lstrip().startswith("{")  # readable, not JSON
