"""Text fields: the one rule (domain/text.py) and every command that applies it.

Every rejection also checks that no balance moved (``Books.rejects``).
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from application.batches import JSONL, BatchInfo, LineError, StoredChunk
from application.ledger import TransactionRequest
from application.recurring import RecurringTransactions
from domain.errors import InvalidText, LedgerError, TenantNotFound
from domain.recurring import Schedule
from domain.text import check_line, check_text, quoted
from infrastructure.batch_files import parse_chunk
from tests.unit.books import DAY, Books, leg

# One of each kind the rule refuses everywhere.
REFUSED = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udfff", "\ufdd0", "\ufffe", "\uffff",
           "\U0010ffff"]
LINE_BREAKS = ["\t", "\n", "\r"]
# Accepted as given: format, private-use, unassigned and astral characters, U+FFFD itself.
ACCEPTED = ["caf\u00e9", "\u200b", "\u202e", "\ue000", "\U0001f600", "\ufffd", "\U000e0001", "\u0378"]


def _unicode_says_refused(char: str, *, free_text: bool) -> bool:
    code_point = ord(char)
    noncharacter = 0xFDD0 <= code_point <= 0xFDEF or code_point & 0xFFFE == 0xFFFE
    control = unicodedata.category(char) == "Cc" and not (free_text and char in "\t\n\r")
    return control or unicodedata.category(char) == "Cs" or noncharacter


@pytest.mark.parametrize("check, free_text", [(check_line, False), (check_text, True)])
def test_the_rule_is_exactly_cc_cs_and_the_noncharacters_for_every_code_point(
    check: Callable[[str, str], str], free_text: bool,
) -> None:
    wrong = []
    for code_point in range(sys.maxunicode + 1):
        char = chr(code_point)
        try:
            check(char, "f")
            refused = False
        except InvalidText:
            refused = True
        if refused != _unicode_says_refused(char, free_text=free_text):
            wrong.append(f"U+{code_point:04X}")
    assert not wrong, wrong[:20]


def test_the_error_names_the_field_and_the_character_but_never_quotes_the_text() -> None:
    with pytest.raises(InvalidText) as info:
        check_text("abc\ud800", "description")
    assert info.value.code == "invalid_text"
    assert info.value.details == {"field": "description", "character": "U+D800", "position": 4}
    assert "\ud800" not in info.value.message
    json.dumps(info.value.details, ensure_ascii=False).encode("utf-8")  # a problem document can carry it


def test_quoted_escapes_what_a_problem_document_cannot_carry() -> None:
    assert quoted("acme") == "acme"
    assert quoted("a\ud800\x00") == "'a\\ud800\\x00'"
    assert quoted("x" * 200) == "x" * 80
    assert quoted(None) == "None"


def test_looking_up_a_tenant_by_a_name_no_tenant_may_have_is_not_found(books: Books) -> None:
    for name in ("acme\ud800", "acme\x00", 7):
        with pytest.raises(TenantNotFound) as info:
            books.ledger.get_tenant_by_name(name)  # type: ignore[arg-type]
        json.dumps(info.value.details, ensure_ascii=False).encode("utf-8")


# --- every command ----------------------------------------------------------------


def _open(books: Books, **overrides: object) -> object:
    args = {"code": "x1", "name": "X", "currency": "BRL", "type": "asset"} | overrides
    return books.ledger.open_account(books.tenant_id, **args)


def _pay(books: Books, external_id: str = "t1", **kwargs: object) -> object:
    return books.post(external_id, leg(books.ids["cash"], "1.00"), leg(books.ids["sales"], "-1.00"), **kwargs)


@pytest.fixture
def shop(books: Books) -> Books:
    books.open("cash")
    books.open("sales", type="income")
    _pay(books, "t0")
    return books


@pytest.mark.parametrize("char", REFUSED + LINE_BREAKS)
def test_an_account_name_is_one_line_of_text(shop: Books, char: str) -> None:
    with shop.rejects(InvalidText, "invalid_text") as info:
        _open(shop, name=f"Petty{char}cash")
    assert info.value.details["field"] == "name"


@pytest.mark.parametrize("char", REFUSED)
def test_a_description_refuses_controls_surrogates_and_noncharacters(shop: Books, char: str) -> None:
    with shop.rejects(InvalidText, "invalid_text", external_id="t1") as info:
        _pay(shop, description=f"rent{char}")
    assert info.value.details["field"] == "description"


@pytest.mark.parametrize("char", LINE_BREAKS)
def test_a_description_may_hold_tabs_and_line_breaks(shop: Books, char: str) -> None:
    assert _pay(shop, description=f"rent{char}march").aggregate.description == f"rent{char}march"


@pytest.mark.parametrize("text", ACCEPTED)
def test_other_characters_are_accepted_as_given(shop: Books, text: str) -> None:
    assert _open(shop, name=text, metadata={text: text}).aggregate.name == text
    assert _pay(shop, description=text, metadata={text: text}).aggregate.description == text


@pytest.mark.parametrize("metadata, field", [
    ({"a\x00": "v"}, "metadata"), ({"a\n": "v"}, "metadata"), ({"\ud800": "v"}, "metadata"),
    ({"k": "v\x00"}, "metadata.k"), ({"k": "\ufffe"}, "metadata.k"), ({"k": "x" * 600 + "\x00"}, "metadata.k"),
])
def test_metadata_keys_are_one_line_and_values_free_text(shop: Books, metadata: dict, field: str) -> None:
    with shop.rejects(InvalidText, "invalid_text", external_id="t1") as info:
        _pay(shop, metadata=metadata)
    assert info.value.details["field"] == field
    with shop.rejects(InvalidText, "invalid_text"):
        _open(shop, metadata=metadata)
    assert _pay(shop, "t2", metadata={"k": "line 1\nline 2\ttab"}).aggregate.metadata["k"] == "line 1\nline 2\ttab"


def test_a_hold_refuses_the_same_text(shop: Books) -> None:
    expires_at = datetime.now(timezone.utc) + timedelta(days=1)
    with shop.rejects(InvalidText, "invalid_text", external_id="h1"):
        shop.ledger.place_hold(shop.tenant_id, "h1", DAY, [leg(shop.ids["cash"], "1.00"),
                                                           leg(shop.ids["sales"], "-1.00")],
                               description="\x00", expires_at=expires_at)


def test_a_reversal_refuses_the_same_text(shop: Books) -> None:
    original = shop.tx_id("t0")
    with shop.rejects(InvalidText, "invalid_text"):
        shop.ledger.reverse_transaction(shop.tenant_id, original, description="undo\x00")
    assert shop.ledger.get_transaction(shop.tenant_id, original).reversed_by is None


def test_a_suspension_reason_refuses_the_same_text(shop: Books) -> None:
    with shop.rejects(InvalidText, "invalid_text"):
        shop.ledger.suspend_tenant(shop.tenant_id, reason="unpaid\x00")
    assert not shop.ledger.get_tenant(shop.tenant_id).is_suspended
    assert shop.ledger.suspend_tenant(shop.tenant_id, reason="unpaid\ninvoice").aggregate.is_suspended


@pytest.mark.parametrize("field, value", [("description", "rent\x00"), ("metadata", {"k": "\ud800"})])
def test_a_recurring_transaction_refuses_the_same_text(shop: Books, field: str, value: object) -> None:
    service = RecurringTransactions(shop.ledger)
    postings = [leg(shop.ids["cash"], "1.00"), leg(shop.ids["sales"], "-1.00")]
    with shop.rejects(InvalidText, "invalid_text"):
        service.create(shop.tenant_id, Schedule("daily"), shop.ledger.clock().date(), postings, **{field: value})


def test_batch_lines_are_refused_one_by_one(shop: Books) -> None:
    postings = [leg(shop.ids["cash"], "1.00"), leg(shop.ids["sales"], "-1.00")]
    requests = [TransactionRequest("b1", DAY, postings, "bad\x00"), TransactionRequest("b2", DAY, postings, "fine"),
                TransactionRequest("b3", DAY, postings, "", {"\x00": "v"})]
    before = shop.balances()
    outcomes = shop.ledger.post_transactions(shop.tenant_id, requests)
    assert [getattr(o, "code", "accepted") for o in outcomes] == ["invalid_text", "accepted", "invalid_text"]
    assert shop.balances()[shop.ids["cash"]] == before[shop.ids["cash"]] + 100  # b2 alone
    shop.assert_not_recorded(shop.tx_id("b1"))
    shop.assert_not_recorded(shop.tx_id("b3"))


@pytest.mark.parametrize("external_id, account", [("x\\ud800", "cash"), ("x1", "ca\\udfffsh"), ("x\\u0000", "cash")])
def test_a_jsonl_line_with_unencodable_identifiers_is_a_line_error(external_id: str, account: str) -> None:
    body = (f'{{"external_id": "{external_id}", "effective_date": "2024-03-01", "description": "ok",'
            f' "postings": [{{"account": "{account}", "amount": "1"}}, {{"account": "sales", "amount": "-1"}}]}}\n')
    batch = BatchInfo(uuid4(), uuid4(), "atomic", JSONL, b"", "processing", "validating", 0, 1, 1, 0, 0, 0)
    [line] = parse_chunk(StoredChunk(0, 1, body.encode()), batch)
    assert isinstance(line, LineError) and line.code == "invalid_text"
    line.message.encode("utf-8")  # stored and shown as is


def test_the_bulk_call_survives_an_unencodable_external_id(shop: Books) -> None:
    postings = [leg(shop.ids["cash"], "1.00"), leg(shop.ids["sales"], "-1.00")]
    before = shop.balances()
    [outcome] = shop.ledger.post_transactions(shop.tenant_id, [TransactionRequest("x\ud800", DAY, postings)])
    assert isinstance(outcome, LedgerError) and outcome.code == "invalid_transaction"  # the external id's syntax
    assert shop.balances() == before
