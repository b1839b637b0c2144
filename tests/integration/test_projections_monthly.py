"""Monthly snapshots: closing balances by effective month, back-dating, recomputing a month."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import select

from projections.read_models.encoding import month_of
from projections.read_models.monthly import read_monthly_snapshots, recompute_month
from projections.read_models.queries import ReadModels
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import (
    Book,
    catch_up,
    catch_up_read_models,
    execute,
    open_book,
    open_ready,
    post,
    read_model_rows,
)


def snapshot_rows(runtime, account_id) -> dict[str, tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    m = read_monthly_snapshots.c
    with runtime.engine.connect() as connection:
        rows = connection.execute(
            select(m.month, m.closing_balance_minor, m.movement_minor, m.entry_count).where(
                m.account_id == str(account_id))
        ).all()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def expected_months(postings: list[tuple[date, int]]) -> dict[str, tuple[int, int, int]]:
    """(closing, movement, entries) for every month with entries: the model the projection must match."""
    movement: dict[str, int] = defaultdict(int)
    entries: dict[str, int] = defaultdict(int)
    for day, amount in postings:
        movement[month_of(day)] += amount
        entries[month_of(day)] += 1
    closing, result = 0, {}
    for month in sorted(movement):
        closing += movement[month]
        result[month] = (closing, movement[month], entries[month])
    return result


def test_back_dating_updates_its_month_and_every_later_one(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book = open_book(ledger)
    cash: list[tuple[date, int]] = []

    def cash_in(external_id: str, day: date, amount: int) -> None:
        post(book, ledger, external_id, day, {"cash": amount, "wallet": -amount})
        cash.append((day, amount))

    cash_in("jan", date(2024, 1, 15), 100)
    cash_in("apr", date(2024, 4, 2), 1000)
    catch_up(runtime)
    assert snapshot_rows(runtime, book.accounts["cash"]) == expected_months(cash)
    assert set(snapshot_rows(runtime, book.accounts["cash"])) == {"2024-01", "2024-04"}  # sparse: no Feb, Mar

    cash_in("late-feb", date(2024, 2, 29), 20)  # back-dated into a closed month with no row yet
    cash_in("late-jan", date(2024, 1, 31), -7)  # back-dated into the first month
    cash_in("earlier", date(2023, 11, 30), 3)  # before the first month
    catch_up(runtime)

    rows = snapshot_rows(runtime, book.accounts["cash"])
    assert rows == expected_months(cash)
    assert rows["2024-04"][0] == sum(amount for _, amount in cash)
    wallet = snapshot_rows(runtime, book.accounts["wallet"])
    assert {month: row[0] for month, row in wallet.items()} == {month: -row[0] for month, row in rows.items()}
    models = ReadModels(runtime.engine)
    march = models.get_balance(book.tenant_id, book.accounts["cash"], as_of=date(2024, 3, 31))
    assert march is not None and march.balance_minor == rows["2024-02"][0]  # March closes at February's balance


def test_recomputing_a_month_fixes_what_is_wrong_and_is_idempotent(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book = open_book(ledger)
    for n, day in enumerate((date(2024, 1, 3), date(2024, 2, 3), date(2024, 2, 9), date(2024, 3, 1))):
        post(book, ledger, f"t{n}", day, {"cash": 10 * (n + 1), "bank": -10 * (n + 1)})
    catch_up(runtime)
    correct = read_model_rows(runtime.engine)

    position, corrections = recompute_month(runtime.engine, "2024-02")
    assert (position, corrections) == (ReadModels(runtime.engine).position(), [])

    cash = str(book.accounts["cash"])
    execute(runtime.engine, "UPDATE read_monthly_snapshots SET closing_balance_minor = closing_balance_minor + 5,"
            " entry_count = 9 WHERE account_id = :a AND month = '2024-02'", a=cash)
    execute(runtime.engine, "DELETE FROM read_monthly_snapshots WHERE month = '2024-02' AND account_id <> :a", a=cash)
    _, corrections = recompute_month(runtime.engine, "2024-02", tenant_id=book.tenant_id)
    assert {str(c.account_id) for c in corrections} == {cash, str(book.accounts["bank"])}
    fixed = next(c for c in corrections if str(c.account_id) == cash)
    assert (fixed.before, fixed.after) == ((65, 50, 9), (60, 50, 2))
    assert read_model_rows(runtime.engine) == correct
    assert recompute_month(runtime.engine, "2024-02")[1] == []
    assert recompute_month(runtime.engine, "2024-05")[1] == []  # a month without entries has no rows


def test_every_tracking_position_is_between_whole_transactions(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book: Book = open_book(ledger)
    for n in range(6):
        post(book, ledger, f"t{n}", date(2024, 1, 1 + n), {"cash": 7, "bank": 5, "wallet": -12})
    ledger.reverse_transaction(book.tenant_id, post(book, ledger, "r", date(2024, 1, 9), {"cash": 1, "fees": -1}))

    from interfaces.bootstrap import build_read_models_group

    group = build_read_models_group(runtime, batch_size=1, defer_to_rebuilds=False)
    models = ReadModels(runtime.engine)
    for _ in range(100):
        if group.process_batch() == 0:
            break
        views = models.list_accounts(book.tenant_id, cursor=None, page_size=50).items
        assert sum(view.balance_minor for view in views) == 0
        for view in views:
            entries = models.list_entries(book.tenant_id, view.id, cursor=None, page_size=50).items
            assert sum(entry.amount_minor for entry in entries) == view.balance_minor
    assert models.position() == ledger.recorder.max_notification_id()
    assert catch_up_read_models(runtime) == 0
