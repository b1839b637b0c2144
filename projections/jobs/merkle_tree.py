"""The Merkle tree over the global log (issue 18): leaves, complete subtrees, and proofs read from them.

Leaf *i* is the *i*-th event of the log (the global chain's sequence *i* + 1),
and its leaf hash is ``domain.merkle.event_leaf_hash`` of the event's own hash
(SHA-256 of its canonical encoding; docs/proofs.md says why). The follower of
``MerkleTreeProjection`` stores, in the same transaction as its tracking position:

- ``merkle_leaves``: one row per leaf, with its log position and the
  transaction the event belongs to (so a transaction's proof finds its leaves);
- ``merkle_nodes``: the hash of every *complete* subtree of two or more leaves
  (level L, index i: leaves i*2**L .. (i+1)*2**L - 1), written once, when its
  last leaf arrives, and never changed.

Any root, inclusion path or consistency proof is then O(log n) stored hashes:
the RFC's recursion only ever descends into complete subtrees and the right
edge, and a complete subtree is one row. ``TreeReader`` asks for exactly those
rows in one query (a dry run of ``domain.merkle.ProofSource`` names them).
Appending needs only the right edge (the *frontier*: one complete subtree per
set bit of the size), read once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    and_,
    insert,
    inspect,
    literal,
    or_,
    select,
    union_all,
)

from domain.integrity import CHANGED, MERKLE_TREE, MISSING, CheckedEvent, Damage
from domain.merkle import HASH_SIZE, ProofSource, RunningRoot, event_leaf_hash, node_hash
from infrastructure.schema import metadata
from projections.following.follower import LoggedEvent, read_tracking

merkle_leaves = Table(
    "merkle_leaves",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False, unique=True),
    # The transaction the event belongs to (its own events, and its accounts' entries): a proof's lookup.
    Column("transaction_id", String(36), nullable=True),
    Column("leaf_hash", LargeBinary, nullable=False),
    Index("ix_merkle_leaves_transaction_id", "transaction_id"),
)

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),  # >= 1; leaves are level 0
    Column("node_index", BigInteger, primary_key=True, autoincrement=False),
    Column("node_hash", LargeBinary, nullable=False),
)

TRANSACTION_EVENT_PREFIX = "Transaction."
SIZE_STORED_MAX = 2**63 - 1  # a BIGINT column's largest value (SQLite's and PostgreSQL's)


class TreeIncomplete(LookupError):
    """The stored tree does not reach the size asked for (its follower is behind, or it is being rebuilt)."""


def transaction_of(event: Any) -> UUID | None:
    """The ledger transaction an event belongs to: its own aggregate's, or the one an account entry names."""
    if type(event).__qualname__.startswith(TRANSACTION_EVENT_PREFIX):
        return event.originator_id
    found = getattr(event, "transaction_id", None)
    return found if isinstance(found, UUID) else None


def tree_size(connection: Connection) -> int:
    """How many leaves the stored tree has (its leaves are dense from 0)."""
    row = connection.execute(
        select(merkle_leaves.c.leaf_index).order_by(merkle_leaves.c.leaf_index.desc()).limit(1)
    ).first()
    return int(row[0]) + 1 if row else 0


def frontier_keys(size: int) -> list[tuple[int, int]]:
    """The complete subtrees along the right edge of a tree of ``size`` leaves, largest first."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


def read_nodes(connection: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of the named nodes ((level, index); level 0 is a leaf), in one query."""
    wanted = set(keys)
    by_level: dict[int, list[int]] = {}
    for level, index in wanted:
        by_level.setdefault(level, []).append(index)
    parts: list[Any] = []
    if 0 in by_level:
        parts.append(select(literal(0).label("level"), merkle_leaves.c.leaf_index, merkle_leaves.c.leaf_hash)
                     .where(merkle_leaves.c.leaf_index.in_(sorted(by_level[0]))))
    clauses = [and_(merkle_nodes.c.level == level, merkle_nodes.c.node_index.in_(sorted(indexes)))
               for level, indexes in sorted(by_level.items()) if level > 0]
    if clauses:
        parts.append(select(merkle_nodes.c.level, merkle_nodes.c.node_index, merkle_nodes.c.node_hash)
                     .where(or_(*clauses)))
    if not parts:
        return {}
    # One round trip: a proof's latency is mostly round trips to the database.
    rows = connection.execute(parts[0] if len(parts) == 1 else union_all(*parts))
    return {(int(level), int(index)): bytes(digest) for level, index, digest in rows}


