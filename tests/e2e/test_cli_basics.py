"""The operator's first contact: help, version, migrate, serve, and one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

INVARIO = str(Path(sys.executable).parent / "invario")


def run_invario(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INVARIO_")}
    environment.update(env or {})
    return subprocess.run(
        [INVARIO, *args], capture_output=True, text=True, timeout=60, env=environment, cwd=cwd, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_lists_the_commands() -> None:
    result = run_invario("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "migrate" in result.stdout


def test_version_prints_the_package_version() -> None:
    result = run_invario("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("invario ")


@pytest.mark.parametrize(
    ("env", "exit_code", "says"),
    [
        ({"INVARIO_DATABASE_URL": "mysql://x"}, 2, "is not understood"),
        ({"INVARIO_DATABASE_URL": "sqlite:///:memory:"}, 2, "needs a file path"),
        # With a pepper: without one, serve refuses (exit 2) before it tries the database.
        ({"INVARIO_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x",
          "INVARIO_AUTH_PEPPER": "kX9vQ2mT7rL4wZ8nB3yH6cF1dJ5sG0aE"}, 3, "cannot use PostgreSQL"),
        ({"INVARIO_PORT": "eighty"}, 2, "INVARIO_PORT"),
    ],
    ids=["unknown-scheme", "memory-sqlite", "unreachable-postgres", "bad-port"],
)
def test_bad_settings_give_one_line_and_an_exit_code(
    tmp_path: Path, env: dict[str, str], exit_code: int, says: str
) -> None:
    result = run_invario("serve", env=env, cwd=tmp_path)
    assert result.returncode == exit_code
    assert says in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_postgres_database_is_named(pg_server_url: str) -> None:
    url = pg_server_url.rsplit("/", 1)[0] + "/invario_no_such_database"
    result = run_invario("migrate", env={"INVARIO_DATABASE_URL": url})
    assert result.returncode == 3
    assert "invario_no_such_database" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_is_idempotent(database_url: str) -> None:
    first = run_invario("migrate", env={"INVARIO_DATABASE_URL": database_url})
    second = run_invario("migrate", env={"INVARIO_DATABASE_URL": database_url})
    assert first.returncode == 0, first.stderr
    assert "migrated" in first.stdout
    assert second.returncode == 0 and "already at revision" in second.stdout


def test_serve_on_a_stale_postgres_schema_says_to_migrate(pg_database_url: str) -> None:
    result = run_invario("serve", env={"INVARIO_DATABASE_URL": pg_database_url,
                                       "INVARIO_AUTH_PEPPER": "kX9vQ2mT7rL4wZ8nB3yH6cF1dJ5sG0aE"})
    assert result.returncode == 2
    assert "invario migrate" in result.stderr


def test_serve_answers_health_on_the_embedded_store(tmp_path: Path) -> None:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INVARIO_")}
    server = subprocess.Popen(
        [INVARIO, "serve", "--port", str(port)], cwd=tmp_path, env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        body = _wait_for_health(f"http://127.0.0.1:{port}/health", server)
        assert body["database"] == "ok"
        assert (tmp_path / "var" / "invario.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_health(url: str, server: subprocess.Popen, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"invario serve exited: {server.stderr.read() if server.stderr else ''}"
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def test_serve_on_a_busy_port_says_so_with_its_own_exit_code(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_invario("serve", "--port", str(port), env={"INVARIO_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})

    assert done.returncode == 5, done.stderr
    assert done.stderr.strip() == (f"invario: cannot listen on 127.0.0.1:{port}: Address already in use "
                                   "(another process listens there? stop it, or choose --port / INVARIO_PORT)")
    assert not (tmp_path / "a.db").exists()  # refused before anything was opened


def test_sslmode_require_against_a_server_without_tls_is_refused(pg_database_url: str) -> None:
    """The URL's sslmode reaches the connection: no silent fall-back to plaintext."""
    import psycopg

    with psycopg.connect(pg_database_url) as connection:
        if connection.execute("SHOW ssl").fetchone() == ("on",):
            pytest.skip("this PostgreSQL server has TLS: the refusal needs one without")
    result = run_invario("migrate", env={"INVARIO_DATABASE_URL": f"{pg_database_url}?sslmode=require"})

    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().startswith("invario: database unavailable:")
    assert "SSL was required" in result.stderr and len(result.stderr.strip().splitlines()) == 1
