"""The global chain follower: one row per logged event, in log order, exactly once.

``ledger_chain`` is rebuilt independently here from the notification log and
``domain.chain.global_link_hash`` and compared row by row.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

from sqlalchemy import Engine, func, select

from application.ledger import Ledger
from domain.chain import GENESIS_HASH, global_link_hash
from domain.errors import AccountNotFound, TenantNotFound
from domain.ids import account_id_for
from infrastructure.runtime import Runtime
from projections.following.follower import Follower, projection_tracking
from projections.jobs.global_chain import GlobalChainProjection, ledger_chain
from projections.following.schema import ensure_schema
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, leg, notifications

BATCH = 7  # small and odd, so batches never line up with transactions


def post_some(ledger: Ledger, count: int, prefix: str = "t", pair: tuple[str, str] = ("a", "b")) -> None:
    """Tenant ``acme`` and the accounts of ``pair`` (made on first use), and ``count`` transfers between them."""
    try:
        tenant_id = ledger.get_tenant_by_name("acme").id
    except TenantNotFound:
        tenant_id = ledger.create_tenant("acme").aggregate.id
    a, b = (account_id_for(tenant_id, code) for code in pair)
    for code in pair:
        try:
            ledger.get_account(tenant_id, account_id_for(tenant_id, code))
        except AccountNotFound:
            ledger.open_account(tenant_id, code, code.upper(), "BRL", "asset")
    for n in range(count):
        ledger.post_transaction(tenant_id, f"{prefix}-{n}", DAY, [leg(a, f"{n + 1}.00"), leg(b, f"-{n + 1}.00")])


def chain_rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(ledger_chain).order_by(ledger_chain.c.sequence)))


def tracked_position(engine: Engine) -> int:
    with engine.connect() as connection:
        row = connection.execute(
            select(projection_tracking.c.position).where(projection_tracking.c.name == GlobalChainProjection.name)
        ).first()
    return int(row[0]) if row else 0


def assert_chain_matches_log(runtime: Runtime) -> list[Any]:
    """``ledger_chain`` is exactly the log: dense sequence, linked hashes, recomputable links."""
    logged = [(n.id, runtime.ledger.mapper.to_domain_event(n)) for n in notifications(runtime.ledger)]
    rows = chain_rows(runtime.engine)
    assert [r.sequence for r in rows] == list(range(1, len(logged) + 1))
    assert [r.position for r in rows] == [position for position, _ in logged]
    prev = GENESIS_HASH
    for row, (position, event) in zip(rows, logged, strict=True):
        assert (row.originator_id, row.originator_version) == (str(event.originator_id), event.originator_version)
        assert row.event_type == type(event).__qualname__
        assert row.event_hash == event.hash
        assert row.prev_hash == prev
        assert row.hash == global_link_hash(
            prev, row.sequence, position, event.originator_id, event.originator_version, event.hash
        )
        prev = row.hash
    assert tracked_position(runtime.engine) == (logged[-1][0] if logged else 0)
    return rows


def open_with_schema(open_rt: OpenRuntime, url: str) -> Runtime:
    runtime = open_rt(url)
    ensure_schema(runtime.engine)
    return runtime


def test_catch_up_builds_the_chain_once(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 20)
    follower = Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch_size=BATCH)

    events = sum(1 for _ in notifications(runtime.ledger))
    assert follower.catch_up() == events == 3 + 3 * 20
    rows = assert_chain_matches_log(runtime)

    assert follower.catch_up() == 0
    assert chain_rows(runtime.engine) == rows

    post_some(runtime.ledger, 5, prefix="more")
    assert follower.catch_up() == 15
    assert chain_rows(runtime.engine)[: len(rows)] == rows  # appended, never rewritten
    assert_chain_matches_log(runtime)


def test_racing_followers_write_each_row_once(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 60)
    # Each follower in its own runtime: separate engines and connections, like separate processes.
    followers = [
        Follower(r.ledger, r.engine, GlobalChainProjection(), batch_size=BATCH)
        for r in (open_rt(database_url), open_rt(database_url), open_rt(database_url))
    ]
    barrier = threading.Barrier(len(followers))
    applied: list[int] = [0] * len(followers)
    failures: list[str] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            # Followers give up a batch they lose; keep going until the log is exhausted for everyone.
            while followers[i].position() < runtime.ledger.recorder.max_notification_id():
                applied[i] += followers[i].catch_up()
        except BaseException:  # noqa: BLE001 - reported below
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(followers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not failures, "\n".join(failures)

    rows = assert_chain_matches_log(runtime)
    assert sum(applied) == len(rows) == 3 + 3 * 60
    with runtime.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ledger_chain)).scalar_one() == len(rows)


def test_a_restarted_follower_continues_where_it_stopped(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 20)
    first = Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch_size=BATCH)
    assert [first.process_batch() for _ in range(3)] == [BATCH] * 3
    stopped_at = first.position()
    partial = chain_rows(runtime.engine)
    assert len(partial) == 3 * BATCH and partial[-1].position == stopped_at
    runtime.close()

    # A new process: new runtime, new follower, same database.
    restarted = open_with_schema(open_rt, database_url)
    post_some(restarted.ledger, 4, prefix="later")
    follower = Follower(restarted.ledger, restarted.engine, GlobalChainProjection(), batch_size=BATCH)
    assert follower.position() == stopped_at
    total = sum(1 for _ in notifications(restarted.ledger))
    assert follower.catch_up() == total - 3 * BATCH
    rows = assert_chain_matches_log(restarted)
    assert rows[: len(partial)] == partial


def test_following_while_writers_write_skips_nothing(database_url: str, open_rt: OpenRuntime) -> None:
    """Positions must become visible in order: a follower tailing the log never passes a late commit."""
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 1, prefix="seed")
    writers = [open_rt(database_url) for _ in range(4)]
    for i, writer in enumerate(writers):  # each writer its own accounts: the log interleaves, saves rarely conflict
        post_some(writer.ledger, 0, pair=(f"x{i}", f"y{i}"))
    follower = Follower(open_rt(database_url).ledger, runtime.engine, GlobalChainProjection(), batch_size=BATCH)
    done = threading.Event()
    failures: list[str] = []

    def write(i: int) -> None:
        try:
            post_some(writers[i].ledger, 25, prefix=f"w{i}", pair=(f"x{i}", f"y{i}"))
        except BaseException:  # noqa: BLE001 - reported below
            failures.append(traceback.format_exc())

    def follow() -> None:
        try:
            while not done.is_set():
                follower.catch_up()
        except BaseException:  # noqa: BLE001 - reported below
            failures.append(traceback.format_exc())

    tail = threading.Thread(target=follow)
    tail.start()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done.set()
    tail.join(60)
    assert not failures, "\n".join(failures)

    follower.catch_up()
    rows = assert_chain_matches_log(runtime)
    assert len(rows) == 3 + 4 * 2 + 3 * (1 + 4 * 25)
