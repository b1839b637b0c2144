"""API access: issuing, listing, revoking and authenticating tenants' API keys.

A key is ``inv_live_`` followed by 40 random base62 characters from ``secrets``
(about 238 bits). It is shown once, when issued; only HMAC-SHA256 of it under the
operator's pepper is recorded (see ``domain.api_key`` for why keys are
event-sourced). The pepper lives only in this object and is never logged,
returned or put in an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

from application.decisions import typed
from application.ledger import Ledger
from application.retries import save_with_retries
from domain.api_key import KEY_PREFIX, ApiKey, check_scopes
from domain.errors import InvalidApiKey, TenantNotFound
from domain.ids import api_key_id_for, key_ring_id_for
from domain.key_ring import KeyRing
from domain.tenant import Tenant

T = TypeVar("T")

SECRET_LENGTH = 40
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6
PEPPER_LENGTH_MIN = 32
_ALPHABET = string.ascii_letters + string.digits
_KEY_FORMAT = re.compile(rf"^{KEY_PREFIX}[A-Za-z0-9]{{32,64}}$")
KEY_READS_KEPT_MAX = 10_000  # keys whose last read is remembered (LRU); a forgotten one is simply read again


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: one tenant, through one key with some scopes."""

    tenant_id: UUID
    key_id: UUID
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class IssuedKey:
    """A new key: ``secret`` is shown to the operator once and is kept nowhere."""

    secret: str = field(repr=False)  # never in a repr, so never in a log line by accident
    key: ApiKey = field(repr=False)
    position: int | None = None


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see about a key: never the secret, nor its digest."""

    key_id: UUID
    display_prefix: str
    scopes: tuple[str, ...]
    issued_at: str
    revoked_at: str | None


class AccessService:
    """API keys over the ledger's event store (same log, same atomic saves)."""

    def __init__(self, ledger: Ledger, pepper: str) -> None:
        assert isinstance(pepper, str) and len(pepper) >= PEPPER_LENGTH_MIN, "checked by resolve_auth_pepper"
        self.ledger = ledger
        self._pepper = pepper.encode("utf-8")
        self._key_reads: OrderedDict[UUID, _KeyRead] = OrderedDict()

    def __repr__(self) -> str:
        return "AccessService(pepper=<hidden>)"

    def digest(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- operator use cases -----------------------------------------------------

    def issue_key(self, tenant_id: UUID, scopes: Iterable[str]) -> IssuedKey:
        chosen = check_scopes(scopes)
        self._tenant(tenant_id)
        secret = KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))

        def decide() -> IssuedKey:
            ring = self._get(key_ring_id_for(tenant_id), KeyRing) or KeyRing.create(tenant_id)
            key = ApiKey.issue(tenant_id, self.digest(secret), secret[:DISPLAY_PREFIX_LENGTH], chosen)
            ring.add(key.id, key.display_prefix, key.scopes, datetime.now(timezone.utc))
            return IssuedKey(secret, key, self._save(ring, key))

        return save_with_retries(decide)

    def revoke_keys(self, tenant_id: UUID) -> tuple[list[KeyInfo], int | None]:
        """Revoke every active key of the tenant; return what was revoked and the write's position."""
        self._tenant(tenant_id)

        def decide() -> tuple[list[KeyInfo], int | None]:
            ring = self._get(key_ring_id_for(tenant_id), KeyRing)
            if ring is None:
                return [], None
            revoked_ids = ring.revoke_all(datetime.now(timezone.utc))
            if not revoked_ids:
                return [], None
            keys = [self.ledger.repository.get(key_id) for key_id in revoked_ids]
            for key in keys:
                key.revoke()
            position = self._save(ring, *keys)
            return [_info(ring, key_id) for key_id in revoked_ids], position

        return save_with_retries(decide)

    def list_keys(self, tenant_id: UUID) -> list[KeyInfo]:
        """The tenant's keys, newest first (active ones and the most recent revoked ones)."""
        self._tenant(tenant_id)
        ring = self._get(key_ring_id_for(tenant_id), KeyRing)
        if ring is None:
            return []
        return [_info(ring, UUID(key_id)) for key_id in reversed(ring.keys)]

    # --- every request ----------------------------------------------------------

    def authenticate(self, secret: str, scope: str) -> Principal:
        """The principal of a presented key, or ``InvalidApiKey``/``ApiKeyRevoked``/``ScopeNotGranted``."""
        key_id, digest = self.locate(secret)
        return self.admit(self._read_key(key_id), digest, scope)

    def locate(self, secret: str) -> tuple[UUID, str]:
        """The id of the key a presented secret names, and its digest (no I/O); ``InvalidApiKey`` if malformed."""
        if not isinstance(secret, str) or not _KEY_FORMAT.match(secret):
            raise InvalidApiKey("the API key is malformed or unknown")
        digest = self.digest(secret)
        return api_key_id_for(digest), digest

    def read_key(self, key_id: UUID) -> ApiKey | None:
        """The key as stored now (one read of the event store, never the cache: a key the store no
        longer holds, after a restore, must not authenticate)."""
        key = self.ledger.store.load_fresh(key_id)
        return key if isinstance(key, ApiKey) else None

    @staticmethod
    def admit(key: ApiKey | None, digest: str, scope: str) -> Principal:
        """The principal of a key read after the request arrived, or ``InvalidApiKey``/``ApiKeyRevoked``/..."""
        if key is None or not hmac.compare_digest(key.digest, digest):
            raise InvalidApiKey("the API key is malformed or unknown")
        key.check_usable(scope)
        return Principal(key.tenant_id, key.id, key.scopes)

    def _read_key(self, key_id: UUID) -> ApiKey | None:
        """The key as stored now: read by this request, or by a read that began after it arrived.

        Revocation must hold from the very next request in every process, so every
        request needs a read of the key that started after the request arrived. Concurrent
        requests of one key share such a read instead of each making its own round trip:
        a request waits for the read in flight (which began before it arrived, so cannot
        serve it), then either finds that a newer read has already served it or reads itself.
        Under load that is one read per round trip of the database, whatever the request rate.
        """
        arrived = time.monotonic_ns()
        shared = self._key_reads.get(key_id)
        if shared is None:
            shared = self._key_reads.setdefault(key_id, _KeyRead())
            if len(self._key_reads) > KEY_READS_KEPT_MAX:
                self._key_reads.popitem(last=False)
        with shared.lock:
            if shared.began_ns <= arrived:
                began = time.monotonic_ns()
                shared.key = self.read_key(key_id)
                shared.began_ns = began
            return shared.key

    # --- plumbing ---------------------------------------------------------------

    def _tenant(self, tenant_id: UUID) -> Tenant:
        tenant = self._get(tenant_id, Tenant)
        if tenant is None:
            raise TenantNotFound(f"tenant {tenant_id} not found")
        return tenant

    def _get(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        return typed(self.ledger.store, aggregate_id, kind)

    def _save(self, *aggregates: Any) -> int | None:
        return self.ledger.store.save(*aggregates)


@dataclass
class _KeyRead:
    """The latest read of one key, and when it began (``time.monotonic_ns``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    began_ns: int = -1
    key: ApiKey | None = None


def _info(ring: KeyRing, key_id: UUID) -> KeyInfo:
    entry = ring.keys[str(key_id)]
    return KeyInfo(key_id, entry["display_prefix"], tuple(entry["scopes"]), entry["issued_at"], entry["revoked_at"])

