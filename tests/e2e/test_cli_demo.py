"""``invario demo``: fills an empty store through the ledger's rules, completes an
interrupted run when repeated, and refuses any other store without writing."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from application.ledger import Ledger
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from interfaces.cli.main import app
from interfaces.notebook import DemoOptions, open_ledger
from interfaces.demo import generate_demo

runner = CliRunner()
SMALL = ["--transactions", "120", "--months", "3"]


def _demo(url: str, *extra: str) -> object:
    return runner.invoke(app, ["demo", "--database-url", url, *SMALL, *extra])


def test_demo_fills_an_empty_store(database_url: str) -> None:
    url = database_url
    result = _demo(url)
    assert result.exit_code == 0, result.output
    assert "demo-acme, demo-globex, demo-initech" in result.stdout
    with open_ledger(url) as book:
        assert list(book.tenants().name) == ["demo-acme", "demo-globex", "demo-initech"]
        postings = book.postings_frame()
        assert {"posted", "reversal", "hold_capture"} <= set(postings.kind)
        assert (postings.groupby(["transaction_id", "currency"]).amount_minor.sum() == 0).all()
        assert postings.effective_date.nunique() > 30  # spread over months
        assert (book.balances().groupby("tenant").balance_minor.sum() == 0).all()
        assert f"log position {book.head()}" in result.stdout


def test_demo_is_seeded_and_a_repeat_completes_without_duplicates(tmp_path: Path) -> None:
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    assert _demo(first).exit_code == 0
    # An interrupted run: the first half written, then the whole demo again.
    runtime = open_runtime(Settings(database_url=second))
    try:
        calls = 0

        def interrupt(step: int) -> None:
            nonlocal calls
            calls += 1
            if step == 60:
                raise KeyboardInterrupt

        try:
            generate_demo(runtime.ledger, DemoOptions(transactions=120, months=3), interrupt)
        except KeyboardInterrupt:
            pass
    finally:
        runtime.close()
    again = _demo(second)
    assert again.exit_code == 0, again.output
    assert "already there" in again.stdout
    with open_ledger(first) as a, open_ledger(second) as b:
        assert a.head() == b.head()
        columns = ["tenant", "code", "balance_minor", "posting_count"]
        assert a.balances()[columns].equals(b.balances()[columns])
    assert _demo(second).exit_code == 0  # complete: nothing more to write


def test_demo_refuses_another_store_and_other_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/busy.db"
    runtime = open_runtime(Settings(database_url=url))
    ledger: Ledger = runtime.ledger
    ledger.create_tenant("real-customer")
    runtime.close()
    refused = _demo(url)
    assert refused.exit_code == 1
    assert "not a demo ledger" in refused.stderr
    with open_ledger(url) as book:
        assert book.head() == 1  # nothing written

    demo = f"sqlite:///{tmp_path}/demo.db"
    assert _demo(demo).exit_code == 0
    with open_ledger(demo) as book:
        head = book.head()
    other = runner.invoke(app, ["demo", "--database-url", demo, "--transactions", "121", "--months", "3"])
    assert other.exit_code == 1
    assert "other options" in other.stderr
    with open_ledger(demo) as book:
        assert book.head() == head


def test_demo_rejects_bad_options_and_urls(tmp_path: Path) -> None:
    assert runner.invoke(app, ["demo", "--transactions", "0"]).exit_code == 2
    bad = runner.invoke(app, ["demo", "--database-url", "mysql://nope/x"])
    assert bad.exit_code == 2
    assert "not understood" in bad.stderr
