"""Merkle trees over the global log, as RFC 9162 (Certificate Transparency v2) §2.1 defines them.

The tree's leaves are the ledger's events in log order (leaf *i* is the event at
sequence *i* + 1 of the global chain), and each leaf's bytes are the 32 raw bytes
of the event's own hash (``domain.chain.compute_event_hash``: SHA-256 of its
canonical encoding). ``docs/proofs.md`` says why, and what the proofs show.

* hashing (§2.1.1): a leaf hashes as ``SHA-256(0x00 || leaf)``, an inner node as
  ``SHA-256(0x01 || left || right)``, the empty tree as ``SHA-256()``; the two
  prefixes keep a leaf from ever passing for a node (second preimages).
* proofs (§2.1.3.1 PATH, §2.1.4.1 PROOF/SUBPROOF), built by ``ProofSource`` over
  a leaf-hash accessor, so a store can serve leaves without loading the log.
* verification (§2.1.3.2, §2.1.4.2), step for step as the RFC writes it.

**One error style.** ``verify_inclusion`` and ``verify_consistency`` return
``None`` when the proof holds and raise ``ProofRejected`` otherwise; its
``reason`` is one of the ``REJECTED_*`` codes below, so a caller can say what
failed without parsing a message. Nothing else is raised for any input, however
malformed (wrong types included): a verifier that crashes on a hostile proof is
one a caller may be tempted to wrap in a blanket ``except``.

This module imports the standard library alone, on purpose: a client can copy
this one file to check proofs offline, trusting none of Invario's other code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
# RFC 9162 carries sizes and indexes as uint64; anything larger is not a tree size.
MAX_TREE_SIZE = 2**64 - 1

# Why a proof was rejected: ProofRejected.reason is always one of these.
REJECTED_MALFORMED_HASH = "malformed_hash"  # a leaf, root or path entry that is not 32 bytes
REJECTED_BAD_SIZE = "bad_size"  # a size or index that is not an int in 0..2**64-1
REJECTED_INDEX_OUT_OF_RANGE = "index_out_of_range"  # leaf index >= tree size
REJECTED_PATH_TOO_LONG = "path_too_long"  # entries left over after reaching the root
REJECTED_PATH_TOO_SHORT = "path_too_short"  # entries ran out before reaching the root
REJECTED_ROOT_MISMATCH = "root_mismatch"  # the path leads to another root
REJECTED_SIZES_REVERSED = "sizes_reversed"  # consistency from a larger tree to a smaller one
REJECTED_EMPTY_PROOF = "empty_proof"  # consistency between different non-empty sizes needs a proof
REJECTED_UNEXPECTED_PROOF = "unexpected_proof"  # equal sizes, or from the empty tree: the proof must be empty
REJECTED_SPLIT_VIEW = "split_view"  # two roots for the same size: the log showed two histories
REJECTED_FIRST_ROOT_MISMATCH = "first_root_mismatch"  # the proof does not lead to the older root
REJECTED_SECOND_ROOT_MISMATCH = "second_root_mismatch"  # the proof does not lead to the newer root


class ProofRejected(ValueError):
    """A proof that does not hold; ``reason`` says which check failed (a ``REJECTED_*`` code)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 MTH of a one-leaf tree: ``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def event_leaf_hash(event_hash_hex: str) -> bytes:
    """The leaf hash of one ledger event, from its hex event hash (as the global chain stores it)."""
    leaf = bytes.fromhex(event_hash_hex)
    if len(leaf) != HASH_SIZE:
        raise ValueError(f"an event hash is {HASH_SIZE} bytes, not {len(leaf)}")
    return leaf_hash(leaf)


