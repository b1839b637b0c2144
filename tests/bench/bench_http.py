"""The HTTP API under load, served as in production.

``invario serve --no-followers`` (uvicorn, one API process, JSON request log)
and ``invario worker`` (the log followers) run as subprocesses, the layout
docs/performance.md recommends for production, against a throwaway PostgreSQL
database (``INVARIO_BENCH_SERVE_OPTIONS`` adds options, e.g. ``--workers 2``); N concurrent
keep-alive clients post two-posting transfers as
fast as they are answered, first between random pairs of 10,000 accounts, then
always through one hot account, every request with its own ``Idempotency-Key``
as payment clients send (one more row, at 64 clients, sends none). Each run is
warmed up, then measured for a
fixed time: throughput counts the 2xx completed in the window; p50/p95/p99
are their latencies (with wrk: of every response, which is the same when no
row notes failures). The tenant, its key and the accounts are written through
the application (``Ledger.save`` of many freshly opened accounts at once)
before the server starts.

Two more rows (issue 15). The batch endpoint: 4 clients each post
``POST /v1/transactions/batch`` bodies of 1,000 transfers between random
accounts (not atomic, one Idempotency-Key per request); its value counts the
items the answers say were created, and its latencies are those of the whole
requests. Four clients keep one batch being committed while the next ones are
parsed and validated on the server's event loop; more would only queue whole
batches (1,000 transfers each) and lengthen every request on a small machine.
Then the server is restarted with the rate limit at its default (the other
rows run with ``INVARIO_RATE_LIMIT_PER_SECOND=0``, i.e. off) and 64 keyed
clients post single transfers: the value counts the 201s; the 429s the limit
answers are counted in the row's note as failures.

The load generator is ``wrk`` when it is on ``PATH`` (a C program: it leaves
the cores to the server), else an ``httpx`` async client in this process,
which needs about as much CPU per request as the server; set
``INVARIO_BENCH_LOAD_TOOL=httpx`` or ``=wrk`` to choose. Each row names it.

Targets (issue 8): 2,000 transfers/s with p99 under 50 ms at 64 clients over
random accounts; 1,000 transfers/s through one hot account. Issue 15: 10,000
transfers/s through the batch endpoint; the rate-limited row has no target (the
default limit, per tenant, is far below what one server answers: it shows that
the limit holds, and what it costs). The load generator
shares the machine with the server (and, here, with the database), so on a
small machine it takes part of the CPU the server could have used: the note of
each throughput row gives both processes' CPU use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from domain.account import Account
from infrastructure.runtime import open_runtime
from interfaces.bootstrap import open_access
from infrastructure.migrate import upgrade_to_head
from infrastructure.settings import Settings
from tests.bench.measurement import Measurement
from tests.bench.support import PEPPER, REPOSITORY, percentile, process_cpu_seconds, throwaway_postgres

THROUGHPUT_TARGET = 2_000
HOT_THROUGHPUT_TARGET = 1_000
P99_TARGET_MS = 50.0
P99_TARGET_CLIENTS = 64
BATCH_THROUGHPUT_TARGET = 10_000

FULL = {"accounts": 10_000, "clients": (16, 64, 256), "warmup": 2.0, "seconds": 8.0,
        "batch_items": 1_000, "batch_clients": 4, "limited_clients": 64}
SMOKE = {"accounts": 200, "clients": (2, 8), "warmup": 0.3, "seconds": 1.0,
         "batch_items": 20, "batch_clients": 4, "limited_clients": 8}
WRK_SCRIPT = Path(__file__).with_name("wrk_transfers.lua")
WRK_BATCH_SCRIPT = Path(__file__).with_name("wrk_batch.lua")
RATE_LIMIT_VARIABLES = ("INVARIO_RATE_LIMIT_PER_SECOND", "INVARIO_RATE_LIMIT_BURST")
WRK_THREADS_MAX = 2
TOOL_VARIABLE = "INVARIO_BENCH_LOAD_TOOL"
SERVE_OPTIONS_VARIABLE = "INVARIO_BENCH_SERVE_OPTIONS"
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
    """What completed inside the measured window (latencies in seconds)."""

    seconds: float
    completed: int = 0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    server_cpu: float | None = None
    client_cpu: float = 0.0
    requests: int = 0  # batch runs: the requests answered (``completed`` counts their created items)


def runs(shape: dict[str, Any]) -> list[tuple[str, int, bool]]:
    """(scenario, clients, with an Idempotency-Key) of every measured run, in order."""
    keyed = [(scenario, clients, True) for scenario in ("random accounts", "hot account")
             for clients in shape["clients"]]
    unkeyed_clients = P99_TARGET_CLIENTS if P99_TARGET_CLIENTS in shape["clients"] else shape["clients"][-1]
    return [*keyed, ("random accounts", unkeyed_clients, False)]


def run(smoke: bool) -> list[Measurement]:
    shape = SMOKE if smoke else FULL
    tool = load_tool()
    with throwaway_postgres() as found:
        if found is None:
            return [Measurement("API transfers", 0, "transfers/s", note="skipped: no PostgreSQL server found")]
        book = _open_book(found[1], shape["accounts"])
        results = []
        options = ("--no-followers", *os.environ.get(SERVE_OPTIONS_VARIABLE, "").split())
        with _worker(found[1]), tempfile.TemporaryDirectory(prefix="invario-bench-") as scratch:
            with _server(found[1], *options) as (base_url, pid):
                for scenario, clients, keyed in runs(shape):
                    if tool == "wrk":
                        window = _wrk_load(base_url, book, scenario, clients, shape, pid, Path(scratch), keyed)
                    else:
                        window = asyncio.run(_httpx_load(base_url, book, scenario, clients, shape, pid, keyed))
                    results += _figures(scenario, clients, len(book.accounts), window, tool, keyed)
                if tool == "wrk":
                    window = _wrk_batch_load(base_url, book, shape, pid, Path(scratch))
                else:
                    window = asyncio.run(_httpx_batch_load(base_url, book, shape, pid))
                results += _batch_figures(shape, window, tool)
            # The rate limit is a server setting: a second server, on the same database, with the default.
            with _server(found[1], *options, rate_limited=True) as (base_url, pid):
                clients = shape["limited_clients"]
                if tool == "wrk":
                    window = _wrk_load(base_url, book, "random accounts", clients, shape, pid, Path(scratch), True,
                                       statuses=True)
                else:
                    window = asyncio.run(_httpx_load(base_url, book, "random accounts", clients, shape, pid, True))
                results += _figures("random accounts", clients, len(book.accounts), window, tool, True,
                                    rate_limited=True)
        return results


def default_rate_limit() -> tuple[float, int]:
    """The rate limit a server has when nothing sets it: (requests per second, burst), per tenant."""
    fields = Settings.model_fields
    return float(fields["rate_limit_per_second"].default), int(fields["rate_limit_burst"].default)


def load_tool() -> str:
    """``wrk`` if installed (or asked for), else ``httpx``."""
    chosen = os.environ.get(TOOL_VARIABLE, "").strip().lower()
    if chosen not in ("", "wrk", "httpx"):
        raise ValueError(f"{TOOL_VARIABLE} must be wrk or httpx, not {chosen!r}")
    if chosen == "wrk" and shutil.which("wrk") is None:
        raise ValueError(f"{TOOL_VARIABLE}=wrk but wrk is not on PATH")
    return chosen or ("wrk" if shutil.which("wrk") else "httpx")


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
def _server(database_url: str, *options: str, rate_limited: bool = False) -> Iterator[tuple[str, int]]:
    """``invario serve`` on a free port; yields its base URL and process id, stops it afterwards.
    The rate limit is off unless ``rate_limited``: then it is the settings' default (any INVARIO_RATE_LIMIT_*
    of this environment left out), as a server configured with nothing has it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPOSITORY), os.environ.get("PYTHONPATH")))),
           "INVARIO_DATABASE_URL": database_url, "INVARIO_AUTH_PEPPER": PEPPER,
           "INVARIO_RATE_LIMIT_PER_SECOND": "0", "INVARIO_LOG_LEVEL": "INFO"}
    if rate_limited:
        for name in RATE_LIMIT_VARIABLES:
            env.pop(name, None)
    command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL,  # noqa: S603
                                   stderr=errors)
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_up(base_url, process, errors)
            yield base_url, process.pid
        finally:
            _stop(process)


