"""``invario import FILE --tenant NAME [--mode partial]``: exit codes, summary, bad files, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from domain.ids import account_id_for
from infrastructure.batch_store import BatchStore
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings, get_settings
from interfaces.cli.main import app
from tests.support.batch_files import HEADER, good_file, good_line


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/invario.db"
    monkeypatch.setenv("INVARIO_DATABASE_URL", url)
    get_settings.cache_clear()
    runtime = open_runtime(Settings(database_url=url))
    try:
        tenant = runtime.ledger.create_tenant("acme").aggregate.id
        runtime.ledger.open_account(tenant, "cash", "Cash", "BRL", "asset")
        runtime.ledger.open_account(tenant, "sales", "Sales", "BRL", "income")
    finally:
        runtime.close()
    yield url
    get_settings.cache_clear()


def _cash(url: str) -> int:
    runtime = open_runtime(Settings(database_url=url))
    try:
        tenant = runtime.ledger.get_tenant_by_name("acme").id
        return runtime.ledger.get_account(tenant, account_id_for(tenant, "cash")).balance_minor
    finally:
        runtime.close()


def test_import_posts_and_summarises_then_replays(url: str, tmp_path: Path) -> None:
    file = tmp_path / "t.csv"
    file.write_bytes(good_file(1_200))
    result = CliRunner().invoke(app, ["import", str(file), "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    assert "completed" in result.output and "1,200" in result.output
    again = CliRunner().invoke(app, ["import", str(file), "--tenant", "acme"])
    assert again.exit_code == 0 and "replayed" in again.output
    assert _cash(url) == 1_200_000


def test_rejected_lines_exit_1_and_are_listed(url: str, tmp_path: Path) -> None:
    file = tmp_path / "t.csv"
    file.write_text(HEADER + good_line(1) + "bad,2026-11-23,cash=1.00;sales=-2.00,x\n")
    atomic = CliRunner().invoke(app, ["import", str(file), "--tenant", "acme"])
    assert atomic.exit_code == 1 and "transaction_unbalanced" in atomic.output and "rejected" in atomic.output
    assert _cash(url) == 0
    partial = CliRunner().invoke(app, ["import", str(file), "--tenant", "acme", "--mode", "partial"])
    assert partial.exit_code == 1 and "transaction_unbalanced" in partial.output
    assert _cash(url) == 10_00


@pytest.mark.parametrize(("content", "name", "message"), [
    (b"external_id,colour\n", "t.csv", "header"),
    (b"", "t.csv", "empty"),
    (b"x", "t.txt", "format"),
])
def test_bad_files_are_one_clear_line(url: str, tmp_path: Path, content: bytes, name: str, message: str) -> None:
    file = tmp_path / name
    file.write_bytes(content)
    result = CliRunner().invoke(app, ["import", str(file), "--tenant", "acme"])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert _cash(url) == 0


def test_an_interrupted_import_resumes(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "t.csv"
    file.write_bytes(good_file(2_500))
    from application import batches

    original = batches.BatchProcessor._post_chunks
    calls = {"n": 0}

    def interrupt_once(self, batch, progress):  # type: ignore[no-untyped-def]
        def ctrl_c_after_first_chunk(phase: str, done: int, total: int) -> None:
            progress(phase, done, total)
            if calls["n"] == 0 and done == 1:
                calls["n"] += 1
                raise KeyboardInterrupt

        return original(self, batch, ctrl_c_after_first_chunk)

    monkeypatch.setattr(batches.BatchProcessor, "_post_chunks", interrupt_once)
    first = CliRunner().invoke(app, ["import", str(file), "--tenant", "acme"])
    assert first.exit_code == 130 and "run the same command again" in first.output
    assert _cash(url) == 1_000_000
    second = CliRunner().invoke(app, ["import", str(file), "--tenant", "acme"])
    assert second.exit_code == 0, second.output
    assert "resuming batch" in second.output
    assert _cash(url) == 2_500_000
    runtime = open_runtime(Settings(database_url=url))
    try:
        assert not BatchStore(runtime.engine).has_waiting()
    finally:
        runtime.close()
