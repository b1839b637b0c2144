"""The physical reference: how fast this PostgreSQL server commits, measured in the same run.

``pgbench -N`` (the "simple update" script: three updates and an insert per
commit, without the contended branch and teller rows) on a throwaway database,
so that every other figure can be read as a fraction of what the database
itself can do on this machine at this moment. ``python -m tests.bench`` runs
this module first and divides every rate by its TPS (latencies by its mean
latency) in the "vs pgbench" column. Without pgbench the row says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.bench.measurement import REFERENCE_LATENCY, REFERENCE_TPS, Measurement
from tests.bench.support import COMMAND_TIMEOUT_SECONDS, libpq_environment, throwaway_postgres

FULL = {"clients": 8, "threads": 2, "seconds": 10}
SMOKE = {"clients": 2, "threads": 1, "seconds": 1}
NAME = "pgbench -N (physical reference)"


def run(smoke: bool) -> list[Measurement]:
    shape = SMOKE if smoke else FULL
    label = f"{NAME}, {shape['clients']} clients"
    executable = shutil.which("pgbench")
    if executable is None:
        return [Measurement(label, 0, "tps", note="pgbench not found on PATH: no physical reference "
                            "(install the PostgreSQL client tools)", role=REFERENCE_TPS)]
    with throwaway_postgres() as found:
        if found is None:
            return [Measurement(label, 0, "tps", note="skipped: no PostgreSQL server found", role=REFERENCE_TPS)]
        env = libpq_environment(found[1])
        _pgbench(executable, env, "-i", "-q", "-s", "1")
        output = _pgbench(executable, env, "-N", "-n", "-c", str(shape["clients"]), "-j", str(shape["threads"]),
                          "-T", str(shape["seconds"]))
    tps = _number(r"tps = ([\d.]+)", output)
    latency = _number(r"latency average = ([\d.]+) ms", output)
    return [
        Measurement(label, tps, "tps", note="commits/s of the database alone", role=REFERENCE_TPS),
        Measurement("  pgbench -N mean latency", latency, "ms", higher_is_better=False, role=REFERENCE_LATENCY),
    ]


def _pgbench(executable: str, env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run([executable, *arguments], env=env, capture_output=True, text=True,  # noqa: S603
                          timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(arguments)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout + done.stderr


def _number(pattern: str, output: str) -> float:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"pgbench printed no {pattern!r}: {output[-500:]}")
    return float(match.group(1))
