"""Find a PostgreSQL server for the tests and make throwaway databases on it.

Discovery order (see ``locate_server``):

1. ``INVARIO_TEST_DATABASE_URL`` if set. It is used as given or not at all:
   a server the user named explicitly that does not work is reported, never
   silently replaced by another one.
2. ``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers.
3. A throwaway server started with pytest-postgresql's ``PostgreSQLExecutor``
   (the machinery behind its ``postgresql_proc`` fixture), if ``pg_ctl`` is
   installed. PostgreSQL refuses to run as root, so under root the server is
   run as the ``postgres`` system user through ``runuser``.

Nothing here decides between skipping and failing; ``tests/conftest.py`` does.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV_VAR = "INVARIO_TEST_DATABASE_URL"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_SECONDS = 2
DATABASE_PREFIX = "invario_test_"
THROWAWAY_USER = "postgres"
THROWAWAY_START_TIMEOUT_SECONDS = 60


class ServerUnavailable(Exception):
    """No usable server from one discovery step; the message says why."""


@dataclass(frozen=True)
class Lookup:
    """Outcome of discovery: a server URL, or ``None`` and the reason."""

    url: str | None
    detail: str


# --- environment -----------------------------------------------------------


def running_under_ci() -> bool:
    """True when the ``CI`` environment variable says we run in CI."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def explicit_server_url() -> str | None:
    """The URL from ``INVARIO_TEST_DATABASE_URL``, or ``None`` if unset/blank."""
    return os.environ.get(ENV_VAR, "").strip() or None


# --- URLs ------------------------------------------------------------------


def with_database(server_url: str, dbname: str) -> str:
    """``server_url`` pointing at ``dbname`` (credentials and query kept)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(scheme="postgresql", path=f"/{dbname}"))


def database_name(url: str) -> str:
    """The database a ``postgresql://`` URL points at."""
    return urlsplit(url).path.lstrip("/")


def redact(url: str) -> str:
    """``url`` with any password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=_masked_netloc(parts)))


def _masked_netloc(parts: SplitResult) -> str:
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.username or ''}:***@{host}{port}"


# --- probing and databases -------------------------------------------------


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection that gives up quickly on dead servers."""
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True)


