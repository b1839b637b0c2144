"""RFC 9162 Merkle trees (domain/merkle.py): published vectors, a naive reference, and forged proofs.

A verifier that accepts a forged proof is worse than none (immudb's clients once
accepted forged consistency proofs, GHSA-672p-m5jq-mrh8), so beside agreeing with
the RFC's own recursive definitions, every mutation of an honest proof must be
rejected, with a reason.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import merkle
from domain.merkle import (
    EMPTY_ROOT,
    ProofRejected,
    ProofSource,
    event_leaf_hash,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.support.proof_mutations import RandomLog, false_accepts, mutated_claims

# Test vectors of transparency-dev/merkle, proof/verify_test.go (Apache-2.0; the
# RFC 6962 / 9162 tree, same hashing), also in google/certificate-transparency-go:
# eight leaves, the roots of their first 1..8, and proofs. Inclusion indexes are
# 0-based here (the Go file counts leaves from 1).
VECTOR_LEAVES = [
    b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70)),
]
VECTOR_ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
_H = {
    "96a2": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f08": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    "bc1a": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca85": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37e": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "fac5": "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "6e34": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "0ebc": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "b086": "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
}
VECTOR_INCLUSION = [  # (index, size, path)
    (0, 1, []),
    (0, 8, ["96a2", "5f08", "6b47"]),
    (5, 8, ["bc1a", "ca85", "d37e"]),
    (2, 3, ["fac5"]),
    (1, 5, ["6e34", "5f08", "bc1a"]),
]
VECTOR_CONSISTENCY = [  # (first, second, proof)
    (1, 1, []),
    (1, 8, ["96a2", "5f08", "6b47"]),
    (6, 8, ["0ebc", "ca85", "d37e"]),
    (2, 5, ["5f08", "bc1a"]),
    (6, 7, ["0ebc", "b086", "d37e"]),
]


def _hashes(names: list[str]) -> list[bytes]:
    return [bytes.fromhex(_H[name]) for name in names]


# The naive reference: RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 as written, on lists.
def reference_root(hashes: list[bytes]) -> bytes:
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


def reference_path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    if m < k:
        return [*reference_path(m, hashes[:k]), reference_root(hashes[k:])]
    return [*reference_path(m - k, hashes[k:]), reference_root(hashes[:k])]


def reference_subproof(m: int, hashes: list[bytes], whole: bool) -> list[bytes]:
    if m == len(hashes):
        return [] if whole else [reference_root(hashes)]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    if m <= k:
        return [*reference_subproof(m, hashes[:k], whole), reference_root(hashes[k:])]
    return [*reference_subproof(m - k, hashes[k:], False), reference_root(hashes[:k])]


LOG = RandomLog.of(2048, seed=18)


def test_the_published_roots_and_the_empty_tree() -> None:
    source = ProofSource([leaf_hash(leaf) for leaf in VECTOR_LEAVES])
    assert [source.root(size) for size in range(1, 9)] == VECTOR_ROOTS
    assert source.root(0) == EMPTY_ROOT == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


@pytest.mark.parametrize(("index", "size", "path"), VECTOR_INCLUSION)
def test_the_published_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    source = ProofSource([leaf_hash(leaf) for leaf in VECTOR_LEAVES])
    assert source.inclusion_path(index, size) == _hashes(path)
    verify_inclusion(leaf_hash(VECTOR_LEAVES[index]), index, size, _hashes(path), VECTOR_ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "proof"), VECTOR_CONSISTENCY)
def test_the_published_consistency_proofs(first: int, second: int, proof: list[str]) -> None:
    source = ProofSource([leaf_hash(leaf) for leaf in VECTOR_LEAVES])
    assert source.consistency_proof(first, second) == _hashes(proof)
    verify_consistency(first, second, VECTOR_ROOTS[first - 1], VECTOR_ROOTS[second - 1], _hashes(proof))


def test_every_proof_of_every_small_tree_matches_the_reference_and_verifies() -> None:
    for size in range(1, 65):
        hashes = LOG.leaves[:size]
        root = reference_root(hashes)
        assert LOG.source.root(size) == root
        for index in range(size):
            path = LOG.source.inclusion_path(index, size)
            assert path == reference_path(index, hashes)
            verify_inclusion(hashes[index], index, size, path, root)
        for first in range(1, size + 1):
            proof = LOG.source.consistency_proof(first, size)
            assert proof == reference_subproof(first, hashes, True)
            verify_consistency(first, size, LOG.source.root(first), root, proof)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=2048))
def test_inclusion_matches_the_reference_up_to_2048_leaves(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    source = ProofSource(LOG.leaves)  # fresh: nothing remembered from other examples
    hashes = LOG.leaves[:size]
    path = source.inclusion_path(index, size)
    assert path == reference_path(index, hashes)
    verify_inclusion(hashes[index], index, size, path, reference_root(hashes))


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=2048))
def test_consistency_matches_the_reference_up_to_2048_leaves(data: st.DataObject, second: int) -> None:
    first = data.draw(st.integers(min_value=1, max_value=second))
    hashes = LOG.leaves[:second]
    proof = ProofSource(LOG.leaves).consistency_proof(first, second)
    assert proof == reference_subproof(first, hashes, True)
    verify_consistency(first, second, reference_root(LOG.leaves[:first]), reference_root(hashes), proof)


def test_a_source_reads_leaves_through_a_callable_and_remembers_across_sizes() -> None:
    reads: list[int] = []

    def leaf_at(index: int) -> bytes:
        reads.append(index)
        return LOG.leaves[index]

    source = ProofSource(leaf_at)
    assert [source.root(size) for size in range(1, 1025)] == [LOG.source.root(size) for size in range(1, 1025)]
    # Complete subtrees are remembered, so growing the tree 1,024 times reads each leaf about once.
    assert len(reads) < 2 * 1024


def test_a_few_thousand_forged_proofs_are_all_rejected() -> None:
    checked, accepted = false_accepts(mutated_claims(RandomLog.of(700, seed=9), proofs=16))
    small_checked, small_accepted = false_accepts(mutated_claims(RandomLog.of(9, seed=10), proofs=60))
    assert accepted == [] and small_accepted == []
    assert checked + small_checked >= 5_000


def _reason_of_inclusion(leaf: object, index: object, size: object, path: object, root: object) -> str:
    with pytest.raises(ProofRejected) as rejected:
        verify_inclusion(leaf, index, size, path, root)  # type: ignore[arg-type]
    return rejected.value.reason


def _reason_of_consistency(first: object, second: object, first_root: object, second_root: object,
                           proof: object) -> str:
    with pytest.raises(ProofRejected) as rejected:
        verify_consistency(first, second, first_root, second_root, proof)  # type: ignore[arg-type]
    return rejected.value.reason


def test_inclusion_is_rejected_with_the_reason_that_failed() -> None:
    leaf, path, root = LOG.leaves[5], LOG.source.inclusion_path(5, 13), LOG.source.root(13)
    assert _reason_of_inclusion(leaf, 13, 13, path, root) == merkle.REJECTED_INDEX_OUT_OF_RANGE
    assert _reason_of_inclusion(leaf, 0, 0, [], EMPTY_ROOT) == merkle.REJECTED_INDEX_OUT_OF_RANGE
    assert _reason_of_inclusion(leaf, 5, 13, path[:-1], root) == merkle.REJECTED_PATH_TOO_SHORT
    assert _reason_of_inclusion(leaf, 5, 13, [*path, root], root) == merkle.REJECTED_PATH_TOO_LONG
    assert _reason_of_inclusion(leaf, 5, 13, path[::-1], root) == merkle.REJECTED_ROOT_MISMATCH
    assert _reason_of_inclusion(leaf, 0, 1, [root], leaf) == merkle.REJECTED_PATH_TOO_LONG


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32, bytearray(32), None])
def test_a_hash_that_is_not_32_bytes_is_malformed_wherever_it_appears(bad: object) -> None:
    leaf, path, root = LOG.leaves[1], LOG.source.inclusion_path(1, 3), LOG.source.root(3)
    assert _reason_of_inclusion(bad, 1, 3, path, root) == merkle.REJECTED_MALFORMED_HASH
    assert _reason_of_inclusion(leaf, 1, 3, path, bad) == merkle.REJECTED_MALFORMED_HASH
    assert _reason_of_inclusion(leaf, 1, 3, [path[0], bad], root) == merkle.REJECTED_MALFORMED_HASH
    proof, first_root = LOG.source.consistency_proof(2, 3), LOG.source.root(2)
    assert _reason_of_consistency(2, 3, bad, root, proof) == merkle.REJECTED_MALFORMED_HASH
    assert _reason_of_consistency(2, 3, first_root, bad, proof) == merkle.REJECTED_MALFORMED_HASH
    assert _reason_of_consistency(2, 3, first_root, root, [bad]) == merkle.REJECTED_MALFORMED_HASH


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.0, "1", None])
def test_a_size_or_index_outside_uint64_is_refused(bad: object) -> None:
    leaf, root = LOG.leaves[0], LOG.source.root(1)
    assert _reason_of_inclusion(leaf, bad, 1, [], root) == merkle.REJECTED_BAD_SIZE
    assert _reason_of_inclusion(leaf, 0, bad, [], root) == merkle.REJECTED_BAD_SIZE
    assert _reason_of_consistency(bad, 1, root, root, []) == merkle.REJECTED_BAD_SIZE
    assert _reason_of_consistency(1, bad, root, root, []) == merkle.REJECTED_BAD_SIZE


_ANY_HASH = st.one_of(st.binary(min_size=31, max_size=33), st.sampled_from([EMPTY_ROOT, LOG.leaves[0]]), st.none(),
                     st.text(max_size=64))
_ANY_SIZE = st.one_of(st.integers(min_value=-2, max_value=2**64 + 1), st.booleans(), st.floats(allow_nan=True))


@settings(max_examples=300, deadline=None)
@given(_ANY_HASH, _ANY_SIZE, _ANY_SIZE, st.lists(_ANY_HASH, max_size=70), _ANY_HASH)
def test_hostile_input_is_rejected_never_crashes_the_verifier(
    some_hash: object, some_size: object, other_size: object, proof: list[object], other_hash: object
) -> None:
    # Whatever arrives over the wire, the only failure a caller sees is ProofRejected.
    for verify in (lambda: verify_inclusion(some_hash, some_size, other_size, proof, other_hash),  # type: ignore[arg-type]
                   lambda: verify_consistency(some_size, other_size, some_hash, other_hash, proof)):  # type: ignore[arg-type]
        try:
            verify()
        except ProofRejected:
            pass


def test_a_proof_that_is_not_a_list_of_hashes_is_malformed() -> None:
    root = LOG.source.root(2)
    assert _reason_of_inclusion(LOG.leaves[0], 0, 2, LOG.leaves[1], root) == merkle.REJECTED_MALFORMED_HASH
    assert _reason_of_consistency(1, 2, LOG.leaves[0], root, None) == merkle.REJECTED_MALFORMED_HASH


def test_consistency_edges_follow_the_rfc() -> None:
    one, two, three = (LOG.source.root(size) for size in (1, 2, 3))
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 3, EMPTY_ROOT, three, [])  # the empty tree is a prefix of every tree
    verify_consistency(3, 3, three, three, [])
    assert _reason_of_consistency(0, 3, one, three, []) == merkle.REJECTED_FIRST_ROOT_MISMATCH
    assert _reason_of_consistency(0, 0, EMPTY_ROOT, one, []) == merkle.REJECTED_SPLIT_VIEW
    assert _reason_of_consistency(0, 3, EMPTY_ROOT, three, [one]) == merkle.REJECTED_UNEXPECTED_PROOF
    assert _reason_of_consistency(3, 3, three, three, [one]) == merkle.REJECTED_UNEXPECTED_PROOF
    assert _reason_of_consistency(3, 2, three, two, [one]) == merkle.REJECTED_SIZES_REVERSED
    assert _reason_of_consistency(1, 3, one, three, []) == merkle.REJECTED_EMPTY_PROOF
    six, thirteen = LOG.source.root(6), LOG.source.root(13)
    proof = LOG.source.consistency_proof(6, 13)
    assert _reason_of_consistency(6, 13, six, thirteen, proof[:-1]) == merkle.REJECTED_PATH_TOO_SHORT
    assert _reason_of_consistency(6, 13, six, thirteen, [*proof, one]) == merkle.REJECTED_PATH_TOO_LONG
    assert _reason_of_consistency(6, 13, two, thirteen, proof) == merkle.REJECTED_FIRST_ROOT_MISMATCH
    assert _reason_of_consistency(6, 13, six, three, proof) == merkle.REJECTED_SECOND_ROOT_MISMATCH


def test_a_split_view_is_caught() -> None:
    # The log shows one client the honest history and another a fork that rewrote leaf 40.
    forked_leaves = list(LOG.leaves[:100])
    forked_leaves[40] = hashlib.sha256(b"rewritten").digest()
    honest, forked = LOG.source, ProofSource(forked_leaves)
    # Two heads of the same size with different roots: caught without any proof.
    assert _reason_of_consistency(100, 100, honest.root(100), forked.root(100), []) == merkle.REJECTED_SPLIT_VIEW
    # A client that saw the honest head at 64 cannot be moved onto the fork at 100.
    proof = forked.consistency_proof(64, 100)
    assert _reason_of_consistency(64, 100, honest.root(64), forked.root(100), proof) in {
        merkle.REJECTED_FIRST_ROOT_MISMATCH, merkle.REJECTED_SECOND_ROOT_MISMATCH}
    # Nor can a leaf of the fork be proven in the honest tree.
    forked_path = forked.inclusion_path(40, 100)
    assert _reason_of_inclusion(forked_leaves[40], 40, 100, forked_path, honest.root(100)) == merkle.REJECTED_ROOT_MISMATCH


def test_a_root_does_not_carry_its_size_so_the_checkpoint_must() -> None:
    # Documented in docs/proofs.md: leaf 0's path is the same in trees of 7 and 8
    # leaves, so it verifies against the 7-leaf root under either size. The claim
    # "leaf 0 is in the tree with this root" is still true; only a signed
    # (size, root) pair says which size that root belongs to.
    path = LOG.source.inclusion_path(0, 7)
    assert path == LOG.source.inclusion_path(0, 8)[:2] + [LOG.source.subtree_hash(4, 7)]
    verify_inclusion(LOG.leaves[0], 0, 8, path, LOG.source.root(7))
    # With the 8-leaf tree's own root, the 7-leaf path is refused.
    assert _reason_of_inclusion(LOG.leaves[0], 0, 8, path, LOG.source.root(8)) == merkle.REJECTED_ROOT_MISMATCH


def test_an_event_leaf_is_its_event_hash_under_the_leaf_prefix() -> None:
    event_hash = hashlib.sha256(b'{"event_type":"X","fields":{}}').hexdigest()
    assert event_leaf_hash(event_hash) == hashlib.sha256(b"\x00" + bytes.fromhex(event_hash)).digest()
    with pytest.raises(ValueError, match="32 bytes"):
        event_leaf_hash("ab" * 31)


def test_the_verifier_can_be_vendored_it_imports_the_standard_library_alone() -> None:
    tree = ast.parse(Path(merkle.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_worked_example_in_docs_proofs_prints_what_the_page_says(capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "proofs.md").read_text(encoding="utf-8")
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    printed = page.split("prints\n\n```\n", 1)[1].split("```", 1)[0]
    exec(compile(example, "docs/proofs.md", "exec"), {})  # noqa: S102 - the page's own example
    assert capsys.readouterr().out == printed
