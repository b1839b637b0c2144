"""The worker's incremental verification agrees with a full one, batch after batch, on both stores."""

from __future__ import annotations

from infrastructure.integrity_monitor import process_monitor
from infrastructure.integrity_store import read_checkpoint
from projections.following.follower import Follower
from projections.jobs.global_chain import GlobalChainProjection
from projections.jobs.integrity import IntegrityVerifier, VerifierSchedule
from projections.jobs.verification import LedgerVerification
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, leg
from tests.integration.integrity_support import fresh_monitor, open_ready  # noqa: F401 - autouse fixture

SCHEDULE = VerifierSchedule(digest_interval_seconds=3600, recheck_seconds=30, full_verify_seconds=0,
                            state_refresh_seconds=1)


def test_small_batches_from_two_workers_reach_the_full_verifications_head(
    database_url: str, open_rt: OpenRuntime,
) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    tenant = ledger.create_tenant("acme").aggregate.id
    a = ledger.open_account(tenant, "a", "A", "BRL", "asset").aggregate.id
    b = ledger.open_account(tenant, "b", "B", "BRL", "asset").aggregate.id
    other = open_ready(open_rt, database_url)  # a second worker process
    workers = [IntegrityVerifier(r.ledger, r.engine, batch_size=7, schedule=SCHEDULE) for r in (runtime, other)]
    chain = Follower(ledger, runtime.engine, GlobalChainProjection(), batch_size=5)
    for round_ in range(4):
        for n in range(5):
            ledger.post_transaction(tenant, f"t-{round_}-{n}", DAY, [leg(a, f"{n + 1}.00"), leg(b, f"-{n + 1}.00")])
        chain.catch_up()
        while sum(worker.process_batch() for worker in workers):
            pass
    assert not process_monitor().is_broken()

    report = LedgerVerification(ledger, runtime.engine).run()
    with runtime.engine.connect() as connection:
        checkpoint = read_checkpoint(connection)
    assert report.intact and report.events == 3 + 4 * 5 * 3
    assert (checkpoint.sequence, checkpoint.position, checkpoint.hash) == (
        report.head_sequence, report.head_position, report.head_hash)
    assert [a.checked and a.damage is None for a in report.anchors] == [True]  # the checkpoint was an anchor


def test_a_checkpoint_that_failed_to_advance_is_no_false_break(
    database_url: str, open_rt: OpenRuntime, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """Found by the soak (seed 2026, 1800 s): the connection was lost while the checkpoint was being
    advanced, and the next batch walked the same events again with the aggregates' heads the failed
    walk had already moved: "version 1831 comes after version 1832", and every write refused."""
    import projections.jobs.integrity as integrity

    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    tenant = ledger.create_tenant("acme").aggregate.id
    a = ledger.open_account(tenant, "a", "A", "BRL", "asset").aggregate.id
    b = ledger.open_account(tenant, "b", "B", "BRL", "asset").aggregate.id
    chain = Follower(ledger, runtime.engine, GlobalChainProjection(), batch_size=50)
    worker = IntegrityVerifier(ledger, runtime.engine, batch_size=50, schedule=SCHEDULE)
    for round_ in range(2):  # the first round leaves the worker continuing from its checkpoint
        for n in range(5):
            ledger.post_transaction(tenant, f"t-{round_}-{n}", DAY, [leg(a, "1.00"), leg(b, "-1.00")])
        chain.catch_up()
        if round_ == 0:
            assert worker.verify_new_events() > 0

    def lost_connection(*_: object) -> bool:
        raise ConnectionError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(integrity, "advance_checkpoint", lost_connection)
        try:
            worker.process_batch()
        except ConnectionError:
            pass  # the follower's runner logs it and tries again
    while worker.process_batch():
        pass
    assert not process_monitor().is_broken()
