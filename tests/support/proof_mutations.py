"""Forged Merkle proofs: every way of bending an honest proof that a verifier must refuse.

Shared by the unit tests (a few thousand mutations) and ``tests/bench/bench_proofs.py``
(100,000 or more). Each mutation turns an honest claim into a false one: the
leaves are random 32-byte hashes, so no two are equal and no mutated claim can
happen to be true. A claim's size always travels with the honest root of that
size, as a signed checkpoint would carry them: a root does not encode its size,
so "the right root under a wrong size" is the checkpoint's signature's job to
catch, not the proof's (docs/proofs.md, threat model).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from domain.merkle import ProofRejected, ProofSource, verify_consistency, verify_inclusion


@dataclass(frozen=True)
class InclusionClaim:
    leaf: bytes
    index: int
    size: int
    path: tuple[bytes, ...]
    root: bytes

    def check(self) -> None:
        verify_inclusion(self.leaf, self.index, self.size, list(self.path), self.root)


@dataclass(frozen=True)
class ConsistencyClaim:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: tuple[bytes, ...]

    def check(self) -> None:
        verify_consistency(self.first, self.second, self.first_root, self.second_root, list(self.proof))


@dataclass
class RandomLog:
    """A log of random leaf hashes and the proofs over it."""

    leaves: list[bytes]
    source: ProofSource
    rng: random.Random

    @classmethod
    def of(cls, size: int, seed: int) -> RandomLog:
        rng = random.Random(seed)
        leaves = [rng.randbytes(32) for _ in range(size)]
        return cls(leaves, ProofSource(leaves), rng)

    def inclusion(self, index: int, size: int) -> InclusionClaim:
        path = tuple(self.source.inclusion_path(index, size))
        return InclusionClaim(self.leaves[index], index, size, path, self.source.root(size))

    def consistency(self, first: int, second: int) -> ConsistencyClaim:
        proof = tuple(self.source.consistency_proof(first, second))
        return ConsistencyClaim(first, second, self.source.root(first), self.source.root(second), proof)


def flip_byte(value: bytes, position: int, rng: random.Random) -> bytes:
    """``value`` with the byte at ``position`` XORed with a random non-zero mask."""
    changed = bytearray(value)
    changed[position] ^= rng.randrange(1, 256)
    return bytes(changed)


def _byte_flips(entries: tuple[bytes, ...], rng: random.Random) -> Iterator[tuple[str, tuple[bytes, ...]]]:
    for entry_index, entry in enumerate(entries):
        for position in range(len(entry)):
            flipped = flip_byte(entry, position, rng)
            yield f"entry {entry_index} byte {position} flipped", (*entries[:entry_index], flipped, *entries[entry_index + 1:])


def _reshaped_paths(
    entries: tuple[bytes, ...], strangers: list[bytes], rng: random.Random
) -> Iterator[tuple[str, tuple[bytes, ...]]]:
    """Swapped, dropped, added and duplicated entries: paths of the wrong shape or order."""
    for i in range(len(entries) - 1):
        if entries[i] != entries[i + 1]:
            yield f"entries {i} and {i + 1} swapped", (*entries[:i], entries[i + 1], entries[i], *entries[i + 2:])
    for i in range(len(entries)):
        yield f"entry {i} dropped", entries[:i] + entries[i + 1:]
        yield f"entry {i} repeated", entries[:i + 1] + entries[i:]
    if len(entries) > 1:
        yield "reversed", entries[::-1]
    for stranger in [*strangers, rng.randbytes(32)]:
        yield "a hash appended", (*entries, stranger)
        yield "a hash prepended", (stranger, *entries)
    yield "emptied", ()


def inclusion_mutations(log: RandomLog, honest: InclusionClaim) -> Iterator[tuple[str, InclusionClaim]]:
    """False claims made from one honest inclusion proof."""
    rng, size, index = log.rng, honest.size, honest.index
    for what, path in [*_byte_flips(honest.path, rng), *_reshaped_paths(honest.path, [honest.root, honest.leaf], rng)]:
        yield f"path {what}", replace(honest, path=path)
    for position in range(32):
        yield f"leaf byte {position} flipped", replace(honest, leaf=flip_byte(honest.leaf, position, rng))
        yield f"root byte {position} flipped", replace(honest, root=flip_byte(honest.root, position, rng))
    for other in {index - 1, index + 1, index ^ 1, index ^ 2, rng.randrange(size), size, size + 1}:
        if other != index and other >= 0:
            yield f"index {other} for {index}", replace(honest, index=other)
    other_leaf = rng.randrange(len(log.leaves) - 1)
    yield "another leaf", replace(honest, leaf=log.leaves[other_leaf + (other_leaf >= index)])
    # Another size, with that size's honest root: a proof for one checkpoint shown against another.
    for other_size in {size - 1, size + 1, size * 2, rng.randrange(1, len(log.leaves) + 1)}:
        if other_size != size and index < other_size <= len(log.leaves):
            yield f"size {other_size} for {size}", replace(honest, size=other_size, root=log.source.root(other_size))
    for old_size in {index + 1, rng.randrange(index + 1, size + 1)}:
        if old_size != size:
            yield f"old root of {old_size}", replace(honest, root=log.source.root(old_size))


def consistency_mutations(log: RandomLog, honest: ConsistencyClaim) -> Iterator[tuple[str, ConsistencyClaim]]:
    """False claims made from one honest consistency proof (0 < first < second)."""
    rng, first, second, roots = log.rng, honest.first, honest.second, log.source.root
    strangers = [honest.first_root, honest.second_root]
    for what, proof in [*_byte_flips(honest.proof, rng), *_reshaped_paths(honest.proof, strangers, rng)]:
        yield f"proof {what}", replace(honest, proof=proof)
    for position in range(32):
        yield f"first root byte {position} flipped", replace(honest, first_root=flip_byte(honest.first_root, position, rng))
        yield f"second root byte {position} flipped", replace(honest, second_root=flip_byte(honest.second_root, position, rng))
    yield "roots swapped", replace(honest, first_root=honest.second_root, second_root=honest.first_root)
    yield "an older first root", replace(honest, first_root=roots(first - 1) if first > 1 else roots(second))
    # Other sizes, each with its honest root (as a checkpoint would carry it).
    for other in {first - 1, first + 1, first ^ 1, first ^ 2, rng.randrange(1, second)}:
        if other != first and 0 < other < second:
            yield f"first size {other} for {first}", replace(honest, first=other, first_root=roots(other))
    for other in {second - 1, second + 1, second * 2, rng.randrange(first + 1, len(log.leaves) + 1)}:
        if other != second and first < other <= len(log.leaves):
            yield f"second size {other} for {second}", replace(honest, second=other, second_root=roots(other))
    yield "sizes reversed", replace(honest, first=second, second=first, first_root=honest.second_root,
                                    second_root=honest.first_root)


def false_accepts(claims: Iterator[tuple[str, InclusionClaim | ConsistencyClaim]]) -> tuple[int, list[str]]:
    """How many claims were checked, and the ones the verifier wrongly accepted.

    Only ``ProofRejected`` counts as a rejection: any other exception is a verifier
    bug and propagates.
    """
    checked, accepted = 0, []
    for what, claim in claims:
        checked += 1
        if _accepts(claim.check):
            accepted.append(f"{what}: {claim}")
    return checked, accepted


def _accepts(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofRejected:
        return False
    return True


def mutated_claims(log: RandomLog, proofs: int) -> Iterator[tuple[str, InclusionClaim | ConsistencyClaim]]:
    """Mutations of ``proofs`` random honest proofs over ``log``, inclusion and consistency alternating."""
    size_limit = len(log.leaves)
    for number in range(proofs):
        size = log.rng.randrange(2, size_limit + 1)
        if number % 2:
            yield from inclusion_mutations(log, log.inclusion(log.rng.randrange(size), size))
        else:
            yield from consistency_mutations(log, log.consistency(log.rng.randrange(1, size), size))
