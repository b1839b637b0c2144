"""Fast, realistic ledger histories for benchmarks.

Events are produced by the real aggregates and saved through the real
``Ledger.save`` (so they are hash-linked and snapshotted as in production), but
many transactions share one ``save()``, which makes a history of 100,000 events
take seconds instead of minutes. Effective dates advance with the history and
one transaction in twenty is back-dated into an earlier month.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from application.ledger import Ledger
from domain.account import Account
from domain.tenant import Tenant
from domain.transaction import Posting, Transaction

FIRST_DAY = date(2023, 1, 1)
DAYS = 730
BACKDATED_ONE_IN = 20
SAVE_CHUNK = 100  # transactions per save()


def populate(ledger: Ledger, transactions: int, *, accounts: int = 200, seed: int = 7, tenant: str = "bench") -> int:
    """Record ``transactions`` two-legged transactions; return the number of events written."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not security
    owner = Tenant.create(tenant)
    book = [Account.open(owner.id, f"acc-{n}", f"Account {n}", "BRL", "asset" if n % 2 else "liability")
            for n in range(accounts)]
    ledger.save(owner, *book)
    written = 1 + accounts
    for start in range(0, transactions, SAVE_CHUNK):
        chunk = []
        touched: dict[object, Account] = {}
        for number in range(start, min(start + SAVE_CHUNK, transactions)):
            debit, credit = rng.sample(book, 2)
            amount = rng.randint(1, 1_000_000)
            posted = Transaction.post(owner.id, f"tx-{number}", _effective_date(rng, number, transactions),
                                      (Posting(debit.id, amount, "BRL"), Posting(credit.id, -amount, "BRL")),
                                      description=f"transfer {number}")
            debit.record_posting(posted.id, amount, "BRL")
            credit.record_posting(posted.id, -amount, "BRL")
            touched[debit.id], touched[credit.id] = debit, credit
            chunk.append(posted)
        ledger.save(*chunk, *touched.values())
        written += 3 * len(chunk)
    return written


def _effective_date(rng: random.Random, number: int, total: int) -> date:
    day = FIRST_DAY + timedelta(days=DAYS * number // max(total, 1))
    if rng.randrange(BACKDATED_ONE_IN) == 0:
        day -= timedelta(days=rng.randint(31, 180))
    return day
