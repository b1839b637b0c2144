"""The group-commit writer under concurrent callers, on SQLite and PostgreSQL.

Many threads post at once through one runtime (the writer batches them), or
through two runtimes on one database (two processes as the store sees them,
whose batches conflict). Clients retry a ``ConcurrencyConflict`` with the same
``external_id``, so a retry can never post twice; afterwards every balance, the
log length and every hash chain are checked from a cold runtime.
"""

from __future__ import annotations

import random
import threading
from uuid import UUID, uuid4

import pytest

from application.ledger import Ledger, Recorded
from domain.errors import AccountNotFound, ConcurrencyConflict
from domain.money import format_amount
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, broken_chains, leg, log_length
from tests.integration.test_hot_account import run_workers

THREADS = 8
PER_THREAD = 30
ACCOUNTS = 12
CLIENT_RETRIES_MAX = 50


def open_books(ledger: Ledger) -> tuple[UUID, UUID, list[UUID]]:
    tenant_id = ledger.create_tenant("acme").aggregate.id
    hot = ledger.open_account(tenant_id, "hot", "Hot", "BRL", "asset").aggregate.id
    others = [ledger.open_account(tenant_id, f"a{i}", f"A{i}", "BRL", "asset").aggregate.id for i in range(ACCOUNTS)]
    return tenant_id, hot, others


def plan(worker: int, others: list[UUID], hot: UUID) -> list[tuple[str, UUID, UUID, int]]:
    """Each worker's transfers: (external id, debit, credit, minor units); every other one on the hot account."""
    rng = random.Random(worker)  # noqa: S311 - test data
    transfers = []
    for n in range(PER_THREAD):
        debit = hot if n % 2 == 0 else rng.choice(others)
        credit = rng.choice([a for a in others if a != debit])
        transfers.append((f"w{worker}-{n}", debit, credit, rng.randint(1, 10_000)))
    return transfers


def post_with_retries(ledger: Ledger, tenant_id: UUID, transfer: tuple[str, UUID, UUID, int]) -> Recorded:
    external_id, debit, credit, amount = transfer
    legs = [leg(debit, format_amount(amount, "BRL")), leg(credit, format_amount(-amount, "BRL"))]
    for attempt in range(CLIENT_RETRIES_MAX + 1):
        try:
            return ledger.post_transaction(tenant_id, external_id, DAY, legs)
        except ConcurrencyConflict:
            if attempt == CLIENT_RETRIES_MAX:
                raise
    raise AssertionError("unreachable")


def expected_balances(transfers: list[tuple[str, UUID, UUID, int]]) -> dict[UUID, int]:
    balances: dict[UUID, int] = {}
    for _, debit, credit, amount in transfers:
        balances[debit] = balances.get(debit, 0) + amount
        balances[credit] = balances.get(credit, 0) - amount
    return balances


def check_books(ledger: Ledger, tenant_id: UUID, accounts: list[UUID], transfers: list) -> None:  # type: ignore[type-arg]
    expected = expected_balances(transfers)
    for account_id in accounts:
        assert ledger.get_account(tenant_id, account_id).balance_minor == expected.get(account_id, 0), account_id
    assert log_length(ledger) == 2 + ACCOUNTS + 3 * len(transfers)
    assert broken_chains(ledger) == {}


@pytest.mark.parametrize("runtimes", [1, 2])
def test_concurrent_posts_through_the_writer_lose_and_double_nothing(
    database_url: str, open_rt: OpenRuntime, runtimes: int
) -> None:
    opened = [open_rt(database_url, db_pool_size=4) for _ in range(runtimes)]
    tenant_id, hot, others = open_books(opened[0].ledger)
    plans = [plan(w, others, hot) for w in range(THREADS)]

    def work(worker: int) -> None:
        ledger = opened[worker % runtimes].ledger
        for transfer in plans[worker]:
            recorded = post_with_retries(ledger, tenant_id, transfer)
            assert recorded.position is not None or recorded.replayed

    run_workers(work)
    everything = [t for p in plans for t in p]
    for runtime in opened:
        check_books(runtime.ledger, tenant_id, [hot, *others], everything)
    check_books(open_rt(database_url).ledger, tenant_id, [hot, *others], everything)


def test_close_drains_queued_writes_and_refuses_new_ones(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_rt(database_url, write_batch_size_max=16, write_batch_wait_ms=50)
    tenant_id, hot, others = open_books(runtime.ledger)
    acknowledged: dict[str, Recorded] = {}
    refused: list[str] = []
    started = threading.Barrier(THREADS + 1)
    lock = threading.Lock()

    def work(worker: int) -> None:
        started.wait(timeout=30)
        for n in range(PER_THREAD):
            external_id = f"w{worker}-{n}"
            try:
                recorded = runtime.ledger.post_transaction(tenant_id, external_id, DAY,
                                                           [leg(hot, "1.00"), leg(others[worker], "-1.00")])
            except ConcurrencyConflict as error:
                assert "shutting down" in str(error)
                with lock:
                    refused.append(external_id)
            else:
                with lock:
                    acknowledged[external_id] = recorded

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    started.wait(timeout=30)
    runtime.close()  # while the writers are still posting
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert len(acknowledged) + len(refused) == THREADS * PER_THREAD
    cold = open_rt(database_url).ledger
    assert cold.get_account(tenant_id, hot).balance_minor == 100 * len(acknowledged)  # every acknowledged write
    assert log_length(cold) == 2 + ACCOUNTS + 3 * len(acknowledged)  # and nothing else
    assert broken_chains(cold) == {}
    with pytest.raises(ConcurrencyConflict, match="shutting down"):
        runtime.ledger.post_transaction(tenant_id, "late", DAY, [leg(hot, "1.00"), leg(others[0], "-1.00")])


def test_deferred_hands_back_the_future_of_the_commit(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_rt(database_url, write_batch_size_max=16, write_batch_wait_ms=200)
    tenant_id, hot, others = open_books(runtime.ledger)
    log_before = log_length(runtime.ledger)
    future = runtime.ledger.deferred(
        lambda: runtime.ledger.post_transaction(tenant_id, "later", DAY, [leg(hot, "1.00"), leg(others[0], "-1.00")]))
    assert not future.done()  # queued: the writer waits up to 200 ms for more
    recorded = future.result(timeout=30)
    assert isinstance(recorded, Recorded) and recorded.position is not None
    assert log_length(runtime.ledger) == log_before + 3
    rejected = runtime.ledger.deferred(
        lambda: runtime.ledger.post_transaction(tenant_id, "x", DAY, [leg(hot, "1.00"), leg(uuid4(), "-1.00")]))
    with pytest.raises(AccountNotFound):
        rejected.result(timeout=30)  # a rejection is the future's exception
    opened = runtime.ledger.deferred(lambda: runtime.ledger.open_account(tenant_id, "new", "New", "BRL", "asset"))
    assert opened.done() and opened.result().aggregate.code == "new"  # saved on its own, in the caller


def test_without_a_writer_deferred_runs_the_whole_use_case(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_rt(database_url, write_batch_size_max=1)
    tenant_id, hot, others = open_books(runtime.ledger)
    future = runtime.ledger.deferred(
        lambda: runtime.ledger.post_transaction(tenant_id, "now", DAY, [leg(hot, "1.00"), leg(others[0], "-1.00")]))
    assert future.done() and future.result().position is not None