@contextlib.contextmanager
def _worker(database_url: str) -> Iterator[int]:
    """``invario worker``: the followers, in their own process as in production."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPOSITORY), os.environ.get("PYTHONPATH")))),
           "INVARIO_DATABASE_URL": database_url, "INVARIO_AUTH_PEPPER": PEPPER, "INVARIO_LOG_LEVEL": "INFO"}
    command = [sys.executable, "-m", "interfaces.cli.main", "worker"]
    process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL,  # noqa: S603
                               stderr=subprocess.DEVNULL)
    try:
        yield process.pid
    finally:
        _stop(process)


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-1500:]
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


# --- load: wrk ---------------------------------------------------------------------------------


def _wrk_load(base_url: str, book: Book, scenario: str, clients: int, shape: dict[str, Any], pid: int,  # noqa: PLR0913
              scratch: Path, keyed: bool, statuses: bool = False) -> Window:
    """A warm-up run of wrk, then the measured one; wrk reports its own percentiles (all responses).
    With ``statuses`` the failures are counted per HTTP status (e.g. 429) rather than as "non-2xx"."""
    accounts = _accounts_file(book, scratch)
    hot = book.hot if scenario == "hot account" else "-"
    arguments = [str(accounts), hot, "RUN", "key" if keyed else "-", *(["statuses"] if statuses else [])]
    _wrk(base_url, book, clients, max(1, round(shape["warmup"])), WRK_SCRIPT, arguments)
    server_before, children_before = process_cpu_seconds(pid), _children_cpu()
    report = _wrk(base_url, book, clients, round(shape["seconds"]), WRK_SCRIPT, arguments)
    window = Window(report["duration_us"] / 1e6, report["requests"] - report["non_2xx"], report["p50_us"] / 1e6,
                    report["p95_us"] / 1e6, report["p99_us"] / 1e6)
    failed = {code: count for code, count in report.get("statuses", {}).items() if not 200 <= int(code) < 300}
    if statuses and sum(failed.values()) == report["non_2xx"]:
        window.failures.update(failed)
    elif report["non_2xx"]:
        window.failures["non-2xx"] = report["non_2xx"]
    _wrk_tail(window, report, pid, server_before, children_before)
    return window


def _wrk_batch_load(base_url: str, book: Book, shape: dict[str, Any], pid: int, scratch: Path) -> Window:
    """wrk posting batches, warm-up then measured; ``completed`` counts the items the answers say were created."""
    arguments = [str(_accounts_file(book, scratch)), "RUN", str(shape["batch_items"]), "key"]
    clients = shape["batch_clients"]
    _wrk(base_url, book, clients, max(1, round(shape["warmup"])), WRK_BATCH_SCRIPT, arguments)
    server_before, children_before = process_cpu_seconds(pid), _children_cpu()
    report = _wrk(base_url, book, clients, round(shape["seconds"]), WRK_BATCH_SCRIPT, arguments)
    window = Window(report["duration_us"] / 1e6, report["created"], report["p50_us"] / 1e6,
                    report["p95_us"] / 1e6, report["p99_us"] / 1e6, requests=report["requests"])
    if report["non_2xx"]:
        window.failures["non-2xx requests"] = report["non_2xx"]
    for outcome in ("rejected", "replayed"):
        if report[outcome]:
            window.failures[f"{outcome} items"] = report[outcome]
    _wrk_tail(window, report, pid, server_before, children_before)
    return window


def _accounts_file(book: Book, scratch: Path) -> Path:
    accounts = scratch / "accounts.txt"
    if not accounts.exists():
        accounts.write_text("\n".join(book.accounts) + "\n")
    return accounts


def _wrk_tail(window: Window, report: dict[str, Any], pid: int, server_before: float | None,
              children_before: float) -> None:
    """Socket errors and both processes' CPU use since the measured run began."""
    server_after = process_cpu_seconds(pid)
    if report["socket_errors"]:
        window.failures["socket errors"] = report["socket_errors"]
    if server_before is not None and server_after is not None:
        window.server_cpu = server_after - server_before
    window.client_cpu = _children_cpu() - children_before


