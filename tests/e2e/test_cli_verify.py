"""``invario verify``, ``invario digest`` and ``invario generate-signing-key`` as an operator uses them.

The first test is the issue's "done when", end to end on PostgreSQL with the
real binaries: a served ledger, one stored event edited behind its back,
``invario verify`` naming it and exiting 1, ``/health`` 503, writes refused
while reads work, and everything back to normal on its own once the backup
taken before the edit is restored. The others run in-process on SQLite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from application.ledger import PostingInstruction
from infrastructure.runtime import open_runtime
from infrastructure.integrity_monitor import process_monitor
from infrastructure.settings import Settings, get_settings
from infrastructure.signing import SigningKey, generate_signing_key
from interfaces.cli.main import app as cli
from tests.e2e.test_cli_basics import INVARIO, free_port, run_invario
from tests.integration.helpers import DAY

PEPPER = "cli-verify-test-pepper-0123456789-abcdefgh"
Invoke = Callable[..., Any]


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    process_monitor().reset()
    get_settings.cache_clear()
    yield
    process_monitor().reset()
    get_settings.cache_clear()


# --- the walkthrough, with the real binaries ------------------------------------------------


def wait_for(url: str, server: subprocess.Popen, status: int, seconds: float = 30) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"invario serve exited: {server.stderr.read() if server.stderr else ''}"
        try:
            response = httpx.get(url, timeout=3)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {seconds} s")


def amount_digit_changed(state: bytes) -> bytes:
    digit = re.search(rb'"amount_minor":-?(\d)', state)
    assert digit is not None, state
    at = digit.start(1)
    return state[:at] + (b"9" if state[at:at + 1] != b"9" else b"8") + state[at + 1:]


@pytest.mark.postgres
def test_an_edited_event_is_named_stops_writes_and_recovers_after_a_restore(pg_database_url: str, tmp_path: Path) -> None:
    env = {"INVARIO_DATABASE_URL": pg_database_url, "INVARIO_AUTH_PEPPER": PEPPER,
           "INVARIO_INTEGRITY_RECHECK_SECONDS": "0.5", "INVARIO_FOLLOWER_POLL_SECONDS": "0.1",
           "INVARIO_RATE_LIMIT_PER_SECOND": "0"}
    assert run_invario("migrate", env=env).returncode == 0
    assert run_invario("create-tenant", "acme", env=env).returncode == 0
    key = run_invario("create-key", "--owner", "acme", "--scopes", '{"write": true}', env=env).stdout.strip()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    # The server's log lines are JSON on stdout: into a file, so that a full pipe never blocks the server.
    server_output = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 - closed below
    server = subprocess.Popen([INVARIO, "serve", "--port", str(port)], env={**_clean_environment(), **env},
                              stdout=server_output, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"{api}/health", server, 200)
        client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        cash, wallet = (client.post("/v1/accounts", json={"code": c, "name": c, "currency": "BRL", "type": "asset"})
                        .json()["id"] for c in ("cash", "wallet"))
        for n in range(3):
            posted = client.post("/v1/transactions", json=_transfer(f"t-{n}", cash, wallet))
            assert posted.status_code == 201, posted.text
        with psycopg.connect(pg_database_url, autocommit=True) as db:
            db.execute("CREATE TABLE backup_events AS SELECT * FROM invario_events")
            state = db.execute("SELECT state FROM invario_events WHERE originator_id = %s AND originator_version = 3",
                               (cash,)).fetchone()[0]  # type: ignore[index]
            db.execute("UPDATE invario_events SET state = %s WHERE originator_id = %s AND originator_version = 3",
                       (amount_digit_changed(bytes(state)), cash))

        verified = run_invario("verify", env=env)
        assert verified.returncode == 1, verified.stdout + verified.stderr
        assert "BROKEN" in verified.stdout and cash in verified.stdout and "version 3" in verified.stdout
        report = json.loads(run_invario("verify", "--json", env=env).stdout)
        assert (report["first_break"]["aggregate_id"], report["first_break"]["aggregate_version"]) == (cash, 3)

        assert wait_for(f"{api}/health", server, 503).json()["break"]["aggregate_id"] == cash
        refused = client.post("/v1/transactions", json=_transfer("during", cash, wallet))
        assert (refused.status_code, refused.json()["code"]) == (503, "ledger_integrity_broken")
        assert client.get(f"/v1/accounts/{cash}/balance").status_code == 200

        with psycopg.connect(pg_database_url, autocommit=True) as db:  # the operator restores the backup
            db.execute("TRUNCATE invario_events")
            db.execute("INSERT INTO invario_events SELECT * FROM backup_events")
        assert wait_for(f"{api}/health", server, 200).json()["integrity"] == "ok"
        assert client.post("/v1/transactions", json=_transfer("after", cash, wallet)).status_code == 201
    finally:
        server.terminate()
        server.communicate(timeout=30)
        server_output.close()
        log = (tmp_path / "serve.log").read_text()
    # Many refused requests and health checks, one detection: one CRITICAL event; then one recovery.
    assert log.count("integrity_check_failed") == 1, log
    assert log.count("integrity_restored") == 1, log


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("INVARIO_")}


def _transfer(external_id: str, debit: str, credit: str) -> dict[str, Any]:
    return {"external_id": external_id, "effective_date": DAY.isoformat(),
            "postings": [{"account_id": debit, "amount": "12.34"}, {"account_id": credit, "amount": "-12.34"}]}


# --- in-process, on SQLite --------------------------------------------------------------------------


@pytest.fixture
def ledger_url(sqlite_database_url: str) -> str:
    runtime = open_runtime(Settings(database_url=sqlite_database_url))
    ledger = runtime.ledger
    tenant = ledger.create_tenant("acme").aggregate
    cash = ledger.open_account(tenant.id, "cash", "Cash", "BRL", "asset").aggregate
    bank = ledger.open_account(tenant.id, "bank", "Bank", "BRL", "asset").aggregate
    ledger.post_transaction(tenant.id, "t-1", DAY, [PostingInstruction(cash.id, "1.00"),
                                                    PostingInstruction(bank.id, "-1.00")])
    runtime.close()
    return sqlite_database_url


@pytest.fixture
def invario(ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.setenv("INVARIO_DATABASE_URL", ledger_url)
    monkeypatch.delenv("INVARIO_SIGNING_KEY", raising=False)
    runner = CliRunner()

    def invoke(*args: str, signing_key: str | None = None) -> Any:
        if signing_key is not None:
            monkeypatch.setenv("INVARIO_SIGNING_KEY", signing_key)
        get_settings.cache_clear()
        return runner.invoke(cli, list(args))

    return invoke


def test_an_intact_ledger_verifies_in_text_and_json(invario: Invoke) -> None:
    text = invario("verify")
    assert text.exit_code == 0, text.output
    assert "INTACT" in text.stdout and "verified 6 events" in text.stdout
    report = json.loads(invario("verify", "--json").stdout)
    assert report["intact"] and report["events_checked"] == 6 and report["first_break"] is None
    tenant = json.loads(invario("verify", "--json", "--tenant", "acme").stdout)
    assert tenant["intact"] and tenant["tenant_id"]


def test_a_digest_written_to_a_file_proves_the_ledger(invario: Invoke, tmp_path: Path) -> None:
    secret = generate_signing_key()
    written = invario("digest", signing_key=secret)
    assert written.exit_code == 0, written.output
    digest = tmp_path / "digest.json"
    digest.write_text(written.stdout)
    assert json.loads(written.stdout)["sequence"] == 6
    proved = invario("verify", "--digest", str(digest))
    assert proved.exit_code == 0, proved.output
    assert "digest at sequence 6" in proved.stdout and "matches" in proved.stdout
    # An auditor without the private key trusts the public one instead.
    public = SigningKey.from_setting(secret).public_key
    audited = invario("verify", "--json", "--digest", str(digest), "--public-key", public, signing_key="")
    assert audited.exit_code == 0, audited.output
    assert json.loads(audited.stdout)["anchors"][0]["matches"]


def bad_digest(tmp_path: Path, invario: Invoke, secret: str, **changes: Any) -> Path:
    document = json.loads(invario("digest", signing_key=secret).stdout)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**document, **changes}))
    return path


@pytest.mark.parametrize(("scenario", "says"), [
    ("missing-file", "cannot read"),
    ("not-json", "is not a ledger digest"),
    ("altered", "does not verify"),
    ("other-key", "not a trusted key"),
    ("no-trusted-key", "no trusted key"),
    ("bad-public-key", "--public-key"),
    ("unknown-tenant", "no tenant named"),
])
def test_bad_input_is_one_line_and_exit_code_2(invario: Invoke, tmp_path: Path, scenario: str, says: str) -> None:
    ours, theirs = generate_signing_key(), generate_signing_key()
    args: list[str]
    key = ours
    if scenario == "missing-file":
        args = ["--digest", str(tmp_path / "nope.json")]
    elif scenario == "not-json":
        (tmp_path / "x.json").write_text("{not json")
        args = ["--digest", str(tmp_path / "x.json")]
    elif scenario == "altered":
        args = ["--digest", str(bad_digest(tmp_path, invario, ours, sequence=5))]
    elif scenario == "other-key":
        args = ["--digest", str(bad_digest(tmp_path, invario, theirs))]
    elif scenario == "no-trusted-key":
        args, key = ["--digest", str(bad_digest(tmp_path, invario, theirs))], ""
    elif scenario == "bad-public-key":
        args = ["--digest", str(bad_digest(tmp_path, invario, ours)), "--public-key", "xyz"]
    else:
        args = ["--tenant", "nobody"]
    result = invario("verify", *args, signing_key=key)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_digest_needs_a_signing_key(invario: Invoke) -> None:
    result = invario("digest")
    assert result.exit_code == 2 and "INVARIO_SIGNING_KEY is not set" in result.stderr
    malformed = invario("digest", signing_key="not-a-key")
    assert malformed.exit_code == 2 and "base64 of a 32-byte" in malformed.stderr
    assert "not-a-key" not in malformed.output


def test_generated_keys_sign(invario: Invoke) -> None:
    generated = invario("generate-signing-key")
    assert generated.exit_code == 0
    secret = generated.stdout.strip()
    assert SigningKey.from_setting(secret).key_id in generated.stderr
    assert invario("digest", signing_key=secret).exit_code == 0
