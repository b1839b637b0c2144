"""Ed25519 signing of ledger digests, with a key that lives only in ``INVARIO_SIGNING_KEY``.

The key is the base64 (standard or URL-safe alphabet) of a 32-byte Ed25519
private key seed; any 32 random bytes are one:

    invario generate-signing-key
    python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'

It is never written to the database, so a database thief (or a backup) cannot
sign a digest; the public half travels with every digest.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.digest import LedgerDigest, key_id_for
from domain.proof_bundle import checkpoint_body, signed_note
from infrastructure.errors import ConfigError

SEED_BYTES = 32


class SigningKey:
    """The private key; its repr never shows it."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key_raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id_for(self.public_key_raw)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id})"

    @classmethod
    def from_setting(cls, value: str) -> SigningKey:
        """Parse ``INVARIO_SIGNING_KEY``; a malformed key is a one-line ``ConfigError`` (never echoing it)."""
        text = value.strip().replace("-", "+").replace("_", "/")  # either base64 alphabet
        try:
            seed = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            seed = b""
        if len(seed) != SEED_BYTES:
            raise ConfigError(
                "INVARIO_SIGNING_KEY must be the base64 of a 32-byte Ed25519 key "
                "(generate one: invario generate-signing-key)"
            )
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key(self) -> str:
        return base64.b64encode(self.public_key_raw).decode("ascii")

    def sign_head(self, sequence: int, position: int, head_hash: str, at: datetime | None = None) -> LedgerDigest:
        moment = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
        unsigned = LedgerDigest(sequence=sequence, position=position, hash=head_hash,
                                time=moment.isoformat().replace("+00:00", "Z"), key_id=self.key_id,
                                public_key=self.public_key)
        return unsigned.with_signature(self._private_key.sign(unsigned.signed_bytes()))

    def sign_checkpoint(self, origin: str, size: int, root: bytes) -> str:
        """A C2SP signed note of the tree head (domain/proof_bundle.py), under the key name ``origin``."""
        body = checkpoint_body(origin, size, root)
        return signed_note(body, origin, self.public_key_raw, self._private_key.sign(body))


def generate_signing_key() -> str:
    """A new key, as ``INVARIO_SIGNING_KEY`` expects it."""
    return base64.b64encode(secrets.token_bytes(SEED_BYTES)).decode("ascii")


def signature_is_valid(digest: LedgerDigest) -> bool:
    """Whether the digest was signed by the private half of its own ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(digest.public_key_bytes()).verify(
            digest.signature_bytes(), digest.signed_bytes()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def ed25519_signature_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """The ``SignatureCheck`` the offline proof verifier is given (domain/proof_bundle.py)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_public_key(value: str) -> bytes:
    """A trusted public key given by an operator (base64 of 32 bytes); ``ValueError`` if malformed."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != SEED_BYTES:
        raise ValueError("a public key is the base64 of 32 bytes, as in a digest's public_key")
    return raw


def load_signing_key(secret: str | None) -> SigningKey | None:
    return SigningKey.from_setting(secret) if secret else None
