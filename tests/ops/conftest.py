"""Fixtures of the operations tests: a live PostgreSQL deployment driven with the real binaries.

``deployment`` is a fresh, migrated PostgreSQL database (dropped afterwards) with
the environment every Invario process of the test shares. Through it a test runs
``invario ...`` as a subprocess (``deployment.invario("verify")``), starts real
``invario serve`` / ``invario worker`` processes (stopped at teardown), and runs
SQL behind the service's back (``deployment.sql(...)``) to stage failures.

Processes get only the ``INVARIO_*`` variables given here (the caller's are
removed), plus ``PYTHONPATH`` and the rest of the environment, so a worktree's
code is what runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

INVARIO = str(Path(sys.executable).parent / "invario")
PEPPER = "ops-test-pepper-do-not-use-anywhere-0123456789"
ADMIN_TOKEN = "ops-test-admin-token-do-not-use-anywhere-0123456789"
COMMAND_TIMEOUT_SECONDS = 180
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without INVARIO_*/OTEL_* settings, plus ``extra``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("INVARIO_", "OTEL_"))}
    environment.update(extra or {})
    return environment


def metric_value(text: str, sample: str, **labels: str) -> float | None:
    """The value of ``sample`` (a sample name, e.g. ``auth_failures_total``) whose labels include ``labels``."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return None


@dataclass
class Server:
    """A running ``invario serve`` subprocess; its stdout/stderr (JSON log lines) go to ``log_path``."""

    process: subprocess.Popen[str]
    base_url: str
    log_path: Path
    admin_token: str = field(repr=False)

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=30, **kwargs)

    def metrics(self) -> str:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    def metric(self, sample: str, **labels: str) -> float:
        return metric_value(self.metrics(), sample, **labels) or 0.0

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def wait_for(self, path: str, status: int, seconds: float = START_TIMEOUT_SECONDS) -> httpx.Response:
        """Poll ``path`` until it answers ``status`` (the server must stay up meanwhile)."""
        deadline = time.monotonic() + seconds
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"invario serve exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = self.get(path)
                if response.status_code == status:
                    return response
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"{path} did not answer {status} within {seconds} s; last: {last}\n{self.log_tail()}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"invario serve ignored signal {signum}:\n{self.log_tail()}") from None
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Deployment:
    """A migrated PostgreSQL database and the environment of every Invario process using it."""

    database_url: str
    env: dict[str, str]
    workdir: Path
    _processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return clean_environment({**self.env, **(extra or {})})

    def invario(self, *args: str, env: Mapping[str, str] | None = None,
                timeout: float = COMMAND_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
        """Run ``invario ARGS`` to completion, as an operator would; never raises on an exit status."""
        return subprocess.run(  # noqa: S603 - our own console script
            [INVARIO, *args], capture_output=True, text=True, timeout=timeout, env=self.environment(env),
            cwd=self.workdir, check=False,
        )

    def spawn(self, *args: str, env: Mapping[str, str] | None = None, log_name: str = "process.log",
              ) -> tuple[subprocess.Popen[str], Path]:
        """Start ``invario ARGS`` in the background (stopped at teardown); output to a log file."""
        log_path = self.workdir / log_name
        output = log_path.open("w")
        try:
            process = subprocess.Popen(  # noqa: S603 - our own console script
                [INVARIO, *args], env=self.environment(env), cwd=self.workdir,
                stdout=output, stderr=subprocess.STDOUT, text=True,
            )
        finally:
            output.close()  # the child keeps its own descriptor
        self._processes.append(process)
        return process, log_path

    def serve(self, *args: str, env: Mapping[str, str] | None = None, wait: bool = True) -> Server:
        """A real ``invario serve`` on a free port; by default waits until /health answers 200."""
        port = free_port()
        process, log_path = self.spawn("serve", "--port", str(port), *args, env=env,
                                       log_name=f"serve-{port}.log")
        server = Server(process, f"http://127.0.0.1:{port}", log_path, self.env["INVARIO_ADMIN_TOKEN"])
        if wait:
            server.wait_for("/health", 200)
        return server

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the deployment's database (autocommit), behind Invario's back."""
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def create_tenant_with_key(self, name: str, scopes: str = '{"write": true}') -> tuple[str, str]:
        """``create-tenant NAME`` then ``create-key``: the tenant's id and its new key."""
        created = self.invario("create-tenant", name)
        assert created.returncode == 0, created.stderr
        tenant_id = created.stdout.strip().rsplit(" ", 1)[-1]
        issued = self.invario("create-key", "--owner", name, "--scopes", scopes)
        assert issued.returncode == 0, issued.stderr
        return tenant_id, issued.stdout.strip()

    def stop_all(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def deployment_environment(database_url: str) -> dict[str, str]:
    """Settings for quick tests: short follower and integrity intervals, no rate limit, no worker port."""
    return {
        "INVARIO_DATABASE_URL": database_url,
        "INVARIO_AUTH_PEPPER": PEPPER,
        "INVARIO_ADMIN_TOKEN": ADMIN_TOKEN,
        "INVARIO_FOLLOWER_POLL_SECONDS": "0.1",
        "INVARIO_INTEGRITY_RECHECK_SECONDS": "0.5",
        "INVARIO_RATE_LIMIT_PER_SECOND": "0",
        "INVARIO_WORKER_METRICS_PORT": "0",
    }


@pytest.fixture
def make_deployment(make_pg_database: Callable[[], str], tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """Factory: a fresh PostgreSQL database (migrated unless ``migrate=False``) as a ``Deployment``."""
    made: list[Deployment] = []

    def make(*, migrate: bool = True) -> Deployment:
        url = make_pg_database()
        workdir = tmp_path / f"deployment-{len(made)}"
        workdir.mkdir()
        deployment = Deployment(url, deployment_environment(url), workdir)
        made.append(deployment)
        if migrate:
            migrated = deployment.invario("migrate")
            assert migrated.returncode == 0, migrated.stderr
        return deployment

    yield make
    for deployment in made:
        deployment.stop_all()


@pytest.fixture
def deployment(make_deployment: Callable[..., Deployment]) -> Deployment:
    """A fresh, migrated PostgreSQL deployment; its processes are stopped and its database dropped afterwards."""
    return make_deployment()
