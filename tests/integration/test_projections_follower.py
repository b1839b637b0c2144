"""The follower group: read models move together, exactly once, and notice a rewritten log."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from infrastructure.runtime import Runtime
from projections.following.follower import projection_tracking, read_tracking
from projections.following.rebuild import replay, start_rebuild
from projections.following.registry import ACCOUNTS, READ_MODELS, STATEMENTS
from projections.following.status import DIVERGED, projection_statuses
from interfaces.bootstrap import build_read_models_group
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import (
    catch_up,
    catch_up_read_models,
    execute,
    open_book,
    open_ready,
    post_random,
    read_model_rows,
)


def positions(runtime: Runtime) -> dict[str, int]:
    with runtime.engine.connect() as connection:
        return {name: state.position for name, state in read_tracking(connection, READ_MODELS).items()}


def rebuilt_rows(runtime: Runtime) -> dict:  # type: ignore[type-arg]
    """The read models as a from-scratch replay makes them (the reference for identity checks)."""
    start_rebuild(runtime, READ_MODELS)
    replay(runtime, READ_MODELS)
    return read_model_rows(runtime.engine)


def test_a_projection_behind_catches_up_without_passing_the_others(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 20)
    catch_up(runtime)
    post_random(book, runtime.ledger, 10, prefix="later")
    start_rebuild(runtime, [STATEMENTS])
    group = build_read_models_group(runtime, batch_size=10, defer_to_rebuilds=False)

    joined = False
    for _ in range(200):
        applied = group.process_batch()
        now = positions(runtime)
        leaders = max(p for name, p in now.items() if name != STATEMENTS)
        assert now[STATEMENTS] <= leaders
        joined |= len(set(now.values())) == 1
        if joined:
            assert len(set(now.values())) == 1, "once level, the read models move together"
        if applied == 0:
            break
    assert set(positions(runtime).values()) == {runtime.ledger.recorder.max_notification_id()}
    assert read_model_rows(runtime.engine) == rebuilt_rows(runtime)


def test_racing_groups_apply_every_event_exactly_once(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 40)
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            catch_up_read_models(runtime, batch_size=7)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=follow) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert set(positions(runtime).values()) == {runtime.ledger.recorder.max_notification_id()}
    assert read_model_rows(runtime.engine) == rebuilt_rows(runtime)


def restore_events_to(runtime: Runtime, position: int) -> None:
    """What restoring the event store from an older backup does: later events are gone."""
    if runtime.database.is_postgres:
        execute(runtime.engine, "DELETE FROM invario_events WHERE notification_id > :p", p=position)
        execute(runtime.engine, "DELETE FROM invario_snapshots")
        execute(runtime.engine, "SELECT setval('invario_events_notification_id_seq', :p)", p=position)
    else:
        execute(runtime.engine, "DELETE FROM stored_events WHERE rowid > :p", p=position)
        execute(runtime.engine, "DELETE FROM stored_snapshots")


def test_a_rewritten_log_stops_the_follower_instead_of_skipping_events(
    database_url: str, open_rt: OpenRuntime
) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 10)
    restore_point = runtime.ledger.recorder.max_notification_id()
    post_random(book, runtime.ledger, 10, prefix="lost")
    catch_up(runtime)
    projected = positions(runtime)[ACCOUNTS]
    restore_events_to(runtime, restore_point)
    runtime.close()

    restored = open_ready(open_rt, database_url)
    post_random(book, restored.ledger, 15, prefix="new", seed=9)  # reuses the lost positions, with other events
    assert restored.ledger.recorder.max_notification_id() > projected
    group = build_read_models_group(restored, batch_size=50, defer_to_rebuilds=False)
    assert group.process_batch() == 0
    with restored.engine.connect() as connection:
        states = read_tracking(connection, READ_MODELS)
    assert {state.position for state in states.values()} == {projected}
    assert all((state.last_error or "").startswith("LogDiverged") for state in states.values())
    _, statuses = projection_statuses(restored)
    assert {s.name: s.state for s in statuses if s.name in READ_MODELS} == dict.fromkeys(READ_MODELS, DIVERGED)

    start_rebuild(restored, READ_MODELS)
    replay(restored, READ_MODELS)
    assert set(positions(restored).values()) == {restored.ledger.recorder.max_notification_id()}


def test_a_worker_leaves_a_projection_to_its_active_rebuild(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 10)
    catch_up(runtime)
    start_rebuild(runtime, [ACCOUNTS])
    worker = build_read_models_group(runtime, batch_size=500, defer_to_rebuilds=True)

    worker.process_batch()
    assert positions(runtime)[ACCOUNTS] == 0, "the rebuild process owns it while it is active"

    long_ago = datetime.now(timezone.utc) - timedelta(minutes=5)
    with runtime.engine.begin() as connection:
        connection.execute(
            update(projection_tracking).where(projection_tracking.c.name == ACCOUNTS).values(updated_at=long_ago)
        )
    worker.catch_up()
    head = runtime.ledger.recorder.max_notification_id()
    assert positions(runtime)[ACCOUNTS] == head, "an abandoned rebuild is taken over"
    with runtime.engine.connect() as connection:
        assert read_tracking(connection, [ACCOUNTS])[ACCOUNTS].rebuild_started_at is None
