"""Request and response bodies of the HTTP API, with the examples of the OpenAPI schema.

Amounts on the wire are signed decimal strings in the account's currency
("12.34", "-0.5"); a positive posting amount is a debit. ``balance`` is seen
from the account's normal side (so money in a customer wallet, a liability, is
positive); ``raw_balance`` is debit-positive, and raw balances sum to zero per
tenant and currency. Request bodies reject unknown fields. String limits here
bound the request; the ledger's own rules (code syntax, amount precision,
posting counts, the characters text may hold: docs/input-rules.md) answer 422
with their codes.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from application.ledger import POST_TRANSACTIONS_MAX
from domain.account import NAME_LENGTH_MAX
from domain.dates import EFFECTIVE_DATE_MAX, EFFECTIVE_DATE_MIN
from domain.metadata import METADATA_KEYS_MAX
from domain.tenant import REASON_LENGTH_MAX
from domain.transaction import DESCRIPTION_LENGTH_MAX, POSTINGS_MAX, POSTINGS_MIN

AMOUNT_LENGTH_MAX = 64
BATCH_TRANSACTIONS_MAX = POST_TRANSACTIONS_MAX  # per POST /v1/transactions/batch: what one bulk ledger call takes
AMOUNT_PATTERN = r"^[+-]?\d{1,30}(\.\d{1,30})?$"
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATE_RULE = (f"a calendar date written YYYY-MM-DD, from {EFFECTIVE_DATE_MIN.isoformat()} "
             f"to {EFFECTIVE_DATE_MAX.isoformat()}")


def _written_as_iso(value: Any) -> Any:
    # pydantic would also read 0 as 1970-01-01, and any number as a timestamp.
    if (isinstance(value, date) and not isinstance(value, datetime)) or (
            isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError(f"must be {DATE_RULE}")


def _in_range(value: date) -> date:
    if not EFFECTIVE_DATE_MIN <= value <= EFFECTIVE_DATE_MAX:
        raise ValueError(f"must be {DATE_RULE}")
    return value


# Every date a client sends (bodies and query strings): docs/input-rules.md, "Dates".
IsoDate = Annotated[date, BeforeValidator(_written_as_iso), AfterValidator(_in_range),
                    WithJsonSchema({"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$",
                                    "minLength": 10, "maxLength": 10})]
Metadata = dict[str, str]

_AMOUNT_HINT = {"pattern": AMOUNT_PATTERN, "examples": ["10.00"]}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests ---------------------------------------------------------------------


class OpenAccount(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"code": "cash", "name": "Cash at bank", "currency": "BRL", "type": "asset"},
        {"code": "wallet:42", "name": "Customer 42", "currency": "BRL", "type": "liability",
         "balance_floor": "0.00", "metadata": {"customer": "42"}},
    ]})

    code: str = Field(max_length=64, description="Unique per tenant: 1-64 letters, digits and ._:/-")
    name: str = Field(max_length=NAME_LENGTH_MAX)
    currency: str = Field(max_length=3, description="ISO 4217 code", json_schema_extra={"pattern": "^[A-Z]{3}$"})
    type: Literal["asset", "liability", "equity", "income", "expense"]
    balance_floor: str | None = Field(
        None, max_length=AMOUNT_LENGTH_MAX, json_schema_extra=_AMOUNT_HINT,
        description="Lowest normal-side balance allowed, e.g. \"0.00\" for no overdraft; none by default",
    )
    metadata: Metadata | None = Field(None, json_schema_extra={"maxProperties": METADATA_KEYS_MAX})


class PostingIn(Body):
    account_id: UUID
    amount: str = Field(
        max_length=AMOUNT_LENGTH_MAX, json_schema_extra=_AMOUNT_HINT,
        description="Signed decimal string in the account's currency; positive is a debit. Its value must fit the "
        "currency's minor unit exactly: trailing zeros beyond it are accepted (1.000 BRL is 1.00), any other "
        "digit there is amount_precision_exceeded; nothing is rounded",
    )
    currency: str | None = Field(None, max_length=3, description="Optional; must match the account's currency")


class PostTransaction(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "external_id": "deposit-0001",
        "effective_date": "2026-11-23",
        "description": "Deposit by customer 42",
        "postings": [
            {"account_id": "0b8a3c2e-6f1d-5d2b-9a51-3f0f2c1e7a11", "amount": "10.00"},
            {"account_id": "5e7d9b1a-2c4f-5a8e-8b3d-1f6e0a9c4d22", "amount": "-10.00"},
        ],
    }]})

    external_id: str = Field(max_length=128, description="Your unique id of this transaction, per tenant")
    effective_date: IsoDate
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)
    postings: list[PostingIn] = Field(
        json_schema_extra={"minItems": POSTINGS_MIN, "maxItems": POSTINGS_MAX},
        description=f"{POSTINGS_MIN}-{POSTINGS_MAX} postings summing to zero per currency",
    )
    metadata: Metadata | None = Field(None, json_schema_extra={"maxProperties": METADATA_KEYS_MAX})
    status: Literal["posted", "pending"] = Field(
        "posted", description="pending: a hold that reserves the amounts (against available balances) until "
        "it is posted, voided or expires",
    )
    expires_at: datetime | None = Field(
        None, description="Only with status pending: when the worker voids the hold if it is still pending",
    )


_WALLET = "5e7d9b1a-2c4f-5a8e-8b3d-1f6e0a9c4d22"
_CASH = "0b8a3c2e-6f1d-5d2b-9a51-3f0f2c1e7a11"


class PostTransactionBatch(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "atomic": False,
        "transactions": [
            {"external_id": "payout-0001", "effective_date": "2026-11-23",
             "postings": [{"account_id": _WALLET, "amount": "4.00"}, {"account_id": _CASH, "amount": "-4.00"}]},
            {"external_id": "payout-0002", "effective_date": "2026-11-23",
             "postings": [{"account_id": _WALLET, "amount": "99.00"}, {"account_id": _CASH, "amount": "-99.00"}]},
        ],
    }]})

    transactions: list[PostTransaction] = Field(
        json_schema_extra={"minItems": 1, "maxItems": BATCH_TRANSACTIONS_MAX},
        description=f"1-{BATCH_TRANSACTIONS_MAX} transactions, each as the body of POST /v1/transactions; "
        "decided in this order (each sees the effect of those before it) and saved together",
    )
    atomic: bool = Field(
        False, description="true: all or nothing (linked): if any transaction is rejected, none is posted (422)",
    )


class PostHold(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {},
        {"postings": [{"account_id": "5e7d9b1a-2c4f-5a8e-8b3d-1f6e0a9c4d22", "amount": "4.00"},
                      {"account_id": "0b8a3c2e-6f1d-5d2b-9a51-3f0f2c1e7a11", "amount": "-4.00"}]},
    ]})

    postings: list[PostingIn] | None = Field(
        None, json_schema_extra={"maxItems": POSTINGS_MAX},
        description="Amounts to capture per account of the hold (same sign, at most the held amount, balanced); "
        "omitted: capture it all. What is not captured is released.",
    )
    effective_date: IsoDate | None = Field(None, description="Defaults to the hold's effective date")


class ReverseTransaction(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"effective_date": "2026-11-24", "description": "Posted twice by mistake"},
    ]})

    effective_date: IsoDate | None = Field(None, description="Defaults to today (UTC)")
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)


class CreateTenant(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "acme"}]})

    name: str = Field(max_length=63, description="2-63 characters of a-z, 0-9, '_' or '-'")


class SuspendTenant(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "unpaid invoice"}]})

    reason: str = Field("", max_length=REASON_LENGTH_MAX)


# --- responses --------------------------------------------------------------------


class Positioned(BaseModel):
    position: int = Field(description="Log position this answer reflects (pass as ?min_position= to read it back)")


class AccountOut(Positioned):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "0b8a3c2e-6f1d-5d2b-9a51-3f0f2c1e7a11", "code": "cash", "name": "Cash at bank", "currency": "BRL",
        "type": "asset", "status": "open", "balance": "10.00", "raw_balance": "10.00", "balance_floor": None,
        "metadata": {}, "version": 2, "created_at": "2026-11-23T12:00:00Z", "updated_at": "2026-11-23T12:00:05Z",
        "position": 7,
    }]})

    id: UUID
    code: str
    name: str
    currency: str
    type: str
    status: str = Field(description="open, frozen or closed")
    balance: str = Field(description="Balance seen from the account's normal side")
    raw_balance: str = Field(description="Debit-positive balance")
    balance_floor: str | None
    metadata: Metadata
    version: int = Field(description="Changes with every event of the account; sent as the ETag")
    created_at: datetime
    updated_at: datetime


class BalanceOut(Positioned):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "account_id": "0b8a3c2e-6f1d-5d2b-9a51-3f0f2c1e7a11", "currency": "BRL", "balance": "10.00",
        "raw_balance": "10.00", "as_of": None, "position": 7,
    }]})

    account_id: UUID
    currency: str
    balance: str = Field(description="Normal-side balance (posted)")
    raw_balance: str = Field(description="Debit-positive balance (posted)")
    as_of: date | None = Field(description="Effective date the balance is taken at (end of day); null: now")
    posted: str = Field("0", description="Posted balance, normal side (the same as balance)")
    pending: str = Field("0", description="Net of the open holds, normal side (0 with as_of)")
    raw_pending: str = Field("0", description="Net of the open holds, debit-positive")
    available: str = Field(
        "0", description="Posted minus the open holds that would reduce it (normal side); floors apply to it",
    )


class HoldOut(BaseModel):
    transaction_id: UUID
    account_id: UUID
    effective_date: date
    placed_at: datetime
    amount: str = Field(description="Held amount, positive is a debit")
    currency: str
    description: str
    expires_at: datetime | None
    status: Literal["pending", "posted", "voided", "expired"]
    captured: str | None = Field(description="Amount posted by the capture (0: released); null unless posted")
    resolved_at: datetime | None
    position: int = Field(description="Log position of the hold's placement")


class EntryOut(Positioned):
    transaction_id: UUID
    account_id: UUID
    effective_date: date
    recorded_at: datetime
    amount: str = Field(description="Signed posting amount, positive is a debit")
    currency: str
    running_balance: str = Field(description="Debit-positive balance after this entry")
    description: str


class PostingOut(BaseModel):
    account_id: UUID
    amount: str
    currency: str


class TransactionOut(Positioned):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "8f14e45f-ceea-5e7a-9f3b-2b7c1d4e5f60", "external_id": "deposit-0001", "effective_date": "2026-11-23",
        "recorded_at": "2026-11-23T12:00:05Z", "description": "Deposit by customer 42",
        "postings": [
            {"account_id": "0b8a3c2e-6f1d-5d2b-9a51-3f0f2c1e7a11", "amount": "10.00", "currency": "BRL"},
            {"account_id": "5e7d9b1a-2c4f-5a8e-8b3d-1f6e0a9c4d22", "amount": "-10.00", "currency": "BRL"},
        ],
        "metadata": {}, "reverses": None, "reversed_by": None, "version": 1, "position": 9,
    }]})

    id: UUID
    external_id: str | None = Field(description="Null for reversals")
    effective_date: date
    recorded_at: datetime
    description: str
    postings: list[PostingOut]
    metadata: Metadata
    reverses: UUID | None
    reversed_by: UUID | None
    version: int = Field(description="Changes with every event of the transaction; sent as the ETag")
    status: Literal["posted", "pending", "voided", "expired"] = "posted"
    expires_at: datetime | None = None
    held_postings: list[PostingOut] | None = Field(
        None, description="A hold's reserved postings (postings are what it posted once captured)",
    )


class AccountBalanceOut(BaseModel):
    account_id: UUID
    currency: str
    balance: str = Field(description="Posted balance, normal side (as `balance` of GET /v1/accounts/{id}/balance)")
    raw_balance: str = Field(description="Posted balance, debit-positive (as `raw_balance` there)")
    available_balance: str = Field(description="Available balance, normal side (as `available` there)")


class TransactionWritten(TransactionOut):
    """A write's answer: the transaction, and the balances of the accounts it touched as
    this write left them. A replay by external_id shows the balances as of the replay."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        **TransactionOut.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
        "balances": [
            {"account_id": _CASH, "currency": "BRL", "balance": "10.00", "raw_balance": "10.00",
             "available_balance": "10.00"},
            {"account_id": _WALLET, "currency": "BRL", "balance": "10.00", "raw_balance": "-10.00",
             "available_balance": "10.00"},
        ],
    }]})

    balances: list[AccountBalanceOut] = Field(
        default_factory=list, description="Each account the write touched, as the write left it",
    )


