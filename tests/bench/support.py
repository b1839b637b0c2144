"""What several benchmarks share: throwaway databases, settings from the environment, the machine.

Not a benchmark itself (no ``bench_`` prefix), so discovery leaves it alone.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.bench.measurement import Measurement
from tests.support import postgres

REPOSITORY = Path(__file__).resolve().parents[2]
PEPPER = "bench-pepper-do-not-use-anywhere-0123456789"
COMMAND_TIMEOUT_SECONDS = 120


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[tuple[str, str] | None]:
    """``(server_url, database_url)`` of a fresh database dropped afterwards, or ``None`` without a server."""
    with contextlib.ExitStack() as stack:
        found = postgres.locate_server(stack)
        if found.url is None:
            yield None
            return
        url = postgres.create_database(found.url)
        try:
            yield found.url, url
        finally:
            postgres.drop_database(found.url, url)


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """The URL of a fresh database dropped afterwards, or ``None`` without a server."""
    with throwaway_postgres() as found:
        yield found[1] if found is not None else None


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="invario-bench-") as directory:
        yield f"sqlite:///{directory}/bench.db"


def on_each_store(what: str, measure: Callable[[str, str], list[Measurement]]) -> list[Measurement]:
    """``measure(store, url)`` on a throwaway PostgreSQL database, then on a SQLite file;
    a row saying so when no PostgreSQL server is found."""
    results: list[Measurement] = []
    for store, database in (("PostgreSQL", postgres_database), ("SQLite", sqlite_database)):
        with database() as url:
            if url is None:
                results.append(Measurement(f"{what} on {store}", 0, "events/s", note="skipped: no server found"))
                continue
            results += measure(store, url)
    return results


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block (settings are read from the environment)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def libpq_environment(database_url: str) -> dict[str, str]:
    """The PG* variables that point libpq tools (pgbench, psql) at ``database_url``."""
    parts = urlsplit(database_url)
    values = {"PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432),
              "PGUSER": unquote(parts.username or "postgres"), "PGDATABASE": unquote(parts.path.lstrip("/"))}
    if parts.password:
        values["PGPASSWORD"] = unquote(parts.password)
    return {**os.environ, **values}


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of another process and its live children (Linux ``/proc``), or ``None`` elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12])
    for child in _children(pid):  # uvicorn's worker processes
        try:
            child_fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(child_fields[11]) + int(child_fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


# --- the machine ---------------------------------------------------------------------------------


def describe_machine() -> list[str]:
    """Lines naming what the figures were measured on."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"machine: {os.cpu_count()} cores ({_cpu_model()}), {memory:.1f} GiB RAM, {platform.platform(terse=True)}, "
        f"load average {load_average()}",
        f"python {platform.python_version()} ({platform.python_implementation()}); "
        f"PostgreSQL {postgres_version() or 'not found'}; {pgbench_version() or 'pgbench not found'}",
    ]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    return platform.machine()


def postgres_version() -> str | None:
    with contextlib.ExitStack() as stack:
        found = postgres.locate_server(stack)
        if found.url is None:
            return None
        with postgres.connect(found.url) as connection:
            row = connection.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else None


def pgbench_version() -> str | None:
    executable = shutil.which("pgbench")
    if executable is None:
        return None
    done = subprocess.run([executable, "--version"], capture_output=True, text=True,  # noqa: S603
                          timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    return done.stdout.strip() or None
