"""The read side's operator commands: worker, projections status|rebuild|recompute-month, reconcile.

Most commands run in-process (typer's CliRunner); the long-lived worker runs as
a real process that is stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from infrastructure.settings import get_settings
from interfaces.cli.main import app
from projections.read_models.queries import ReadModels
from projections.following.registry import ALL_PROJECTIONS, READ_MODELS, tables_of
from tests.integration.conftest import OpenRuntime, open_rt  # noqa: F401 - the fixture, for this suite too
from tests.integration.projections_support import (
    Book,
    execute,
    open_book,
    open_ready,
    post,
    post_random,
    read_model_rows,
)

INVARIO = str(Path(sys.executable).parent / "invario")
TRANSACTIONS = 150


def invoke(url: str, *args: str) -> Result:
    get_settings.cache_clear()  # settings are read once per process; each invocation is a new "process"
    try:
        return CliRunner().invoke(app, list(args), env={"INVARIO_DATABASE_URL": url})
    finally:
        get_settings.cache_clear()


def statements(url: str, book: Book, open_rt: OpenRuntime) -> dict[str, Any]:
    runtime = open_rt(url)
    models = ReadModels(runtime.engine)
    seen = {}
    for code, account_id in book.accounts.items():
        page = models.list_entries(book.tenant_id, account_id, cursor=None, page_size=200)
        balance = models.get_balance(book.tenant_id, account_id)
        seen[code] = (balance.balance_minor if balance else None,
                      [(e.transaction_id, e.effective_date, e.amount_minor, e.running_balance_minor) for e in page.items])
    runtime.close()
    return seen


def test_the_issue_walkthrough(database_url: str, open_rt: OpenRuntime, caplog: pytest.LogCaptureFixture) -> None:
    writer = open_ready(open_rt, database_url)
    book = open_book(writer.ledger)
    post_random(book, writer.ledger, TRANSACTIONS)
    assert invoke(database_url, "worker", "--once").exit_code == 0
    before, rows_before = statements(database_url, book, open_rt), read_model_rows(writer.engine)

    # 1. drop the projection tables; status says so; rebuild --all shows its progress
    for name in READ_MODELS:
        for table in tables_of(name):
            execute(writer.engine, f"DROP TABLE {table.name}")
    status = invoke(database_url, "projections", "status", "--json")
    assert status.exit_code == 0
    assert {p["name"]: p["state"] for p in json.loads(status.stdout)["projections"]}["accounts"] == "missing"
    rebuilt = invoke(database_url, "projections", "rebuild", "--all")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "replaying" in rebuilt.stderr and "events/s" in rebuilt.stderr and "ETA" in rebuilt.stderr
    assert "rebuilt accounts, event_feed, merkle_tree, monthly_snapshots, recurring_transactions, statements, tenant_directory, transactions" in rebuilt.stdout

    # 2. the same balances and statements as before, row for row
    assert statements(database_url, book, open_rt) == before
    assert read_model_rows(writer.engine) == rows_before

    # 3. no divergence
    clean = invoke(database_url, "reconcile")
    assert clean.exit_code == 0, clean.output
    assert "0 divergence(s)" in clean.stdout

    # 4. one balance row changed by SQL: reconcile names that account and exits 1
    cash = str(book.accounts["cash"])
    execute(writer.engine, "UPDATE read_accounts SET balance_minor = balance_minor - 100 WHERE account_id = :a", a=cash)
    with caplog.at_level("ERROR", logger="invario.reconcile"):
        found = invoke(database_url, "reconcile")
    assert found.exit_code == 1
    assert "cash" in found.stdout and cash in found.stdout and "-1.00 BRL" in found.stdout
    logged = [r.getMessage() for r in caplog.records if r.name == "invario.reconcile"]
    assert logged and all(m.startswith("snapshot_divergence") and "1.00" not in m for m in logged)
    report = json.loads(invoke(database_url, "reconcile", "--json", "--tenant", "acme").stdout)
    assert [(d["check"], d["account_id"], d["difference_minor"], d["difference"]) for d in report["divergences"]] == [
        ("balance", cash, -100, "-1.00"), ("tenant_total", None, -100, "-1.00")]

    assert invoke(database_url, "projections", "rebuild", "accounts").exit_code == 0
    assert invoke(database_url, "reconcile").exit_code == 0


def test_status_shows_every_projection(sqlite_database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    post(open_book(runtime.ledger), runtime.ledger, "t1", date(2024, 1, 2), {"cash": 5, "bank": -5})
    table = invoke(sqlite_database_url, "projections", "status")
    assert table.exit_code == 0 and all(name in table.stdout for name in ALL_PROJECTIONS) and "behind" in table.stdout

    assert invoke(sqlite_database_url, "worker", "--once").exit_code == 0
    document = json.loads(invoke(sqlite_database_url, "projections", "status", "--json").stdout)
    assert [(p["name"], p["lag"], p["state"]) for p in document["projections"]] == [
        (name, 0, "current") for name in ALL_PROJECTIONS]
    assert all(p["position"] == document["head"] for p in document["projections"])


def test_recompute_month_corrects_only_what_is_wrong(sqlite_database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    book = open_book(runtime.ledger)
    post(book, runtime.ledger, "t1", date(2024, 2, 2), {"cash": 5, "bank": -5})
    assert invoke(sqlite_database_url, "worker", "--once").exit_code == 0
    execute(runtime.engine, "UPDATE read_monthly_snapshots SET closing_balance_minor = 0 WHERE account_id = :a",
            a=str(book.accounts["cash"]))

    first = invoke(sqlite_database_url, "projections", "recompute-month", "2024-02", "--tenant", "acme")
    assert first.exit_code == 0 and "1 row(s) corrected" in first.stdout
    again = invoke(sqlite_database_url, "projections", "recompute-month", "2024-02")
    assert again.exit_code == 0 and "0 row(s) corrected" in again.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("projections", "rebuild"), "name one projection or pass --all"),
        (("projections", "rebuild", "balances"), "no projection named 'balances'"),
        (("projections", "rebuild", "accounts", "--all"), "name one projection or pass --all"),
        (("reconcile", "--month", "2024-13"), "--month: month '2024-13' is not of the form YYYY-MM"),
        (("reconcile", "--tenant", "nobody"), "--tenant: no tenant named 'nobody'"),
        (("reconcile", "--tenant", "7352d41c-ed62-5e4d-8469-6d6c2e41bd52"), "--tenant: no tenant with id"),
        (("projections", "recompute-month", "March"), "--month: month 'March' is not of the form YYYY-MM"),
    ],
    ids=["no-name", "unknown-name", "name-and-all", "bad-month", "unknown-tenant", "unknown-tenant-id", "bad-month-arg"],
)
def test_bad_input_is_one_line_and_exit_code_2(sqlite_database_url: str, args: tuple[str, ...], says: str) -> None:
    result = invoke(sqlite_database_url, *args)
    assert result.exit_code == 2
    assert says in result.stderr
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_reconcile_refuses_read_models_at_different_positions(sqlite_database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    post(open_book(runtime.ledger), runtime.ledger, "t1", date(2024, 1, 2), {"cash": 5, "bank": -5})
    assert invoke(sqlite_database_url, "worker", "--once").exit_code == 0
    from projections.following.rebuild import start_rebuild

    start_rebuild(runtime, ["monthly_snapshots"])
    result = invoke(sqlite_database_url, "reconcile", "--no-catch-up")
    assert result.exit_code == 4
    assert "not at one position" in result.stderr


def test_the_worker_follows_until_sigterm(database_url: str, open_rt: OpenRuntime, tmp_path: Path) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INVARIO_")}
    environment.update(INVARIO_DATABASE_URL=database_url, INVARIO_FOLLOWER_POLL_SECONDS="0.1")
    worker = subprocess.Popen(  # noqa: S603 - our own console script
        [INVARIO, "worker"], env=environment, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        post_random(book, runtime.ledger, 10)
        assert ReadModels(runtime.engine).wait_for(book.last_position, timeout_seconds=60)
        post(book, runtime.ledger, "one-more", date(2024, 5, 1), {"cash": 1, "bank": -1})
        assert ReadModels(runtime.engine).wait_for(book.last_position, timeout_seconds=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    expected = "LISTEN invario_events" if database_url.startswith("postgresql") else "polling every 0.1 s"
    assert expected in stderr and "stopped" in stderr and "Traceback" not in stderr


def test_an_interrupted_rebuild_resumes_when_run_again(
    sqlite_database_url: str, open_rt: OpenRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = open_ready(open_rt, sqlite_database_url)
    post_random(open_book(runtime.ledger), runtime.ledger, 20)
    assert invoke(sqlite_database_url, "worker", "--once").exit_code == 0
    rows = read_model_rows(runtime.engine)
    import projections.following.rebuild as rebuild_module

    real_replay = rebuild_module.replay

    def interrupted_after_one_batch(*args: Any, on_batch: Any = None, **kwargs: Any) -> int:
        def then_interrupt(count: int) -> None:
            on_batch(count)
            raise KeyboardInterrupt  # what Ctrl-C does between two batches

        return real_replay(*args, on_batch=then_interrupt, **kwargs)

    monkeypatch.setattr(rebuild_module, "replay", interrupted_after_one_batch)
    stopped = invoke(sqlite_database_url, "projections", "rebuild", "--all", "--batch-size", "10")
    assert stopped.exit_code == 130
    assert "rebuild interrupted; run the same command again to resume" in stopped.stderr
    monkeypatch.undo()

    resumed = invoke(sqlite_database_url, "projections", "rebuild", "--all", "--batch-size", "10")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the interrupted rebuild of accounts" in resumed.stderr
    assert read_model_rows(runtime.engine) == rows


def test_projections_event_prints_the_event_at_a_position_read_only(database_url: str, open_rt: OpenRuntime) -> None:  # noqa: F811
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    post(book, runtime.ledger, "evt-1", date(2026, 11, 23), {"cash": 100, "wallet": -100}, description="caf\u00e9")
    head = book.last_position
    runtime.close()

    shown = invoke(database_url, "projections", "event", str(head))
    assert shown.exit_code == 0, shown.output
    event = json.loads(shown.output)
    assert event["position"] == head and event["event_type"] == "Transaction.Posted"
    assert event["data"]["external_id"] == "evt-1"
    assert "caf\\u00e9" in shown.output, "text is shown escaped, so a control character would be visible"

    missing = invoke(database_url, "projections", "event", str(head + 1000))
    assert missing.exit_code == 2 and f"no event at position {head + 1000}" in missing.output
    assert "Traceback" not in missing.output


def test_a_rebuild_that_meets_an_event_it_cannot_apply_says_which_without_a_traceback(
    database_url: str, open_rt: OpenRuntime, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    from projections.read_models.transactions import TransactionsProjection

    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    post(book, runtime.ledger, "fine-1", date(2026, 11, 23), {"cash": 100, "wallet": -100})
    runtime.close()

    def refuse(self: Any, connection: Any, batch: Any) -> None:
        raise ValueError("cannot store this text")

    monkeypatch.setattr(TransactionsProjection, "handle", refuse)
    result = invoke(database_url, "projections", "rebuild", "--all")
    assert result.exit_code == 1, result.output
    assert "projection transactions cannot apply the event at position" in result.output
    assert "ValueError: cannot store this text" in result.output and "INC-14" in result.output
    assert "Traceback" not in result.output
