"""The API key: a tenant's credential for the HTTP API, known only by its HMAC.

The secret itself is never stored: the key is found by the HMAC-SHA256 of the
presented secret under the operator's pepper, from which its aggregate id is
derived (``domain.ids.api_key_id_for``), so authenticating is one repository get.

Why an event-sourced aggregate rather than a table: issuing and revoking a key
are security events that belong in the same hash-linked, tamper-evident log as
the money they guard. A key row slipped into a table would grant access
silently; a forged key event breaks the per-aggregate and the global chain.
Keys are backed up and restored with the events, and every change is audited
with its timestamp. Revocation is an event too, and since cached aggregates are
fast-forwarded from the store on every use, it takes effect on the next request
in every process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from uuid import UUID

from eventsourcing.domain import event

from domain.chain import ChainedAggregate
from domain.errors import ApiKeyRevoked, InvalidScopes, ScopeNotGranted
from domain.ids import api_key_id_for

KEY_PREFIX = "inv_live_"
READ = "read"
WRITE = "write"
SCOPES = (READ, WRITE)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes as a sorted tuple; at least one, each of ``read`` and ``write``."""
    chosen = tuple(sorted(set(scopes)))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise InvalidScopes(
            f"scopes must be a non-empty set of {', '.join(SCOPES)}", scopes=[str(s)[:20] for s in chosen][:5]
        )
    return chosen


class ApiKey(ChainedAggregate):
    @classmethod
    def issue(cls, tenant_id: UUID, digest: str, display_prefix: str, scopes: Iterable[str]) -> ApiKey:
        assert _DIGEST.match(digest), "the digest is a hex HMAC-SHA256"
        assert display_prefix.startswith(KEY_PREFIX)
        return cls(
            id=api_key_id_for(digest),
            tenant_id=tenant_id,
            digest=digest,
            display_prefix=display_prefix,
            scopes=list(check_scopes(scopes)),
        )

    @event("Issued")
    def __init__(  # noqa: PLR0913
        self, id: UUID, tenant_id: UUID, digest: str, display_prefix: str, scopes: list[str]  # noqa: A002
    ) -> None:
        self.tenant_id = tenant_id
        self.digest = digest
        self.display_prefix = display_prefix
        self.scopes = tuple(scopes)
        self.revoked = False

    def check_usable(self, scope: str) -> None:
        """Raise unless this key may be used now for a request needing ``scope``."""
        assert scope in SCOPES
        if self.revoked:
            raise ApiKeyRevoked(f"API key {self.display_prefix}… has been revoked", key_prefix=self.display_prefix)
        if scope not in self.scopes:
            raise ScopeNotGranted(
                f"this API key lacks the {scope!r} scope", required_scope=scope, granted_scopes=list(self.scopes)
            )

    def revoke(self) -> None:
        if self.revoked:
            raise ApiKeyRevoked(f"API key {self.display_prefix}… is already revoked", key_prefix=self.display_prefix)
        self._revoke()

    @event("Revoked")
    def _revoke(self) -> None:
        self.revoked = True
