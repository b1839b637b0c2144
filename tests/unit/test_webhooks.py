"""Webhooks without I/O: which URLs may be endpoints, sealed secrets, signed headers, the back-off."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook

from infrastructure.sinks.message import OutboundMessage
from infrastructure.webhooks.secrets import SecretBox, SecretUnreadable, new_secret
from infrastructure.webhooks.sender import signed_headers
from infrastructure.webhooks.targets import TargetPolicy, WebhookTargetRefused, check_target
from projections.relay.webhooks import RetryPolicy

STRICT = TargetPolicy()
PRIVATE_OK = TargetPolicy(allow_private=True)


def _resolving_to(*addresses: str):  # noqa: ANN202 - a test double
    return lambda _host, _port: list(addresses)


@pytest.mark.parametrize(("url", "policy", "code"), [
    ("https://hooks.example.com/x", STRICT, None),
    ("http://hooks.example.com/x", STRICT, "webhook_url_insecure"),
    ("http://hooks.example.com/x", TargetPolicy(allow_http=True), None),
    ("http://127.0.0.1:8080/x", STRICT, "webhook_target_forbidden"),  # http to loopback: only the address stops it
    ("http://localhost:8080/x", PRIVATE_OK, None),
    ("https://10.0.0.8/x", PRIVATE_OK, None),
    ("https://169.254.169.254/x", PRIVATE_OK, "webhook_target_forbidden"),
    ("https://[fe80::1]/x", PRIVATE_OK, "webhook_target_forbidden"),
    ("https://224.0.0.1/x", PRIVATE_OK, "webhook_target_forbidden"),
    ("https://0.0.0.0/x", PRIVATE_OK, "webhook_target_forbidden"),
    ("https://[::ffff:127.0.0.1]/x", STRICT, "webhook_target_forbidden"),
    ("https://100.64.1.1/x", STRICT, "webhook_target_forbidden"),
    ("https://u:p@hooks.example.com/x", STRICT, "webhook_url_invalid"),
    ("https://hooks.example.com/x#frag", STRICT, "webhook_url_invalid"),
    ("https://hooks.example.com:99999/x", STRICT, "webhook_url_invalid"),
    ("javascript:alert(1)", STRICT, "webhook_url_invalid"),
    ("https:///x", STRICT, "webhook_url_invalid"),
    ("https://" + "a" * 2100 + ".com/", STRICT, "webhook_url_invalid"),
])
def test_which_urls_may_be_endpoints(url: str, policy: TargetPolicy, code: str | None) -> None:
    resolver = _resolving_to("93.184.215.14") if "localhost" not in url else _resolving_to("127.0.0.1")
    if code is None:
        assert check_target(url, policy, resolver).url == url
    else:
        with pytest.raises(WebhookTargetRefused) as refused:
            check_target(url, policy, resolver)
        assert refused.value.code == code


def test_a_name_that_resolves_to_any_private_address_is_refused() -> None:
    # DNS rebinding: a public name with one private answer among public ones.
    with pytest.raises(WebhookTargetRefused, match="private"):
        check_target("https://hooks.example.com/", STRICT, _resolving_to("93.184.215.14", "192.168.1.10"))
    with pytest.raises(WebhookTargetRefused, match="link-local"):
        check_target("https://hooks.example.com/", PRIVATE_OK, _resolving_to("169.254.169.254"))


def test_a_secret_opens_only_with_its_pepper_and_its_endpoint() -> None:
    secret = new_secret()
    assert secret.reveal().startswith("whsec_") and len(secret.reveal()) > 40
    assert secret.reveal() not in repr(secret) and secret.reveal() not in str(secret) and "***" in repr(secret)
    box = SecretBox("p" * 40)
    sealed = box.seal(secret, "endpoint-1")
    assert secret.reveal().encode() not in sealed
    assert box.open(sealed, "endpoint-1").reveal() == secret.reveal()
    with pytest.raises(SecretUnreadable, match="pepper"):
        box.open(sealed, "endpoint-2")  # a sealed secret copied onto another endpoint's row
    with pytest.raises(SecretUnreadable):
        SecretBox("q" * 40).open(sealed, "endpoint-1")
    assert "p" * 40 not in repr(box)


def test_deliveries_are_signed_as_standard_webhooks_verify_them() -> None:
    secret = new_secret()
    message = OutboundMessage("42", "tenant", "transaction", "posted", b'{"id": "42", "data": {"x": "\\u00e9"}}')
    headers = signed_headers(secret, message, datetime.now(timezone.utc))
    assert headers["webhook-id"] == "42" and headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret.reveal()).verify(message.body, headers) == {"id": "42", "data": {"x": "é"}}
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret().reveal()).verify(message.body, headers)


def test_the_back_off_doubles_with_jitter_up_to_its_bound() -> None:
    policy = RetryPolicy(attempts_max=5, min_seconds=5.0, max_seconds=60.0)
    assert [policy.delay(n, lambda: 1.0) for n in (1, 2, 3, 4, 5, 50)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert [policy.delay(n, lambda: 0.0) for n in (1, 2, 5)] == [2.5, 5.0, 30.0]
