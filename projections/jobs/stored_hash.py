"""Recompute a stored event's hash straight from its stored JSON, without building the domain event.

Verification recomputes the hash of every event of the ledger. Building each
domain event through the mapper and re-encoding it with the standard library's
JSON encoder was most of its time (docs/performance.md, the verify ``stage:``
rows). Here the stored state is read with orjson, the transcoder's tagged values
(UUIDs, timestamps, dates) are rewritten into their canonical form, and the result is hashed through
``infrastructure.fast_events.canonical_bytes``, the same orjson encoding the
write side hashes with: the bytes ``domain.chain.canonical_encoding`` produces.

Correctness never rests on the shortcut. Only a hash that *matches* the stored
one is accepted from it (a SHA-256 match means the bytes were the same ones the
writer hashed); anything else (no match, a tag it does not know, a compressed or
encrypted store) goes the reference way, through the mapper and
``compute_event_hash``, before any damage is reported. A difference between the
two encoders could only cost time, never report a false break or hide a real one.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

from infrastructure.fast_events import canonical_bytes

# Left out of the canonical encoding (domain.chain._EXCLUDED_FIELDS).
_EXCLUDED_FIELDS = frozenset({"hash", "originator_topic"})
_UUID_HEX_LENGTH = 32
_UTC_SUFFIX = "+00:00"  # event timestamps are stored in UTC; any other offset goes the reference way


class _NotCanonical(Exception):
    """A stored value whose canonical form only the reference path knows."""


class StoredHashes(NamedTuple):
    event_type: str
    stored_hash: str
    prev_hash: str
    recomputed_hash: str


def hashes_from_stored(topic: str, originator_id: Any, originator_version: int, state: bytes) -> StoredHashes | None:
    """The event's stored and recomputed hashes when they match; ``None``: ask the reference path."""
    try:
        values = orjson.loads(state)
        if type(values) is not dict:
            return None
        fields = {name: _canonical(value) for name, value in values.items() if name not in _EXCLUDED_FIELDS}
    except (orjson.JSONDecodeError, _NotCanonical, RecursionError):
        return None
    stored_hash, prev_hash = values.get("hash"), values.get("prev_hash")
    if type(stored_hash) is not str or type(prev_hash) is not str:
        return None
    event_type = topic.rpartition(":")[2]  # the class's qualified name, as compute_event_hash uses it
    fields["originator_id"] = str(originator_id)
    fields["originator_version"] = originator_version
    encoded = canonical_bytes({"event_type": event_type, "fields": fields})
    if encoded is None:  # e.g. an integer beyond 64 bits: the reference encoder handles it
        return None
    recomputed = hashlib.sha256(encoded).hexdigest()
    if recomputed != stored_hash:
        return None
    return StoredHashes(event_type, stored_hash, prev_hash, recomputed)


def _canonical(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        tag = value.get("_type_")
        if tag is None:
            return {name: _canonical(item) for name, item in value.items()}
        data = value.get("_data_")
        if len(value) != 2 or type(data) is not str:  # noqa: PLR2004 - {"_type_": ..., "_data_": ...}
            raise _NotCanonical
        if tag == "uuid_hex" and len(data) == _UUID_HEX_LENGTH:
            return f"{data[:8]}-{data[8:12]}-{data[12:16]}-{data[16:20]}-{data[20:]}"
        if tag == "datetime_iso" and data.endswith(_UTC_SUFFIX):
            return data
        if tag == "date_iso":
            return data
        raise _NotCanonical
    if kind is list:
        return [_canonical(item) for item in value]
    return value
