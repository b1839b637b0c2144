"""Forged Merkle proofs: every way of bending an honest proof that a verifier must refuse.

Shared by the unit tests (a few thousand mutations) and ``tests/bench/bench_proofs.py``
(100,000 or more); the proof bundles' forgeries (``BundleLog`` and below) reuse them. Each mutation turns an honest claim into a false one: the
leaves are random 32-byte hashes, so no two are equal and no mutated claim can
happen to be true. A claim's size always travels with the honest root of that
size, as a signed checkpoint would carry them: a root does not encode its size,
so "the right root under a wrong size" is the checkpoint's signature's job to
catch, not the proof's (docs/proofs.md, threat model).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.canonical import reference_encoding
from domain.merkle import ProofRejected, ProofSource, leaf_hash, verify_consistency, verify_inclusion
from domain.proof_bundle import BUNDLE_FORMAT, VerifierKey, checkpoint_body, signed_note, verify_bundle


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


# --- proof bundles (domain/proof_bundle.py): the same forgeries, carried by a whole bundle ------------


@dataclass
class BundleLog:
    """A log of small event documents, some of one transaction, signed checkpoints and bundles over it.

    The checkpoint of a mutated claim is signed by the honest key: the log itself
    lying, the strongest forger there is. A bundle must still be refused.
    """

    documents: list[dict[str, Any]]
    log: RandomLog
    transaction_id: str
    member_indexes: list[int]
    origin: str
    private_key: Ed25519PrivateKey

    @classmethod
    def of(cls, size: int, seed: int, origin: str = "test.invario/ledger") -> BundleLog:
        rng = random.Random(seed)
        transaction_id = str(UUID(int=rng.getrandbits(128)))
        members = sorted(rng.sample(range(size), min(3, size)))
        documents = [_document(rng, n, transaction_id if n in members else None) for n in range(size)]
        leaves = [leaf_hash(hashlib.sha256(reference_encoding(d)).digest()) for d in documents]
        log = RandomLog(leaves, ProofSource(leaves), rng)
        return cls(documents, log, transaction_id, members, origin, Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def note(self, size: int, root: bytes) -> str:
        body = checkpoint_body(self.origin, size, root)
        return signed_note(body, self.origin, self.public_key, self.private_key.sign(body))

    def bundle(self, size: int, paths: dict[int, tuple[int, tuple[bytes, ...]]] | None = None,
               note: str | None = None) -> dict[str, Any]:
        """The honest bundle of the transaction under the tree of ``size``; ``paths``: member -> (index, path) overrides."""
        events = []
        for member in self.member_indexes:
            index, path = (paths or {}).get(member, (member, tuple(self.log.source.inclusion_path(member, size))))
            events.append({"leaf_index": index, "event": copy.deepcopy(self.documents[member]),
                           "inclusion_path": [base64.b64encode(entry).decode() for entry in path]})
        return {"format": BUNDLE_FORMAT, "transaction_id": self.transaction_id,
                "checkpoint": note or self.note(size, self.log.source.root(size)), "events": events}


def _document(rng: random.Random, number: int, transaction_id: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"originator_id": str(UUID(int=rng.getrandbits(128))), "originator_version": number % 5 + 1,
                              "amount_minor": rng.randrange(-10**9, 10**9), "description": f"caf\u00e9 {number}",
                              "timestamp": "2026-12-07T22:00:00+00:00"}
    if transaction_id is None:
        return {"event_type": "Account.Opened", "fields": fields}
    if number % 2:
        fields["originator_id"] = transaction_id
        return {"event_type": "Transaction.Posted", "fields": fields}
    fields["transaction_id"] = transaction_id
    return {"event_type": "Account.PostingRecorded", "fields": fields}


def bundle_claim_mutations(bundles: BundleLog, size: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each member's inclusion proof forged as ``inclusion_mutations`` forges it, carried in a bundle.

    A forged leaf is the event document's business (``bundle_document_mutations``);
    a forged size or root is a checkpoint the honest key signed for it.
    """
    for member in bundles.member_indexes:
        if member >= size:
            continue
        honest = bundles.log.inclusion(member, size)
        for what, claim in inclusion_mutations(bundles.log, honest):
            if claim.leaf != honest.leaf:
                continue
            note = bundles.note(claim.size, claim.root) if (claim.size, claim.root) != (size, honest.root) else None
            yield f"member {member}: {what}", bundles.bundle(size, {member: (claim.index, claim.path)}, note)


def bundle_document_mutations(bundles: BundleLog, size: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each event's content changed: a value, a name, the type; and members of the bundle changed."""
    honest = bundles.bundle(size)
    for number, entry in enumerate(honest["events"]):
        for name, value in entry["event"]["fields"].items():
            changed = copy.deepcopy(honest)
            fields = changed["events"][number]["event"]["fields"]
            fields[name] = value + 1 if isinstance(value, int) else value[:-1] + chr(ord(value[-1]) ^ 1)
            yield f"event {number} field {name} changed", changed
            renamed = copy.deepcopy(honest)
            renamed["events"][number]["event"]["fields"][name + "x"] = renamed["events"][number]["event"]["fields"].pop(name)
            yield f"event {number} field {name} renamed", renamed
        retyped = copy.deepcopy(honest)
        retyped["events"][number]["event"]["event_type"] += "x"
        yield f"event {number} type changed", retyped
        doubled = copy.deepcopy(honest)
        doubled["events"].append(copy.deepcopy(doubled["events"][number]))
        yield f"event {number} given twice", doubled
    stranger = copy.deepcopy(honest)
    outsider = next(n for n in range(size) if n not in bundles.member_indexes) if size > len(bundles.member_indexes) \
        else None
    if outsider is not None:
        stranger["events"].append({"leaf_index": outsider, "event": bundles.documents[outsider],
                                   "inclusion_path": [base64.b64encode(h).decode()
                                                      for h in bundles.log.source.inclusion_path(outsider, size)]})
        yield "another transaction's event added", stranger
    for member in ("format", "transaction_id", "checkpoint", "events"):
        dropped = copy.deepcopy(honest)
        del dropped[member]
        yield f"{member} dropped", dropped
    extra = copy.deepcopy(honest)
    extra["position"] = 7
    yield "a member added", extra
    other_id = copy.deepcopy(honest)
    other_id["transaction_id"] = str(UUID(int=UUID(honest["transaction_id"]).int ^ 1))
    yield "transaction_id changed", other_id
    emptied = copy.deepcopy(honest)
    emptied["events"] = []
    yield "no events", emptied


def text_mutations(text: str, rng: random.Random, count: int) -> Iterator[tuple[str, str]]:
    """``count`` copies of a saved file with one byte replaced (a random position, a random other byte)."""
    data = text.encode("utf-8")
    for _ in range(count):
        position = rng.randrange(len(data))
        changed = bytearray(data)
        changed[position] = (changed[position] + rng.randrange(1, 256)) % 256
        yield f"byte {position} {data[position]:#04x} -> {changed[position]:#04x}", changed.decode("utf-8", "replace")


def bundle_false_accepts(
    documents: Iterator[tuple[str, Any]], key: VerifierKey, check: Callable[[bytes, bytes, bytes], bool]
) -> tuple[int, list[str]]:
    """How many forged bundles were checked, and the ones ``verify_bundle`` accepted."""
    checked, accepted = 0, []
    for what, document in documents:
        checked += 1
        if _accepts(lambda document=document: verify_bundle(document, key, check)):
            accepted.append(what)
    return checked, accepted