class MerkleTreeProjection:
    """Appends each event's leaf and the complete subtrees it closes (run by a ``Follower``)."""

    name = "merkle_tree"
    tables = (merkle_leaves, merkle_nodes)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        size = tree_size(connection)
        keys = frontier_keys(size)
        stored = read_nodes(connection, keys)
        if len(stored) != len(keys):
            raise TreeIncomplete(f"the stored tree of {size} leaves lacks {len(keys) - len(stored)} right-edge nodes")
        frontier = {level: stored[(level, index)] for level, index in keys}
        leaves, nodes = [], []
        for logged in batch:
            leaf = event_leaf_hash(logged.event.hash)
            transaction_id = transaction_of(logged.event)
            leaves.append({"leaf_index": size, "position": logged.position, "leaf_hash": leaf,
                           "transaction_id": str(transaction_id) if transaction_id else None})
            digest, level, index = leaf, 0, size
            while index & 1:  # a right child completes its parent: fold it with the left sibling
                digest = node_hash(frontier.pop(level), digest)
                level, index = level + 1, index >> 1
                nodes.append({"level": level, "node_index": index, "node_hash": digest})
            frontier[level] = digest
            size += 1
        connection.execute(insert(merkle_leaves), leaves)
        if nodes:
            connection.execute(insert(merkle_nodes), nodes)


