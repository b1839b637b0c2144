"""Merkle proofs (issue 18): forged proofs rejected, the tree follower's rate, and serving proofs from a large tree.

**Forged proofs**: 500,000 mutated proofs (at least 100,000 asked), every one
rejected. Not a speed figure: the fuzz run the unit tests are too short for. Honest
inclusion and consistency proofs over random logs of up to 4,096 leaves (every
size equally likely) are bent every way ``tests/support/proof_mutations.py``
knows (byte flips, swapped, dropped or added entries, wrong indexes, sizes and
old roots) and each must be refused by ``domain/merkle.py``. The target is all
of them: a single false accept shows as BELOW TARGET, with what was accepted.

Each run draws a new seed, shown in the row, so repeated runs cover new
proofs; ``INVARIO_BENCH_PROOF_SEED`` replays one.

**The tree follower** (``MerkleTreeProjection`` under a ``Follower``, as the
worker runs it): events/s applied from position 0 over a history written by
``ledger_data.populate``, reading and decoding the log included. Target: the
write side's own target, 10,000 transfers/s in-process, i.e. 30,000 events/s
(a two-posting transfer is three events); the fastest write rate measured so
far is about 2,800 transfers/s (docs/performance.md), 8,400 events/s.

**Serving proofs**: ``GET /v1/transactions/{id}/proof`` through the app
(in-process ``TestClient``, auth and the tenant check included) for random
transactions, against a checkpoint of a tree grown to ``LARGE_TREE`` leaves:
the real history's leaves first, then synthetic leaves and their complete
subtrees written in bulk (an inclusion path's length and the rows it reads
depend only on the tree's size, so the route does exactly the work it would do
on a log that long, in a fraction of the set-up time). Target (issue 18): p99
≤ 10 ms on a log of 1,000,000 events. The size row is one event's inclusion
path at that size and at 10,000,000 (target ≤ 1 KB).
"""

from __future__ import annotations

import itertools
import os
import sys
import time

from tests.bench.proof_serving import serving_rows
from tests.bench.measurement import Measurement
from tests.bench.support import on_each_store
from tests.support.proof_mutations import RandomLog, false_accepts, mutated_claims

FULL_MUTATIONS = 500_000  # issue 18 asks for at least 100,000; 500,000 take about 8 s
SMOKE_MUTATIONS = 2_000
LOG_SIZE = 4_096


def run(smoke: bool) -> list[Measurement]:
    return [*_forged_proofs(smoke), *on_each_store("proofs", lambda store, url: serving_rows(store, url, smoke))]


def _forged_proofs(smoke: bool) -> list[Measurement]:
    wanted = SMOKE_MUTATIONS if smoke else FULL_MUTATIONS
    seed = int(os.environ.get("INVARIO_BENCH_PROOF_SEED", time.time_ns() % 2**32))
    began = time.monotonic()
    log = RandomLog.of(LOG_SIZE, seed)
    # Proofs are drawn until enough mutations are made; no run needs anywhere near this many.
    checked, accepted = false_accepts(itertools.islice(mutated_claims(log, proofs=10**9), wanted))
    elapsed = time.monotonic() - began
    for claim in accepted[:10]:
        print(f"  FALSE ACCEPT (seed {seed}): {claim}", file=sys.stderr, flush=True)
    rejected = checked - len(accepted)
    note = f"seed {seed}, {elapsed:.1f} s" + (f"; {len(accepted)} FALSE ACCEPTS" if accepted else "")
    return [Measurement(f"Merkle proofs: mutated proofs rejected: {rejected:,} of {checked:,}", rejected, "proofs",
                        target=checked, note=note)]
