"""The serving half of ``bench_proofs``: the tree follower's rate, and proof latency on a large tree.

Kept apart from the fuzz run (``bench_proofs``), whose docstring describes
both; not a ``bench_*`` module of its own.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import time
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from domain.merkle import HASH_SIZE, RunningRoot
from infrastructure.runtime import Runtime, open_runtime
from infrastructure.settings import Settings
from interfaces.bootstrap import build_checkpointer, build_followers, open_access
from interfaces.http.app import create_app
from projections.following.follower import Follower
from projections.following.schema import ensure_schema
from projections.jobs.global_chain import GlobalChainProjection
from projections.jobs.merkle_tree import MerkleTreeProjection, merkle_leaves, merkle_nodes
from projections.read_models.transactions import read_transactions
from tests.bench.ledger_data import populate
from tests.bench.measurement import Measurement
from tests.bench.support import percentile

FULL = {"transactions": 20_000, "large_tree": 1_000_000, "requests": 1_000}
SMOKE = {"transactions": 300, "large_tree": 5_000, "requests": 50}
FOLLOWER_TARGET_EVENTS_PER_SECOND = 30_000  # the write side's target: 10,000 transfers/s, 3 events each
P99_TARGET_MS = 10.0
PROOF_BYTES_TARGET = 1024
BULK_ROWS = 50_000
PEPPER = "bench-pepper-not-a-secret-0123456789abcdef0123"


def serving_rows(store: str, url: str, smoke: bool) -> list[Measurement]:
    shape = SMOKE if smoke else FULL
    settings = Settings(database_url=url, signing_key=base64.b64encode(os.urandom(32)).decode(), auth_pepper=PEPPER,
                        rate_limit_per_second=0, checkpoint_every_events=1)
    runtime = open_runtime(settings)
    try:
        ensure_schema(runtime.engine)
        events = populate(runtime.ledger, shape["transactions"], seed=18, tenant="proofs")
        rate, chain_rate = (_follow(runtime, projection, settings.follower_batch_size)
                            for projection in (MerkleTreeProjection(), GlobalChainProjection()))
        for follower in build_followers(runtime):  # the read models: the route checks the transaction's tenant
            follower.catch_up()
        size = _grow_tree(runtime.engine, shape["large_tree"])
        checkpointer = build_checkpointer(runtime)
        assert checkpointer is not None
        checkpointer.catch_up()
        latencies, path_entries = _proof_latencies(runtime, shape["requests"])
    finally:
        runtime.close()
    latencies.sort()
    return [
        Measurement(f"{store}: Merkle tree follower, {events:,} events", rate, "events/s",
                    FOLLOWER_TARGET_EVENTS_PER_SECOND, note=f"batch {settings.follower_batch_size}, reads and decodes "
                    f"the log; the global chain's follower on it: {chain_rate:,.0f} events/s; fastest write rate "
                    "measured ~8,400 events/s"),
        Measurement(f"{store}: GET /v1/transactions/{{id}}/proof p99, tree of {size:,} leaves",
                    percentile(latencies, 0.99), "ms", P99_TARGET_MS, higher_is_better=False,
                    note=f"p50 {percentile(latencies, 0.5):.2f} ms, {len(latencies):,} requests, 3 events each"),
        Measurement(f"{store}: inclusion path of one event, tree of {size:,} leaves", path_entries * HASH_SIZE,
                    "bytes", PROOF_BYTES_TARGET, higher_is_better=False,
                    note=f"at 10,000,000 leaves: {(10_000_000 - 1).bit_length() * HASH_SIZE} bytes (24 hashes)"),
    ]


def _follow(runtime: Runtime, projection: Any, batch_size: int) -> float:
    """Events/s of a follower of ``projection`` from position 0 to the head, as the worker runs it."""
    began = time.perf_counter()
    applied = Follower(runtime.ledger, runtime.engine, projection, batch_size).catch_up()
    return applied / (time.perf_counter() - began)


def _grow_tree(engine: Engine, size: int) -> int:
    """Append synthetic leaves (and the complete subtrees they close) after the real ones, up to ``size``."""
    with engine.connect() as connection:
        real = [bytes(h) for (h,) in connection.execute(
            select(merkle_leaves.c.leaf_hash).order_by(merkle_leaves.c.leaf_index))]
    running = RunningRoot()
    for leaf in real:
        running.append(leaf)
    leaves: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for index in range(len(real), size):
        leaf = hashlib.sha256(index.to_bytes(8, "big")).digest()
        leaves.append({"leaf_index": index, "position": -1 - index, "transaction_id": None, "leaf_hash": leaf})
        nodes.extend({"level": level, "node_index": at, "node_hash": digest}
                     for level, at, digest in running.append(leaf) if level > 0)
        if len(leaves) >= BULK_ROWS:
            _store(engine, leaves, nodes)
            leaves, nodes = [], []
    _store(engine, leaves, nodes)
    return max(size, len(real))


def _store(engine: Engine, leaves: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        if leaves:
            connection.execute(insert(merkle_leaves), leaves)
        if nodes:
            connection.execute(insert(merkle_nodes), nodes)


def _proof_latencies(runtime: Runtime, requests: int) -> tuple[list[float], int]:
    with runtime.engine.connect() as connection:
        rows = connection.execute(select(read_transactions.c.tenant_id, read_transactions.c.transaction_id)).all()
    tenant_id = UUID(rows[0].tenant_id)
    key = open_access(runtime).issue_key(tenant_id, ("read",)).secret
    headers = {"Authorization": f"Bearer {key}"}
    chosen = random.Random(18).choices([row.transaction_id for row in rows], k=requests)
    latencies, path_entries = [], 0
    with TestClient(create_app(runtime)) as client:
        client.get(f"/v1/transactions/{chosen[0]}/proof", headers=headers)  # warm-up
        for transaction_id in chosen:
            began = time.perf_counter()
            response = client.get(f"/v1/transactions/{transaction_id}/proof", headers=headers)
            latencies.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.text
            path_entries = len(response.json()["events"][0]["inclusion_path"])
    return latencies, path_entries
