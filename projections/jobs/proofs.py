"""What the proof routes answer: signed checkpoints, transactions' proof bundles, consistency proofs.

Everything is read from the stored tree and checkpoints (``merkle_tree``,
``checkpoints``) and, for a bundle's events, from the log itself: each event is
given as its canonical document (``domain.canonical``), the very bytes its hash,
and so its leaf, is taken over. The documents' formats are
``domain.proof_bundle``'s, whose verifier checks them offline.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Engine, select

from application.ledger import Ledger
from domain.chain import canonical_encoding
from domain.errors import CheckpointNotFound, CheckpointPending, InvalidProofRequest
from domain.proof_bundle import BUNDLE_EVENTS_MAX, BUNDLE_FORMAT, CONSISTENCY_FORMAT
from projections.jobs.checkpoints import StoredCheckpoint, checkpoint_of_size, latest_checkpoint
from projections.jobs.merkle_tree import TreeIncomplete, TreeReader, merkle_leaves

T = TypeVar("T")
EVENT_SPAN_READ_MAX = 1_000  # a transaction's events this close are read from the log at once
PENDING_ADVICE = "retry after the next checkpoint (signed every INVARIO_CHECKPOINT_EVERY_SECONDS, and only while " \
                 "INVARIO_SIGNING_KEY is set)"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _read_tree(read: Callable[[], T]) -> T:
    try:
        return read()
    except TreeIncomplete:  # rows a checkpoint needs are gone: 'projections rebuild merkle_tree' is running
        raise CheckpointPending(f"the Merkle tree is being rebuilt: {PENDING_ADVICE}") from None


@dataclass(frozen=True)
class ProofBundle:
    document: dict[str, Any]  # domain.proof_bundle's bundle, ready to serialise
    checkpoint: StoredCheckpoint
    positions: list[int]  # the log positions of the events, in the bundle's order (not part of the proof)


class LedgerProofs:
    """Reads of the tree and its checkpoints; ``ledger`` only to read events' contents from the log."""

    def __init__(self, engine: Engine, ledger: Ledger) -> None:
        self.engine = engine
        self.ledger = ledger

    def checkpoint(self, size: int | None = None) -> StoredCheckpoint:
        """The latest signed checkpoint, or the one of ``size``."""
        with self.engine.connect() as connection:
            found = latest_checkpoint(connection) if size is None else checkpoint_of_size(connection, size)
        if found is None:
            what = "no checkpoint has been signed yet" if size is None else f"no checkpoint of size {size}"
            raise CheckpointNotFound(what, **({} if size is None else {"size": size}))
        return found

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        """The RFC 9162 consistency proof between two signed checkpoints."""
        if first > second:
            raise InvalidProofRequest(f"no consistency proof from size {first} to the smaller {second}",
                                      from_size=first, to_size=second)
        with self.engine.connect() as connection:
            for size in (first, second):
                if checkpoint_of_size(connection, size) is None:
                    raise CheckpointNotFound(f"no checkpoint of size {size}", size=size)
            proof = _read_tree(lambda: TreeReader(connection).consistency_proof(first, second))
        return {"format": CONSISTENCY_FORMAT, "from_size": first, "to_size": second,
                "proof": [b64(entry) for entry in proof]}

    def transaction_bundle(self, transaction_id: UUID) -> ProofBundle:
        """The transaction's events, each with its inclusion path under the latest checkpoint covering them all."""
        with self.engine.connect() as connection:
            checkpoint = latest_checkpoint(connection)
            leaves = connection.execute(
                select(merkle_leaves.c.leaf_index, merkle_leaves.c.position)
                .where(merkle_leaves.c.transaction_id == str(transaction_id))
                .order_by(merkle_leaves.c.leaf_index).limit(BUNDLE_EVENTS_MAX)
            ).all()
            if not leaves or checkpoint is None or leaves[-1].leaf_index >= checkpoint.size:
                raise CheckpointPending(
                    f"no signed checkpoint covers transaction {transaction_id} yet: {PENDING_ADVICE}",
                    transaction_id=str(transaction_id),
                    checkpoint_size=checkpoint.size if checkpoint else None,
                )
            indexes = [int(row.leaf_index) for row in leaves]
            paths = _read_tree(lambda: TreeReader(connection).inclusion_paths(indexes, checkpoint.size))
        positions = [int(row.position) for row in leaves]
        documents = self._canonical_documents(positions)
        events = [
            {"leaf_index": index, "event": documents[position], "inclusion_path": [b64(h) for h in path]}
            for index, position, path in zip(indexes, positions, paths, strict=True)
        ]
        document = {"format": BUNDLE_FORMAT, "transaction_id": str(transaction_id), "checkpoint": checkpoint.note,
                    "events": events}
        return ProofBundle(document, checkpoint, positions)

    def _canonical_documents(self, positions: list[int]) -> dict[int, dict[str, Any]]:
        """Each event's canonical document, by position: one read of the log when they lie close together."""
        low, high = min(positions), max(positions)
        if high - low < EVENT_SPAN_READ_MAX:
            wanted = set(positions)
            found = [n for n in self.ledger.recorder.select_notifications(start=low, limit=high - low + 1, stop=high)
                     if n.id in wanted]
        else:  # e.g. a reversal long after the posting: one read each
            found = [n for p in positions for n in self.ledger.recorder.select_notifications(start=p, limit=1)[:1]]
        documents = {n.id: self._canonical_document(n) for n in found}
        missing = set(positions) - set(documents)
        assert not missing, f"the log holds no event at positions {sorted(missing)}"
        return documents

    def _canonical_document(self, notification: Any) -> dict[str, Any]:
        event = self.ledger.mapper.to_domain_event(notification)
        # The canonical bytes parsed back: JSON's own values, which re-encode to the same bytes.
        document: dict[str, Any] = json.loads(canonical_encoding(type(event).__qualname__, vars(event)))
        return document
