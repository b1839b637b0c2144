"""The relay's messages: CloudEvents 1.0 built from committed events, without I/O (docs/events-out.md)."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID

import pytest
from cloudevents.core.formats.json import JSONFormat

from application.access import AccessService
from application.ledger import Ledger
from domain.chain import GENESIS_HASH
from infrastructure.sinks.message import OutboundMessage
from projections.relay.messages import Origin, build_message, event_type, reference_body, snake
from projections.relay.origins import Origins
from tests.unit.books import DAY, Books, in_memory_ledger, leg


def _log(ledger: Ledger) -> list[tuple[int, Any]]:
    return [(n.id, ledger.mapper.to_domain_event(n)) for n in ledger.recorder.select_notifications(start=1, limit=100)]


@pytest.fixture
def logged() -> tuple[Books, list[tuple[int, Any]]]:
    books = Books.create(in_memory_ledger())
    cash, sales = books.open("cash"), books.open("sales", type="income")
    books.post("t1", leg(cash, "12.34"), leg(sales, "-12.34"))
    books.ledger.reverse_transaction(books.tenant_id, books.tx_id("t1"), DAY)
    return books, _log(books.ledger)


def _relayed(logged: tuple[Books, list[tuple[int, Any]]]) -> list[dict[str, Any]]:
    books, events = logged
    origins = Origins(lambda aggregate_id: next(iter(books.ledger.events.get(aggregate_id, lte=1)), None))
    out = []
    for position, event in events:
        origin = origins.origin(event)
        if origin is not None:
            out.append(json.loads(build_message(position, event, origin, "main").body))
    return out


@pytest.mark.parametrize(("name", "expected"), [
    ("Posted", "posted"), ("PostingRecorded", "posting_recorded"), ("RecurringTransaction", "recurring_transaction"),
    ("HoldPosted", "hold_posted"),
])
def test_names_are_snake_case(name: str, expected: str) -> None:
    assert snake(name) == expected


def test_each_event_is_a_cloudevent_with_its_position_type_and_subject(logged: Any) -> None:
    books, events = logged
    messages = _relayed(logged)
    assert [m["id"] for m in messages] == [str(position) for position, _ in events]
    by_type = {m["type"] for m in messages}
    assert {"io.invario.tenant.created", "io.invario.account.opened", "io.invario.transaction.posted",
            "io.invario.account.posting_recorded", "io.invario.transaction.reversed"} <= by_type
    for message, (_, event) in zip(messages, events, strict=True):
        assert message["specversion"] == "1.0"
        assert message["source"] == f"/ledgers/main/tenants/{books.tenant_id}"
        assert message["subject"] == str(event.originator_id)
        assert message["type"] == event_type(event)
        assert message["time"].endswith("Z") and message["datacontenttype"] == "application/json"
        assert JSONFormat().read(None, json.dumps(message)).get_id() == message["id"]  # the SDK reads it back


def test_the_fast_body_is_the_sdks_cloudevent_for_every_kind_of_event() -> None:
    """build_message writes with orjson what the SDK builds: same document, readable by the SDK."""
    books = Books.create(in_memory_ledger())
    ledger, tenant = books.ledger, books.tenant_id
    cash = books.open("cash")
    sales = ledger.open_account(tenant, "sales", "Vendas à vista", "BRL", "income").aggregate.id
    books.post("t1", leg(cash, "12.34"), leg(sales, "-12.34"), description="café ☕", metadata={"ref": "ü"})
    ledger.reverse_transaction(tenant, books.tx_id("t1"), DAY)
    for number, settle in enumerate((ledger.post_hold, ledger.void_hold)):
        hold = ledger.place_hold(tenant, f"h{number}", DAY, [leg(cash, "1.00"), leg(sales, "-1.00")])
        settle(tenant, hold.aggregate.id)
    ledger.freeze_account(tenant, cash)
    ledger.unfreeze_account(tenant, cash)
    ledger.suspend_tenant(tenant, "audit")
    ledger.resume_tenant(tenant)
    origins = Origins(lambda aggregate_id: next(iter(ledger.events.get(aggregate_id, lte=1)), None))
    kinds = set()
    for position, event in _log(ledger):
        origin = origins.origin(event)
        if origin is None:
            continue
        fast = build_message(position, event, origin, "main").body
        reference = reference_body(position, event, origin, "main")
        assert json.loads(fast) == json.loads(reference), type(event).__qualname__
        assert JSONFormat().read(None, fast).get_attributes() == JSONFormat().read(None, reference).get_attributes()
        kinds.add(type(event).__qualname__)
    assert {"Transaction.HoldPlaced", "Transaction.HoldPosted", "Transaction.HoldVoided", "Account.Frozen",
            "Tenant.Suspended", "Transaction.Reversed"} <= kinds, kinds


def test_hash_and_prevhash_let_a_consumer_check_the_chain(logged: Any) -> None:
    last_hash: dict[str, str] = {}
    for message in _relayed(logged):
        document = {"event_type": message["eventtype"], "fields": message["data"]}
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == message["hash"]
        assert message["prevhash"] == last_hash.get(message["subject"], GENESIS_HASH)
        last_hash[message["subject"]] = message["hash"]


def test_money_is_integer_minor_units_with_a_currency(logged: Any) -> None:
    messages = _relayed(logged)
    posted = next(m for m in messages if m["type"] == "io.invario.transaction.posted")
    assert {(p["amount_minor"], p["currency"]) for p in posted["data"]["postings"]} == {(1234, "BRL"), (-1234, "BRL")}
    recorded = [m for m in messages if m["type"] == "io.invario.account.posting_recorded"]
    assert recorded and all(type(m["data"]["amount_minor"]) is int and m["currency"] == "BRL" for m in recorded)
    assert not _floats([m["data"] for m in messages])


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [f for item in value for f in _floats(item)] if isinstance(value, list) else []


def test_access_events_are_not_relayed_and_carry_no_key_digest() -> None:
    books = Books.create(in_memory_ledger())
    AccessService(books.ledger, "p" * 48).issue_key(books.tenant_id, ["write"])
    origins = Origins(lambda aggregate_id: None)
    kinds = {type(event).__qualname__.split(".")[0]: origins.origin(event) for _, event in _log(books.ledger)}
    assert kinds["Tenant"] == Origin(books.tenant_id)
    assert kinds["ApiKey"] is None and kinds["KeyRing"] is None


def test_an_unknown_first_event_is_an_error_not_a_guess(logged: Any) -> None:
    _books, events = logged
    later = next(event for _, event in events if event.originator_version > 1)
    with pytest.raises(LookupError):
        Origins(lambda aggregate_id: None).origin(later)


def test_origins_are_bounded() -> None:
    origins = Origins(lambda aggregate_id: None, size_max=2)
    books = Books.create(in_memory_ledger())
    for code in ("a", "b", "c"):
        books.open(code)
    origins.learn(event for _, event in _log(books.ledger))
    assert len(origins._known) == 2  # noqa: SLF001 - the bound is the point
    assert isinstance(next(iter(origins._known)), UUID)  # noqa: SLF001


def test_no_credential_of_the_broker_url_reaches_an_error() -> None:
    from infrastructure.sinks.urls import host_and_port, safe_error

    for url, secret in (("nats://relay:pa55word@broker:4222", "pa55word"), ("nats://t0ken-abc@broker", "t0ken-abc"),
                        ("amqp://relay:pa55word@broker:5672/vhost", "pa55word"),
                        ("amqps://relay:pa55word@broker/", "pa55word")):
        said = safe_error(OSError(f"cannot reach {url} as {secret}"), url)
        assert secret not in said and "OSError" in said
        shown = host_and_port(url, 4222)
        assert shown.startswith("broker:") and secret not in shown


def test_the_amqp_sink_shows_where_the_broker_is_and_nothing_more() -> None:
    from infrastructure.sinks.amqp import AmqpSink

    for url, where in (("amqp://relay:pa55word@broker:5673/", "broker:5673"), ("amqp://broker", "broker:5672"),
                       ("amqps://relay:pa55word@broker/", "broker:5671")):
        sink = AmqpSink(url, "invario", "invario", timeout_seconds=1.0)  # connects only on publish
        try:
            assert sink.where == where
        finally:
            sink.close()
    message = OutboundMessage("42", "7352d41c", "account", "posting_recorded", b"{}")
    assert sink.routing_key(message) == "invario.7352d41c.account.posting_recorded"
