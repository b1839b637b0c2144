"""A log holding text written before the text rule: the operator's commands all succeed on it.

An earlier version accepted a NUL in a description; on PostgreSQL every
projection then stopped on that event (``failing``), and its backups carried
them so. On such a log ``invario projections rebuild``, ``verify``,
``reconcile``, ``backup`` and ``restore`` must now succeed, without a
traceback, and leave every projection current (docs/projections.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import Result

from projections.following.follower import projection_tracking
from projections.following.registry import READ_MODELS
from interfaces.bootstrap import build_followers
from tests.integration.conftest import OpenRuntime, open_rt  # noqa: F401 - the fixture, for this suite too
from tests.integration.projections_support import catch_up, open_book, open_ready, post_random
from tests.integration.test_projections_text import (
    assert_every_projection_current,
    assert_read_models_hold_the_replacement,
    write_legacy_log,
)
from tests.ops.test_backup_restore import assert_restored, invoke

# What an earlier version's followers recorded when PostgreSQL refused the NUL.
EARLIER_ERROR = 'CharacterNotInRepertoire: invalid byte sequence for encoding "UTF8": 0x00'


def assert_succeeded(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def stuck_as_an_earlier_version_left_it(runtime) -> None:  # type: ignore[no-untyped-def]
    """The read models stopped before the legacy events and failing; the global chain, the
    Merkle tree and the integrity verifier (which store no text) went on."""
    chain, tree, _read_models, verifier, _holds, *_checkpointer = build_followers(runtime)
    chain.catch_up()
    tree.catch_up()
    verifier.catch_up()
    with runtime.engine.begin() as connection:
        connection.execute(update(projection_tracking).where(projection_tracking.c.name.in_(READ_MODELS))
                           .values(last_error=EARLIER_ERROR))


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_rebuild_verify_reconcile_backup_and_restore_a_log_with_legacy_text(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, open_rt: OpenRuntime,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if store == "postgres":
        make = request.getfixturevalue("make_pg_database")
        source_url, target_url = make(), make()
    else:
        source_url, target_url = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/restored/target.db"
    source = open_ready(open_rt, source_url)
    book = open_book(source.ledger, "initech")
    post_random(book, source.ledger, 10)
    catch_up(source)
    log = write_legacy_log(source.ledger, monkeypatch)
    stuck_as_an_earlier_version_left_it(source)
    assert "failing" in invoke(source_url, "projections", "status").stdout

    # A backup taken in that state restores with every projection current.
    file = tmp_path / "legacy.backup"
    assert_succeeded(invoke(source_url, "backup", str(file)))
    assert_restored(invoke(target_url, "restore", str(file)))
    target = open_ready(open_rt, target_url)
    assert_every_projection_current(target)
    assert_read_models_hold_the_replacement(target, log)

    # The source itself: a rebuild gets past the legacy events, and the events still verify.
    assert_succeeded(invoke(source_url, "projections", "rebuild", "--all"))
    catch_up(source)
    assert_every_projection_current(source)
    assert_read_models_hold_the_replacement(source, log)
    assert_succeeded(invoke(source_url, "verify"))
    assert_succeeded(invoke(source_url, "reconcile"))
