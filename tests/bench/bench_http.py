"""The HTTP API under load, served as in production.

``invario serve`` (uvicorn, one process, log followers in-process, JSON access
log) runs as a subprocess against a throwaway PostgreSQL database; N concurrent
keep-alive clients (an ``httpx`` async client) post two-posting transfers as
fast as they are answered, first between random pairs of 10,000 accounts, then
always through one hot account. Each run is warmed up, then measured for a
fixed time: throughput counts the 201s completed in the window, latencies are
theirs (p50/p95/p99). The tenant, its key and the accounts are written through
the application (``Ledger.save`` of many freshly opened accounts at once)
before the server starts.

Targets (issue 8): 2,000 transfers/s with p99 under 50 ms at 64 clients over
random accounts; 1,000 transfers/s through one hot account. The load generator
shares the machine with the server (and, here, with the database), so on a
small machine it takes part of the CPU the server could have used: the note of
each throughput row gives both processes' CPU use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from domain.account import Account
from infrastructure.bootstrap import open_access, open_runtime
from infrastructure.migrate import upgrade_to_head
from infrastructure.settings import Settings
from tests.bench.measurement import Measurement
from tests.bench.support import PEPPER, REPOSITORY, percentile, process_cpu_seconds, throwaway_postgres

THROUGHPUT_TARGET = 2_000
HOT_THROUGHPUT_TARGET = 1_000
P99_TARGET_MS = 50.0
P99_TARGET_CLIENTS = 64

FULL = {"accounts": 10_000, "clients": (16, 64, 256), "warmup": 2.0, "seconds": 8.0}
SMOKE = {"accounts": 200, "clients": (2, 8), "warmup": 0.3, "seconds": 1.0}
OPEN_CHUNK = 500  # accounts per save()
SERVER_START_SECONDS = 60
SERVER_STOP_SECONDS = 15
REQUEST_TIMEOUT_SECONDS = 60
DAY = "2026-11-23"


@dataclass(frozen=True)
class Book:
    """What the clients need: a write key, the accounts' ids, and the hot one."""

    key: str = field(repr=False)
    accounts: list[str]
    hot: str


