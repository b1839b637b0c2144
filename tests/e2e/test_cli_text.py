"""The CLI on refused text: a clear message naming the code, a non-zero exit, never a traceback.

Batch files are the CLI's text input (``invario import``): a line holding text
the ledger refuses (domain/text.py) is a rejected line like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from domain.ids import account_id_for
from infrastructure.runtime import open_runtime
from infrastructure.migrate import upgrade_to_head
from infrastructure.settings import Settings, get_settings
from interfaces.cli.main import app
from tests.support.batch_files import HEADER, good_line


@pytest.fixture
def url(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("INVARIO_DATABASE_URL", database_url)
    get_settings.cache_clear()
    runtime = open_runtime(Settings(database_url=database_url))
    try:
        upgrade_to_head(runtime.engine)
        tenant = runtime.ledger.create_tenant("acme").aggregate.id
        runtime.ledger.open_account(tenant, "cash", "Cash", "BRL", "asset")
        runtime.ledger.open_account(tenant, "sales", "Sales", "BRL", "income")
    finally:
        runtime.close()
    yield database_url
    get_settings.cache_clear()


def _cash(url: str) -> int:
    runtime = open_runtime(Settings(database_url=url))
    try:
        tenant = runtime.ledger.get_tenant_by_name("acme").id
        return runtime.ledger.get_account(tenant, account_id_for(tenant, "cash")).balance_minor
    finally:
        runtime.close()


def _invoke(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output and not isinstance(result.exception, UnicodeError), result.output
    return result


def _json_line(external_id: str, description: str) -> str:
    legs = [{"account": "cash", "amount": "1.00"}, {"account": "sales", "amount": "-1.00"}]
    return json.dumps({"external_id": external_id, "effective_date": "2026-11-23", "postings": legs,
                       "description": description}) + "\n"


def test_import_lists_lines_with_refused_text_and_posts_nothing(url: str, tmp_path: Path) -> None:
    csv_file, jsonl_file = tmp_path / "t.csv", tmp_path / "t.jsonl"
    csv_file.write_text(HEADER + good_line(1) + "nul,2026-11-23,cash=1.00;sales=-1.00,a\x00b\n"
                        "esc,2026-11-23,cash=1.00;sales=-1.00,\x1b[31mred\n", encoding="utf-8")
    jsonl_file.write_text(_json_line("ok", "fine") + _json_line("lone", "x\ud800") + _json_line("lf", "a\nb"))
    for file, rejected in ((csv_file, 2), (jsonl_file, 1)):
        result = _invoke("import", str(file), "--tenant", "acme")
        assert result.exit_code == 1, result.output
        assert result.output.count("invalid_text") == rejected and "rejected" in result.output
    assert _cash(url) == 0


def test_create_tenant_with_control_characters_is_one_clear_line(url: str) -> None:
    for name in ("ac\x01me", "acme\x7f", "ac\u0085me"):
        result = _invoke("create-tenant", name)
        assert result.exit_code != 0 and "invalid_tenant" in result.output