class TransactionBatchItem(BaseModel):
    index: int = Field(description="The transaction's place in the request, from 0")
    status: Literal["created", "replayed", "rejected"]
    transaction: TransactionWritten | None = Field(description="As the 201 body of POST /v1/transactions; "
                                                   "null when rejected")
    problem: dict[str, Any] | None = Field(description="Why it was rejected (a problem document with its code); "
                                           "null otherwise")


_BATCH_RESULTS_EXAMPLE = [
    {"index": 0, "status": "created", "transaction": {
        "id": "8f14e45f-ceea-5e7a-9f3b-2b7c1d4e5f60", "external_id": "payout-0001", "effective_date": "2026-11-23",
        "recorded_at": "2026-11-23T12:00:05Z", "description": "",
        "postings": [{"account_id": _WALLET, "amount": "4.00", "currency": "BRL"},
                     {"account_id": _CASH, "amount": "-4.00", "currency": "BRL"}],
        "metadata": {}, "reverses": None, "reversed_by": None, "version": 1, "position": 12, "status": "posted",
        "expires_at": None, "held_postings": None,
        "balances": [{"account_id": _WALLET, "currency": "BRL", "balance": "6.00", "raw_balance": "-6.00",
                      "available_balance": "6.00"},
                     {"account_id": _CASH, "currency": "BRL", "balance": "6.00", "raw_balance": "6.00",
                      "available_balance": "6.00"}],
    }, "problem": None},
    {"index": 1, "status": "rejected", "transaction": None, "problem": {
        "type": "urn:invario:problem:insufficient_funds", "title": "Insufficient funds", "status": 422,
        "detail": "account wallet:42 would go below its floor of 0.00 BRL", "code": "insufficient_funds",
        "instance": "/v1/transactions/batch", "request_id": "4f9c2d0e8b7a4c1e9d3f5a6b7c8d9e0f",
        "account_id": _WALLET}},
]


