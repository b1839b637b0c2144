"""Cheaper events: orjson builds the bytes the standard library's encoders define.

Every event is hashed (canonical JSON, ``domain.chain``) and encoded for the store
(eventsourcing's ``JSONTranscoder``) when written, and decoded each time the log is
read (aggregate loads, followers, verification). Both encoders are the standard
library's ``json``, which calls back into Python for every UUID, timestamp and
date; orjson does the same work in compiled code.

Neither format changes, byte for byte. orjson is only given values it writes
exactly as the reference does: exact ``str``, ``int``, ``bool``, ``None``, ``dict``,
``list`` and ``tuple`` (both write tuples as arrays) and, for the hash, UUIDs, dates
and UTC timestamps (``str(uuid)``, ``isoformat()``). Anything else is first turned
into those the way the reference's ``default`` would (tagged UUIDs, timestamps and
dates for the store; timestamps in other offsets converted to UTC for the hash), and
any value the walk does not know - a float (orjson writes ``1e16`` where ``json``
writes ``1e+16``), a subclass, an enum - and anything orjson refuses - an int beyond
64 bits, a lone surrogate, a non-string key - sends the whole value the reference
way. Decoding is the mirror: orjson parses, the tags are restored as ``json``'s
object hook restores them, and a float anywhere (orjson reads an int beyond 64 bits
as one) or any failure sends the bytes to the reference decoder.

``install(ledger)`` checks both against their reference on sample values when a
process opens its store, and keeps the reference where they differ.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder

from domain import chain

log = logging.getLogger("invario.events")
TRANSCODER_TOPIC = "infrastructure.fast_events:OrjsonTranscoder"  # eventsourcing's TRANSCODER_TOPIC

# Subclasses of these are encoded natively by ``json`` (never through ``default``): the
# walk cannot tell what a registered transcoding of them would do, so they decline.
_JSON_NATIVE_BASES = (str, int, float, list, tuple, dict)


class _Declined(Exception):
    """A value the fast path does not vouch for: the reference encoder takes it."""


# Written as they are by ``json`` and by orjson alike (ints beyond 64 bits make orjson raise).
_PLAIN_KINDS = frozenset({str, int, bool, type(None)})


# Types orjson writes exactly as the canonical encoder does: UUIDs as str(uuid), dates
# as isoformat(). Timestamps only when already in UTC (the canonical form converts).
_CANONICAL_NATIVE_KINDS = _PLAIN_KINDS | {UUID, date}


def _canonical_plain(value: Any) -> Any:
    """``value`` with everything orjson would write differently from the canonical encoder
    converted the way its ``default`` (``domain.chain._encode_value``) converts it.

    Events rarely hold such a value, so a container is copied only when something in
    it changes: the walk checks types and leaves the writing to orjson.
    """
    kind = type(value)
    if kind is dict:
        changed = None
        for key, item in value.items():
            if type(item) in _CANONICAL_NATIVE_KINDS:
                continue
            new = _canonical_plain(item)
            if new is not item:
                changed = changed if changed is not None else dict(value)
                changed[key] = new
        return value if changed is None else changed
    if kind is list or kind is tuple:  # both are written as arrays, by json and by orjson
        items = [item if type(item) in _CANONICAL_NATIVE_KINDS else _canonical_plain(item) for item in value]
        return value if all(new is old for new, old in zip(items, value)) else items
    if kind in _CANONICAL_NATIVE_KINDS:
        return value
    if kind is datetime:
        if value.tzinfo is timezone.utc:
            return value
        if value.tzinfo is None:  # the reference refuses it (an assertion): let it
            raise _Declined
        return value.astimezone(timezone.utc).isoformat()
    raise _Declined  # floats, enums, subclasses, anything new: the reference knows


def canonical_bytes(document: dict[str, Any]) -> bytes | None:
    """``domain.chain.reference_encoding(document)``, or ``None`` where it might differ."""
    try:
        return orjson.dumps(_canonical_plain(document), option=orjson.OPT_SORT_KEYS)
    except (_Declined, orjson.JSONEncodeError, RecursionError):
        # JSONEncodeError: ints beyond 64 bits, lone surrogates, non-string keys, deep nesting.
        return None


class OrjsonTranscoder(JSONTranscoder):
    """``JSONTranscoder``'s exact bytes and values, encoded and decoded with orjson.

    The transcodings registered on it (UUIDs, timestamps, dates, decimals) are the
    same objects the reference uses, so the tags and their data cannot drift.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fast = True  # False once a self-check found a difference: the reference alone
        # The registered types the walk may tag. Subclasses of the types ``json`` writes
        # natively never reach its ``default``, so they are left to the reference.
        self._taggable: dict[type, tuple[str, Any]] = {}

    def register(self, transcoding: Any) -> None:
        super().register(transcoding)
        self._taggable.pop(transcoding.type, None)
        if not issubclass(transcoding.type, _JSON_NATIVE_BASES):
            self._taggable[transcoding.type] = (transcoding.name, transcoding.encode)

    def encode(self, obj: Any) -> bytes:
        if self.fast:
            try:
                # orjson's bytes keep its whole 4 KiB write buffer allocated, and stored
                # states live on (in a batch's save, in caches): slicing off an appended
                # newline is the cheapest copy at the exact size.
                return orjson.dumps(self._plain(obj), option=orjson.OPT_APPEND_NEWLINE)[:-1]
            except (_Declined, orjson.JSONEncodeError, RecursionError):
                pass
        return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        if self.fast:
            try:
                return self._restored(orjson.loads(data))
            except Exception:  # noqa: BLE001 - the reference decodes it, or raises its own error
                pass
        return super().decode(data)

    def _plain(self, value: Any) -> Any:
        """``value`` as ``json.JSONEncoder(default=self._encode_obj)`` would write it."""
        kind = type(value)
        if kind is dict:
            return {key: item if type(item) in _PLAIN_KINDS else self._plain(item) for key, item in value.items()}
        if kind is list or kind is tuple:
            return [item if type(item) in _PLAIN_KINDS else self._plain(item) for item in value]
        if kind in _PLAIN_KINDS:
            return value
        tagging = self._taggable.get(kind)
        if tagging is None:
            raise _Declined
        data = tagging[1](value)
        return {"_type_": tagging[0], "_data_": data if type(data) is str else self._plain(data)}

    def _restored(self, value: Any) -> Any:
        """What ``json.JSONDecoder(object_hook=self._decode_obj)`` returns for the same text.

        Containers are rewritten in place (orjson made them): the hook runs bottom-up,
        so a tag's data is restored before its transcoding sees it.
        """
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:  # noqa: PLR2004 - the hook's test
                transcoding = self.names[value["_type_"]]  # unknown: KeyError, the reference raises its error
                data = value["_data_"]
                return transcoding.decode(self._restored(data) if type(data) in _RESTORED_KINDS else data)
            for key, item in value.items():
                if type(item) in _RESTORED_KINDS:
                    value[key] = self._restored(item)
            return value
        if kind is list:
            for index, item in enumerate(value):
                if type(item) in _RESTORED_KINDS:
                    value[index] = self._restored(item)
            return value
        if kind is float:  # never written by events; also how orjson reads an int beyond 64 bits
            raise _Declined
        return value

    def agrees_with_reference(self, samples: list[Any]) -> bool:
        """Whether both directions give the reference's bytes and values for ``samples``."""
        for sample in samples:
            expected = super().encode(sample)
            if self.encode(sample) != expected or self.decode(expected) != super().decode(expected):
                return False
        return True


