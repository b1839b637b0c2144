"""``invario webhooks list|replay`` and ``invario relay --once`` delivering webhooks, in-process, on SQLite
and PostgreSQL: the runbook's dead-letter procedure (INC-17) as an operator runs it."""

from __future__ import annotations

import json
from uuid import UUID

from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from infrastructure.webhooks.store import utc_now
from interfaces.bootstrap import build_webhook_store
from tests.e2e.test_cli_jobs import invoke
from tests.integration.projections_support import FIRST_DAY, open_book, post
from tests.integration.webhook_support import receiver

PEPPER = "test-pepper-for-the-webhook-cli-0123456789"
ENV = {"INVARIO_AUTH_PEPPER": PEPPER, "INVARIO_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}


def _dead_lettered_endpoint(url: str, hook_url: str) -> tuple[UUID, int]:
    """A tenant with an endpoint dead-lettered before its first event; returns its id and that event's position."""
    runtime = open_runtime(Settings(database_url=url, auth_pepper=PEPPER, webhook_allow_private_targets=True))
    try:
        book = open_book(runtime.ledger)
        store = build_webhook_store(runtime)
        endpoint, _ = store.register(book.tenant_id, hook_url, None,
                                     int(runtime.ledger.recorder.max_notification_id() or 0))
        post(book, runtime.ledger, "t1", FIRST_DAY, {"cash": 5, "bank": -5})
        assert store.failed(str(endpoint.id), endpoint.position, "the endpoint answered HTTP 500", utc_now(),
                            dead=True)
        return endpoint.id, endpoint.position + 1
    finally:
        runtime.close()


def test_list_replay_and_deliver(database_url: str) -> None:
    assert invoke(database_url, "migrate", **ENV).exit_code == 0
    with receiver() as hook:
        webhook_id, first = _dead_lettered_endpoint(database_url, hook.url)
        listed = invoke(database_url, "webhooks", "list", "--dead-lettered", "--json", **ENV)
        assert listed.exit_code == 0, listed.output
        rows = json.loads(listed.output)["webhooks"]
        assert [(r["id"], r["status"], r["last_error"]) for r in rows] == [
            (str(webhook_id), "dead_lettered", "the endpoint answered HTTP 500")]
        assert "secret" not in listed.output and "whsec_" not in listed.output
        lines = invoke(database_url, "webhooks", "list", "--tenant", "acme", **ENV)
        assert lines.exit_code == 0 and str(webhook_id) in lines.output and "dead_lettered" in lines.output

        quiet = invoke(database_url, "relay", "--once", **ENV)
        assert quiet.exit_code == 0, quiet.output
        assert hook.requests == []  # dead-lettered: nothing is sent

        replayed = invoke(database_url, "webhooks", "replay", str(webhook_id), "--from", str(first), **ENV)
        assert replayed.exit_code == 0, replayed.output
        assert f"replaying from position {first}" in replayed.output
        delivered = invoke(database_url, "relay", "--once", **ENV)
        assert delivered.exit_code == 0, delivered.output
        assert hook.requests and hook.requests[0].id == first
        assert all(r.event["type"].startswith("io.invario.") for r in hook.requests)
        assert invoke(database_url, "webhooks", "list", "--dead-lettered", "--json", **ENV).output.count('"id"') == 0


def test_bad_arguments_are_one_line(sqlite_database_url: str) -> None:
    assert invoke(sqlite_database_url, "migrate").exit_code == 0
    for args in (("webhooks", "replay", "not-an-id", "--from", "1"),
                 ("webhooks", "replay", "00000000-0000-4000-8000-000000000000", "--from", "1"),
                 ("webhooks", "list", "--tenant", "nobody")):
        result = invoke(sqlite_database_url, *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert invoke(sqlite_database_url, "webhooks", "replay", "x", "--from", "0").exit_code == 2
    off = invoke(sqlite_database_url, "relay", "--once", INVARIO_WEBHOOKS_ENABLED="false")
    assert off.exit_code == 2 and "no sink configured" in off.output
