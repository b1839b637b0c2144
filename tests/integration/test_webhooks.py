"""Webhooks against a receiver the test owns, on SQLite and PostgreSQL (docs/events-out.md, "Webhooks").

Each endpoint receives its own tenant's events only, in log order, each once it
is acknowledged, signed so that standardwebhooks' ``Webhook.verify`` accepts it;
an endpoint answering 500, timing out or answering slowly is retried or waited
for without holding up another tenant's; after N failures it is dead-lettered
until a replay; no secret reaches a log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from standardwebhooks import Webhook

from application.access import AccessService
from infrastructure.runtime import Runtime
from infrastructure.schema import metadata
from infrastructure.webhooks.secrets import WebhookSecret
from infrastructure.webhooks.store import ACTIVE, DEAD_LETTERED, WebhookEndpoint
from interfaces.bootstrap import build_webhook_loop, build_webhook_store
from projections.relay.origins import store_origins
from projections.relay.webhook_runner import WebhookLoop, WebhookThread
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import notifications
from tests.integration.projections_support import FIRST_DAY, Book, open_book, open_ready, post
from tests.integration.webhook_support import receiver, wait_for

PEPPER = "test-pepper-" + "x" * 40
TEST_SETTINGS = {"auth_pepper": PEPPER, "webhook_allow_private_targets": True, "webhook_timeout_seconds": 5.0,
                 "webhook_retry_min_seconds": 0.05, "webhook_retry_max_seconds": 0.2}


def _open(open_rt: OpenRuntime, url: str, **settings: Any) -> Runtime:
    return open_ready(open_rt, url, **{**TEST_SETTINGS, **settings})


def _register(runtime: Runtime, book: Book, url: str, types: list[str] | None = None
              ) -> tuple[WebhookEndpoint, WebhookSecret]:
    head = int(runtime.ledger.recorder.max_notification_id() or 0)
    return build_webhook_store(runtime).register(book.tenant_id, url, types, head)


def _tenant_positions(runtime: Runtime, tenant_id: UUID, after: int) -> list[int]:
    """The positions of the tenant's events after ``after`` that a webhook carries (no API key's)."""
    ledger = runtime.ledger
    origins = store_origins(ledger)
    found = []
    for notification in notifications(ledger):
        event = ledger.mapper.to_domain_event(notification)
        origin = origins.origin(event)
        if notification.id > after and origin is not None and origin.tenant_id == tenant_id:
            found.append(notification.id)
    return found


def _post_some(runtime: Runtime, book: Book, count: int, prefix: str) -> None:
    for n in range(count):
        post(book, runtime.ledger, f"{prefix}-{n}", FIRST_DAY, {"cash": 100 + n, "bank": -(100 + n)})


def _drain(runtime: Runtime) -> WebhookLoop:
    loop = build_webhook_loop(runtime, threading.Event())
    try:
        loop.run(until_idle=True)
    finally:
        loop.dispatcher.close()
    return loop


@contextmanager
def _dispatching(runtime: Runtime) -> Iterator[WebhookThread]:
    thread = WebhookThread(build_webhook_loop(runtime, threading.Event()))
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def _ids(requests: list[Any]) -> list[int]:
    return [request.id for request in requests]


def test_each_tenant_receives_its_own_events_signed_and_in_order(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, database_url)
    acme, beta = open_book(runtime.ledger, "acme"), open_book(runtime.ledger, "beta")
    with receiver() as acme_hook, receiver() as beta_hook:
        acme_endpoint, acme_secret = _register(runtime, acme, acme_hook.url)
        beta_endpoint, beta_secret = _register(runtime, beta, beta_hook.url)
        _post_some(runtime, acme, 3, "a")
        _post_some(runtime, beta, 2, "b")
        AccessService(runtime.ledger, PEPPER).issue_key(acme.tenant_id, ["read"])  # an event never sent
        _post_some(runtime, acme, 1, "a2")
        _drain(runtime)
        for hook, endpoint, secret, book in ((acme_hook, acme_endpoint, acme_secret, acme),
                                             (beta_hook, beta_endpoint, beta_secret, beta)):
            assert _ids(hook.requests) == _tenant_positions(runtime, book.tenant_id, endpoint.position)
            for request in hook.requests:
                event = Webhook(secret.reveal()).verify(request.body, request.headers)
                assert event["id"] == request.headers["webhook-id"]
                assert event["source"].endswith(f"/tenants/{book.tenant_id}")
                assert not event["type"].startswith(("io.invario.api_key", "io.invario.key_ring"))
                assert request.headers["content-type"] == "application/cloudevents+json"
        with pytest.raises(Exception, match="signature"):
            Webhook(beta_secret.reveal()).verify(acme_hook.requests[0].body, acme_hook.requests[0].headers)
        stored = build_webhook_store(runtime).get(acme_endpoint.id)
        assert stored is not None and stored.delivered_count == len(acme_hook.requests)
        assert stored.position == runtime.ledger.recorder.max_notification_id()


def test_an_event_type_filter_sends_only_those_types(sqlite_database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, sqlite_database_url)
    acme = open_book(runtime.ledger)
    with receiver() as hook:
        _register(runtime, acme, hook.url, ["io.invario.transaction.posted"])
        _post_some(runtime, acme, 3, "a")
        _drain(runtime)
        assert [r.event["type"] for r in hook.requests] == ["io.invario.transaction.posted"] * 3


def test_a_500_then_200_is_retried_and_delivered_once_in_order(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, database_url)
    acme = open_book(runtime.ledger)
    with receiver(lambda number, _body: 500 if number == 1 else 200) as hook:
        endpoint, _ = _register(runtime, acme, hook.url)
        _post_some(runtime, acme, 2, "a")
        expected = _tenant_positions(runtime, acme.tenant_id, endpoint.position)
        with _dispatching(runtime):
            wait_for(lambda: len(hook.accepted) == len(expected), "every event acknowledged")
        assert _ids(hook.accepted) == expected  # each once, in order
        assert hook.requests[0].status == 500 and hook.requests[0].id == expected[0]
        assert _ids(hook.requests) == [expected[0], *expected]


def test_an_endpoint_that_times_out_is_retried(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, database_url, webhook_timeout_seconds=0.5)
    acme = open_book(runtime.ledger)
    released = threading.Event()

    def answer(number: int, _body: bytes) -> int:
        if number == 1:
            released.wait(10)  # silent far beyond the attempt's timeout
        return 200

    with receiver(answer) as hook:
        endpoint, _ = _register(runtime, acme, hook.url)
        _post_some(runtime, acme, 1, "a")
        expected = _tenant_positions(runtime, acme.tenant_id, endpoint.position)
        try:
            with _dispatching(runtime):
                wait_for(lambda: _ids(hook.accepted) == expected, "the retries acknowledged")
        finally:
            released.set()
        wait_for(lambda: len(hook.requests) == len(expected) + 1, "the silent request's end")
        # The first attempt timed out (its late 200 came after the dispatcher stopped waiting),
        # so the first event was sent again, and the others after it, in order.
        arrivals = sorted(hook.requests, key=lambda r: r.status)  # the late answer last is not guaranteed
        assert sorted(_ids(arrivals)) == sorted([expected[0], *expected])


def test_a_slow_endpoint_does_not_hold_up_another_tenants(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, database_url, webhook_timeout_seconds=30.0, webhook_concurrency_max=2)
    acme, beta = open_book(runtime.ledger, "acme"), open_book(runtime.ledger, "beta")
    released = threading.Event()

    def slow(_number: int, _body: bytes) -> int:
        released.wait(20)  # answers 200, but only once the test lets it
        return 200

    with receiver(slow) as slow_hook, receiver() as fast_hook:
        slow_endpoint, _ = _register(runtime, acme, slow_hook.url)
        fast_endpoint, _ = _register(runtime, beta, fast_hook.url)
        _post_some(runtime, acme, 2, "a")
        _post_some(runtime, beta, 2, "b")
        slow_expected = _tenant_positions(runtime, acme.tenant_id, slow_endpoint.position)
        fast_expected = _tenant_positions(runtime, beta.tenant_id, fast_endpoint.position)
        try:
            with _dispatching(runtime):
                wait_for(lambda: _ids(fast_hook.accepted) == fast_expected, "the other tenant's events")
                assert slow_hook.accepted == []  # the slow one is still on its first event
                released.set()
                wait_for(lambda: _ids(slow_hook.accepted) == slow_expected, "the slow endpoint's events")
        finally:
            released.set()
        assert _ids(slow_hook.requests) == slow_expected  # slow is not failed: nothing was sent twice


def test_two_dispatchers_never_send_to_one_endpoint_at_once(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, database_url, webhook_batch_size=2)  # small batches: many claims, hand-overs
    acme = open_book(runtime.ledger)
    with receiver() as hook:
        endpoint, _ = _register(runtime, acme, hook.url)
        _post_some(runtime, acme, 5, "a")
        expected = _tenant_positions(runtime, acme.tenant_id, endpoint.position)
        with _dispatching(runtime), _dispatching(runtime):  # e.g. a worker and 'invario relay'
            wait_for(lambda: len(hook.accepted) >= len(expected), "every event")
        assert _ids(hook.requests) == expected  # each once, in order: the lease hands the endpoint over


def test_n_failures_dead_letter_the_endpoint_until_a_replay(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, database_url, webhook_attempts_max=3)
    acme = open_book(runtime.ledger)
    healthy = threading.Event()
    with receiver(lambda _n, _body: 200 if healthy.is_set() else 500) as hook:
        endpoint, _ = _register(runtime, acme, hook.url)
        _post_some(runtime, acme, 2, "a")
        expected = _tenant_positions(runtime, acme.tenant_id, endpoint.position)
        store = build_webhook_store(runtime)
        with _dispatching(runtime):
            wait_for(lambda: store.get(endpoint.id).status == DEAD_LETTERED, "the dead letter")  # type: ignore[union-attr]
        dead = store.get(endpoint.id)
        assert dead is not None and dead.attempts == 3 and dead.position == endpoint.position
        assert "HTTP 500" in (dead.last_error or "") and dead.dead_lettered_at is not None
        assert _ids(hook.requests) == [expected[0]] * 3  # never past the failing event
        assert store.count_dead_lettered() == 1
        _drain(runtime)  # a dead-lettered endpoint is left alone
        assert len(hook.requests) == 3

        healthy.set()
        revived = store.replay(endpoint.id, expected[0])
        assert revived is not None and revived.status == ACTIVE and revived.attempts == 0
        _drain(runtime)
        assert _ids(hook.accepted) == expected


def test_a_replay_sends_again_from_a_position(sqlite_database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, sqlite_database_url)
    acme = open_book(runtime.ledger)
    with receiver() as hook:
        endpoint, _ = _register(runtime, acme, hook.url)
        _post_some(runtime, acme, 3, "a")
        _drain(runtime)
        expected = _tenant_positions(runtime, acme.tenant_id, endpoint.position)
        assert _ids(hook.requests) == expected
        build_webhook_store(runtime).replay(endpoint.id, expected[2])
        _drain(runtime)
        assert _ids(hook.requests) == expected + expected[2:]


def test_no_secret_reaches_a_log_line(sqlite_database_url: str, open_rt: OpenRuntime,
                                      caplog: pytest.LogCaptureFixture) -> None:
    runtime = _open(open_rt, sqlite_database_url, webhook_attempts_max=2)
    acme = open_book(runtime.ledger)
    caplog.set_level(logging.DEBUG)
    with receiver(lambda _n, _body: 500) as hook:
        endpoint, secret = _register(runtime, acme, hook.url + "?token=url-token-123")
        _post_some(runtime, acme, 1, "a")
        store = build_webhook_store(runtime)
        with _dispatching(runtime):
            wait_for(lambda: store.get(endpoint.id).status == DEAD_LETTERED, "the dead letter")  # type: ignore[union-attr]
    logged = "\n".join(caplog.text.splitlines() + [repr(r.__dict__) for r in caplog.records])
    assert "webhook_dead_lettered" in logged or "dead-lettered" in logged
    for forbidden in (secret.reveal(), secret.reveal().removeprefix("whsec_"), "url-token-123", PEPPER):
        assert forbidden not in logged
    assert secret.reveal() not in repr(secret) and secret.reveal() not in str(store.get(endpoint.id))


def test_migration_0009_creates_the_declared_table(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = _open(open_rt, database_url)
    with runtime.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, metadata) if "webhook_endpoints" in repr(d)]
    assert differences == []
