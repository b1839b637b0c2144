"""/v1/webhooks end to end, on SQLite and PostgreSQL: register, list, read, replay, delete, and a delivery.

The signing secret is in the 201 and nowhere else; bad URLs (not https, private
or link-local targets, credentials) are problem documents; another tenant's
endpoint reads as absent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from interfaces.bootstrap import build_webhook_loop
from tests.e2e.http_fixtures import Api, assert_problem, make_api
from tests.integration.webhook_support import receiver

PATH = "/v1/webhooks"


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    """The app, accepting endpoints on this machine (the test's own receiver)."""
    yield from make_api(database_url, webhook_allow_private_targets=True)


@pytest.fixture
def strict_api(sqlite_database_url: str) -> Iterator[Api]:
    """The app with the default target policy: public https endpoints only."""
    yield from make_api(sqlite_database_url)


def _deliver(api: Api) -> None:
    loop = build_webhook_loop(api.runtime, threading.Event())
    try:
        loop.run(until_idle=True)
    finally:
        loop.dispatcher.close()


def test_register_deliver_list_replay_delete(api: Api) -> None:
    acme, globex = api.tenant("acme"), api.tenant("globex")
    cash, bank = api.open_account(acme, "cash"), api.open_account(acme, "bank")
    with receiver() as hook:
        created = api.client.post(PATH, json={"url": hook.url}, headers=acme.headers)
        assert created.status_code == 201, created.text
        body = created.json()
        secret, webhook_id = body["secret"], body["id"]
        assert secret.startswith("whsec_") and body["status"] == "active" and body["event_types"] is None
        assert created.headers["Location"] == f"{PATH}/{webhook_id}"

        posted = api.post(acme, "inv-1", (cash, "12.34"), (bank, "-12.34"))
        assert posted.status_code == 201, posted.text
        _deliver(api)
        assert hook.requests, "nothing delivered"
        for request in hook.requests:
            event = Webhook(secret).verify(request.body, request.headers)
            assert event["source"].endswith(f"/tenants/{acme.id}")
        posted_events = [r.event for r in hook.requests if r.event["type"] == "io.invario.transaction.posted"]
        assert [e["data"]["external_id"] for e in posted_events] == ["inv-1"]
        assert int(posted_events[0]["id"]) <= posted.json()["position"]

        listed = api.client.get(PATH, headers=acme.headers)
        one = api.client.get(f"{PATH}/{webhook_id}", headers=acme.headers)
        for response in (listed, one):
            assert response.status_code == 200, response.text
            assert secret not in response.text and secret.removeprefix("whsec_") not in response.text
            assert "secret" not in response.text
        assert [item["id"] for item in listed.json()["items"]] == [webhook_id]
        assert one.json()["delivered_count"] == len(hook.requests)

        # Another tenant sees nothing of it, and cannot touch it.
        assert api.client.get(PATH, headers=globex.headers).json()["items"] == []
        for response in (api.client.get(f"{PATH}/{webhook_id}", headers=globex.headers),
                         api.client.delete(f"{PATH}/{webhook_id}", headers=globex.headers),
                         api.client.post(f"{PATH}/{webhook_id}/replay?from=1", headers=globex.headers)):
            assert_problem(response, 404, "webhook_not_found")

        first = int(hook.requests[0].headers["webhook-id"])
        replayed = api.client.post(f"{PATH}/{webhook_id}/replay", params={"from": first}, headers=acme.headers)
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["status"] == "active" and replayed.json()["position"] == first - 1
        count = len(hook.requests)
        _deliver(api)
        assert [r.id for r in hook.requests[count:]] == [r.id for r in hook.requests[:count]]

        assert api.client.delete(f"{PATH}/{webhook_id}", headers=acme.headers).status_code == 204
        assert_problem(api.client.get(f"{PATH}/{webhook_id}", headers=acme.headers), 404, "webhook_not_found")
        api.post(acme, "inv-2", (cash, "1.00"), (bank, "-1.00"))
        count = len(hook.requests)
        _deliver(api)
        assert len(hook.requests) == count  # a deleted endpoint is sent nothing


def test_scopes(api: Api) -> None:
    acme = api.tenant("acme")
    reader = {"Authorization": f"Bearer {api.key(acme.id, ('read',))}"}
    assert_problem(api.client.post(PATH, json={"url": "https://127.0.0.1/hook"}, headers=reader), 403,
                   "insufficient_scope")
    assert api.client.get(PATH, headers=reader).status_code == 200
    assert_problem(api.client.get(PATH), 401, "unauthenticated")


@pytest.mark.parametrize(("url", "code"), [
    ("ftp://hooks.example.com/x", "webhook_url_invalid"),
    ("not a url", "webhook_url_invalid"),
    ("https://user:password@8.8.8.8/hook", "webhook_url_invalid"),
    ("http://8.8.8.8/hook", "webhook_url_insecure"),
    ("https://127.0.0.1/hook", "webhook_target_forbidden"),
    ("https://10.1.2.3/hook", "webhook_target_forbidden"),
    ("https://[::1]/hook", "webhook_target_forbidden"),
    ("https://[::ffff:192.168.0.1]/hook", "webhook_target_forbidden"),
    ("https://169.254.169.254/latest/meta-data", "webhook_target_forbidden"),
    ("https://invalid.invalid/hook", "webhook_target_unresolvable"),
])
def test_bad_urls_are_problems(strict_api: Api, url: str, code: str) -> None:
    acme = strict_api.tenant("acme")
    body = assert_problem(strict_api.client.post(PATH, json={"url": url}, headers=acme.headers), 422, code)
    assert "password" not in body["detail"]
    assert strict_api.client.get(PATH, headers=acme.headers).json()["items"] == []


def test_link_local_is_refused_even_where_private_targets_are_allowed(api: Api) -> None:
    acme = api.tenant("acme")
    response = api.client.post(PATH, json={"url": "http://169.254.169.254/"}, headers=acme.headers)
    assert_problem(response, 422, "webhook_url_insecure")
    response = api.client.post(PATH, json={"url": "https://169.254.169.254/"}, headers=acme.headers)
    assert_problem(response, 422, "webhook_target_forbidden")


def test_malformed_requests(strict_api: Api) -> None:
    acme = strict_api.tenant("acme")
    for body, code in (({}, "missing_field"),
                       ({"url": "https://8.8.8.8/", "event_types": ["transaction.posted"]}, "invalid_request"),
                       ({"url": "https://8.8.8.8/", "event_types": []}, "invalid_request"),
                       ({"url": "https://8.8.8.8/", "extra": 1}, "unknown_field"),
                       ({"url": "https://8.8.8.8/" + "a" * 3000}, "string_too_long")):
        assert_problem(strict_api.client.post(PATH, json=body, headers=acme.headers), 400, code)
    missing = "00000000-0000-4000-8000-000000000000"
    assert_problem(strict_api.client.post(f"{PATH}/{missing}/replay", headers=acme.headers), 400,
                   "missing_field")  # no ?from=
    assert_problem(strict_api.client.post(f"{PATH}/{missing}/replay?from=0", headers=acme.headers), 400,
                   "invalid_request")
    assert_problem(strict_api.client.get(f"{PATH}/not-an-id", headers=acme.headers), 400, "invalid_request")


def test_a_tenant_has_a_bounded_number_of_endpoints(strict_api: Api) -> None:
    from infrastructure.webhooks.store import ENDPOINTS_PER_TENANT_MAX

    acme = strict_api.tenant("acme")
    for n in range(ENDPOINTS_PER_TENANT_MAX):
        created = strict_api.client.post(PATH, json={"url": f"https://8.8.8.8/{n}"}, headers=acme.headers)
        assert created.status_code == 201, created.text
    assert_problem(strict_api.client.post(PATH, json={"url": "https://8.8.8.8/x"}, headers=acme.headers), 409,
                   "too_many_webhooks")


def test_operation_ids(strict_api: Api) -> None:
    paths = strict_api.client.get("/openapi.json").json()["paths"]
    ids = {operation["operationId"] for path, item in paths.items() if path.startswith(PATH)
           for operation in item.values()}
    assert ids == {"register_webhook", "list_webhooks", "get_webhook", "delete_webhook", "replay_webhook"}