def _wrk(base_url: str, book: Book, clients: int, seconds: int, script: Path,  # noqa: PLR0913
         arguments: list[str]) -> dict[str, Any]:
    """One wrk run of ``script``; "RUN" in ``arguments`` becomes a fresh run id (unique external_ids)."""
    run_id = secrets.token_hex(4)
    command = ["wrk", "-t", str(min(WRK_THREADS_MAX, clients)), "-c", str(clients), "-d", f"{seconds}s",
               "--timeout", f"{REQUEST_TIMEOUT_SECONDS}s", "-H", f"Authorization: Bearer {book.key}",
               "-s", str(script), base_url, "--", *(run_id if a == "RUN" else a for a in arguments)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + REQUEST_TIMEOUT_SECONDS + 30,  # noqa: S603
                          check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    return json.loads(line.removeprefix("WRK_RESULT "))  # type: ignore[no-any-return]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- load: httpx -------------------------------------------------------------------------------


async def _httpx_load(base_url: str, book: Book, scenario: str, clients: int, shape: dict[str, Any],  # noqa: PLR0913
                      pid: int, keyed: bool) -> Window:
    """``clients`` concurrent clients, each posting one transfer after another until the window closes."""
    run_id = secrets.token_hex(4)
    pick = _picker(book, scenario)
    window = Window(shape["seconds"])
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {book.key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits,
                                 timeout=REQUEST_TIMEOUT_SECONDS) as client:
        opens = time.perf_counter() + shape["warmup"]
        closes = opens + shape["seconds"]
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
                key = {"Idempotency-Key": body["external_id"]} if keyed else {}
                sent += 1
                began = time.perf_counter()
                try:
                    response = await client.post("/v1/transactions", json=body, headers=key)
                    outcome = str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                ended = time.perf_counter()
                if opens <= ended <= closes:
                    if outcome == "201":
                        latencies.append(ended - began)
                    else:
                        window.failures[outcome] += 1

        await asyncio.gather(mark_open(), *(one_client(n) for n in range(clients)))
        server_cpu, client_cpu = cpu_at_open
        server_now = process_cpu_seconds(pid)
        window.server_cpu = server_now - server_cpu if server_now is not None and server_cpu is not None else None
        window.client_cpu = time.process_time() - client_cpu
    latencies.sort()
    window.completed = len(latencies)
    window.p50, window.p95, window.p99 = (percentile(latencies, f) for f in (0.50, 0.95, 0.99))
    return window


async def _httpx_batch_load(base_url: str, book: Book, shape: dict[str, Any], pid: int) -> Window:
    """``batch_clients`` concurrent clients, each posting one batch after another until the window closes;
    ``completed`` counts the items created by the requests answered in the window."""
    run_id, items = secrets.token_hex(4), shape["batch_items"]
    pick = _picker(book, "random accounts")
    window = Window(shape["seconds"])
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {book.key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        opens = time.perf_counter() + shape["warmup"]
        closes = opens + shape["seconds"]
        cpu_at_open: list[float | None] = []

        async def mark_open() -> None:
            await asyncio.sleep(max(0.0, opens - time.perf_counter()))
            cpu_at_open.extend((process_cpu_seconds(pid), time.process_time()))

        async def one_client(number: int) -> None:
            rng = random.Random(number)  # load shape, not security
            sent = 0
            while time.perf_counter() < closes:
                request_id = f"{run_id}-{number}-{sent}"
                sent += 1
                transactions = []
                for n in range(items):
                    debit, credit = pick(rng)
                    transactions.append({"external_id": f"{request_id}-{n}", "effective_date": DAY,
                                         "postings": [{"account_id": debit, "amount": "1.00"},
                                                      {"account_id": credit, "amount": "-1.00"}]})
                began = time.perf_counter()
                counts: dict[str, int] = {}
                try:
                    response = await client.post("/v1/transactions/batch", headers={"Idempotency-Key": request_id},
                                                 json={"transactions": transactions, "atomic": False})
                    outcome = str(response.status_code)
                    if response.status_code == 200:
                        answer = response.json()
                        counts = {k: int(answer[k]) for k in ("created", "replayed", "rejected")}
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                ended = time.perf_counter()
                if opens <= ended <= closes:
                    window.requests += 1
                    latencies.append(ended - began)
                    window.completed += counts.get("created", 0)
                    if outcome != "200":
                        window.failures[f"{outcome} requests"] += 1
                    for what in ("rejected", "replayed"):
                        if counts.get(what):
                            window.failures[f"{what} items"] += counts[what]

        await asyncio.gather(mark_open(), *(one_client(n) for n in range(shape["batch_clients"])))
        server_cpu, client_cpu = cpu_at_open
        server_now = process_cpu_seconds(pid)
        window.server_cpu = server_now - server_cpu if server_now is not None and server_cpu is not None else None
        window.client_cpu = time.process_time() - client_cpu
    latencies.sort()
    window.p50, window.p95, window.p99 = (percentile(latencies, f) for f in (0.50, 0.95, 0.99))
    return window


def _picker(book: Book, scenario: str) -> Callable[[random.Random], tuple[str, str]]:
    if scenario == "hot account":
        return lambda rng: (rng.choice(book.accounts), book.hot)
    return lambda rng: tuple(rng.sample(book.accounts, 2))  # type: ignore[return-value]


# --- the rows ----------------------------------------------------------------------------------


def _cpu_note(window: Window, tool: str) -> str:
    # The CPU figures also cover the drain of requests still in flight when the window closes.
    cpu = f"server {window.server_cpu / window.seconds:.2f} CPU, " if window.server_cpu is not None else ""
    return f"{cpu}{tool} {window.client_cpu / window.seconds:.2f} CPU"


def _figures(scenario: str, clients: int, accounts: int, window: Window, tool: str,  # noqa: PLR0913
             keyed: bool, rate_limited: bool = False) -> list[Measurement]:
    note = _cpu_note(window, tool)
    hot = scenario == "hot account"
    where = "1 hot + random accounts" if hot else f"{accounts:,} random accounts"
    name = f"API: {clients} clients, {where}, {'Idempotency-Key' if keyed else 'no key'}"
    throughput_target: float | None = HOT_THROUGHPUT_TARGET if hot else THROUGHPUT_TARGET
    p99_target = P99_TARGET_MS if clients == P99_TARGET_CLIENTS and not hot else None
    if rate_limited:
        rate, burst = default_rate_limit()
        name += ", default rate limit"
        throughput_target = p99_target = None  # the limit, not the server, sets the figure
        limited = window.failures.pop("429", 0)
        limit = f"default limit {rate:g} requests/s per tenant (burst {burst})"
        note = (f"{limit} is below the server's rate: value = the 201s; failures: 429 rate_limited x{limited}; {note}"
                if limited else f"{limit}: no 429, the server stayed under it; {note}")
        if tool == "wrk":
            note += "; latencies include the 429s"
    if window.failures:
        note += "; not 201: " + ", ".join(f"{k} x{v}" for k, v in window.failures.most_common(3))
    return [
        Measurement(name, window.completed / window.seconds, "transfers/s", throughput_target, note=note),
        Measurement("  p50 latency", window.p50 * 1000, "ms", higher_is_better=False),
        Measurement("  p95 latency", window.p95 * 1000, "ms", higher_is_better=False),
        Measurement("  p99 latency", window.p99 * 1000, "ms", p99_target, higher_is_better=False),
    ]


def _batch_figures(shape: dict[str, Any], window: Window, tool: str) -> list[Measurement]:
    items, clients = shape["batch_items"], shape["batch_clients"]
    note = f"{window.requests:,} requests; {_cpu_note(window, tool)}"
    if window.failures:
        note += "; not created: " + ", ".join(f"{k} x{v}" for k, v in window.failures.most_common(3))
    name = f"API: batch endpoint, {items:,} per request, {clients} clients, Idempotency-Key"
    return [
        Measurement(name, window.completed / window.seconds, "transfers/s", BATCH_THROUGHPUT_TARGET, note=note),
        Measurement("  p50 latency (request)", window.p50 * 1000, "ms", higher_is_better=False),
        Measurement("  p99 latency (request)", window.p99 * 1000, "ms", higher_is_better=False),
    ]
