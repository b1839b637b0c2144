"""Helpers of the read-model tests: a small realistic book, catching up, and row dumps.

Everything goes through the public surface (the Ledger, ``projections``), so the
same helper serves SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, select, text

from application.ledger import Ledger, PostingInstruction
from domain.money import format_amount
from infrastructure.runtime import Runtime
from projections.following.registry import READ_MODELS, tables_of
from projections.following.schema import ensure_schema
from interfaces.bootstrap import build_followers, build_read_models_group
from tests.integration.conftest import OpenRuntime

FIRST_DAY = date(2024, 1, 10)


@dataclass
class Book:
    """A tenant with accounts of every kind, and what was posted to them."""

    tenant_id: UUID
    accounts: dict[str, UUID]
    last_position: int = 0


def open_ready(open_rt: OpenRuntime, url: str, **settings: Any) -> Runtime:
    runtime = open_rt(url, **settings)
    ensure_schema(runtime.engine)
    return runtime


def open_book(ledger: Ledger, name: str = "acme", currency: str = "BRL") -> Book:
    tenant_id = ledger.create_tenant(name).aggregate.id
    kinds = {"cash": "asset", "bank": "asset", "wallet": "liability", "fees": "income", "rent": "expense"}
    accounts = {code: ledger.open_account(tenant_id, code, code.title(), currency, kind).aggregate.id
                for code, kind in kinds.items()}
    return Book(tenant_id, accounts)


def post(book: Book, ledger: Ledger, external_id: str, day: date, legs: dict[str, int], currency: str = "BRL",
         description: str = "") -> UUID:
    """Post ``legs`` (code -> signed minor units); return the transaction id."""
    recorded = ledger.post_transaction(
        book.tenant_id, external_id, day,
        [PostingInstruction(book.accounts[code], format_amount(amount, currency)) for code, amount in legs.items()],
        description=description or external_id,
    )
    book.last_position = recorded.position or book.last_position
    return recorded.aggregate.id


def post_random(book: Book, ledger: Ledger, count: int, *, seed: int = 1, prefix: str = "t") -> None:
    """``count`` transactions over three months, one in five back-dated into an earlier month."""
    rng = random.Random(seed)  # noqa: S311 - reproducible amounts, not security
    codes = sorted(book.accounts)
    for n in range(count):
        day = FIRST_DAY + timedelta(days=n * 90 // max(count, 1))
        if n % 5 == 4:
            day -= timedelta(days=rng.randint(30, 60))
        debit, credit = rng.sample(codes, 2)
        amount = rng.randint(1, 50_000)
        post(book, ledger, f"{prefix}-{n}", day, {debit: amount, credit: -amount})


def catch_up(runtime: Runtime) -> None:
    for follower in build_followers(runtime):
        follower.catch_up()


def catch_up_read_models(runtime: Runtime, batch_size: int = 500) -> int:
    return build_read_models_group(runtime, batch_size, defer_to_rebuilds=False).catch_up()


def read_model_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read model table, sorted: equal dumps mean identical tables."""
    dump = {}
    with engine.connect() as connection:
        for name in READ_MODELS:
            for table in tables_of(name):
                rows = connection.execute(select(table)).all()
                dump[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return dump


def execute(engine: Engine, sql: str, **params: Any) -> int:
    with engine.begin() as connection:
        return connection.execute(text(sql), params).rowcount
