"""The faults of a run, drawn from its seed before it starts: the same seed, the same schedule.

Two independent lanes, so that faults combine: the network lane (the proxy
between the processes and PostgreSQL) and the process lane (``invario serve`` and
``invario worker`` killed or stopped, then started again). Pure: no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NETWORK_KINDS = ("refuse", "drop", "blackhole", "pause")
PROCESS_KINDS = ("kill9", "sigterm")
TARGETS = ("serve", "worker")
QUIET_START_SECONDS = 3.0  # the clients get going before the first fault
QUIET_END_SECONDS = 2.0  # the last fault is healed before the clients stop
NETWORK_GAP_SECONDS = (2.0, 8.0)
NETWORK_LENGTH_SECONDS = (0.0, 4.0)  # 0: a drop that only cuts the live connections
PROCESS_GAP_SECONDS = (4.0, 12.0)
PROCESS_DOWNTIME_SECONDS = (0.2, 3.0)
FAULTS_MAX = 10_000  # a bound on the loop, far above what any length of run draws


@dataclass(frozen=True)
class Fault:
    """``at``: seconds after the clients start; ``length``: how long the network stays broken,
    or how long the process stays down before it is started again."""

    at: float
    kind: str
    target: str
    length: float

    def describe(self) -> str:
        return f"{self.at:7.2f}s {self.kind:<9} {self.target:<8} for {self.length:.2f}s"


def plan_faults(seed: int, seconds: float) -> list[Fault]:
    """Every fault of a run of ``seconds``, in the order they begin."""
    rng = random.Random(f"faults-{seed}")
    faults = [*_network_lane(rng, seconds), *_process_lane(rng, seconds)]
    return sorted(faults, key=lambda fault: fault.at)


def _network_lane(rng: random.Random, seconds: float) -> list[Fault]:
    faults, at = [], QUIET_START_SECONDS
    while len(faults) < FAULTS_MAX:
        at += rng.uniform(*NETWORK_GAP_SECONDS)
        kind = rng.choice(NETWORK_KINDS)
        length = round(rng.uniform(*NETWORK_LENGTH_SECONDS), 2)
        if kind != "drop":
            length = max(length, 0.5)
        if at + length > seconds - QUIET_END_SECONDS:
            return faults
        faults.append(Fault(round(at, 2), kind, "database", length))
        at += length
    return faults


def _process_lane(rng: random.Random, seconds: float) -> list[Fault]:
    faults, at = [], QUIET_START_SECONDS
    while len(faults) < FAULTS_MAX:
        at += rng.uniform(*PROCESS_GAP_SECONDS)
        kind, target = rng.choice(PROCESS_KINDS), rng.choice(TARGETS)
        length = round(rng.uniform(*PROCESS_DOWNTIME_SECONDS), 2)
        if at + length > seconds - QUIET_END_SECONDS:
            return faults
        faults.append(Fault(round(at, 2), kind, target, length))
        at += length
    return faults