class TransactionBatchOut(Positioned):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "atomic": False, "created": 1, "replayed": 0, "rejected": 1, "results": _BATCH_RESULTS_EXAMPLE,
        "position": 12,
    }]})

    atomic: bool
    created: int = Field(description="How many transactions this request posted")
    replayed: int = Field(description="How many were already recorded with the same external_id and content")
    rejected: int = Field(description="How many were rejected (each with its problem)")
    results: list[TransactionBatchItem] = Field(description="One per transaction of the request, in its order")


class TenantOut(Positioned):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "2f1c7b9e-3d4a-5e6f-8a9b-0c1d2e3f4a5b", "name": "acme", "status": "active", "suspension_reason": None,
        "version": 1, "created_at": "2026-11-23T12:00:00Z", "updated_at": "2026-11-23T12:00:00Z", "position": 1,
    }]})

    id: UUID
    name: str
    status: Literal["active", "suspended"]
    suspension_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class Page(Positioned):
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")


class AccountPage(Page):
    items: list[AccountOut]


class EntryPage(Page):
    items: list[EntryOut]


class TransactionPage(Page):
    items: list[TransactionOut]


class TenantPage(Page):
    items: list[TenantOut]


class HoldPage(Page):
    items: list[HoldOut]


# --- the pull feed: GET /v1/events (docs/events-out.md) ---------------------------------


