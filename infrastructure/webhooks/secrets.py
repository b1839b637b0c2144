"""Webhook signing secrets: made once, shown once, stored sealed.

A signing secret cannot be hashed like an API key: the dispatcher needs it in
clear to sign every delivery. So it is stored encrypted (AES-256-GCM) under a key
derived (HKDF-SHA256) from the auth pepper, which lives outside the database
(``INVARIO_AUTH_PEPPER``, or the pepper file beside an embedded store): a copy of
the database or of its backups alone reveals no secret. The endpoint's id is the
associated data, so a sealed secret copied onto another endpoint's row does not
open. Changing the pepper leaves every sealed secret unreadable (as it already
invalidates every API key): the endpoints must then be registered again.

A secret is a ``WebhookSecret`` everywhere but in the 201 answer that shows it:
its ``repr`` and ``str`` hide the value, so it cannot reach a log line by accident.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks: between 24 and 64 bytes
_FORMAT_VERSION = b"\x01"
_NONCE_BYTES = 12
_KDF_INFO = b"invario webhook signing secrets v1"


class SecretUnreadable(Exception):
    """A sealed secret that does not open: the pepper changed, or the row was tampered with."""


class WebhookSecret:
    """A ``whsec_...`` signing secret that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: for signing, and for the one answer that shows it."""
        return self._value

    def __repr__(self) -> str:
        return "WebhookSecret('whsec_***')"

    __str__ = __repr__


def new_secret() -> WebhookSecret:
    return WebhookSecret(PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii"))


class SecretBox:
    """Seals and opens endpoints' secrets under a key derived from the pepper."""

    def __init__(self, pepper: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(pepper.encode("utf-8"))
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def seal(self, secret: WebhookSecret, endpoint_id: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.reveal().encode("ascii"), endpoint_id.encode("ascii"))
        return _FORMAT_VERSION + nonce + sealed

    def open(self, sealed: bytes, endpoint_id: str) -> WebhookSecret:
        if sealed[:1] != _FORMAT_VERSION:
            raise SecretUnreadable(f"the secret of webhook {endpoint_id} is in an unknown format")
        nonce, body = sealed[1:1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES:]
        try:
            return WebhookSecret(self._aead.decrypt(nonce, body, endpoint_id.encode("ascii")).decode("ascii"))
        except InvalidTag:
            raise SecretUnreadable(f"the secret of webhook {endpoint_id} does not open: the auth pepper changed "
                                   "since it was registered (register the endpoint again)") from None
