"""What the soak runs and breaks: its database, the proxy in front of it, and the two processes.

``Cluster`` owns a fresh PostgreSQL database (created, migrated, funded, and
dropped at the end), a ``FaultyProxy`` in front of it, one ``invario serve``
(``--no-followers``: the read models are the worker's) and one ``invario worker``,
both reaching the database only through the proxy. ``FaultInjector`` plays a
schedule (``tests.soak.schedule``) against them and logs what it did.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx

from application.ledger import PostingInstruction
from infrastructure.migrate import upgrade_to_head
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from interfaces.bootstrap import open_access
from tests.e2e.http_fixtures import ADMIN_TOKEN, DAY, PEPPER
from tests.e2e.serve_support import serve_environment
from tests.e2e.test_cli_basics import INVARIO, free_port
from tests.soak.schedule import Fault
from tests.support import postgres
from tests.support.tcp_proxy import FaultyProxy

WALLETS = 8
FUNDING_MINOR = 100_000  # 1,000.00 BRL on each wallet
STOP_DEADLINE_SECONDS = 30.0  # docs/failure-modes.md: both processes exit within 30 s of SIGTERM
START_DEADLINE_SECONDS = 60.0
SETTLE_SECONDS = 5.0  # a 503 is allowed this long after a database fault heals (the recovery bound)


@dataclass(frozen=True)
class Book:
    """The prepared ledger: the tenant, its key, the cash account and the floored wallets."""

    tenant_id: UUID
    key: str = field(repr=False)
    cash: str
    wallets: tuple[str, ...]


def prepare_ledger(database_url: str) -> Book:
    """Migrate, create a tenant and a read+write key, open cash and the wallets (floor 0.00), fund them."""
    runtime = open_runtime(Settings(database_url=database_url, auth_pepper=PEPPER, admin_token=ADMIN_TOKEN))
    try:
        upgrade_to_head(runtime.engine)
        ledger = runtime.ledger
        tenant = ledger.create_tenant("soak").aggregate
        key = open_access(runtime).issue_key(tenant.id, ["read", "write"]).secret
        cash = ledger.open_account(tenant.id, "cash", "Cash", "BRL", "asset").aggregate.id
        wallets = []
        for n in range(WALLETS):
            wallet = ledger.open_account(tenant.id, f"wallet:{n}", f"Wallet {n}", "BRL", "liability",
                                         balance_floor_minor=0).aggregate.id
            amount = f"{FUNDING_MINOR // 100}.{FUNDING_MINOR % 100:02d}"
            ledger.post_transaction(tenant.id, f"funding-{n}", _date(), [
                PostingInstruction(cash, amount, None), PostingInstruction(wallet, f"-{amount}", None)])
            wallets.append(str(wallet))
        return Book(tenant.id, key, str(cash), tuple(wallets))
    finally:
        runtime.close()


def _date():  # type: ignore[no-untyped-def]
    from datetime import date

    return date.fromisoformat(DAY)


def through_proxy(database_url: str, proxy: FaultyProxy) -> str:
    parts = urlsplit(database_url)
    userinfo = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{proxy.port}"))


class Process:
    """One supervised ``invario`` process; its output appended to one log across restarts."""

    def __init__(self, name: str, argv: list[str], environment: dict[str, str], log_path: Path,
                 ready: threading.Event | None = None) -> None:
        self.name, self.argv, self.environment, self.log_path = name, argv, environment, log_path
        self.process: subprocess.Popen[str] | None = None
        self._log: TextIO = log_path.open("a")
        self.exits: list[tuple[str, int | None, float]] = []  # (how it was stopped, exit code, seconds to exit)

    def start(self) -> None:
        self._log.write(f"\n--- soak: starting {self.name} ---\n")
        self._log.flush()
        self.process = subprocess.Popen(self.argv, env=self.environment, stdout=self._log,  # noqa: S603
                                        stderr=subprocess.STDOUT, text=True)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.exits.append(("kill9", self.process.wait(), 0.0))

    def sigterm(self) -> tuple[int | None, float]:
        """SIGTERM and wait for the exit (killed after ``STOP_DEADLINE_SECONDS``): (exit code, seconds)."""
        if not self.running():
            return None, 0.0
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None  # did not stop in time
        self.exits.append(("sigterm", code, round(time.monotonic() - started, 2)))
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.running():
            self.sigterm()
        self._log.close()

    def log_tail(self, characters: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-characters:]


class Cluster:
    """The database, the proxy and the two processes; a context manager that always cleans up."""

    def __init__(self, server_url: str, work_dir: Path) -> None:
        self.server_url, self.work_dir = server_url, work_dir
        self.database_url = postgres.create_database(server_url)
        self._stack = contextlib.ExitStack()
        self._stack.callback(postgres.drop_database, server_url, self.database_url)
        self.book = prepare_ledger(self.database_url)
        upstream = urlsplit(self.database_url)
        self.proxy = self._stack.enter_context(FaultyProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432))
        self.proxied_url = through_proxy(self.database_url, self.proxy)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        environment = serve_environment(self.proxied_url, INVARIO_WORKER_METRICS_PORT="0")
        self.serve = Process("serve", [INVARIO, "serve", "--no-followers", "--port", str(self.port)], environment,
                             work_dir / "serve.log")
        self.worker = Process("worker", [INVARIO, "worker"], environment, work_dir / "worker.log")
        self._stack.callback(self.worker.close)
        self._stack.callback(self.serve.close)
        self.direct_environment = serve_environment(self.database_url)  # for the checks: no proxy

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def process(self, name: str) -> Process:
        return self.serve if name == "serve" else self.worker

    def start(self, name: str, deadline_seconds: float = START_DEADLINE_SECONDS) -> float:
        """Start a process until it is ready (it exits while the database is unreachable: try again); seconds taken."""
        started = time.monotonic()
        process = self.process(name)
        while time.monotonic() - started < deadline_seconds:
            if not process.running():
                process.start()
            if self._ready(process, time.monotonic() + 2.0):
                return time.monotonic() - started
        raise RuntimeError(f"{name} did not become ready within {deadline_seconds} s:\n{process.log_tail()}")

    def _ready(self, process: Process, until: float) -> bool:
        while time.monotonic() < until:
            if not process.running():
                time.sleep(0.2)  # refused to start (the database is down): started again by the caller
                return False
            if process is self.worker:
                return True  # the worker retries on its own; running is ready
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code in (200, 503):
                    return True
            time.sleep(0.1)
        return False


@dataclass
class Injected:
    """One fault as it happened: when (seconds after the clients started), what, and what came of it."""

    at: float
    kind: str
    target: str
    length: float
    ended_at: float = 0.0
    detail: str = ""


class FaultInjector:
    """Plays the schedule in two threads (the network lane and the process lane), so faults combine."""

    def __init__(self, cluster: Cluster, faults: list[Fault], started: float) -> None:
        self.cluster, self.started = cluster, started
        self.network = [f for f in faults if f.target == "database"]
        self.processes = [f for f in faults if f.target != "database"]
        self.injected: list[Injected] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._play, args=(lane,), daemon=True)
                         for lane in (self.network, self.processes)]

    def now(self) -> float:
        return time.monotonic() - self.started

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop injecting, heal the network and make sure both processes run."""
        self._stop.set()
        for thread in self._threads:
            thread.join(STOP_DEADLINE_SECONDS + START_DEADLINE_SECONDS)
        self.cluster.proxy.set_mode("pass")
        for name in ("serve", "worker"):
            if not self.cluster.process(name).running():
                self.cluster.start(name)

    def database_faults(self) -> list[tuple[float, float]]:
        """(start, end) of every network fault, in seconds after the clients started."""
        with self._lock:
            return [(i.at, i.ended_at or float("inf")) for i in self.injected if i.target == "database"]

    def _play(self, lane: list[Fault]) -> None:
        for fault in lane:
            if self._stop.wait(max(0.0, fault.at - self.now())):
                return
            record = Injected(round(self.now(), 2), fault.kind, fault.target, fault.length)
            with self._lock:
                self.injected.append(record)
            try:
                record.detail = self._inject(fault)
            except Exception as exc:  # noqa: BLE001 - reported as a failed invariant, the run goes on
                record.detail = f"error: {exc}"
                self.errors.append(f"{fault.describe()}: {exc}")
            record.ended_at = round(self.now(), 2)

    def _inject(self, fault: Fault) -> str:
        if fault.target == "database":
            self.cluster.proxy.set_mode(fault.kind)
            time.sleep(fault.length)
            self.cluster.proxy.set_mode("pass")
            return "healed"
        process = self.cluster.process(fault.target)
        if fault.kind == "kill9":
            process.kill9()
            stopped = "killed"
        else:
            code, seconds = process.sigterm()
            stopped = f"exit {code} after {seconds:.2f}s"
        time.sleep(fault.length)
        seconds_to_ready = self.cluster.start(fault.target)
        return f"{stopped}; ready again {seconds_to_ready:.2f}s after restart"
