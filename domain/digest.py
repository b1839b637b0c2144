"""Signed digests of the global chain's head: what they contain and the exact bytes signed.

A digest states "after ``sequence`` events, the last at log position
``position``, the global chain's head was ``hash``", at ``time``, signed with
an Ed25519 key (``infrastructure.signing``) whose public half and id travel
with it. Kept outside the database (printed, published, in a write-once
bucket), it lets ``invario verify --digest`` prove that nothing up to that
point was changed since, even by someone who could rewrite every stored hash.

The signed bytes are a fixed prefix and the digest's members except the
signature, as sorted-key compact JSON: any change to any member breaks the
signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

DIGEST_FORMAT = "invario-ledger-digest/1"
ALGORITHM = "ed25519"
SIGNING_PREFIX = b"invario-ledger-digest/1\n"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


class InvalidDigest(ValueError):
    """The document is not a well-formed digest; the message says which member is wrong."""


@dataclass(frozen=True)
class LedgerDigest:
    sequence: int
    position: int
    hash: str
    time: str  # UTC, ISO 8601
    key_id: str
    public_key: str  # base64 of the raw 32-byte Ed25519 public key
    algorithm: str = ALGORITHM
    format: str = DIGEST_FORMAT
    signature: str = ""  # base64 of the 64-byte Ed25519 signature of ``signed_bytes()``

    def signed_bytes(self) -> bytes:
        members = {k: v for k, v in asdict(self).items() if k != "signature"}
        return SIGNING_PREFIX + json.dumps(members, sort_keys=True, separators=(",", ":")).encode("ascii")

    def with_signature(self, signature: bytes) -> LedgerDigest:
        return replace(self, signature=base64.b64encode(signature).decode("ascii"))

    def signature_bytes(self) -> bytes:
        return base64.b64decode(self.signature, validate=True)

    def public_key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key, validate=True)

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, document: Any) -> LedgerDigest:
        """Parse and check a digest document; raise ``InvalidDigest`` naming the first problem."""
        if not isinstance(document, dict):
            raise InvalidDigest("a digest is a JSON object")
        if document.get("format") != DIGEST_FORMAT:
            raise InvalidDigest(f"format must be {DIGEST_FORMAT!r}, not {document.get('format')!r}")
        if document.get("algorithm") != ALGORITHM:
            raise InvalidDigest(f"algorithm must be {ALGORITHM!r}")
        unknown = sorted(set(document) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidDigest(f"unknown members: {', '.join(unknown)}")
        for name in ("sequence", "position"):
            value = document.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidDigest(f"{name} must be a non-negative integer")
        _check_text(document, "hash", _HEX64.match, "64 lowercase hex digits")
        _check_text(document, "key_id", _KEY_ID.match, "16 lowercase hex digits")
        _check_text(document, "time", _is_utc_time, "a UTC time in ISO 8601")
        _check_text(document, "public_key", lambda v: _decoded_length(v) == PUBLIC_KEY_BYTES, "32 bytes, base64")
        _check_text(document, "signature", lambda v: _decoded_length(v) == SIGNATURE_BYTES, "64 bytes, base64")
        digest = cls(**document)
        if key_id_for(digest.public_key_bytes()) != digest.key_id:
            raise InvalidDigest("key_id does not belong to public_key")
        return digest


def key_id_for(public_key: bytes) -> str:
    """A short, stable name of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _check_text(document: dict[str, Any], name: str, valid: Any, what: str) -> None:
    value = document.get(name)
    if not isinstance(value, str) or not valid(value):
        raise InvalidDigest(f"{name} must be {what}")


def _decoded_length(value: str) -> int:
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return -1


def _is_utc_time(value: str) -> bool:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