class CloudEventOut(BaseModel):
    """A committed event as the relay publishes it: CloudEvents 1.0, JSON structured mode."""

    model_config = ConfigDict(extra="allow")  # CloudEvents allows further extension attributes
    specversion: Literal["1.0"]
    id: str = Field(description="The event's log position: the de-duplication key, and the feed's cursor")
    source: str = Field(description="/ledgers/<ledger>/tenants/<tenant id>")
    type: str = Field(description="io.invario.<aggregate>.<event>, e.g. io.invario.transaction.posted")
    subject: str = Field(description="The aggregate's id")
    time: str
    datacontenttype: Literal["application/json"]
    hash: str = Field(description="SHA-256 of the event's canonical encoding (docs/integrity.md)")
    prevhash: str = Field(description="The hash of the aggregate's previous event (64 zeros for its first)")
    eventtype: str = Field(description="The event's class, as its hash covers it (Account.PostingRecorded)")
    aggregateversion: int
    currency: str | None = Field(None, description="On an account's events: the currency of its amounts")
    data: dict[str, Any] = Field(description="Exactly the values the hash covers")


class EventPage(BaseModel):
    items: list[CloudEventOut] = Field(description="The tenant's events after `after`, in log order")
    next_after: int = Field(description="Pass as `after` for the next page: the last item's position, or "
                            "`after` itself when there is none")
    next: str = Field(description="The URL of the next page (poll it later when `more` is false)")
    more: bool = Field(description="More of the tenant's events follow at once")
    position: int = Field(description="The log position the feed reflects")
