"""The soak's report: printed, and written as JSON under var/soak/."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.soak.checks import Invariant
from tests.soak.cluster import Injected


def render(seed: int, seconds: float, clients: int, sessions_max: int, injected: list[Injected],
           attempts: Counter[tuple[str, str]], finals: Counter[tuple[str, str]], invariants: list[Invariant]) -> str:
    lines = [f"soak seed {seed}: {seconds:g} s, {clients} clients (replay: make soak SOAK_SEED={seed} "
             f"SOAK_SECONDS={seconds:g})", f"most PostgreSQL sessions on the run's database at once: {sessions_max}",
             "", f"faults injected, and restarts of processes that exited by themselves ({len(injected)}):"]
    lines += [f"  {i.at:7.2f}s  {i.kind:<9} {i.target:<8} {i.length:5.2f}s  {i.detail}"
              for i in sorted(injected, key=lambda i: i.at)]
    lines += ["", "requests (every attempt, by kind and outcome):"]
    for kind in sorted({k for k, _ in attempts}):
        outcomes = ", ".join(f"{o} x{n}" for (k, o), n in sorted(attempts.items()) if k == kind)
        lines.append(f"  {kind:<10} {sum(n for (k, _), n in attempts.items() if k == kind):6d}  {outcomes}")
    lines += ["", "writes by final answer:"]
    for kind in sorted({k for k, _ in finals}):
        outcomes = ", ".join(f"{o} x{n}" for (k, o), n in sorted(finals.items()) if k == kind)
        lines.append(f"  {kind:<10} {outcomes}")
    lines += ["", "invariants:"]
    for invariant in invariants:
        lines.append(f"  [{'held' if invariant.held else 'FAILED'}] {invariant.name}")
        lines.append(f"         {invariant.evidence}")
    failed = [i.name for i in invariants if not i.held]
    lines += ["", f"soak seed {seed}: " + (f"{len(failed)} invariant(s) FAILED" if failed else
                                           f"all {len(invariants)} invariants held")]
    return "\n".join(lines)


def write_json(path: Path, seed: int, seconds: float, injected: list[Injected], attempts: Counter[tuple[str, str]],
               finals: Counter[tuple[str, str]], invariants: list[Invariant]) -> None:
    document: dict[str, Any] = {
        "seed": seed, "seconds": seconds,
        "faults": [vars(i) for i in injected],
        "attempts": [{"kind": k, "outcome": o, "count": n} for (k, o), n in sorted(attempts.items())],
        "writes": [{"kind": k, "status": o, "count": n} for (k, o), n in sorted(finals.items())],
        "invariants": [{"name": i.name, "held": i.held, "evidence": i.evidence} for i in invariants],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
