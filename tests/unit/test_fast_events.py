"""orjson's encodings are the reference's, byte for byte, or they step aside.

``infrastructure.fast_events`` hashes events (canonical JSON) and encodes them for
the store with orjson. A hash that differed from ``domain.chain``'s reference would
read as tampering, and stored bytes that differed would make two releases' stores
tell apart, so for arbitrary values each fast encoder must give exactly the
reference's bytes or decline (``None`` / the reference's own path).
"""

from __future__ import annotations

import tracemalloc
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest
from eventsourcing.persistence import JSONTranscoder
from hypothesis import given, settings
from hypothesis import strategies as st

from application.ledger import Ledger
from domain import chain
from domain.tenant import Tenant
from infrastructure import fast_events
from infrastructure.fast_events import OrjsonTranscoder, canonical_bytes
from tests.unit.books import Books, leg

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # any text a store can hold
INT_64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
AWARE = st.datetimes(timezones=st.one_of(st.just(timezone.utc), OFFSETS))
EVENT_SCALARS = st.one_of(TEXT, INT_64, st.none(), st.booleans(), st.uuids(), AWARE, st.dates())
# Beyond what events hold: ints past 64 bits, floats, naive timestamps, decimals, lone surrogates.
ODD_SCALARS = st.one_of(st.integers(), st.floats(), st.datetimes(), st.decimals(allow_nan=False), st.text(max_size=5))


def _values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


EVENT_VALUES = _values(EVENT_SCALARS)
ANY_VALUES = _values(st.one_of(EVENT_SCALARS, ODD_SCALARS))


def _reference(document: dict[str, Any]) -> bytes | Exception:
    try:
        return chain.reference_encoding(document)
    except Exception as exc:  # noqa: BLE001 - the reference may refuse a value; the fast one must then decline
        return exc


@settings(max_examples=400, deadline=None)
@given(fields=st.dictionaries(TEXT, EVENT_VALUES, max_size=8), event_type=TEXT)
def test_event_values_hash_to_the_reference_bytes_on_the_fast_path(fields: dict[str, Any], event_type: str) -> None:
    document = {"event_type": event_type, "fields": fields}
    assert canonical_bytes(document) == chain.reference_encoding(document)


@settings(max_examples=400, deadline=None)
@given(fields=st.dictionaries(TEXT, ANY_VALUES, max_size=6))
def test_any_other_value_gives_the_reference_bytes_or_is_declined(fields: dict[str, Any]) -> None:
    document = {"event_type": "E", "fields": fields}
    fast = canonical_bytes(document)
    if fast is not None:
        assert fast == _reference(document)


@pytest.mark.parametrize("value", [1.0, 1e16, float("nan"), 2**64, -(2**63) - 1, "\ud800", {1: "a"},
                                   datetime(2026, 1, 1), Decimal("1.5"), [{"deep": 1e-5}]])
def test_values_whose_encodings_differ_are_declined(value: Any) -> None:
    assert canonical_bytes({"event_type": "E", "fields": {"v": value}}) is None


def _transcoders() -> tuple[JSONTranscoder, OrjsonTranscoder]:
    ledger = Ledger()  # registers the same transcodings on both, as construct_transcoder does
    reference, fast = JSONTranscoder(), OrjsonTranscoder()
    ledger.register_transcodings(reference)
    ledger.register_transcodings(fast)
    return reference, fast


REFERENCE, FAST = _transcoders()
STATES = st.dictionaries(TEXT, _values(st.one_of(EVENT_SCALARS, st.decimals(allow_nan=False))), max_size=8)


@settings(max_examples=400, deadline=None)
@given(state=STATES)
def test_the_transcoder_writes_the_reference_bytes_and_reads_them_back_alike(state: dict[str, Any]) -> None:
    stored = REFERENCE.encode(state)
    assert FAST.encode(state) == stored
    assert FAST.decode(stored) == REFERENCE.decode(stored)


@settings(max_examples=300, deadline=None)
@given(state=st.dictionaries(TEXT, ANY_VALUES, max_size=6))
def test_the_transcoder_agrees_with_the_reference_on_anything_else(state: dict[str, Any]) -> None:
    try:
        stored = REFERENCE.encode(state)
    except Exception as exc:  # noqa: BLE001 - the same refusal, whichever error it is
        with pytest.raises(type(exc)):
            FAST.encode(state)
        return
    assert FAST.encode(state) == stored
    decoded = REFERENCE.decode(stored)
    assert repr(FAST.decode(stored)) == repr(decoded)  # repr: NaN != NaN


