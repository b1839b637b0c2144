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
from datetime import date
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit
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
SUPERVISE_EVERY_SECONDS = 0.5
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
            ledger.post_transaction(tenant.id, f"funding-{n}", date.fromisoformat(DAY), [
                PostingInstruction(cash, amount, None), PostingInstruction(wallet, f"-{amount}", None)])
            wallets.append(str(wallet))
        return Book(tenant.id, key, str(cash), tuple(wallets))
    finally:
        runtime.close()


class Process:
    """One supervised ``invario`` process; its output appended to one log across restarts."""

    def __init__(self, name: str, argv: list[str], environment: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.environment, self.log_path = name, argv, environment, log_path
        self.process: subprocess.Popen[str] | None = None
        self._log: TextIO = log_path.open("a")
        self._log_offset = 0  # where this start's output begins
        self.handling = threading.Lock()  # held while the process is stopped or started on purpose
        self.exits: list[tuple[str, int | None, float]] = []  # (how it was stopped, exit code, seconds to exit)

    def start(self) -> None:
        self._log.write(f"\n--- soak: starting {self.name} ---\n")
        self._log.flush()
        self._log_offset = self._log.tell()
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

    def output_since_start(self) -> str:
        with self.log_path.open(errors="replace") as log:
            log.seek(self._log_offset)
            return log.read()

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
        try:
            self._prepare(work_dir)
        except BaseException:
            self._stack.close()  # no database left behind
            raise

    def _prepare(self, work_dir: Path) -> None:
        self.book = prepare_ledger(self.database_url)
        upstream = urlsplit(self.database_url)
        self.proxy = self._stack.enter_context(FaultyProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432))
        self.proxied_url = self.proxy.url_for(self.database_url)
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
                if "invario worker: following" in process.output_since_start():
                    return True  # from here on it rides out outages by itself
                time.sleep(0.1)
                continue
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

    def __init__(self, cluster: Cluster, faults: list[Fault], started: float, raw_blackholes: bool = False) -> None:
        self.cluster, self.started = cluster, started
        self.raw_blackholes = raw_blackholes  # heal a blackhole without resetting its connections
        self.network = [f for f in faults if f.target == "database"]
        self.processes = [f for f in faults if f.target != "database"]
        self.injected: list[Injected] = []
        self.errors: list[str] = []
        self.sessions_max = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [*(threading.Thread(target=self._play, args=(lane,), daemon=True)
                           for lane in (self.network, self.processes)),
                         threading.Thread(target=self._supervise, daemon=True)]

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
            self.cluster.start(name)  # whatever is down is started; both are ready on return

    def database_faults(self) -> list[tuple[float, float]]:
        """(start, end) of every network fault, in seconds after the clients started."""
        with self._lock:
            return [(i.at, i.ended_at or float("inf")) for i in self.injected if i.target == "database"]

    def _supervise(self) -> None:
        """Start again a process that exited by itself, as the systemd units' Restart=on-failure
        would: both exit 3 when they start while the database is unreachable (docs/failure-modes.md)."""
        while not self._stop.wait(SUPERVISE_EVERY_SECONDS):
            self._count_connections()
            for name in ("serve", "worker"):
                process = self.cluster.process(name)
                if process.running() or not process.handling.acquire(blocking=False):
                    continue
                try:
                    if process.running():
                        continue
                    record = Injected(round(self.now(), 2), "restart", name, 0.0)
                    code = process.process.returncode if process.process else None
                    last = (process.output_since_start().strip().splitlines() or [""])[-1][:160]
                    seconds = self.cluster.start(name)
                    record.detail = f"had exited by itself ({code}: {last}); ready again after {seconds:.2f}s"
                except Exception as exc:  # noqa: BLE001 - reported as a failed invariant
                    record.detail = f"error: {exc}"
                    self.errors.append(f"restarting {name}: {exc}")
                finally:
                    process.handling.release()
                record.ended_at = round(self.now(), 2)
                with self._lock:
                    self.injected.append(record)

    def _count_connections(self) -> None:
        """The most sessions the run's database had at once (read straight, not through the proxy)."""
        try:
            with postgres.connect(self.cluster.server_url) as connection:
                row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                         (postgres.database_name(self.cluster.database_url),)).fetchone()
        except Exception:  # noqa: BLE001 - a sample missed: the server is busy or full
            return
        self.sessions_max = max(self.sessions_max, int(row[0]) if row else 0)

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
            reset = fault.kind == "blackhole" and not self.raw_blackholes
            if reset:
                # The proxy acknowledged and discarded bytes, which no network does: after a real
                # partition TCP either delivers them again or gives up (tcp_user_timeout). The
                # connections that lived through it are reset: the kernel giving up.
                self.cluster.proxy.set_mode("drop")
            self.cluster.proxy.set_mode("pass")
            return "healed" + (", its connections reset" if reset else "")
        process = self.cluster.process(fault.target)
        with process.handling:
            return self._stop_and_start(fault, process)

    def _stop_and_start(self, fault: Fault, process: Process) -> str:
        if not process.running():  # exited by itself, the supervisor has not seen it yet
            stopped = f"was not running (exit {process.process.returncode if process.process else None})"
        elif fault.kind == "kill9":
            process.kill9()
            stopped = "killed"
        else:
            code, seconds = process.sigterm()
            stopped = f"exit {code} after {seconds:.2f}s"
        time.sleep(fault.length)
        seconds_to_ready = self.cluster.start(fault.target)
        return f"{stopped}; ready again {seconds_to_ready:.2f}s after restart"
