"""Holds under concurrency and restarts: expiry by the worker exactly once, even after the
worker was down and with several workers; concurrent post and void of one hold: one wins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from application.ledger import PostingInstruction
from domain.errors import HoldAlreadyResolved, LedgerError
from domain.transaction import Transaction
from projections.jobs.hold_expiry import HoldExpiry
from projections.read_models.queries import ReadModels
from interfaces.bootstrap import build_followers
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import catch_up, open_book, open_ready, post

DAY = date(2024, 2, 1)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)  # every ledger here runs on a set clock


def _place(runtime: Any, book: Any, name: str, amount: str, expires_at: datetime | None) -> UUID:
    return runtime.ledger.place_hold(book.tenant_id, name, DAY, [
        PostingInstruction(book.accounts["wallet"], amount), PostingInstruction(book.accounts["fees"], "-" + amount),
    ], expires_at=expires_at).aggregate.id


def _expiry_events(runtime: Any, hold_id: UUID) -> int:
    return sum(isinstance(e, Transaction.HoldExpired) for e in runtime.ledger.events.get(hold_id))


def test_holds_that_expired_while_the_worker_was_down_expire_once(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    runtime.ledger.clock = lambda: NOW
    book = open_book(runtime.ledger)
    post(book, runtime.ledger, "deposit", DAY, {"cash": 100_000, "wallet": -100_000})
    due = [_place(runtime, book, f"due-{n}", "1.00", NOW + timedelta(minutes=n + 1)) for n in range(12)]
    later = _place(runtime, book, "later", "2.00", NOW + timedelta(days=1))
    forever = _place(runtime, book, "forever", "3.00", None)
    catch_up(runtime)  # a worker ran while nothing was due; then it stopped

    # Time passes with no worker running. Two workers start at once (a restart, and a second
    # process), each with its own ledger on the same store; each runs its followers repeatedly.
    workers = [open_ready(open_rt, database_url), open_ready(open_rt, database_url)]
    for worker in workers:
        worker.ledger.clock = lambda: NOW + timedelta(hours=1)
    _run_together([lambda w=w: [f.catch_up() for f in build_followers(w) for _ in range(2)] for w in workers])
    catch_up(workers[0])

    assert [_expiry_events(runtime, hold) for hold in due] == [1] * len(due)
    assert (_expiry_events(runtime, later), _expiry_events(runtime, forever)) == (0, 0)
    wallet = runtime.ledger.get_account(book.tenant_id, book.accounts["wallet"])
    assert (wallet.pending_minor, wallet.available_normal_minor) == (500, 100_000 - 500)
    models = ReadModels(runtime.engine)
    assert models.holds_due(NOW + timedelta(hours=1)) == []
    statuses = {models.get_transaction(book.tenant_id, h).status for h in due}  # type: ignore[union-attr]
    assert statuses == {"expired"}
    # A worker started again later finds nothing more to do.
    again = HoldExpiry(workers[1].ledger, workers[1].engine)
    assert again.catch_up() == 0


def test_concurrent_post_and_void_of_one_hold_exactly_one_wins(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    other = open_ready(open_rt, database_url)  # another process: no shared in-process locks
    book = open_book(runtime.ledger)
    post(book, runtime.ledger, "deposit", DAY, {"cash": 100_000, "wallet": -100_000})
    for n in range(8):
        hold = _place(runtime, book, f"h-{n}", "10.00", None)
        outcomes: dict[str, Any] = {}

        def attempt(name: str, command: Callable[[], Any]) -> None:
            try:
                command()
                outcomes[name] = "ok"
            except LedgerError as error:
                outcomes[name] = error

        _run_together([
            lambda: attempt("post", lambda: runtime.ledger.post_hold(book.tenant_id, hold)),
            lambda: attempt("void", lambda: other.ledger.void_hold(book.tenant_id, hold)),
        ])
        winners = [name for name, outcome in outcomes.items() if outcome == "ok"]
        assert len(winners) == 1, outcomes
        loser = outcomes["void" if winners == ["post"] else "post"]
        assert isinstance(loser, HoldAlreadyResolved), loser
        events = [type(e).__qualname__ for e in runtime.ledger.events.get(hold)]
        assert events == ["Transaction.HoldPlaced", "Transaction.HoldPosted" if winners == ["post"]
                          else "Transaction.HoldVoided"]
    wallet = runtime.ledger.get_account(book.tenant_id, book.accounts["wallet"])
    assert wallet.pending_minor == 0
    catch_up(runtime)
    from projections.jobs.reconcile import reconcile

    assert reconcile(runtime.ledger, runtime.engine).divergences == ()


def _run_together(tasks: list[Callable[[], Any]]) -> None:
    barrier = threading.Barrier(len(tasks))
    errors: list[BaseException] = []

    def run(task: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            task()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(task,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
