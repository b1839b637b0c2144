"""API keys and key rings (domain), the access service (application), scopes parsing and token buckets."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from uuid import uuid4

import pytest

from application.access import AccessService
from domain.api_key import ApiKey, check_scopes
from domain.errors import ApiKeyRevoked, InvalidApiKey, InvalidScopes, ScopeNotGranted, TenantNotFound, TooManyApiKeys
from domain.key_ring import ACTIVE_KEYS_MAX, REVOKED_KEPT, KeyRing
from infrastructure import rate_limit
from infrastructure.rate_limit import Draw, FailureThrottle, InProcessTokenBucket, retry_after_header
from interfaces.cli.tenant_cmds import parse_scopes
from tests.unit.books import in_memory_ledger

PEPPER = "unit-test-pepper-0123456789abcdefghij"
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


@pytest.fixture
def access() -> AccessService:
    return AccessService(in_memory_ledger(), PEPPER)


def test_a_key_is_shown_once_and_only_its_hmac_is_kept(access: AccessService) -> None:
    tenant = access.ledger.create_tenant("acme").aggregate
    issued = access.issue_key(tenant.id, ["write", "read"])
    assert re.fullmatch(r"inv_live_[A-Za-z0-9]{40}", issued.secret)
    assert issued.secret not in repr(issued) and PEPPER not in repr(access)
    stored = [vars(event) for event in access.ledger.events.get(issued.key.id)]
    assert issued.secret not in str(stored) and issued.secret[9:] not in str(stored)
    assert issued.key.digest == access.digest(issued.secret) != AccessService(access.ledger, PEPPER + "x").digest(
        issued.secret)
    principal = access.authenticate(issued.secret, "write")
    assert (principal.tenant_id, principal.scopes) == (tenant.id, ("read", "write"))


def test_authentication_failures(access: AccessService) -> None:
    tenant = access.ledger.create_tenant("acme").aggregate
    reader = access.issue_key(tenant.id, ["read"]).secret
    with pytest.raises(ScopeNotGranted):
        access.authenticate(reader, "write")
    for bad in ("", "inv_live_", "inv_live_" + "a" * 40, reader + "x", reader.replace("inv_live_", "inv_test_")):
        with pytest.raises(InvalidApiKey):
            access.authenticate(bad, "read")
    other_pepper = AccessService(access.ledger, PEPPER[::-1])
    with pytest.raises(InvalidApiKey):
        other_pepper.authenticate(reader, "read")


def test_revoking_revokes_every_active_key_of_the_tenant_only(access: AccessService) -> None:
    acme = access.ledger.create_tenant("acme").aggregate
    globex = access.ledger.create_tenant("globex").aggregate
    keys = [access.issue_key(acme.id, ["read"]).secret for _ in range(3)]
    theirs = access.issue_key(globex.id, ["read"]).secret
    revoked, position = access.revoke_keys(acme.id)
    assert len(revoked) == 3 and position is not None
    for key in keys:
        with pytest.raises(ApiKeyRevoked):
            access.authenticate(key, "read")
    assert access.authenticate(theirs, "read").tenant_id == globex.id
    assert access.revoke_keys(acme.id) == ([], None)
    listed = access.list_keys(acme.id)
    assert len(listed) == 3 and all(k.revoked_at for k in listed)
    assert all(k.display_prefix.startswith("inv_live_") and len(k.display_prefix) == 15 for k in listed)
    with pytest.raises(TenantNotFound):
        access.issue_key(uuid4(), ["read"])


def test_scopes() -> None:
    assert check_scopes(["write", "read", "read"]) == ("read", "write")
    for bad in ([], ["admin"], ["read", "root"]):
        with pytest.raises(InvalidScopes):
            check_scopes(bad)
    assert parse_scopes('{"write": true}') == ["read", "write"]
    assert parse_scopes('{"read": true}') == ["read"]
    assert parse_scopes('{"read": false, "write": true}') == ["write"]
    for bad in ("write", "[]", '{"write": 1}', '{"delete": true}'):
        with pytest.raises(InvalidScopes):
            parse_scopes(bad)


def test_a_revoked_key_cannot_be_revoked_or_used_again() -> None:
    key = ApiKey.issue(uuid4(), "a" * 64, "inv_live_abcdef", ["read"])
    key.revoke()
    with pytest.raises(ApiKeyRevoked):
        key.revoke()
    with pytest.raises(ApiKeyRevoked):
        key.check_usable("read")


def test_the_key_ring_is_bounded() -> None:
    ring = KeyRing.create(uuid4())
    for _ in range(ACTIVE_KEYS_MAX):
        ring.add(uuid4(), "inv_live_abcdef", ("read",), NOW)
    with pytest.raises(TooManyApiKeys):
        ring.add(uuid4(), "inv_live_abcdef", ("read",), NOW)
    assert len(ring.revoke_all(NOW)) == ACTIVE_KEYS_MAX
    ring.add(uuid4(), "inv_live_abcdef", ("read",), NOW)
    ring.revoke_all(NOW)
    assert len(ring.keys) == REVOKED_KEPT and ring.active_key_ids() == []


def test_in_process_token_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(rate_limit.time, "monotonic", lambda: clock[0])
    bucket = InProcessTokenBucket(rate_per_second=2.0, burst=3)
    assert [bucket.acquire("t") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.acquire("t")
    assert wait == pytest.approx(0.5) and retry_after_header(wait) == "1"
    assert bucket.acquire("other") == 0.0
    clock[0] += 0.5
    assert bucket.acquire("t") == 0.0 and bucket.acquire("t") > 0
    clock[0] += 100
    assert [bucket.acquire("t") for _ in range(4)][-1] > 0  # refills to the burst, never beyond


def test_a_draw_says_when_it_took_the_last_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit.time, "monotonic", lambda: 100.0)
    bucket = InProcessTokenBucket(rate_per_second=2.0, burst=2)
    assert bucket.draw("t") == Draw(0.0, 0.0)
    assert bucket.draw("t") == Draw(0.0, pytest.approx(0.5))  # taken, and now empty
    assert bucket.draw("t") == Draw(pytest.approx(0.5), pytest.approx(0.5))


def test_failure_throttle_refuses_a_client_once_its_failures_are_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(rate_limit.time, "monotonic", lambda: clock[0])
    throttle = FailureThrottle(InProcessTokenBucket(rate_per_second=0.5, burst=3), clients_max=2)
    assert throttle.refusing("10.0.0.1") == 0.0
    assert [throttle.failed("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]  # each answered 401
    assert throttle.refusing("10.0.0.1") == pytest.approx(2.0)  # the next is refused before its key is read
    assert throttle.refusing("10.0.0.2") == 0.0
    assert throttle.failed("10.0.0.1") == pytest.approx(2.0)  # seen failing elsewhere: 429, not 401
    clock[0] += 2.0
    assert throttle.refusing("10.0.0.1") == 0.0  # one try back
    assert throttle.failed("10.0.0.1") == 0.0 and throttle.refusing("10.0.0.1") > 0
    for client in ("10.0.0.2", "10.0.0.3"):  # remembering at most clients_max refused clients
        for _ in range(3):
            throttle.failed(client)
    assert throttle.refusing("10.0.0.1") == 0.0 and throttle.refusing("10.0.0.3") > 0