@pytest.mark.parametrize("stored", [
    b'{"n":18446744073709551616}', b'{"n":-9223372036854775809,"f":1.5}', b'{"x":NaN}',
    b'{"t":{"_type_":"uuid_hex","_data_":"{12345678-1234-5678-1234-567812345678}"}}',
    b'{"t":{"_type_":"decimal_str","_data_":"1.50"},"u":{"_type_":"x","y":1}}',
    b'{"a":{"_type_":"date_iso","_data_":"2026-01-02"},"b":[{"_type_":"datetime_iso","_data_":"2026-01-02T03:04:05-05:30"}]}',
])
def test_stored_json_decodes_to_what_the_reference_reads(stored: bytes) -> None:
    assert repr(FAST.decode(stored)) == repr(REFERENCE.decode(stored))


@pytest.mark.parametrize("stored", [b'{"t":{"_type_":"nope","_data_":"1"}}', b'{"t":{"_type_":"uuid_hex","_data_":"zz"}}',
                                    b"\xff", b'{"a":"\\ud800"}'])
def test_stored_json_the_reference_refuses_is_refused_alike(stored: bytes) -> None:
    try:
        expected: Any = REFERENCE.decode(stored)
    except Exception as exc:  # noqa: BLE001
        with pytest.raises(type(exc)):
            FAST.decode(stored)
    else:
        assert repr(FAST.decode(stored)) == repr(expected)


def test_every_kind_of_event_hashes_and_stores_alike(books: Books) -> None:
    cash, wallet = books.open("cash"), books.open("wallet", type="liability")
    posted = books.post("t1", leg(cash, "1.00"), leg(wallet, "-1.00"), metadata={"k": "v"}).aggregate.id
    tenant = Tenant.create("globex")
    tenant.suspend("audit")
    events = [e for a in (books.tenant_id, cash, wallet, posted) for e in books.ledger.events.get(a)]
    for event in [*events, *tenant.collect_events()]:
        document = {"event_type": type(event).__qualname__,
                    "fields": {k: v for k, v in vars(event).items() if k not in ("hash", "originator_topic")}}
        assert canonical_bytes(document) == chain.reference_encoding(document)
        state = dict(vars(event))
        assert FAST.encode(state) == REFERENCE.encode(state)


def test_an_encoder_that_differs_from_the_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="differs"):
        chain.install_fast_encoding(lambda document: b"{}")
    chain.install_fast_encoding(None)


def test_the_installed_encoder_hashes_as_the_reference(books: Books) -> None:
    cash = books.open("cash")
    event = next(iter(books.ledger.events.get(cash)))
    try:
        chain.install_fast_encoding(None)
        reference = chain.compute_event_hash(event)
        fast_events.install(books.ledger)
        assert chain._fast_encoding is canonical_bytes  # noqa: SLF001 - that it took the fast path
        assert chain.compute_event_hash(event) == reference == event.hash
    finally:
        chain.install_fast_encoding(None)


def test_a_transcoder_that_fails_its_self_check_falls_back_to_the_reference() -> None:
    fast = OrjsonTranscoder()
    Ledger().register_transcodings(fast)
    assert fast.agrees_with_reference(fast_events._transcoder_samples())  # noqa: SLF001
    fast._taggable[date] = ("date_iso", lambda d: "not the reference")  # noqa: SLF001 - a drifted fast path
    assert not fast.agrees_with_reference([{"d": date(2026, 1, 1)}])


def test_uuids_are_tagged_as_the_reference_tags_them() -> None:
    value = UUID(int=1)
    assert FAST.encode({"u": value}) == b'{"u":{"_type_":"uuid_hex","_data_":"00000000000000000000000000000001"}}'


def test_the_self_checks_exercise_the_fast_paths() -> None:
    """A sample the fast path declines checks nothing: all but the last must take it."""
    assert [canonical_bytes(d) is not None for d in chain._SELF_CHECK_DOCUMENTS] == [True, True, False]  # noqa: SLF001
    taken = []
    for sample in fast_events._transcoder_samples():  # noqa: SLF001
        try:
            taken.append(orjson.dumps(FAST._plain(sample)) == REFERENCE.encode(sample))  # noqa: SLF001
        except (fast_events._Declined, orjson.JSONEncodeError):  # noqa: SLF001
            taken.append(False)
    assert taken == [True, True, False]


def test_stored_states_take_the_memory_of_their_size() -> None:
    """orjson's own bytes hold a 4 KiB buffer each; thousands of stored states in one save must not."""
    state = {"timestamp": datetime(2026, 1, 2, tzinfo=timezone.utc), "tenant_id": UUID(int=7), "n": 1}
    tracemalloc.start()
    try:
        kept = [FAST.encode(state) for _ in range(1000)]
        per_state = tracemalloc.get_traced_memory()[0] / len(kept)
    finally:
        tracemalloc.stop()
    assert kept[0] == REFERENCE.encode(state)
    assert per_state < 512
