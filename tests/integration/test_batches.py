"""Batches through the worker's code path (Upload, BatchRunner) on SQLite and PostgreSQL.

A 10,000-line file with one bad line of every kind: atomic rejects it whole
and posts nothing; partial posts the rest and explains each bad line; the same
file again posts nothing twice. A run stopped between chunks, or abandoned by
a dead worker, is finished by another with exact balances and no duplicate.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest
from sqlalchemy import update

from application.batches import BatchInfo
from infrastructure.batch_runner import BatchRunner, Upload
from interfaces.bootstrap import build_batch_runner
from infrastructure.batch_store import BatchStore, batches
from infrastructure.runtime import Runtime
from infrastructure.migrate import upgrade_to_head
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import notifications
from tests.support.batch_files import good_file, mixed_file


@pytest.fixture
def runtime(open_rt: OpenRuntime, database_url: str) -> Runtime:
    runtime = open_rt(database_url)
    upgrade_to_head(runtime.engine)
    return runtime


@pytest.fixture
def tenant_id(runtime: Runtime) -> UUID:
    tenant = runtime.ledger.create_tenant("acme").aggregate.id
    runtime.ledger.open_account(tenant, "cash", "Cash", "BRL", "asset")
    runtime.ledger.open_account(tenant, "sales", "Sales", "BRL", "income")
    return tenant


def _store(runtime: Runtime) -> BatchStore:
    return BatchStore(runtime.engine, runtime.settings.batch_lease_seconds)


def _upload(runtime: Runtime, tenant_id: UUID, body: bytes, mode: str = "atomic") -> BatchInfo:
    upload = Upload(_store(runtime), tenant_id, mode, "csv")
    for start in range(0, len(body), 65_536):
        upload.feed(body[start:start + 65_536])
    return upload.finish()


def _balances(runtime: Runtime, tenant_id: UUID) -> dict[str, int]:
    from domain.ids import account_id_for

    return {code: runtime.ledger.get_account(tenant_id, account_id_for(tenant_id, code)).balance_minor
            for code in ("cash", "sales")}


def _transaction_events(runtime: Runtime) -> int:
    return sum(1 for n in notifications(runtime.ledger) if n.topic.endswith("Transaction.Posted"))


def _all_errors(store: BatchStore, batch_id: UUID) -> dict[int, str]:
    return {e.line_no: e.code for e in store.errors_page(batch_id, 0, 1000)}


@pytest.mark.long  # a load run: make test-long
def test_ten_thousand_lines_atomic_then_partial_then_again(runtime: Runtime, tenant_id: UUID) -> None:
    file = mixed_file(10_000)
    store = _store(runtime)
    before = _balances(runtime, tenant_id)

    atomic = _upload(runtime, tenant_id, file.body)
    assert build_batch_runner(runtime).run_pending() == 1
    done = store.get(tenant_id, atomic.id)
    assert done is not None and done.status == "rejected" and done.accepted_count == 0
    assert done.rejected_count == len(file.bad_lines)
    assert _all_errors(store, atomic.id) == file.bad_lines
    assert _balances(runtime, tenant_id) == before  # nothing posted
    assert _transaction_events(runtime) == 0

    partial = _upload(runtime, tenant_id, file.body, "partial")
    build_batch_runner(runtime).run_pending()
    done = store.get(tenant_id, partial.id)
    assert done is not None and done.status == "completed"
    assert (done.accepted_count, done.replayed_count, done.rejected_count) == (file.good, 0, len(file.bad_lines))
    assert _all_errors(store, partial.id) == file.bad_lines
    assert _balances(runtime, tenant_id) == {"cash": file.amount_minor, "sales": -file.amount_minor}

    again = _upload(runtime, tenant_id, file.body, "partial")
    build_batch_runner(runtime).run_pending()
    done = store.get(tenant_id, again.id)
    assert done is not None and (done.accepted_count, done.replayed_count) == (0, file.good)
    assert _balances(runtime, tenant_id) == {"cash": file.amount_minor, "sales": -file.amount_minor}
    assert _transaction_events(runtime) == file.good


def test_an_atomic_file_of_good_lines_is_posted_whole(runtime: Runtime, tenant_id: UUID) -> None:
    batch = _upload(runtime, tenant_id, good_file(2_500))
    build_batch_runner(runtime).run_pending()
    done = _store(runtime).get(tenant_id, batch.id)
    assert done is not None and (done.status, done.accepted_count, done.rejected_count) == ("completed", 2_500, 0)
    assert _balances(runtime, tenant_id) == {"cash": 2_500_000, "sales": -2_500_000}


class _Crash(Exception):
    pass


def test_a_run_stopped_between_chunks_is_finished_by_another_worker(runtime: Runtime, tenant_id: UUID) -> None:
    batch = _upload(runtime, tenant_id, good_file(3_500), "partial")
    first = build_batch_runner(runtime)

    def crash_after_two_chunks(phase: str, done: int, _total: int) -> None:
        if done == 2:
            raise _Crash

    claimed = first.store.claim_next(first.owner)
    assert claimed is not None
    with pytest.raises(_Crash):
        first.process(claimed, crash_after_two_chunks)
    assert _balances(runtime, tenant_id)["cash"] == 2_000_000
    second = build_batch_runner(runtime)
    assert second.run_pending() == 0  # the first still holds the lease
    _expire_leases(runtime)
    assert second.run_pending() == 1
    done = _store(runtime).get(tenant_id, batch.id)
    assert done is not None and (done.status, done.accepted_count, done.rejected_count) == ("completed", 3_500, 0)
    assert _balances(runtime, tenant_id) == {"cash": 3_500_000, "sales": -3_500_000}
    assert _transaction_events(runtime) == 3_500


def test_a_chunk_posted_but_not_recorded_is_replayed_not_duplicated(runtime: Runtime, tenant_id: UUID) -> None:
    batch = _upload(runtime, tenant_id, good_file(1_500), "partial")
    first = build_batch_runner(runtime)
    claimed = first.store.claim_next(first.owner)
    assert claimed is not None
    original = first.store.record_chunk

    def die_before_recording(*_args: object) -> None:
        raise _Crash

    first.store.record_chunk = die_before_recording  # type: ignore[method-assign]
    with pytest.raises(_Crash):
        first.process(claimed)
    first.store.record_chunk = original  # type: ignore[method-assign]
    _expire_leases(runtime)
    build_batch_runner(runtime).run_pending()
    done = _store(runtime).get(tenant_id, batch.id)
    assert done is not None and done.status == "completed"
    assert done.accepted_count + done.replayed_count == 1_500 and done.replayed_count == 1_000
    assert _balances(runtime, tenant_id) == {"cash": 1_500_000, "sales": -1_500_000}
    assert _transaction_events(runtime) == 1_500


def test_a_worker_that_lost_its_lease_stops_touching_the_batch(runtime: Runtime, tenant_id: UUID) -> None:
    _upload(runtime, tenant_id, good_file(10), "partial")
    slow, fast = build_batch_runner(runtime), build_batch_runner(runtime)
    claimed = slow.store.claim_next(slow.owner)
    assert claimed is not None
    _expire_leases(runtime)
    assert fast.run_pending() == 1
    assert slow.process(claimed) == 0  # LeaseLost: it recorded nothing
    assert _balances(runtime, tenant_id)["cash"] == 10_000


def test_batches_are_per_tenant(runtime: Runtime, tenant_id: UUID) -> None:
    batch = _upload(runtime, tenant_id, good_file(3))
    other = runtime.ledger.create_tenant("globex").aggregate.id
    assert _store(runtime).get(other, batch.id) is None


def _expire_leases(runtime: Runtime) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(update(batches).values(lease_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))


def test_a_stopping_runner_gives_the_batch_back(runtime: Runtime, tenant_id: UUID) -> None:
    batch = _upload(runtime, tenant_id, good_file(2_100), "partial")
    runner: BatchRunner = build_batch_runner(runtime)
    claimed = runner.store.claim_next(runner.owner)
    assert claimed is not None
    runner._stop.set()  # as SIGTERM does
    assert runner.process(claimed) == 0
    info = _store(runtime).get(tenant_id, batch.id)
    assert info is not None and (info.status, info.next_chunk) == ("queued", 1)
    assert build_batch_runner(runtime).run_pending() == 1
    assert _balances(runtime, tenant_id)["cash"] == 2_100_000
