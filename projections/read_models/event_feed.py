"""The event feed: which log positions belong to which tenant, for ``GET /v1/events`` and its stream.

The event store knows no tenant: only an aggregate's first event names it
(``projections.relay.origins``). Filtering the log by tenant when read would
scan the whole log for a tenant with few events in a large one, so this read
model keeps one row per relayed event, keyed ``(tenant_id, position)``: a page
of a tenant's events after a position is one range read of the primary key,
whatever the size of the log. The events themselves stay in the event store
(read by position, ``infrastructure.log_reads``); a row only adds the currency
of an account's event, which the CloudEvent carries (``projections.relay.messages``).

``read_event_feed_origins`` remembers each aggregate's tenant (and an account's
currency) from its first event, so later events (``Account.PostingRecorded``)
find theirs without reading the store. Events the relay does not publish (the
API keys': their payload holds the key's digest) have no row, so the feed never
serves them either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, Connection, Engine, PrimaryKeyConstraint, String, Table, select

from infrastructure.schema import metadata
from projections.following.consistency import snapshot
from projections.following.follower import LoggedEvent, read_tracking
from projections.read_models.bulk import insert_rows
from projections.relay.messages import Origin
from projections.relay.origins import NOT_RELAYED, aggregate_name, origin_of_first

NAME = "event_feed"
# A page of GET /v1/events: the default and the most a client may ask for.
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
_ORIGIN_LOOKUP_CHUNK = 500  # aggregate ids per IN (...) query: bounded parameters on both stores

read_event_feed = Table(
    "read_event_feed",
    metadata,
    Column("tenant_id", String(36), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("currency", String(3), nullable=True),  # of an account's event
    PrimaryKeyConstraint("tenant_id", "position"),
)

read_event_feed_origins = Table(
    "read_event_feed_origins",
    metadata,
    Column("aggregate_id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("currency", String(3), nullable=True),
)


class EventFeedProjection:
    """One feed row per relayed event, and one origin row per aggregate."""

    name = NAME
    tables = (read_event_feed, read_event_feed_origins)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        relayed = [logged for logged in batch if aggregate_name(logged.event) not in NOT_RELAYED]
        learnt: dict[UUID, Origin] = {}
        for logged in relayed:
            if logged.event.originator_version == 1:
                learnt[logged.event.originator_id] = origin_of_first(logged.event)
        insert_rows(connection, read_event_feed_origins,
                    [(str(aggregate_id), str(o.tenant_id), o.currency) for aggregate_id, o in learnt.items()])
        missing = {logged.event.originator_id for logged in relayed} - learnt.keys()
        origins = {**_stored_origins(connection, missing), **learnt}
        rows = []
        for logged in relayed:
            origin = origins.get(logged.event.originator_id)
            if origin is None:
                raise LookupError(f"no first event seen for aggregate {logged.event.originator_id}")
            rows.append((str(origin.tenant_id), logged.position, origin.currency))
        insert_rows(connection, read_event_feed, rows)


def _stored_origins(connection: Connection, aggregate_ids: Iterable[UUID]) -> dict[UUID, Origin]:
    wanted = sorted(str(aggregate_id) for aggregate_id in aggregate_ids)
    found: dict[UUID, Origin] = {}
    o = read_event_feed_origins.c
    for start in range(0, len(wanted), _ORIGIN_LOOKUP_CHUNK):
        chunk = wanted[start:start + _ORIGIN_LOOKUP_CHUNK]
        for row in connection.execute(select(o.aggregate_id, o.tenant_id, o.currency).where(o.aggregate_id.in_(chunk))):
            found[UUID(row.aggregate_id)] = Origin(UUID(row.tenant_id), row.currency)
    return found


@dataclass(frozen=True)
class FeedEntry:
    """A tenant's event: where it is in the log, and the origin its CloudEvent names."""

    position: int
    origin: Origin


@dataclass(frozen=True)
class FeedRows:
    entries: list[FeedEntry]  # in log order
    position: int  # the log position the feed reflects: every tenant's events up to it are listed


class EventFeed:
    """Reads of the feed; each answer is one consistent snapshot with the position it reflects."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def position(self) -> int:
        with self.engine.connect() as connection:
            return read_tracking(connection, (NAME,))[NAME].position

    def after(self, tenant_ids: Sequence[UUID], after: int, limit: int, upto: int | None = None) -> FeedRows:
        """At most ``limit`` events of these tenants after ``after`` (and at most ``upto``), in log order."""
        assert 0 < limit <= PAGE_SIZE_MAX + 1 and tenant_ids
        f = read_event_feed.c
        query = (select(f.tenant_id, f.position, f.currency)
                 .where(f.tenant_id.in_(sorted(str(t) for t in tenant_ids)), f.position > after)
                 .order_by(f.position).limit(limit))
        if upto is not None:
            query = query.where(f.position <= upto)
        with snapshot(self.engine) as connection:
            position = read_tracking(connection, (NAME,))[NAME].position
            rows = connection.execute(query).all()
        return FeedRows([_entry(row) for row in rows], position)


def _entry(row: Any) -> FeedEntry:
    return FeedEntry(int(row.position), Origin(UUID(row.tenant_id), row.currency))
