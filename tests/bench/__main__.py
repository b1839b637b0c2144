"""Benchmarks: ``make bench`` (or ``python -m tests.bench [--smoke] [--only NAME]``).

Every ``tests/bench/bench_*.py`` module has ``run(smoke: bool) -> list[Measurement]``.
The results are printed as one table with the ratio of each value to its target
(a ratio of 1.00 or more meets the target) and to the physical reference
measured in the same run (``bench_pgbench``: the database's own commit rate),
followed by a description of the machine. Benchmarks report; they never fail a
build on timing: ``--smoke`` runs a small version of each, so CI keeps them
working without depending on the speed of its machine. The exit status is 1
only when a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.bench.measurement import REFERENCE_LATENCY, REFERENCE_TPS, Measurement
from tests.bench.support import describe_machine, load_average

PACKAGE = "tests.bench"
REFERENCE = "bench_pgbench"


def discover(only: str | None, reference: bool = True, skip: Sequence[str] = ()) -> list[str]:
    """Module names to run, the physical reference first (kept with ``--only`` unless ``reference`` is off)."""
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    chosen = [name for name in names if (only is None or only in name) and not any(s in name for s in skip)]
    if reference and REFERENCE in names and REFERENCE not in chosen:
        chosen.append(REFERENCE)
    return sorted(chosen, key=lambda name: (name != REFERENCE, name))


def print_table(measurements: list[Measurement], smoke: bool, machine: list[str]) -> None:
    tps = _reference(measurements, REFERENCE_TPS)
    latency = _reference(measurements, REFERENCE_LATENCY)
    table = Table(title="benchmarks" + (" (smoke: small sizes, numbers are not representative)" if smoke else ""),
                  caption="vs pgbench: rates / pgbench -N TPS, latencies / pgbench -N mean latency (same run)\n"
                  + "\n".join(machine), caption_justify="left")
    for column in ("benchmark", "value", "target", "ratio", "vs pgbench", ""):
        table.add_column(column, justify="left" if column in ("benchmark", "") else "right")
    for m in measurements:
        table.add_row(m.name, m.shown_value, m.shown_target, f"{m.ratio:.2f}" if m.ratio is not None else "-",
                      m.versus(tps, latency), m.verdict)
    Console(width=max(200, Console().width)).print(table)


def _reference(measurements: list[Measurement], role: str) -> float | None:
    return next((m.value for m in measurements if m.role == role and m.value > 0), None)


def run_module(name: str, smoke: bool) -> tuple[list[Measurement], bool]:
    """The module's measurements, or one row saying why it could not run (and ``False``)."""
    began = time.monotonic()
    print(f"running {name}{' (smoke)' if smoke else ''} ...", file=sys.stderr, flush=True)
    try:
        results = importlib.import_module(f"{PACKAGE}.{name}").run(smoke=smoke)
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
        reason = re.sub(r"\s+", " ", f"{type(exc).__name__}: {exc}")[:300]
        print(f"  {name} FAILED: {reason}", file=sys.stderr, flush=True)
        return [Measurement(f"{name} could not run", 0, "", note=reason)], False
    print(f"  {name} took {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    return results, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the benchmarks run, fast")
    parser.add_argument("--only", help="run only benchmark modules whose name contains this (and the reference)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME",
                        help="leave out modules whose name contains this (repeatable), e.g. to stay in a time budget")
    parser.add_argument("--no-reference", action="store_true", help="with --only: do not run pgbench as well")
    options = parser.parse_args(argv)
    began, load_before = time.monotonic(), load_average()
    measurements: list[Measurement] = []
    all_ran = True
    for name in discover(options.only, reference=not options.no_reference, skip=options.skip):
        results, ran = run_module(name, options.smoke)
        measurements += results
        all_ran = all_ran and ran
    machine = [*describe_machine(), f"whole run: {time.monotonic() - began:.0f} s; load average before: {load_before}"]
    print_table(measurements, options.smoke, machine)
    return 0 if all_ran else 1


if __name__ == "__main__":
    sys.exit(main())
