"""Merkle proofs (issue 18): forged proofs rejected, the tree follower's rate, and serving proofs from a large tree.

**Forged proofs**: 500,000 mutated proofs (at least 100,000 asked), every one
rejected. Not a speed figure: the fuzz run the unit tests are too short for. Honest
inclusion and consistency proofs over random logs of up to 4,096 leaves (every
size equally likely) are bent every way ``tests/support/proof_mutations.py``
knows (byte flips, swapped, dropped or added entries, wrong indexes, sizes and
old roots) and each must be refused by ``domain/merkle.py``. The target is all
of them: a single false accept shows as BELOW TARGET, with what was accepted.

**Forged bundles**: the same for whole proof bundles as ``invario proof verify``
reads them (``domain/proof_bundle.py``), at least 100,000: over random logs of
8 to 600 events, each member's inclusion proof forged every way above (a forged
size or root comes with a checkpoint the honest key signed: the log itself
lying), every event document changed (a value, a name, the type, an event
repeated, another transaction's event added, members dropped or added), and the
saved file with one byte replaced (edits that leave the same JSON document, or
no JSON at all, are not counted). Target: every one refused.

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
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

from domain.proof_bundle import VerifierKey
from infrastructure.signing import ed25519_signature_valid
from tests.bench.proof_serving import serving_rows
from tests.bench.measurement import Measurement
from tests.bench.support import on_each_store
from tests.support.proof_mutations import (
    BundleLog,
    RandomLog,
    bundle_claim_mutations,
    bundle_document_mutations,
    bundle_false_accepts,
    false_accepts,
    mutated_claims,
    text_mutations,
)

FULL_MUTATIONS = 500_000  # issue 18 asks for at least 100,000; 500,000 take about 8 s
SMOKE_MUTATIONS = 2_000
LOG_SIZE = 4_096
FULL_BUNDLES = 100_000
SMOKE_BUNDLES = 1_000
BUNDLE_LOG_SIZES = (8, 600)
TEXT_EDITS_PER_LOG = 200


def run(smoke: bool) -> list[Measurement]:
    return [*_forged_proofs(smoke), *_forged_bundles(smoke),
            *on_each_store("proofs", lambda store, url: serving_rows(store, url, smoke))]


def _seed() -> int:
    return int(os.environ.get("INVARIO_BENCH_PROOF_SEED", time.time_ns() % 2**32))


def _forged_proofs(smoke: bool) -> list[Measurement]:
    wanted = SMOKE_MUTATIONS if smoke else FULL_MUTATIONS
    seed = _seed()
    began = time.monotonic()
    log = RandomLog.of(LOG_SIZE, seed)
    # Proofs are drawn until enough mutations are made; no run needs anywhere near this many.
    checked, accepted = false_accepts(itertools.islice(mutated_claims(log, proofs=10**9), wanted))
    return [_rejections_row("Merkle proofs: mutated proofs", "proofs", checked, accepted, seed, began)]


def _rejections_row(what: str, unit: str, checked: int, accepted: list[str], seed: int, began: float) -> Measurement:
    """Every forgery must be refused: the target is all of them; the first false accepts are printed."""
    elapsed = time.monotonic() - began
    for claim in accepted[:10]:
        print(f"  FALSE ACCEPT (seed {seed}): {claim}", file=sys.stderr, flush=True)
    rejected = checked - len(accepted)
    note = f"seed {seed}, {elapsed:.1f} s" + (f"; {len(accepted)} FALSE ACCEPTS" if accepted else "")
    return Measurement(f"{what} rejected: {rejected:,} of {checked:,}", rejected, unit, target=checked, note=note)


def _forged_bundles(smoke: bool) -> list[Measurement]:
    wanted = SMOKE_BUNDLES if smoke else FULL_BUNDLES
    seed = _seed()
    rng = random.Random(seed)
    began = time.monotonic()
    checked, accepted = 0, []
    while checked < wanted:  # each log gives a few hundred forgeries; bounded by ``wanted``
        bundles = BundleLog.of(rng.randrange(*BUNDLE_LOG_SIZES), rng.getrandbits(32))
        size = rng.randrange(max(bundles.member_indexes) + 1, len(bundles.documents) + 1)  # covers the members
        forged = itertools.chain(bundle_claim_mutations(bundles, size), bundle_document_mutations(bundles, size),
                                 _edited_files(bundles, size, rng))
        count, found = bundle_false_accepts(itertools.islice(forged, wanted - checked),
                                            VerifierKey(bundles.public_key, bundles.origin), ed25519_signature_valid)
        checked += count
        accepted += [f"log of {len(bundles.documents)}, size {size}: {what}" for what in found]
    return [_rejections_row("Proof bundles: forged bundles", "bundles", checked, accepted, seed, began)]


def _edited_files(bundles: BundleLog, size: int, rng: random.Random) -> Iterator[tuple[str, Any]]:
    """The saved bundle with one byte replaced; only edits that still parse to another document count."""
    text = json.dumps(bundles.bundle(size), indent=2, ensure_ascii=False)
    original = json.loads(text)
    for what, edited in text_mutations(text, rng, TEXT_EDITS_PER_LOG):
        try:
            document = json.loads(edited)
        except ValueError:
            continue  # the CLI refuses it as "not JSON"
        if document != original:
            yield what, document
