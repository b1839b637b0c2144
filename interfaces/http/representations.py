"""Turn aggregates (command results) and read-model views (query results) into response bodies."""

from __future__ import annotations

from typing import Any

from domain.money import format_amount
from interfaces.http.schemas import (
    AccountBalanceOut,
    AccountOut,
    BalanceOut,
    EntryOut,
    HoldOut,
    PostingOut,
    TenantOut,
    TransactionOut,
    TransactionWritten,
)


def _amount(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_amount(minor, currency)


def account_from_aggregate(account: Any, position: int) -> AccountOut:
    return AccountOut(
        id=account.id, code=account.code, name=account.name, currency=account.currency, type=str(account.type),
        status=str(account.status), balance=format_amount(account.balance_normal_minor, account.currency),
        raw_balance=format_amount(account.balance_minor, account.currency),
        balance_floor=_amount(account.balance_floor_minor, account.currency), metadata=dict(account.metadata),
        version=account.version, created_at=account.created_on, updated_at=account.modified_on, position=position,
    )


def account_from_view(view: Any) -> AccountOut:
    return AccountOut(
        id=view.id, code=view.code, name=view.name, currency=view.currency, type=str(view.type),
        status=str(view.status), balance=format_amount(view.balance_normal_minor, view.currency),
        raw_balance=format_amount(view.balance_minor, view.currency),
        balance_floor=_amount(view.balance_floor_minor, view.currency), metadata=dict(view.metadata or {}),
        version=view.version, created_at=view.created_at, updated_at=view.updated_at, position=view.position,
    )


def balance_from_view(view: Any) -> BalanceOut:
    currency = view.currency
    return BalanceOut(
        account_id=view.account_id, currency=currency,
        balance=format_amount(view.balance_normal_minor, currency),
        raw_balance=format_amount(view.balance_minor, currency), as_of=view.as_of, position=view.position,
        posted=format_amount(view.balance_normal_minor, currency),
        pending=format_amount(view.pending_normal_minor, currency),
        raw_pending=format_amount(view.pending_minor, currency),
        available=format_amount(view.available_normal_minor, currency),
    )


def hold_from_view(view: Any) -> HoldOut:
    return HoldOut(
        transaction_id=view.transaction_id, account_id=view.account_id, effective_date=view.effective_date,
        placed_at=view.placed_at, amount=format_amount(view.amount_minor, view.currency), currency=view.currency,
        description=view.description or "", expires_at=view.expires_at, status=view.status,
        captured=_amount(view.captured_minor, view.currency), resolved_at=view.resolved_at, position=view.position,
    )


def entry_from_view(view: Any) -> EntryOut:
    return EntryOut(
        transaction_id=view.transaction_id, account_id=view.account_id, effective_date=view.effective_date,
        recorded_at=view.recorded_at, amount=format_amount(view.amount_minor, view.currency), currency=view.currency,
        running_balance=format_amount(view.running_balance_minor, view.currency), description=view.description or "",
        position=view.position,
    )


def transaction_from_aggregate(transaction: Any, position: int) -> TransactionOut:
    postings = [(p.account_id, p.amount_minor, p.currency) for p in transaction.postings]
    return _transaction(transaction, postings, transaction.created_on, transaction.version, position)


def transaction_written(recorded: Any, position: int) -> TransactionWritten:
    """A write's answer: the transaction with the balances the write left (``Recorded.balances``),
    formatted as GET /v1/accounts/{id}/balance formats them."""
    out = transaction_from_aggregate(recorded.aggregate, position)
    balances = [
        AccountBalanceOut(account_id=b.account_id, currency=b.currency,
                          balance=format_amount(b.balance_normal_minor, b.currency),
                          raw_balance=format_amount(b.balance_minor, b.currency),
                          available_balance=format_amount(b.available_normal_minor, b.currency))
        for b in recorded.balances
    ]
    return TransactionWritten(**dict(out), balances=balances)


def transaction_version_of_view(view: Any) -> int:
    # Posted or HoldPlaced is version 1; a hold's resolution (HoldPosted, HoldVoided,
    # HoldExpired) and a Reversed event each add one.
    resolved = getattr(view, "held_postings", None) is not None and getattr(view, "status", "posted") != "pending"
    return 1 + (1 if resolved else 0) + (1 if view.reversed_by is not None else 0)


def transaction_from_view(view: Any) -> TransactionOut:
    return _transaction(view, list(view.postings), view.recorded_at, transaction_version_of_view(view), view.position)


def _transaction(source: Any, postings: list[Any], recorded_at: Any, version: int, position: int) -> TransactionOut:
    held = getattr(source, "held_postings", None)
    if held is not None:
        held = [(p.account_id, p.amount_minor, p.currency) if hasattr(p, "amount_minor") else p for p in held]
    out = _transaction_out(source, postings, recorded_at, version, position)
    out.status = str(getattr(source, "status", "posted"))
    out.expires_at = getattr(source, "expires_at", None)
    out.held_postings = (None if held is None else
                         [PostingOut(account_id=a, amount=format_amount(m, c), currency=c) for a, m, c in held])
    return out


def _transaction_out(source: Any, postings: list[Any], recorded_at: Any, version: int,
                     position: int) -> TransactionOut:
    return TransactionOut(
        id=source.id, external_id=source.external_id, effective_date=source.effective_date, recorded_at=recorded_at,
        description=source.description or "",
        postings=[PostingOut(account_id=a, amount=format_amount(m, c), currency=c) for a, m, c in postings],
        metadata=dict(source.metadata or {}), reverses=source.reverses, reversed_by=source.reversed_by,
        version=version, position=position,
    )


def tenant_from_aggregate(tenant: Any, position: int) -> TenantOut:
    return TenantOut(
        id=tenant.id, name=tenant.name, status=str(tenant.status), suspension_reason=tenant.suspension_reason,
        version=tenant.version, created_at=tenant.created_on, updated_at=tenant.modified_on, position=position,
    )


def tenant_from_view(view: Any) -> TenantOut:
    return TenantOut(
        id=view.id, name=view.name, status=view.status, suspension_reason=view.suspension_reason,
        version=view.version, created_at=view.created_at, updated_at=view.updated_at, position=view.position,
    )