def probe(url: str) -> str | None:
    """``None`` if we may CREATE DATABASE on ``url``'s server, else why not."""
    try:
        with connect(url) as conn:
            row = conn.execute(
                "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        return f"cannot connect to {redact(url)}: {_one_line(exc)}"
    if not row or not row[0]:
        return f"{redact(url)} answers, but its role may not CREATE DATABASE"
    return None


def create_database(server_url: str) -> str:
    """Create a fresh, uniquely named database; return its URL."""
    name = f"{DATABASE_PREFIX}{secrets.token_hex(8)}"
    with connect(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """Drop the database ``database_url`` points at, kicking out its sessions."""
    name = sql.Identifier(database_name(database_url))
    with connect(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def database_exists(server_url: str, name: str) -> bool:
    """Whether the server behind ``server_url`` has a database called ``name``."""
    with connect(server_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _one_line(exc: BaseException) -> str:
    return re.sub(r"\s+", " ", str(exc)).strip().rstrip(".") or type(exc).__name__


# --- discovery -------------------------------------------------------------


def locate_server(stack: contextlib.ExitStack) -> Lookup:
    """Run the discovery order; anything started is torn down by ``stack``."""
    explicit = explicit_server_url()
    if explicit is not None:
        return _lookup_explicit(explicit)
    local_problem = probe(DEFAULT_SERVER_URL)
    if local_problem is None:
        return Lookup(DEFAULT_SERVER_URL, f"local server {DEFAULT_SERVER_URL}")
    try:
        url = start_throwaway_server(stack)
    except ServerUnavailable as exc:
        return Lookup(None, _nothing_found(local_problem, str(exc)))
    return Lookup(url, f"throwaway server {url} started by the test session")


def _lookup_explicit(url: str) -> Lookup:
    problem = probe(url)
    if problem is None:
        return Lookup(url, f"{ENV_VAR}={redact(url)}")
    return Lookup(None, f"{ENV_VAR} is set but unusable ({problem}); not trying anything else")


def _nothing_found(local_problem: str, throwaway_problem: str) -> str:
    return (
        f"no PostgreSQL server found: {local_problem}; "
        f"throwaway server: {throwaway_problem}. "
        f"Start PostgreSQL on 127.0.0.1:5432 or set {ENV_VAR}=postgresql://user@host:port/db"
    )


# --- throwaway server ------------------------------------------------------


def find_pg_ctl() -> str | None:
    """``pg_ctl`` from PATH, else the newest Debian-style install."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return on_path
    installed = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    return max(installed, key=_major_version_of, default=None)


def _major_version_of(pg_ctl: str) -> int:
    version = Path(pg_ctl).parent.parent.name
    return int(version) if version.isdigit() else 0


def start_throwaway_server(stack: contextlib.ExitStack) -> str:
    """Start a private server on a free port; return its admin URL.

    Raises ``ServerUnavailable`` if this machine cannot run one.
    """
    # Imported here: only this rarely used path needs pytest-postgresql.
    from pytest_postgresql.executors import PostgreSQLExecutor

    pg_ctl = find_pg_ctl()
    if pg_ctl is None:
        raise ServerUnavailable("pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin")
    base = _make_base_dir(stack)
    port = _free_port()
    executor = PostgreSQLExecutor(
        executable=_pg_ctl_command(pg_ctl, base),
        host="127.0.0.1",
        port=port,
        datadir=str(base / "data"),
        unixsocketdir=str(base),
        logfile=str(base / "postgresql.log"),
        startparams="-w",
        dbname="postgres",
        user=THROWAWAY_USER,
        timeout=THROWAWAY_START_TIMEOUT_SECONDS,
    )
    stack.callback(_stop_quietly, executor)
    try:
        executor.start()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        raise ServerUnavailable(f"{pg_ctl} failed to start a server: {_one_line(exc)}{_log_tail(base)}")
    url = f"postgresql://{THROWAWAY_USER}@127.0.0.1:{port}/postgres"
    problem = probe(url)
    if problem is not None:
        raise ServerUnavailable(f"started a server but {problem}{_log_tail(base)}")
    return url


def _make_base_dir(stack: contextlib.ExitStack) -> Path:
    base = Path(tempfile.mkdtemp(prefix="invario-pg-"))
    stack.callback(shutil.rmtree, base, ignore_errors=True)
    if os.geteuid() == 0:
        account = _server_account()
        os.chown(base, account.pw_uid, account.pw_gid)
    return base


def _pg_ctl_command(pg_ctl: str, base: Path) -> str:
    """``pg_ctl`` itself, or under root a wrapper running it as ``postgres``.

    PostgreSQL will not run as root, and ``PostgreSQLExecutor`` runs its
    executable as the current user, so root gets a two-line shell wrapper.
    """
    if os.geteuid() != 0:
        return pg_ctl
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServerUnavailable("running as root and `runuser` is missing, so pg_ctl cannot run as postgres")
    wrapper = base / "pg_ctl-as-postgres"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"cd / && exec {shlex.quote(runuser)} -u {THROWAWAY_USER} -- {shlex.quote(pg_ctl)} \"$@\"\n"
    )
    wrapper.chmod(stat.S_IRWXU)
    return str(wrapper)


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(THROWAWAY_USER)
    except KeyError:
        raise ServerUnavailable(
            f"running as root and there is no '{THROWAWAY_USER}' system user to run PostgreSQL as"
        ) from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_quietly(executor: object) -> None:
    with contextlib.suppress(Exception):
        executor.stop()  # type: ignore[attr-defined]


def _log_tail(base: Path, lines: int = 5) -> str:
    try:
        tail = (base / "postgresql.log").read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return " | log: " + " / ".join(tail) if tail else ""
