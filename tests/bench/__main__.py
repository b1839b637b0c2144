"""Benchmarks: ``make bench`` (or ``python -m tests.bench [--smoke] [--only NAME]``).

Every ``tests/bench/bench_*.py`` module has ``run(smoke: bool) -> list[Measurement]``.
The results are printed as one table with the ratio of each value to its target
(a ratio of 1.00 or more meets the target). Benchmarks report; they never fail a
build on timing: ``--smoke`` runs a small version of each, so CI keeps them
working without depending on the speed of its machine.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.bench.measurement import Measurement

PACKAGE = "tests.bench"


def discover(only: str | None) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    return [name for name in names if only is None or only in name]


def print_table(measurements: list[Measurement], smoke: bool) -> None:
    table = Table(title="benchmarks" + (" (smoke: small sizes, numbers are not representative)" if smoke else ""))
    for column in ("benchmark", "value", "target", "ratio", ""):
        table.add_column(column, justify="left" if column in ("benchmark", "") else "right")
    for m in measurements:
        table.add_row(m.name, m.shown_value, m.shown_target, f"{m.ratio:.2f}" if m.ratio is not None else "-",
                      m.verdict)
    Console(width=max(120, Console().width)).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the benchmarks run, fast")
    parser.add_argument("--only", help="run only benchmark modules whose name contains this")
    options = parser.parse_args(argv)
    measurements: list[Measurement] = []
    for name in discover(options.only):
        began = time.monotonic()
        module = importlib.import_module(f"{PACKAGE}.{name}")
        print(f"running {name}{' (smoke)' if options.smoke else ''} ...", file=sys.stderr, flush=True)
        measurements += module.run(smoke=options.smoke)
        print(f"  {name} took {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    print_table(measurements, options.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
