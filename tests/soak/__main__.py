"""``python -m tests.soak [--seed N] [--seconds S] [--clients C]`` (``make soak``): see docs/soak.md.

Exit status: 0 every invariant held, 1 one failed, 2 the soak could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tests.soak.schedule import Fault, plan_faults

CLIENTS_DEFAULT = 8
CLIENTS_MAX = 64
SECONDS_MAX = 24 * 3600
RESOLVE_DEADLINE_SECONDS = 60.0
REPORT_PATH = Path("var/soak/report.json")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="replay this seed (default: a new random one)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients write (default 60)")
    parser.add_argument("--clients", type=int, default=CLIENTS_DEFAULT, help=f"client threads (1-{CLIENTS_MAX})")
    parser.add_argument("--raw-blackholes", action="store_true",
                        help="heal a blackhole without resetting the connections that lived through it "
                        "(their discarded bytes are lost for good; see docs/soak.md)")
    parser.add_argument("--report", type=Path, default=REPORT_PATH, help=f"JSON report (default {REPORT_PATH})")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.clients <= CLIENTS_MAX or not 1 <= arguments.seconds <= SECONDS_MAX:
        parser.error(f"--clients is 1-{CLIENTS_MAX}, --seconds 1-{SECONDS_MAX}")
    return arguments


def main(argv: list[str]) -> int:
    arguments = _arguments(argv)
    seed = arguments.seed if arguments.seed is not None else secrets.randbelow(2**32)
    print(f"soak seed {seed}", flush=True)  # first, so that even a crashed run can be replayed
    faults = plan_faults(seed, arguments.seconds)
    print(f"{len(faults)} faults planned over {arguments.seconds:g} s, {arguments.clients} clients", flush=True)
    try:
        return _run(seed, arguments, faults)
    except Exception as exc:  # noqa: BLE001 - the soak could not run: not an invariant's failure
        print(f"soak seed {seed}: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _run(seed: int, arguments: argparse.Namespace, faults: list[Fault]) -> int:
    # Imported once the seed is printed: they load the application. The e2e helpers import
    # starlette's TestClient, which warns about httpx; the soak does not use it.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from tests.soak.checks import Checker
    from tests.soak.cluster import Cluster, FaultInjector
    from tests.soak.report import render, write_json
    from tests.soak.traffic import Client, Clock, Model, tally
    from tests.support import postgres

    with contextlib.ExitStack() as stack:
        server_url = postgres.locate_server(stack).url
        if server_url is None:
            print("soak: no PostgreSQL server (see tests/support/postgres.py)", file=sys.stderr)
            return 2
        work_dir = Path(tempfile.mkdtemp(prefix="invario-soak-"))
        cluster = stack.enter_context(Cluster(server_url, work_dir))
        cluster.start("serve")
        cluster.start("worker")
        print(f"serve and worker running (logs in {work_dir})", flush=True)
        clock, model = Clock(), Model()
        clients = [Client(n, seed, cluster.base_url, cluster.book.key, cluster.book.wallets, model, clock)
                   for n in range(arguments.clients)]
        injector = FaultInjector(cluster, faults, clock.started, arguments.raw_blackholes)
        _drive(clients, injector, clock, arguments.seconds)
        invariants = Checker(cluster, injector, clients, model).run()
        attempts, finals = tally(clients)
        print(render(seed, arguments.seconds, arguments.clients, injector.sessions_max, injector.injected, attempts,
                     finals, invariants))
        write_json(arguments.report, seed, arguments.seconds, injector.injected, attempts, finals, invariants)
        for client in clients:
            client.close()
    held = all(i.held for i in invariants)
    if held:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"report: {arguments.report}" + ("" if held else f"; the processes' logs: {work_dir}"))
    return 0 if held else 1


def _drive(clients: list[Any], injector: Any, clock: Any, seconds: float) -> None:
    """Run the clients and the faults for ``seconds``, then heal, and give every write its final answer."""
    for client in clients:
        client.stop_at = seconds
        client.start()
    injector.start()
    time.sleep(max(0.0, seconds - clock.now()))
    for client in clients:
        client.join(30)
    injector.stop()  # heals the network, starts what is down
    deadline = time.monotonic() + RESOLVE_DEADLINE_SECONDS
    for client in clients:
        op = client.unresolved
        if op is not None and client.send(op, lambda: time.monotonic() < deadline):
            client.unresolved = None
    print(f"clients stopped at {clock.now():.1f} s; faults healed", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
