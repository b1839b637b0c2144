"""Signed checkpoints of the Merkle tree: its head (size, root) signed as a C2SP note, kept in the database.

``Checkpointer`` runs in the follower loop after the tree's follower (``invario
worker`` and ``invario serve``). Once the tree has grown by
``INVARIO_CHECKPOINT_EVERY_EVENTS`` leaves, or ``INVARIO_CHECKPOINT_EVERY_SECONDS``
after the last checkpoint if it has grown at all, it signs the head with
``INVARIO_SIGNING_KEY`` (``SigningKey.sign_checkpoint``) and stores the note. A
checkpoint's size is its primary key, so two workers signing the same head store
it once. The first checkpoint is signed as soon as the tree has a leaf.

A checkpoint is a function of the log and the key, except for ``signed_at``:
rebuilding the tree keeps them (the rebuilt tree must reproduce their roots,
which ``invario verify`` checks).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from sqlalchemy import BigInteger, Column, Connection, DateTime, Engine, LargeBinary, Table, Text, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from infrastructure.schema import metadata, stored_utc
from projections.jobs.merkle_tree import TreeReader, merkle_leaves, tree_size

log = logging.getLogger(__name__)

CHECK_SECONDS_MAX = 1.0  # how often the worker's loop asks whether a checkpoint is due

merkle_checkpoints = Table(
    "merkle_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("position", BigInteger, nullable=False),  # the log position of its last leaf
    Column("note", Text, nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
)


class CheckpointSigner(Protocol):
    def sign_checkpoint(self, origin: str, size: int, root: bytes) -> str: ...


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    position: int
    note: str
    signed_at: datetime


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to sign (``INVARIO_CHECKPOINT_*``)."""

    origin: str
    every_events: int
    every_seconds: float


def _checkpoint(row: object) -> StoredCheckpoint:
    size, root, position, note, signed_at = row  # type: ignore[misc]
    moment = stored_utc(signed_at)
    return StoredCheckpoint(int(size), bytes(root), int(position), note, moment)


_COLUMNS = (merkle_checkpoints.c.tree_size, merkle_checkpoints.c.root_hash, merkle_checkpoints.c.position,
            merkle_checkpoints.c.note, merkle_checkpoints.c.signed_at)


def latest_checkpoint(connection: Connection) -> StoredCheckpoint | None:
    row = connection.execute(select(*_COLUMNS).order_by(merkle_checkpoints.c.tree_size.desc()).limit(1)).first()
    return _checkpoint(row) if row else None


def checkpoint_of_size(connection: Connection, size: int) -> StoredCheckpoint | None:
    row = connection.execute(select(*_COLUMNS).where(merkle_checkpoints.c.tree_size == size)).first()
    return _checkpoint(row) if row else None


def checkpoints_between(connection: Connection, after: int, up_to: int, limit: int) -> list[StoredCheckpoint]:
    """Checkpoints of sizes in (after, up_to], smallest first, at most ``limit``."""
    rows = connection.execute(
        select(*_COLUMNS).where(merkle_checkpoints.c.tree_size > after, merkle_checkpoints.c.tree_size <= up_to)
        .order_by(merkle_checkpoints.c.tree_size).limit(limit)
    )
    return [_checkpoint(row) for row in rows]


class Checkpointer:
    """A job with the followers' interface (``name``, ``process_batch``, ``catch_up``, ``record_error``)."""

    name = "checkpoints"

    def __init__(self, engine: Engine, signer: CheckpointSigner, policy: CheckpointPolicy) -> None:
        self.engine = engine
        self.signer = signer
        self.policy = policy
        self._next_look = 0.0

    def process_batch(self) -> int:
        """In the follower loop: look at most every ``CHECK_SECONDS_MAX`` (the loop turns far more often)."""
        moment = time.monotonic()
        if moment < self._next_look:
            return 0
        self._next_look = moment + min(CHECK_SECONDS_MAX, self.policy.every_seconds)
        return self.sign_if_due()

    def sign_if_due(self) -> int:
        """Sign and store a checkpoint of the tree's head if one is due; return 0 (nothing more to do now)."""
        now = datetime.now(timezone.utc)
        with self.engine.begin() as connection:
            size = tree_size(connection)
            last = latest_checkpoint(connection)
            if not self._due(size, last, now):
                return 0
            root = TreeReader(connection).root(size)
            position = connection.execute(
                select(merkle_leaves.c.position).where(merkle_leaves.c.leaf_index == size - 1)
            ).scalar_one()
            note = self.signer.sign_checkpoint(self.policy.origin, size, root)
            insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
            stored = connection.execute(insert(merkle_checkpoints).values(
                tree_size=size, root_hash=root, position=int(position), note=note, signed_at=now,
            ).on_conflict_do_nothing())
        if stored.rowcount:
            log.info("checkpoint_signed size %d", size, extra={"event": "checkpoint_signed", "tree_size": size})
        return 0  # nothing more to do until the tree grows: the loop may idle

    def _due(self, size: int, last: StoredCheckpoint | None, now: datetime) -> bool:
        if size == 0:
            return False
        if last is None:
            return True
        grown = size - last.size
        return grown >= self.policy.every_events or (
            grown > 0 and (now - last.signed_at).total_seconds() >= self.policy.every_seconds
        )

    def catch_up(self, batches_max: int = 1) -> int:  # noqa: ARG002 - one check signs whatever is due
        return self.sign_if_due()

    def record_error(self, message: str, names: object = None) -> None:  # noqa: ARG002
        log.error("signing a checkpoint failed: %s", message)