class _StoredSubtrees(ProofSource):
    """A ``ProofSource`` whose complete subtrees are looked up (``lookup(level, index)``), never rehashed."""

    def __init__(self, lookup: Callable[[int, int], bytes]) -> None:
        super().__init__(lambda index: lookup(0, index))
        self._lookup = lookup

    def subtree_hash(self, start: int, end: int) -> bytes:
        count = end - start
        if count & (count - 1) == 0 and start % count == 0:
            return self._lookup(count.bit_length() - 1, start // count)
        return super().subtree_hash(start, end)


class TreeReader:
    """Roots and proofs of the stored tree, each in one read of the O(log n) nodes it needs."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def size(self) -> int:
        return tree_size(self.connection)

    def root(self, size: int) -> bytes:
        return self._run(size, lambda source: source.root(size))

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        return self._run(size, lambda source: source.inclusion_path(index, size))

    def inclusion_paths(self, indexes: Sequence[int], size: int) -> list[list[bytes]]:
        """The paths of several leaves in one tree, in one read."""
        return self._run(size, lambda source: [source.inclusion_path(index, size) for index in indexes])

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._run(second, lambda source: source.consistency_proof(first, second))

    def _run(self, size: int, operation: Callable[[ProofSource], Any]) -> Any:
        # First a dry run with placeholder hashes, to learn which nodes the answer
        # reads (the recursion's shape depends on sizes and indexes, not hashes).
        needed: set[tuple[int, int]] = set()

        def record(level: int, index: int) -> bytes:
            needed.add((level, index))
            return bytes(HASH_SIZE)

        operation(_StoredSubtrees(record))
        found = read_nodes(self.connection, needed)
        if len(found) != len(needed):
            raise TreeIncomplete(f"the stored tree does not reach {size} leaves")
        return operation(_StoredSubtrees(lambda level, index: found[(level, index)]))


class TreeCheck:
    """``invario verify``'s check of the stored tree and its checkpoints against the log, in O(log n) memory.

    The log's events are streamed, in order, through a ``RunningRoot`` built as the
    follower builds the tree: from each event's *stored* hash (a content that no
    longer matches its hash is the aggregate chain's damage, not counted again
    here). Every leaf and complete subtree it makes must equal the stored one, so
    every proof the tree serves is right; after the first that does not, the
    stored tree no longer lines up with the log and is not compared further (as
    the global chain's rows). Its root at each signed checkpoint's size must equal
    the checkpoint's, whatever came before: those are anchors, like digests, and
    catch a consistent rewrite of the stored hashes. A stored tree or checkpoint
    larger than the log means the log lost events they had seen. The stored nodes
    are read one page of events at a time (``expect``).
    """

    def __init__(self, connection: Connection, checkpoint_roots: Callable[[int, int], list[tuple[int, bytes]]]) -> None:
        self.has_tables = inspect(connection).has_table(merkle_leaves.name)
        # A tree being rebuilt is incomplete on purpose: only the checkpoints are checked then.
        rebuilding = self.has_tables and read_tracking(connection, [MerkleTreeProjection.name])[
            MerkleTreeProjection.name].rebuild_started_at is not None
        self.stored_size = tree_size(connection) if self.has_tables and not rebuilding else 0
        self._checkpoint_roots = checkpoint_roots  # (after size, up to size) -> [(size, root)], smallest first
        self._running = RunningRoot()
        self._due: list[tuple[int, bytes]] = []
        self._stored: dict[tuple[int, int], bytes] = {}
        self._last_position = 0
        self._broken = False

    def expect(self, connection: Connection, count: int) -> None:
        """The next ``count`` events are about to be visited: read the stored nodes and checkpoints they complete."""
        first, last = self._running.size, min(self._running.size + count, self.stored_size)
        self._due.extend(self._checkpoint_roots(first, first + count))
        wanted = not self._broken and last > first
        self._stored = read_nodes(connection, completed_between(first, last)) if wanted else {}

    def visit(self, event: CheckedEvent) -> list[Damage]:
        self._last_position = event.position
        completed = self._running.append(event_leaf_hash(_tree_hash(event)))
        found = []
        for level, index, digest in completed:
            if self._broken or (index + 1) << level > self.stored_size:
                break
            damage = self._compare_node(event, level, index, digest)
            if damage is not None:
                self._broken = True
                found.append(damage)
        size = self._running.size
        while self._due and self._due[0][0] <= size:
            checkpoint_size, root = self._due.pop(0)
            if checkpoint_size == size:
                found.append(self._compare(event, f"the signed checkpoint of size {size}", root))
        return [damage for damage in found if damage is not None]

    def finish(self, connection: Connection) -> list[Damage]:
        """Whatever the tree or its checkpoints hold beyond the log's last event."""
        size = self._running.size
        beyond = self._checkpoint_roots(size, SIZE_STORED_MAX)[:1]
        if not beyond and self.stored_size <= size:
            return []
        # Placed where the log lost its first event (as the tree recorded it), so that damage
        # within the log, and the global chain's own view of the same loss, come first.
        found = connection.execute(select(merkle_leaves.c.position).where(merkle_leaves.c.leaf_index == size)).first()
        position = int(found[0]) if found else self._last_position + 1
        damages = []
        if self.stored_size > size:
            damages.append(Damage(MISSING, MERKLE_TREE, size + 1, position, None, None, None, "", "",
                                  f"the stored Merkle tree has {self.stored_size} leaves, the log {size} events"))
        for checkpoint_size, root in beyond:
            damages.append(Damage(MISSING, MERKLE_TREE, checkpoint_size, position, None, None, None, root.hex(), "",
                                  f"a signed checkpoint of size {checkpoint_size} is larger than the log ({size})"))
        return damages

    def _compare_node(self, event: CheckedEvent, level: int, index: int, digest: bytes) -> Damage | None:
        stored = self._stored.get((level, index))
        if stored is None or stored == digest:
            # A missing row is an incomplete tree (a rebuild truncated it meanwhile), which proofs
            # refuse to serve from; only a row that says something else is damage.
            return None
        what = "leaf" if level == 0 else f"node at level {level}, index {index} (over leaves " \
            f"{index << level}..{((index + 1) << level) - 1})"
        return Damage(CHANGED, MERKLE_TREE, self._running.size, event.position, str(event.originator_id),
                      event.originator_version, event.event_type, digest.hex(), stored.hex(),
                      f"the stored Merkle tree's {what} is not the log's")

    def _compare(self, event: CheckedEvent, what: str, expected: bytes) -> Damage | None:
        found = self._running.root()
        if found == expected:
            return None
        return Damage(CHANGED, MERKLE_TREE, self._running.size, event.position, str(event.originator_id),
                      event.originator_version, event.event_type, expected.hex(), found.hex(),
                      f"the events up to here give another root than {what}")


def _tree_hash(event: CheckedEvent) -> str:
    """The hash the follower made the event's leaf of: the stored one (an undecodable event: its stand-in)."""
    stored = event.stored_hash
    return stored if len(stored) == 64 and all(c in "0123456789abcdef" for c in stored) else event.chain_hash


def completed_between(first: int, last: int) -> list[tuple[int, int]]:
    """The leaves and complete subtrees that leaves ``first`` .. ``last - 1`` complete, as (level, index)."""
    keys = []
    for level in range(last.bit_length()):
        # Node (level, i) is completed by leaf ((i + 1) << level) - 1.
        low, high = -(-(first + 1) >> level) - 1, (last >> level) - 1
        keys.extend((level, index) for index in range(max(low, 0), high + 1))
    return keys