_RESTORED_KINDS = frozenset({dict, list, float})


def _transcoder_samples() -> list[Any]:
    """Event states as the mapper hands them over, with every registered type in them."""
    return [
        {"timestamp": datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=timezone.utc), "prev_hash": chain.GENESIS_HASH,
         "hash": "f" * 64, "tenant_id": UUID(int=0x0123456789ABCDEF0123456789ABCDEF),
         "effective_date": date(2026, 1, 2), "reverses": None, "ok": True, "amount": Decimal("-1.50"),
         "description": "caf\u00e9 \"q\" \\ \x00\x1f\x7f\u2028\U0001f600 \n\t",
         "postings": [{"account_id": "a", "amount_minor": -(2**63)}, {"amount_minor": 2**64 - 1}],
         "metadata": {"\u00e9": "1", "Z": "", "a": {"nested": [None, False, 0]}}},
        {"timestamp": datetime(2026, 6, 30, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
         "old": date(5, 1, 1), "tuple": ("x", 1)},
        {"big": 2**64, "negative": -(2**70), "float": 1e16},  # declined: the reference writes them
    ]


def install(ledger: Any) -> None:
    """Hash and encode this process's events with orjson where the self-checks allow.

    A failed check only costs speed: the reference encoders stay in use, and it is
    logged, because it means an orjson release changed what it writes.
    """
    try:
        chain.install_fast_encoding(canonical_bytes)
    except ValueError as exc:
        log.warning("fast canonical encoding not used: %s", exc)
    transcoder = getattr(ledger.mapper, "transcoder", None)
    if isinstance(transcoder, OrjsonTranscoder) and not transcoder.agrees_with_reference(_transcoder_samples()):
        transcoder.fast = False
        log.warning("fast event transcoder not used: it differs from the reference on the self-check samples")
