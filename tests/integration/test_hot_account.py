"""Many writers on one hot account: no lost update, every chain intact.

Eight threads each post ``PER_THREAD`` transactions between their own account and
one shared ``hot`` account, all at once. Two ways to share the store:

- one ``Ledger`` for all threads (one aggregate cache, fast-forwarded per use);
- one runtime per thread on the same database: separate caches and connection
  pools, which is what separate processes look like to the store.

Writes go through each runtime's group-commit writer. A batch that conflicts
with another runtime's write re-decides the affected commands on fresh state and
then waits in the cross-process conflict lane (a PostgreSQL advisory lock), so
separate processes on one hot account take turns instead of exhausting their
bounded retries; only then would it raise ``ConcurrencyConflict`` ("retry the
request"). The correctness tests retry
such a refusal as a client would (same ``external_id``, so a retry can never post
twice) and check that nothing was lost or doubled. ``test_no_writer_is_refused``
holds the Ledger to not refusing at all under this modest load. Any other error
(for instance SQLite's "database is locked") fails every test here.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from uuid import UUID

import pytest

from application.ledger import Ledger
from domain.errors import ConcurrencyConflict
from domain.money import format_amount
from infrastructure.runtime import Runtime
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, broken_chains, leg, log_length

THREADS = 8
PER_THREAD = 40
JOIN_TIMEOUT_SECONDS = 60
CLIENT_RETRIES_MAX = 50


def amount_of(worker: int, n: int) -> int:
    """What worker ``worker`` moves into the hot account in its ``n``-th transaction (minor units)."""
    return (worker + 1) * 100 + n + 1


def set_up(ledger: Ledger) -> tuple[UUID, UUID, list[UUID]]:
    tenant_id = ledger.create_tenant("acme").aggregate.id
    hot = ledger.open_account(tenant_id, "hot", "Hot", "BRL", "asset").aggregate.id
    own = [ledger.open_account(tenant_id, f"w{w}", f"W{w}", "BRL", "asset").aggregate.id for w in range(THREADS)]
    return tenant_id, hot, own


def run_workers(work: Callable[[int], None]) -> None:
    """Run ``work(worker)`` on ``THREADS`` threads released together; fail with every thread's traceback."""
    barrier = threading.Barrier(THREADS)
    failures: dict[int, str] = {}

    def target(worker: int) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT_SECONDS)
            work(worker)
        except BaseException:  # noqa: BLE001 - reported below with its traceback
            failures[worker] = traceback.format_exc()

    threads = [threading.Thread(target=target, args=(w,), name=f"worker-{w}") for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_SECONDS)
    assert not any(t.is_alive() for t in threads), "a worker is still running (deadlock?)"
    assert not failures, "\n".join(f"--- worker {w} ---\n{tb}" for w, tb in sorted(failures.items()))


def post_as(ledger: Ledger, tenant_id: UUID, hot: UUID, own: UUID, worker: int, *, client_retries: int) -> int:
    """Post this worker's transactions; return how many requests the Ledger refused (and were retried)."""
    refused = 0
    for n in range(PER_THREAD):
        amount = amount_of(worker, n)
        legs = [leg(hot, format_amount(amount, "BRL")), leg(own, format_amount(-amount, "BRL"))]
        for attempt in range(client_retries + 1):
            try:
                ledger.post_transaction(tenant_id, f"w{worker}-{n}", DAY, legs)
                break
            except ConcurrencyConflict:
                refused += 1
                if attempt == client_retries:
                    raise
    return refused


def check_books(ledger: Ledger, tenant_id: UUID, hot: UUID, own: list[UUID]) -> None:
    expected_own = [-sum(amount_of(w, n) for n in range(PER_THREAD)) for w in range(THREADS)]
    hot_account = ledger.get_account(tenant_id, hot)
    assert hot_account.balance_minor == -sum(expected_own)
    assert hot_account.posting_count == THREADS * PER_THREAD
    assert hot_account.version == 1 + THREADS * PER_THREAD
    for worker, account_id in enumerate(own):
        account = ledger.get_account(tenant_id, account_id)
        assert (account.balance_minor, account.posting_count) == (expected_own[worker], PER_THREAD), worker
    # tenant + hot + own accounts opened, then per transaction: 1 transaction event + 2 postings
    assert log_length(ledger) == 2 + THREADS + 3 * THREADS * PER_THREAD
    assert broken_chains(ledger) == {}


class Writers:
    """``THREADS`` writers on one database, sharing one Ledger or each with its own runtime."""

    def __init__(self, database_url: str, open_rt: OpenRuntime, sharing: str) -> None:
        self.database_url, self.open_rt = database_url, open_rt
        first = open_rt(database_url, db_pool_size=THREADS)
        self.tenant_id, self.hot, self.own = set_up(first.ledger)
        if sharing == "one-ledger":
            self.runtimes: list[Runtime] = [first] * THREADS
        else:
            self.runtimes = [open_rt(database_url, db_pool_size=1) for _ in range(THREADS)]
            for runtime in self.runtimes:  # warm every cache with the hot account's current state
                runtime.ledger.get_account(self.tenant_id, self.hot)

    def run(self, client_retries: int) -> dict[int, int]:
        """Run every writer at once; return the refusals each one met."""
        refused: dict[int, int] = {}

        def work(worker: int) -> None:
            ledger = self.runtimes[worker].ledger
            refused[worker] = post_as(ledger, self.tenant_id, self.hot, self.own[worker], worker,
                                      client_retries=client_retries)

        run_workers(work)
        return refused

    def check(self) -> None:
        for ledger in {id(r.ledger): r.ledger for r in self.runtimes[:2]}.values():
            check_books(ledger, self.tenant_id, self.hot, self.own)  # caches fast-forward to others' writes
        check_books(self.open_rt(self.database_url).ledger, self.tenant_id, self.hot, self.own)  # cold cache


SHARING = pytest.mark.parametrize("sharing", ["one-ledger", "runtime-per-thread"])


@SHARING
def test_no_lost_update_on_a_hot_account(database_url: str, open_rt: OpenRuntime, sharing: str) -> None:
    writers = Writers(database_url, open_rt, sharing)
    writers.run(client_retries=CLIENT_RETRIES_MAX)
    writers.check()


@SHARING
def test_no_writer_is_refused(database_url: str, open_rt: OpenRuntime, sharing: str) -> None:
    """Eight writers on one account must not exhaust the Ledger's own conflict retries."""
    writers = Writers(database_url, open_rt, sharing)
    refused = writers.run(client_retries=CLIENT_RETRIES_MAX)
    writers.check()
    assert sum(refused.values()) == 0, (
        f"the Ledger refused {sum(refused.values())} of {THREADS * PER_THREAD} requests with "
        f"ConcurrencyConflict (per writer: {dict(sorted(refused.items()))}); retried by the test, nothing was lost"
    )