@dataclass
class Window:
    """What completed inside the measured window."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    server_cpu: float | None = None
    client_cpu: float = 0.0


def run(smoke: bool) -> list[Measurement]:
    shape = SMOKE if smoke else FULL
    with throwaway_postgres() as found:
        if found is None:
            return [Measurement("API transfers", 0, "transfers/s", note="skipped: no PostgreSQL server found")]
        book = _open_book(found[1], shape["accounts"])
        results = []
        with _server(found[1]) as (base_url, pid):
            for scenario in ("random accounts", "hot account"):
                for clients in shape["clients"]:
                    window = asyncio.run(_load(base_url, book, scenario, clients, shape["warmup"], shape["seconds"],
                                               pid))
                    results += _figures(scenario, clients, len(book.accounts), window)
        return results


def _open_book(database_url: str, accounts: int) -> Book:
    runtime = open_runtime(Settings(database_url=database_url, auth_pepper=PEPPER))
    try:
        upgrade_to_head(runtime.engine)
        tenant = runtime.ledger.create_tenant("bench").aggregate
        key = open_access(runtime).issue_key(tenant.id, ("read", "write")).secret
        opened = [Account.open(tenant.id, f"acc-{n}", f"Account {n}", "BRL", "asset") for n in range(accounts)]
        hot = Account.open(tenant.id, "hot", "Hot account", "BRL", "liability")
        for start in range(0, len(opened), OPEN_CHUNK):
            runtime.ledger.save(*opened[start:start + OPEN_CHUNK])
        runtime.ledger.save(hot)
        return Book(key, [str(a.id) for a in opened], str(hot.id))
    finally:
        runtime.close()


@contextlib.contextmanager
def _server(database_url: str) -> Iterator[tuple[str, int]]:
    """``invario serve`` on a free port; yields its base URL and process id, stops it afterwards."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPOSITORY), os.environ.get("PYTHONPATH")))),
           "INVARIO_DATABASE_URL": database_url, "INVARIO_AUTH_PEPPER": PEPPER,
           "INVARIO_RATE_LIMIT_PER_SECOND": "0", "INVARIO_LOG_LEVEL": "INFO"}
    command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL,  # noqa: S603
                                   stderr=errors)
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_up(base_url, process, errors)
            yield base_url, process.pid
        finally:
            _stop(process)


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], errors: object) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors.seek(0)  # type: ignore[attr-defined]
            tail = errors.read().decode(errors="replace")[-1500:]  # type: ignore[attr-defined]
            raise RuntimeError(f"invario serve exited with status {process.returncode}: {tail}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{base_url}/health", timeout=5)
            return
        time.sleep(0.2)
    raise RuntimeError(f"invario serve did not answer within {SERVER_START_SECONDS} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            process.wait(SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- load --------------------------------------------------------------------------------------


async def _load(base_url: str, book: Book, scenario: str, clients: int, warmup: float, seconds: float,
                pid: int) -> Window:
    """``clients`` concurrent clients, each posting one transfer after another until the window closes."""
    run_id = secrets.token_hex(4)
    pick = _picker(book, scenario)
    window = Window(seconds)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {book.key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits,
                                 timeout=REQUEST_TIMEOUT_SECONDS) as client:
        opens = time.perf_counter() + warmup
        closes = opens + seconds
        cpu_at_open: list[float | None] = []

        async def mark_open() -> None:
            await asyncio.sleep(max(0.0, opens - time.perf_counter()))
            cpu_at_open.extend((process_cpu_seconds(pid), time.process_time()))

        async def one_client(number: int) -> None:
            rng = random.Random(number)  # noqa: S311 - load shape, not security
            sent = 0
            while time.perf_counter() < closes:
                debit, credit = pick(rng)
                body = {"external_id": f"{run_id}-{number}-{sent}", "effective_date": DAY,
                        "postings": [{"account_id": debit, "amount": "1.00"},
                                     {"account_id": credit, "amount": "-1.00"}]}
                sent += 1
                began = time.perf_counter()
                try:
                    response = await client.post("/v1/transactions", json=body)
                    outcome = str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                ended = time.perf_counter()
                if opens <= ended <= closes:
                    if outcome == "201":
                        window.latencies.append(ended - began)
                    else:
                        window.failures[outcome] += 1

        await asyncio.gather(mark_open(), *(one_client(n) for n in range(clients)))
        server_cpu, client_cpu = cpu_at_open
        server_now = process_cpu_seconds(pid)
        window.server_cpu = server_now - server_cpu if server_now is not None and server_cpu is not None else None
        window.client_cpu = time.process_time() - client_cpu
    return window


def _picker(book: Book, scenario: str) -> Callable[[random.Random], tuple[str, str]]:
    if scenario == "hot account":
        return lambda rng: (rng.choice(book.accounts), book.hot)
    return lambda rng: tuple(rng.sample(book.accounts, 2))  # type: ignore[return-value]


def _figures(scenario: str, clients: int, accounts: int, window: Window) -> list[Measurement]:
    latencies = sorted(window.latencies)
    # Wall time of the window includes the drain of requests still in flight; both CPU figures cover it too.
    cpu = f"server {window.server_cpu / window.seconds:.2f} CPU, " if window.server_cpu is not None else ""
    note = f"{cpu}client {window.client_cpu / window.seconds:.2f} CPU"
    if window.failures:
        note += "; not 201: " + ", ".join(f"{k} x{v}" for k, v in window.failures.most_common(3))
    hot = scenario == "hot account"
    where = "1 hot + random accounts" if hot else f"{accounts:,} random accounts"
    name = f"API: {clients} clients, {where}"
    p99_target = P99_TARGET_MS if clients == P99_TARGET_CLIENTS and not hot else None
    return [
        Measurement(name, len(latencies) / window.seconds, "transfers/s",
                    HOT_THROUGHPUT_TARGET if hot else THROUGHPUT_TARGET, note=note),
        Measurement("  p50 latency", percentile(latencies, 0.50) * 1000, "ms", higher_is_better=False),
        Measurement("  p95 latency", percentile(latencies, 0.95) * 1000, "ms", higher_is_better=False),
        Measurement("  p99 latency", percentile(latencies, 0.99) * 1000, "ms", p99_target, higher_is_better=False),
    ]