def largest_power_of_two_below(n: int) -> int:
    """The RFC's split point k: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class ProofSource:
    """Roots and proofs over an append-only log's leaf hashes, read one at a time.

    ``leaf_hashes`` is a sequence of leaf hashes or a callable from a leaf index to
    its hash, so a store can answer from disk. A *complete* subtree (2**h leaves
    starting at a multiple of 2**h) never changes once the log has grown past it,
    so its hash is remembered across sizes and proofs: a proof then costs
    O(log n) remembered hashes instead of rehashing the log.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] | Callable[[int], bytes]) -> None:
        self._leaf_hash_at: Callable[[int], bytes] = (
            leaf_hashes if callable(leaf_hashes) else leaf_hashes.__getitem__
        )
        self._complete_subtrees: dict[tuple[int, int], bytes] = {}

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves (the empty tree's hash for 0)."""
        _require_argument(0 <= size, f"a tree size is not negative, got {size}")
        return self.subtree_hash(0, size) if size else EMPTY_ROOT

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves ``start`` .. ``end - 1``, split as the RFC splits it."""
        count = end - start
        if count == 1:
            return self._leaf(start)
        is_complete = count & (count - 1) == 0 and start % count == 0
        if is_complete and (start, count) in self._complete_subtrees:
            return self._complete_subtrees[(start, count)]
        split = start + largest_power_of_two_below(count)
        digest = node_hash(self.subtree_hash(start, split), self.subtree_hash(split, end))
        if is_complete:
            self._complete_subtrees[(start, count)] = digest
        return digest

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 PATH(index, D[size]): the sibling hashes from the leaf up to the root."""
        _require_argument(0 <= index < size, f"leaf {index} is not in a tree of {size}")
        path: list[bytes] = []
        start, end = 0, size
        # PATH recurses into the half holding the leaf and appends the other half's
        # hash after the deeper part; walking down, that is prepending each sibling.
        while end - start > 1:
            split = start + largest_power_of_two_below(end - start)
            if index < split:
                path.append(self.subtree_hash(split, end))
                end = split
            else:
                path.append(self.subtree_hash(start, split))
                start = split
        path.reverse()
        return path

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 PROOF(first, D[second]): shows the first tree is a prefix of the second.

        Empty when the sizes are equal or the first tree is empty (nothing to prove).
        """
        _require_argument(0 <= first <= second, f"no consistency proof from {first} to {second}")
        if first in (0, second):
            return []
        proof: list[bytes] = []
        start, end, whole = 0, second, True
        # SUBPROOF(m, D[start:end], whole), unrolled: each step appends the hash of
        # the half it does not descend into, and the recursion's order is reversed.
        while first - start != end - start:
            split = start + largest_power_of_two_below(end - start)
            if first <= split:
                proof.append(self.subtree_hash(split, end))
                end = split
            else:
                proof.append(self.subtree_hash(start, split))
                start, whole = split, False
        if not whole:
            proof.append(self.subtree_hash(start, end))
        proof.reverse()
        return proof

    def _leaf(self, index: int) -> bytes:
        digest = self._leaf_hash_at(index)
        if len(digest) != HASH_SIZE:
            raise ValueError(f"leaf {index}: a leaf hash is {HASH_SIZE} bytes, not {len(digest)}")
        return digest


class RunningRoot:
    """The root of a tree that grows one leaf at a time, in O(log n) memory.

    It keeps the right edge: the complete subtrees a tree of ``size`` leaves ends
    with, one per set bit of ``size``, largest first. Verification streams the
    whole log through one of these to recompute the tree without storing it.
    """

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[bytes] = []

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the next leaf; return the complete subtrees it completes, as (level, index, hash), the leaf first."""
        digest, level, index = leaf, 0, self.size
        completed = [(0, index, leaf)]
        while index & 1:  # a right child completes its parent with the left sibling on the edge
            digest = node_hash(self._edge.pop(), digest)
            level, index = level + 1, index >> 1
            completed.append((level, index, digest))
        self._edge.append(digest)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self._edge:
            return EMPTY_ROOT
        digest = self._edge[-1]
        for left in reversed(self._edge[:-1]):
            digest = node_hash(left, digest)
        return digest


def _require_argument(condition: bool, message: str) -> None:
    # Building a proof from bad arguments is the caller's bug, not a rejected proof.
    if not condition:
        raise ValueError(message)


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` with ``root``.

    Returns ``None`` if so; raises ``ProofRejected`` otherwise. The size is only as
    trustworthy as the (size, root) pair it comes with: check the two together
    against a signed checkpoint, since a root does not encode its tree's size.
    """
    _require_hash(leaf, "leaf hash")
    _require_hash(root, "root")
    entries = _require_path(path)
    _require_size(index, "leaf index")
    _require_size(size, "tree size")
    if index >= size:
        raise ProofRejected(REJECTED_INDEX_OUT_OF_RANGE, f"leaf {index} is not in a tree of {size}")
    computed = leaf
    for sibling, is_left in _walk_to_the_root(index, size - 1, entries, f"leaf {index} of {size}"):
        computed = node_hash(sibling, computed) if is_left else node_hash(computed, sibling)
    if computed != root:
        raise ProofRejected(REJECTED_ROOT_MISMATCH, f"the path from leaf {index} leads to another root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: the tree of ``first`` leaves is a prefix of the tree of ``second``.

    Returns ``None`` if so; raises ``ProofRejected`` otherwise. Two roots for one
    size are a split view (``REJECTED_SPLIT_VIEW``). The RFC's algorithm covers
    0 < first < second; at the edges the proof must be empty, and from size 0 the
    first root must be the empty tree's, since that is the only tree of size 0.
    """
    _require_hash(first_root, "first root")
    _require_hash(second_root, "second root")
    entries = _require_path(proof)
    _require_size(first, "first size")
    _require_size(second, "second size")
    if first > second:
        raise ProofRejected(REJECTED_SIZES_REVERSED, f"a tree of {first} cannot be a prefix of one of {second}")
    if first == 0 or first == second:
        _verify_trivial_consistency(first, second, first_root, second_root, entries)
        return
    if not entries:
        raise ProofRejected(REJECTED_EMPTY_PROOF, f"sizes {first} and {second} need a non-empty proof")
    _verify_consistency_path(first, second, first_root, second_root, entries)


def _verify_trivial_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, entries: list[bytes]
) -> None:
    if entries:
        raise ProofRejected(REJECTED_UNEXPECTED_PROOF, f"from {first} to {second} the proof is empty, not {len(entries)}")
    if first == 0 and first_root != EMPTY_ROOT:
        raise ProofRejected(REJECTED_FIRST_ROOT_MISMATCH, "the first root is not the empty tree's")
    if first == second and first_root != second_root:
        raise ProofRejected(REJECTED_SPLIT_VIEW, f"two different roots for the tree of size {first}")


def _verify_consistency_path(
    first: int, second: int, first_root: bytes, second_root: bytes, entries: list[bytes]
) -> None:
    # Step 2: a first tree of 2**h leaves is a complete subtree of the second, and
    # the proof leaves its root out: the verifier already holds it.
    if first & (first - 1) == 0:
        entries = [first_root, *entries]
    fn, sn = first - 1, second - 1
    # Step 4: start from the largest complete subtree the first tree ends with.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first_computed = second_computed = entries[0]
    for entry, is_left in _walk_to_the_root(fn, sn, entries[1:], f"the proof from {first} to {second}"):
        if is_left:
            # A left sibling lies inside the first tree too: both roots grow by it.
            first_computed = node_hash(entry, first_computed)
            second_computed = node_hash(entry, second_computed)
        else:
            second_computed = node_hash(second_computed, entry)
    if first_computed != first_root:
        raise ProofRejected(REJECTED_FIRST_ROOT_MISMATCH, f"the proof does not lead to the root of size {first}")
    if second_computed != second_root:
        raise ProofRejected(REJECTED_SECOND_ROOT_MISMATCH, f"the proof does not lead to the root of size {second}")


def _walk_to_the_root(fn: int, sn: int, entries: list[bytes], what: str) -> Iterator[tuple[bytes, bool]]:
    """The walk both RFC 9162 verifications share: each entry, and whether it is a left sibling.

    ``fn`` is the node's index and ``sn`` the last node's index at the current
    level. The walk must reach the root (``sn == 0``) exactly as the entries run
    out: entries left over or missing reject the proof, whatever the hashes say.
    """
    for entry in entries:
        if sn == 0:
            raise ProofRejected(REJECTED_PATH_TOO_LONG, f"{what}: {len(entries)} entries is too many")
        is_left = bool(fn & 1) or fn == sn
        yield entry, is_left
        if is_left:
            # A right-edge node with no sibling at these levels is promoted unchanged.
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofRejected(REJECTED_PATH_TOO_SHORT, f"{what}: {len(entries)} entries is too few")


def _require_hash(value: Any, what: str) -> None:
    # bytes only: a hex str or a bytearray someone mutates later is not a hash.
    if type(value) is not bytes or len(value) != HASH_SIZE:
        shown = f"{len(value)} bytes" if type(value) is bytes else type(value).__name__
        raise ProofRejected(REJECTED_MALFORMED_HASH, f"the {what} must be {HASH_SIZE} bytes, got {shown}")


def _require_path(path: Any) -> list[bytes]:
    if isinstance(path, (str, bytes, bytearray)) or not isinstance(path, Sequence):
        raise ProofRejected(REJECTED_MALFORMED_HASH, f"a proof is a sequence of hashes, got {type(path).__name__}")
    entries = list(path)
    for position, entry in enumerate(entries):
        _require_hash(entry, f"proof entry {position}")
    return entries


def _require_size(value: Any, what: str) -> None:
    # bool is an int to Python, but True is no tree size.
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise ProofRejected(REJECTED_BAD_SIZE, f"the {what} must be an int in 0..2**64-1, got {value!r}")
