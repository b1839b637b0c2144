"""The Merkle tree follower and its signed checkpoints (issue 18): the stored tree is the log's RFC 9162 tree.

Every root, inclusion path and consistency proof read from the stored nodes must
equal the in-memory ``domain.merkle.ProofSource`` over the log's events; a
rebuild reproduces the rows; ``invario verify`` notices a changed node or a
checkpoint whose root the log does not give.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from sqlalchemy import select, update

from domain.merkle import ProofSource, event_leaf_hash, verify_consistency, verify_inclusion
from domain.proof_bundle import VerifierKey, verify_checkpoint
from infrastructure.runtime import Runtime
from infrastructure.signing import SigningKey, ed25519_signature_valid
from projections.following.follower import Follower
from projections.following.rebuild import replay, start_rebuild
from projections.jobs.checkpoints import Checkpointer, CheckpointPolicy, latest_checkpoint, merkle_checkpoints
from projections.jobs.merkle_tree import MerkleTreeProjection, TreeReader, merkle_leaves, merkle_nodes
from projections.jobs.verification import LedgerVerification
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import notifications
from tests.integration.test_global_chain import open_with_schema, post_some

BATCH = 7  # small and odd, so batches never line up with the tree's complete subtrees
KEY = SigningKey.from_setting(base64.b64encode(os.urandom(32)).decode())
ORIGIN = "test.invario/ledger"


def tree_follower(runtime: Runtime, batch_size: int = BATCH) -> Follower:
    return Follower(runtime.ledger, runtime.engine, MerkleTreeProjection(), batch_size)


def logged_leaves(runtime: Runtime) -> list[bytes]:
    return [event_leaf_hash(runtime.ledger.mapper.to_domain_event(n).hash) for n in notifications(runtime.ledger)]


def tree_rows(runtime: Runtime) -> tuple[list[Any], list[Any]]:
    with runtime.engine.connect() as connection:
        leaves = list(connection.execute(select(merkle_leaves).order_by(merkle_leaves.c.leaf_index)))
        nodes = list(connection.execute(select(merkle_nodes).order_by(merkle_nodes.c.level, merkle_nodes.c.node_index)))
    return leaves, nodes


def checkpointer(runtime: Runtime, every_events: int = 1, every_seconds: float = 3600.0) -> Checkpointer:
    return Checkpointer(runtime.engine, KEY, CheckpointPolicy(ORIGIN, every_events, every_seconds))


def test_the_stored_tree_answers_as_the_log_s_own_tree(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 13)
    assert tree_follower(runtime).catch_up() == 3 + 3 * 13
    post_some(runtime.ledger, 4, prefix="more")
    tree_follower(runtime, batch_size=5).catch_up()
    leaves = logged_leaves(runtime)
    reference = ProofSource(leaves)
    with runtime.engine.connect() as connection:
        reader = TreeReader(connection)
        assert reader.size() == len(leaves) == 3 + 3 * 17
        for size in range(1, len(leaves) + 1):
            assert reader.root(size) == reference.root(size)
        size = len(leaves)
        for index in range(size):
            path = reader.inclusion_path(index, size)
            assert path == reference.inclusion_path(index, size)
            verify_inclusion(leaves[index], index, size, path, reader.root(size))
        for first in range(1, size + 1):
            proof = reader.consistency_proof(first, size)
            assert proof == reference.consistency_proof(first, size)
            verify_consistency(first, size, reader.root(first), reader.root(size), proof)
        positions = [row.position for row in connection.execute(select(merkle_leaves.c.position)
                                                                .order_by(merkle_leaves.c.leaf_index))]
    assert positions == [n.id for n in notifications(runtime.ledger)]


def test_each_leaf_names_its_transaction(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 2)
    tree_follower(runtime).catch_up()
    leaves, _ = tree_rows(runtime)
    # The tenant and two accounts' openings belong to no transaction; each transfer is its Posted
    # event and its two accounts' entries.
    named = [row.transaction_id for row in leaves]
    assert named[:3] == [None, None, None]
    assert len(set(named[3:6])) == 1 and len(set(named[6:9])) == 1 and named[3] != named[6]


def test_a_rebuild_writes_the_same_rows(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 9)
    tree_follower(runtime).catch_up()
    before = tree_rows(runtime)
    start_rebuild(runtime, [MerkleTreeProjection.name])
    assert tree_rows(runtime) == ([], [])
    replay(runtime, [MerkleTreeProjection.name], batch_size=4)
    assert tree_rows(runtime) == before


def test_checkpoints_are_signed_notes_of_the_tree_head(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    signer = checkpointer(runtime, every_events=10)
    assert signer.catch_up() == 0
    with runtime.engine.connect() as connection:
        assert latest_checkpoint(connection) is None  # an empty tree is not signed
    post_some(runtime.ledger, 1)
    tree_follower(runtime).catch_up()
    signer.catch_up()
    post_some(runtime.ledger, 2, prefix="more")  # 6 more events: fewer than 10, not due yet
    tree_follower(runtime).catch_up()
    signer.catch_up()
    with runtime.engine.connect() as connection:
        first = latest_checkpoint(connection)
        assert first is not None and first.size == 6
        post_some(runtime.ledger, 4, prefix="again")
        tree_follower(runtime).catch_up()
        signer.catch_up()
        latest = latest_checkpoint(connection)
        assert latest is not None and latest.size == 6 + 6 + 12
        assert latest.root == TreeReader(connection).root(latest.size)
        assert latest.position == runtime.ledger.recorder.max_notification_id()
    checked = verify_checkpoint(latest.note, VerifierKey(KEY.public_key_raw), ed25519_signature_valid)
    assert (checked.origin, checked.size, checked.root) == (ORIGIN, latest.size, latest.root)
    assert latest.note.startswith(f"{ORIGIN}\n{latest.size}\n{base64.b64encode(latest.root).decode()}\n\n\u2014 {ORIGIN} ")


def test_a_checkpoint_is_signed_after_its_interval_even_below_the_event_count(
    database_url: str, open_rt: OpenRuntime
) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 1)
    tree_follower(runtime).catch_up()
    checkpointer(runtime, every_events=1000).catch_up()
    post_some(runtime.ledger, 1, prefix="more")
    tree_follower(runtime).catch_up()
    checkpointer(runtime, every_events=1000, every_seconds=3600).catch_up()
    checkpointer(runtime, every_events=1000, every_seconds=0.001).catch_up()
    with runtime.engine.connect() as connection:
        sizes = list(connection.execute(select(merkle_checkpoints.c.tree_size).order_by(merkle_checkpoints.c.tree_size)))
    assert [row[0] for row in sizes] == [6, 9]


def verified(runtime: Runtime) -> Any:
    return LedgerVerification(runtime.ledger, runtime.engine, use_checkpoint=False).run()


def test_verify_recomputes_the_tree_and_its_checkpoints(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 5)
    tree_follower(runtime).catch_up()
    checkpointer(runtime).catch_up()
    post_some(runtime.ledger, 5, prefix="more")
    tree_follower(runtime).catch_up()
    checkpointer(runtime).catch_up()
    assert verified(runtime).intact

    with runtime.engine.begin() as connection:
        connection.execute(update(merkle_checkpoints).where(merkle_checkpoints.c.tree_size == 18)
                           .values(root_hash=bytes(32)))
    report = verified(runtime)
    assert not report.intact
    assert [(d.chain, d.kind, d.sequence) for d in report.damages] == [("merkle_tree", "changed", 18)]

    with runtime.engine.begin() as connection:
        connection.execute(update(merkle_checkpoints).where(merkle_checkpoints.c.tree_size == 18)
                           .values(root_hash=TreeReader(connection).root(18)))
        connection.execute(update(merkle_nodes).where(merkle_nodes.c.level == 1, merkle_nodes.c.node_index == 0)
                           .values(node_hash=bytes(32)))
    report = verified(runtime)
    assert [(d.chain, d.kind, d.sequence) for d in report.damages] == [("merkle_tree", "changed", 2)]


def test_verify_names_a_changed_leaf_and_a_tree_longer_than_the_log(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 4)
    tree_follower(runtime).catch_up()
    with runtime.engine.begin() as connection:
        connection.execute(update(merkle_leaves).where(merkle_leaves.c.leaf_index == 6).values(leaf_hash=bytes(32)))
        connection.execute(merkle_leaves.insert().values(leaf_index=15, position=10_000, leaf_hash=bytes(32)))
    found = [(d.chain, d.kind, d.sequence) for d in verified(runtime).damages]
    assert ("merkle_tree", "changed", 7) in found
    assert ("merkle_tree", "missing", 16) in found  # beyond the log's 15 events


def test_a_tree_being_rebuilt_is_no_damage_but_its_checkpoints_are_still_checked(
    database_url: str, open_rt: OpenRuntime
) -> None:
    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 3)
    tree_follower(runtime).catch_up()
    checkpointer(runtime).catch_up()
    start_rebuild(runtime, [MerkleTreeProjection.name])  # truncated, replay not started
    assert verified(runtime).intact
    with runtime.engine.begin() as connection:
        connection.execute(update(merkle_checkpoints).values(root_hash=bytes(32)))
    assert [(d.chain, d.kind) for d in verified(runtime).damages] == [("merkle_tree", "changed")]


def test_the_worker_s_tree_follower_leaves_a_rebuild_to_its_replay(database_url: str, open_rt: OpenRuntime) -> None:
    from interfaces.bootstrap import build_merkle_tree_follower
    from projections.following.registry import REBUILT_BY_ALL

    runtime = open_with_schema(open_rt, database_url)
    post_some(runtime.ledger, 5)
    worker_tree = build_merkle_tree_follower(runtime, BATCH)
    worker_tree.catch_up()
    before = tree_rows(runtime)
    start_rebuild(runtime, REBUILT_BY_ALL)
    assert worker_tree.process_batch() == 0  # the rebuild owns it: a race would cut the replay short
    replay(runtime, REBUILT_BY_ALL, batch_size=4)
    assert tree_rows(runtime) == before
    head = runtime.ledger.recorder.max_notification_id()
    assert set(worker_tree.positions().values()) == {head}
