"""``invario backup`` and ``invario restore`` against real databases (each test makes and drops its own).

The round trip restores into a fresh database and compares every table. The
partial restores build a mixed database from two backups with ``pg_restore -t``
(events from one, projections and the integrity checkpoint from the other),
back it up, and restore that: ``restore`` must end consistent in both directions.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select
from typer.testing import CliRunner, Result

import infrastructure.backup as backup_module
from application.access import AccessService
from domain.errors import InvalidApiKey
from infrastructure.backup import pg_environment, temporary_path
from infrastructure.database import DatabaseURL
from infrastructure.settings import get_settings
from interfaces.cli.main import app
from projections.read_models.accounts import read_accounts
from projections.following.registry import ALL_PROJECTIONS, TRACKING_TABLE, tables_of
from tests.integration.conftest import OpenRuntime, open_rt  # noqa: F401 - the fixture, for this suite too
from tests.integration.projections_support import (
    FIRST_DAY,
    Book,
    catch_up,
    execute,
    open_book,
    open_ready,
    post,
    post_random,
    read_model_rows,
)
from tests.support import postgres

PEPPER = "p" * 40
PROJECTION_TABLES = (TRACKING_TABLE.name, *(t.name for name in ALL_PROJECTIONS for t in tables_of(name)),
                     "integrity_checkpoint")
RESTORE_CHANGES = {"integrity_state", "invario_restore_epoch"}  # the verification it ran; a new epoch


def invoke(url: str, *args: str) -> Result:
    get_settings.cache_clear()  # each invocation is a new "process"
    try:
        return CliRunner().invoke(app, list(args), env={"INVARIO_DATABASE_URL": url})
    finally:
        get_settings.cache_clear()


def written(open_rt: OpenRuntime, url: str, count: int = 30) -> tuple[Any, Book, str]:
    runtime = open_ready(open_rt, url)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, count)
    key = AccessService(runtime.ledger, PEPPER).issue_key(book.tenant_id, ["read", "write"]).secret
    catch_up(runtime)  # every follower, the integrity verifier too: a checkpoint is in the backup
    return runtime, book, key


def every_table(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        names = sorted(set(inspect(connection).get_table_names()) - RESTORE_CHANGES)
        dump = {}
        for name in names:
            rows = connection.exec_driver_sql(f'SELECT * FROM "{name}"').all()  # noqa: S608 - our own table names
            dump[name] = sorted((tuple(row) for row in rows), key=repr)
    return dump


def assert_restored(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert "restore CONSISTENT" in result.stdout and "INTACT" in result.stdout


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_round_trip_restores_every_table(store: str, tmp_path: Path, request: pytest.FixtureRequest,
                                         open_rt: OpenRuntime) -> None:
    if store == "postgres":
        make = request.getfixturevalue("make_pg_database")
        source_url, target_url = make(), make()
    else:
        source_url, target_url = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/restored/target.db"
    source, book, key = written(open_rt, source_url)
    file = tmp_path / "ledger.backup"

    made = invoke(source_url, "backup", str(file))
    assert made.exit_code == 0, made.output
    events = source.ledger.recorder.max_notification_id()
    assert f"events: {events}; last log position: {events}" in made.stdout
    assert invoke(source_url, "backup", str(file)).exit_code == 2  # never overwritten without --force
    assert invoke(source_url, "backup", str(file), "--force").exit_code == 0

    assert_restored(invoke(target_url, "restore", str(file)))
    target = open_rt(target_url)
    assert every_table(target.engine) == every_table(source.engine)
    for account_id in book.accounts.values():
        assert (target.ledger.get_account(book.tenant_id, account_id).balance_minor
                == source.ledger.get_account(book.tenant_id, account_id).balance_minor)
    assert AccessService(target.ledger, PEPPER).authenticate(key, "write").tenant_id == book.tenant_id

    refused = invoke(target_url, "restore", str(file))
    assert refused.exit_code == 2 and "already holds data" in refused.stderr and "--force" in refused.stderr
    # On PostgreSQL this test's runtime is still connected: its sessions are ended (it reconnects).
    assert_restored(invoke(target_url, "restore", str(file), "--force", "--terminate-sessions"))
    assert AccessService(target.ledger, PEPPER).authenticate(key, "write").tenant_id == book.tenant_id


# --- partial restores --------------------------------------------------------------------------------


def pg_restore(url: str, file: Path, *options: str) -> None:
    env = pg_environment(DatabaseURL.parse(url), 5)
    subprocess.run(["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={postgres.database_name(url)}",
                    *options, str(file)], env=env, check=True, capture_output=True)


def mix(url: str, events_from: Path, projections_from: Path) -> None:
    """A database holding the events (and everything else) of one backup and the projections of another."""
    pg_restore(url, events_from)
    execute_url(url, "TRUNCATE " + ", ".join(PROJECTION_TABLES))
    pg_restore(url, projections_from, "--data-only", *(f"--table={name}" for name in PROJECTION_TABLES))


def execute_url(url: str, sql: str) -> None:
    with postgres.connect(url) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


def two_backups(open_rt: OpenRuntime, url: str, tmp_path: Path) -> tuple[Any, Book, dict[str, Any], dict[str, Any]]:
    """Backup A after 30 transactions, backup B after 20 more; the read models as of each."""
    runtime, book, _key = written(open_rt, url)
    rows_a = read_model_rows(runtime.engine)
    assert invoke(url, "backup", str(tmp_path / "a.dump")).exit_code == 0
    post_random(book, runtime.ledger, 20, prefix="after-a", seed=7)
    catch_up(runtime)
    rows_b = read_model_rows(runtime.engine)
    assert invoke(url, "backup", str(tmp_path / "b.dump")).exit_code == 0
    return runtime, book, rows_a, rows_b


def restore_mixed(make_pg_database: Any, tmp_path: Path, events_from: str, projections_from: str) -> tuple[str, Result]:
    mixed = make_pg_database()
    mix(mixed, tmp_path / events_from, tmp_path / projections_from)
    assert invoke(mixed, "backup", str(tmp_path / "mixed.dump")).exit_code == 0
    target = make_pg_database()
    return target, invoke(target, "restore", str(tmp_path / "mixed.dump"))


@pytest.mark.postgres
def test_events_newer_than_the_restored_projections(make_pg_database: Any, tmp_path: Path,
                                                   open_rt: OpenRuntime) -> None:
    source, book, _rows_a, rows_b = two_backups(open_rt, make_pg_database(), tmp_path)

    target_url, restored = restore_mixed(make_pg_database, tmp_path, events_from="b.dump", projections_from="a.dump")

    assert_restored(restored)
    assert "read models were behind: caught up" in restored.stdout
    assert "global chain was behind: caught up" in restored.stdout
    target = open_rt(target_url)
    assert read_model_rows(target.engine) == rows_b
    positions_only = {"projection_tracking", "integrity_checkpoint"}  # times of the catch-up; the worker moves on
    assert ({k: v for k, v in every_table(target.engine).items() if k not in positions_only}
            == {k: v for k, v in every_table(source.engine).items() if k not in positions_only})


@pytest.mark.postgres
def test_projections_newer_than_the_restored_events(make_pg_database: Any, tmp_path: Path,
                                                   open_rt: OpenRuntime) -> None:
    _source, book, rows_a, _rows_b = two_backups(open_rt, make_pg_database(), tmp_path)

    target_url, restored = restore_mixed(make_pg_database, tmp_path, events_from="a.dump", projections_from="b.dump")

    assert_restored(restored)
    assert "read models were diverged: rebuilt from the log" in restored.stdout
    assert "global chain ran past the restored log" in restored.stdout
    assert "integrity checkpoint was past the restored log: reset" in restored.stdout
    target = open_rt(target_url)
    assert read_model_rows(target.engine) == rows_a
    for account_id in book.accounts.values():
        balance = target.ledger.get_account(book.tenant_id, account_id).balance_minor
        with target.engine.connect() as connection:
            row = connection.execute(select(read_accounts.c.balance_minor)
                                     .where(read_accounts.c.account_id == str(account_id)))
            assert row.scalar_one() == balance


@pytest.mark.postgres
def test_a_backup_with_a_rewritten_event_is_restored_but_reported_broken(
    make_pg_database: Any, tmp_path: Path, open_rt: OpenRuntime
) -> None:
    url = make_pg_database()
    written(open_rt, url)
    # The events and the chain rows disagree, as after a rewrite that recomputed the event's hash: the restore
    # keeps the chain rows for events the log holds, so verification still catches it.
    execute_url(url, "UPDATE ledger_chain SET event_hash = repeat('0', 64) WHERE sequence = 3")
    assert invoke(url, "backup", str(tmp_path / "bad.dump")).exit_code == 0

    restored = invoke(make_pg_database(), "restore", str(tmp_path / "bad.dump"))
    assert restored.exit_code == 1, restored.output
    assert "BROKEN" in restored.stdout and "restore NOT CONSISTENT" in restored.stdout


# --- refusals, interruptions, secrets ------------------------------------------------------------------


def test_refuses_bad_input(tmp_path: Path, sqlite_database_url: str) -> None:
    assert invoke(sqlite_database_url, "backup", str(tmp_path / "missing-dir" / "x.bak")).exit_code == 2
    assert invoke(sqlite_database_url, "backup", str(tmp_path)).exit_code == 2
    junk = tmp_path / "junk.bak"
    junk.write_bytes(b"not a backup")
    wrong = invoke(sqlite_database_url, "restore", str(junk))
    assert wrong.exit_code == 2 and "not an Invario backup" in wrong.stderr
    assert invoke(sqlite_database_url, "restore", str(tmp_path / "nope.bak")).exit_code == 2


@pytest.mark.postgres
def test_interrupted_backup_leaves_no_file(pg_database_url: str, tmp_path: Path, open_rt: OpenRuntime,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    written(open_rt, pg_database_url, count=3)
    target = tmp_path / "x.dump"

    def interrupted(args: list[str], env: dict[str, str], database: Any) -> None:
        temporary_path(target).write_bytes(b"PGDMP half")
        raise KeyboardInterrupt

    monkeypatch.setattr(backup_module, "_run", interrupted)
    result = invoke(pg_database_url, "backup", str(target))
    assert result.exit_code == 130 and "nothing was written" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_the_password_never_reaches_arguments_or_output(pg_database_url: str, tmp_path: Path,
                                                        open_rt: OpenRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    written(open_rt, pg_database_url, count=3)
    password = "Sup3r-secret-pw"  # trust authentication ignores it; it must still never be shown
    url = pg_database_url.replace("postgres@", f"postgres:{password}@")
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(args: list[str], **kwargs: Any) -> Any:
        seen.append(list(args))
        assert kwargs["env"]["PGPASSWORD"] == password
        return real_popen(args, **kwargs)

    monkeypatch.setattr(backup_module.subprocess, "Popen", recording_popen)
    made = invoke(url, "backup", str(tmp_path / "x.dump"))
    restored = invoke(url, "restore", "--force", "--terminate-sessions", str(tmp_path / "x.dump"))
    assert made.exit_code == 0 and restored.exit_code == 0, restored.output
    assert seen and all(password not in " ".join(args) for args in seen)
    assert password not in made.output + restored.output


# --- a process that stays open across the restore --------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_process_open_across_the_restore_writes_on_the_restored_state(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, open_rt: OpenRuntime
) -> None:
    """What it held (accounts ahead of the backup, a tenant and key the backup does not have) is dropped:
    its next write lands on the restored chain without a gap, and the other tenant's key is refused.
    No periodic check runs here: the write and the key's read find the restore by themselves."""
    url = request.getfixturevalue("make_pg_database")() if store == "postgres" else f"sqlite:///{tmp_path}/live.db"
    _writer, book, key_a = written(open_rt, url, count=5)
    live = open_rt(url)  # as 'invario serve' would: opened on the migrated database, and kept open
    file = tmp_path / "before-b.backup"
    assert invoke(url, "backup", str(file)).exit_code == 0
    cash = book.accounts["cash"]
    backed_up = live.ledger.get_account(book.tenant_id, cash)
    post(book, live.ledger, "after-backup", FIRST_DAY, {"cash": 700, "bank": -700})  # cached: ahead of the backup
    other = open_book(live.ledger, "tenant-b")
    key_b = AccessService(live.ledger, PEPPER).issue_key(other.tenant_id, ["read", "write"]).secret

    restored = invoke(url, "restore", str(file), "--force", *(["--terminate-sessions"] if store == "postgres" else []))
    assert_restored(restored)

    access = AccessService(live.ledger, PEPPER)
    with pytest.raises(InvalidApiKey):
        access.authenticate(key_b, "write")
    assert access.authenticate(key_a, "write").tenant_id == book.tenant_id
    post(book, live.ledger, "after-restore", FIRST_DAY, {"cash": 30, "bank": -30})
    account = live.ledger.get_account(book.tenant_id, cash)
    assert account.version == backed_up.version + 1  # on the restored chain, not after the dropped events
    assert account.balance_minor == backed_up.balance_minor + 30
    assert live.ledger.verify_aggregate_chain(cash) is None
    assert invoke(url, "verify").exit_code == 0
