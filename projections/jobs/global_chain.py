"""The global chain: every event of the ledger, in log order, hash-linked.

Each row links one event's own hash to its log position and to the previous
row, starting from the genesis hash. The table and its tracking position are
written in one transaction by a ``Follower``; verification (``invario verify``)
recomputes it from the stored events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Connection, DateTime, Integer, String, Table, insert, select

from domain.chain import GENESIS_HASH, global_link_hash
from infrastructure.schema import metadata
from projections.following.follower import LoggedEvent

ledger_chain = Table(
    "ledger_chain",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False, unique=True),
    Column("originator_id", String(36), nullable=False),
    Column("originator_version", Integer, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("event_hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class ChainHead:
    sequence: int
    position: int
    hash: str


def read_head(connection: Connection) -> ChainHead:
    row = connection.execute(
        select(ledger_chain.c.sequence, ledger_chain.c.position, ledger_chain.c.hash)
        .order_by(ledger_chain.c.sequence.desc())
        .limit(1)
    ).first()
    return ChainHead(*row) if row else ChainHead(0, 0, GENESIS_HASH)


class GlobalChainProjection:
    name = "global_chain"

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        head = read_head(connection)
        sequence, prev_hash = head.sequence, head.hash
        rows = []
        for logged in batch:
            event = logged.event
            sequence += 1
            link = global_link_hash(
                prev_hash, sequence, logged.position, event.originator_id, event.originator_version, event.hash
            )
            rows.append({
                "sequence": sequence,
                "position": logged.position,
                "originator_id": str(event.originator_id),
                "originator_version": event.originator_version,
                "event_type": type(event).__qualname__,
                "event_hash": event.hash,
                "prev_hash": prev_hash,
                "hash": link,
                "recorded_at": event.timestamp,
            })
            prev_hash = link
        connection.execute(insert(ledger_chain), rows)
