"""Signed digests: the signed bytes, signing with INVARIO_SIGNING_KEY, and strict parsing of digest files."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from domain.digest import DIGEST_FORMAT, InvalidDigest, LedgerDigest, key_id_for
from infrastructure.errors import ConfigError
from infrastructure.signing import SigningKey, generate_signing_key, parse_public_key, signature_is_valid

SEED = bytes(range(32))
SECRET = base64.b64encode(SEED).decode()
HEAD = "ab" * 32
AT = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=timezone.utc)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.from_setting(SECRET)


def test_a_signed_digest_carries_the_head_and_verifies(key: SigningKey) -> None:
    digest = key.sign_head(42, 45, HEAD, at=AT)
    assert (digest.sequence, digest.position, digest.hash, digest.time) == (42, 45, HEAD, "2026-11-23T12:00:00Z")
    assert digest.key_id == key_id_for(key.public_key_raw) == key.key_id
    assert digest.format == DIGEST_FORMAT and digest.algorithm == "ed25519"
    assert signature_is_valid(digest)
    assert LedgerDigest.from_document(json.loads(json.dumps(digest.to_document()))) == digest


@pytest.mark.parametrize(("member", "value"), [
    ("sequence", 43), ("position", 46), ("hash", "cd" * 32), ("time", "2026-11-23T12:00:01Z"),
])
def test_changing_any_member_breaks_the_signature(key: SigningKey, member: str, value: object) -> None:
    digest = key.sign_head(42, 45, HEAD, at=AT)
    assert not signature_is_valid(replace(digest, **{member: value}))


def test_a_digest_signed_by_another_key_is_not_ours(key: SigningKey) -> None:
    other = SigningKey.from_setting(generate_signing_key())
    forged = other.sign_head(42, 45, HEAD, at=AT)
    assert signature_is_valid(forged)  # valid for its own key...
    assert forged.public_key_bytes() != key.public_key_raw  # ...which is not the trusted one
    # Claiming our key while signing with another fails the signature.
    claimed = replace(forged, public_key=key.public_key, key_id=key.key_id)
    assert not signature_is_valid(claimed)


def test_the_signed_bytes_are_fixed() -> None:
    digest = LedgerDigest(1, 2, HEAD, "2026-11-23T12:00:00Z", "0" * 16, "A" * 44)
    assert digest.signed_bytes() == (
        b"invario-ledger-digest/1\n"
        b'{"algorithm":"ed25519","format":"invario-ledger-digest/1","hash":"' + HEAD.encode()
        + b'","key_id":"0000000000000000","position":2,"public_key":"' + b"A" * 44
        + b'","sequence":1,"time":"2026-11-23T12:00:00Z"}'
    )


@pytest.mark.parametrize(("change", "says"), [
    ({"format": "other/1"}, "format"),
    ({"algorithm": "rsa"}, "algorithm"),
    ({"extra": 1}, "unknown members"),
    ({"sequence": -1}, "sequence"),
    ({"sequence": True}, "sequence"),
    ({"position": "7"}, "position"),
    ({"hash": "XYZ"}, "hash"),
    ({"time": "yesterday"}, "time"),
    ({"time": "2026-11-23T12:00:00+01:00"}, "time"),
    ({"public_key": "not base64!"}, "public_key"),
    ({"signature": base64.b64encode(b"short").decode()}, "signature"),
    ({"key_id": "0123456789abcdef"}, "key_id does not belong"),
])
def test_malformed_digests_are_refused_with_the_reason(key: SigningKey, change: dict[str, object], says: str) -> None:
    document = {**key.sign_head(1, 1, HEAD, at=AT).to_document(), **change}
    with pytest.raises(InvalidDigest, match=says):
        LedgerDigest.from_document(document)


def test_a_digest_is_an_object() -> None:
    with pytest.raises(InvalidDigest):
        LedgerDigest.from_document([1, 2])


@pytest.mark.parametrize("secret", ["", "c2hvcnQ=", "not base64 at all", base64.b64encode(bytes(33)).decode()])
def test_a_malformed_signing_key_is_a_config_error_that_never_echoes_it(secret: str) -> None:
    with pytest.raises(ConfigError) as raised:
        SigningKey.from_setting(secret)
    assert "INVARIO_SIGNING_KEY" in str(raised.value)
    assert not secret or secret not in str(raised.value)


def test_the_key_is_accepted_in_either_base64_alphabet_and_never_shown(key: SigningKey) -> None:
    urlsafe = base64.urlsafe_b64encode(SEED).decode().rstrip("=")
    assert SigningKey.from_setting(urlsafe).public_key_raw == key.public_key_raw
    assert SECRET not in repr(key) and key.key_id in repr(key)


def test_generated_keys_are_new_and_usable() -> None:
    first, second = generate_signing_key(), generate_signing_key()
    assert first != second
    assert signature_is_valid(SigningKey.from_setting(first).sign_head(1, 1, HEAD))


def test_public_keys_given_by_operators_are_checked(key: SigningKey) -> None:
    assert parse_public_key(key.public_key) == key.public_key_raw
    with pytest.raises(ValueError, match="32 bytes"):
        parse_public_key("abc")
