"""Read-only access to a ledger's event log for notebooks (docs/notebooks.md).

``open_ledger(url)`` opens the store so that nothing can be written through it:
SQLite files are opened with ``mode=ro``; PostgreSQL sessions start with
``default_transaction_read_only=on``, so any write fails in the database itself.
The event store's own tables are read directly and decoded with the ledger's
own event mapper, so the write side (its pool, table creation, caches) is
never opened.

Reading is always paged: at most ``page_size`` events are held at once, and
``events()`` is a generator. DataFrames hold at most ``rows_max`` rows.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import Engine, bindparam, create_engine, text

from application.ledger import Ledger
from domain.account import Account, AccountType
from domain.api_key import ApiKey
from domain.ids import tenant_id_for
from domain.key_ring import KeyRing
from domain.money import format_amount
from domain.tenant import Tenant
from domain.transaction import Transaction
from infrastructure.database import DatabaseURL
from infrastructure.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

PAGE_SIZE_DEFAULT = 1000
PAGE_SIZE_MAX = 10_000
ROWS_MAX_DEFAULT = 1_000_000
DIRECTORY_SIZE_MAX = 100_000  # aggregates whose tenant (and account details) are remembered
CONNECT_TIMEOUT_SECONDS = 5
_AGGREGATES = (Tenant, Account, Transaction, ApiKey, KeyRing)
_POSTING_EVENTS = ("Transaction.Posted", "Transaction.HoldPosted")
_ENVELOPE = ("originator_id", "originator_version", "timestamp", "originator_topic", "prev_hash", "hash")


class EventFilters(TypedDict, total=False):
    """The filters of ``ReadOnlyLedger.events()``, shared by ``events_frame()``."""

    upto: int | None
    tenant: str | UUID | None
    types: Iterable[str] | None
    since: datetime | None
    until: datetime | None


def _event_topics() -> dict[str, str]:
    """Every domain event's public name ('Transaction.Posted') and its stored topic."""
    topics = {}
    for aggregate in _AGGREGATES:
        for name, value in vars(aggregate).items():
            if not (isinstance(value, type) and hasattr(value, "mutate")) or name == "Event":
                continue
            # eventsourcing gives every aggregate a 'Created' base; only a declared one is ever stored.
            if name == "Created" and not value.__dict__.get("__annotations__"):
                continue
            topics[f"{aggregate.__name__}.{name}"] = get_topic(value)
    return dict(sorted(topics.items()))


EVENT_TYPES: dict[str, str] = _event_topics()


@dataclass(frozen=True)
class LedgerEvent:
    """One decoded event and where it is in the log.

    ``type`` is the event's name, e.g. ``Transaction.Posted``; ``event`` is the
    domain event object itself; ``data`` its own fields (no envelope).
    """

    position: int
    type: str
    originator_id: UUID
    originator_version: int
    recorded_at: datetime
    tenant_id: UUID | None
    event: Any

    @property
    def data(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self.event).items() if key not in _ENVELOPE}


@dataclass(frozen=True)
class _AccountInfo:
    tenant_id: UUID
    code: str
    name: str
    currency: str
    type: str


def open_ledger(url: str | None = None, *, page_size: int = PAGE_SIZE_DEFAULT) -> ReadOnlyLedger:
    """Open the ledger at ``url`` (default: INVARIO_DATABASE_URL) for reading only.

    ``url`` is ``sqlite:///PATH`` or ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME``.
    Use it as a context manager, or call ``close()``.
    """
    database = DatabaseURL.parse(url if url is not None else get_settings().database_url)
    return ReadOnlyLedger(database, _read_only_engine(database), page_size=page_size)


def _read_only_engine(database: DatabaseURL) -> Engine:
    if database.is_postgres:
        return create_engine(
            database.sqlalchemy_url(),
            pool_size=2,
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                          "options": "-c default_transaction_read_only=on"},
        )
    assert database.path is not None
    path = database.path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no ledger at {path}: create one with 'invario demo --database-url sqlite:///{path}'")
    uri = f"{path.as_uri()}?mode=ro"
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))


class ReadOnlyLedger:
    """A ledger's event log, decoded, paged and replayed; nothing here can write."""

    def __init__(self, database: DatabaseURL, engine: Engine, *, page_size: int = PAGE_SIZE_DEFAULT) -> None:
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE_MAX}")
        self.database = database
        self.engine = engine
        self.page_size = page_size
        # Only the mapper (transcodings of dates and so on) of an in-memory ledger is used.
        self._mapper = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
        if database.is_postgres:
            self._table, self._position_column = "invario_events", "notification_id"
        else:
            self._table, self._position_column = "stored_events", "rowid"
        self._tenants: OrderedDict[UUID, UUID | None] = OrderedDict()
        self._accounts: OrderedDict[UUID, _AccountInfo] = OrderedDict()
        self._tenant_names: dict[UUID, str] = {}

    def __repr__(self) -> str:
        return f"ReadOnlyLedger({self.database.describe()})"

    def __enter__(self) -> ReadOnlyLedger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # --- the log ------------------------------------------------------------------------

    def head(self) -> int:
        """The position of the last event in the log (0 when it is empty)."""
        query = text(f"SELECT MAX({self._position_column}) FROM {self._table}")  # noqa: S608 - fixed names
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def events(  # noqa: PLR0913
        self,
        after: int = 0,
        *,
        upto: int | None = None,
        tenant: str | UUID | None = None,
        types: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[LedgerEvent]:
        """Decoded events after position ``after`` (up to and including ``upto``), in log order.

        Filters: ``tenant`` (name or id), ``types`` (names as in ``EVENT_TYPES``,
        e.g. ``"Transaction.Posted"``), ``since``/``until`` (recording time,
        inclusive; naive datetimes are taken as UTC). At most ``limit`` events.
        The log is read ``page_size`` events at a time, only as far as consumed.
        """
        topics = _topics_of(types)
        tenant_id = self._tenant_id(tenant)
        since, until = _utc(since), _utc(until)
        yielded = 0
        position = after
        while limit is None or yielded < limit:
            page = self._read_page(position, upto, topics)
            for logged in page:
                position = logged.position
                if tenant_id is not None and logged.tenant_id != tenant_id:
                    continue
                if (since is not None and logged.recorded_at < since) or (until is not None and logged.recorded_at > until):
                    continue
                yield logged
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            if len(page) < self.page_size:
                return

    def _read_page(self, after: int, upto: int | None, topics: Sequence[str]) -> list[LedgerEvent]:
        """At most ``page_size`` events after ``after``: the one read of the log."""
        column = self._position_column
        query = f"SELECT {column}, originator_id, originator_version, topic, state FROM {self._table} WHERE {column} > :after"  # noqa: S608,E501
        params: dict[str, Any] = {"after": after, "limit": self.page_size}
        if upto is not None:
            query += f" AND {column} <= :upto"
            params["upto"] = upto
        if topics:
            query += " AND topic IN :topics"
            params["topics"] = list(topics)
        statement = text(query + f" ORDER BY {column} LIMIT :limit")
        if topics:
            statement = statement.bindparams(bindparam("topics", expanding=True))
        with self.engine.connect() as connection:
            rows = connection.execute(statement, params).all()
        return [self._decode(*row) for row in rows]

    def _decode(self, position: int, originator_id: Any, version: int, topic: str, state: Any) -> LedgerEvent:
        aggregate_id = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
        event = self._mapper.to_domain_event(StoredEvent(aggregate_id, version, topic, bytes(state)))
        self._learn(aggregate_id, event)
        return LedgerEvent(int(position), topic.partition(":")[2], aggregate_id, int(version), event.timestamp,
                           self._tenant_of(aggregate_id, event), event)

    # --- who owns what --------------------------------------------------------------------

    def _learn(self, aggregate_id: UUID, event: Any) -> None:
        """Remember what a creation event tells about its aggregate (in bounded memory)."""
        if isinstance(event, Tenant.Created):
            self._tenant_names[aggregate_id] = event.name
            _remember(self._tenants, aggregate_id, aggregate_id)
        elif isinstance(event, Account.Opened):
            _remember(self._accounts, aggregate_id,
                      _AccountInfo(event.tenant_id, event.code, event.name, event.currency, str(event.type)))
            _remember(self._tenants, aggregate_id, event.tenant_id)
        elif event.originator_version == 1:
            _remember(self._tenants, aggregate_id, getattr(event, "tenant_id", None))

    def _tenant_of(self, aggregate_id: UUID, event: Any) -> UUID | None:
        found = getattr(event, "tenant_id", None)
        if isinstance(found, UUID):
            return found
        if aggregate_id not in self._tenants:
            self._learn_from_creation(aggregate_id)
        return self._tenants.get(aggregate_id)

    def _learn_from_creation(self, aggregate_id: UUID) -> None:
        """Read an aggregate's first event: the only place some events' tenant is written."""
        key: Any = aggregate_id if self.database.is_postgres else aggregate_id.hex
        query = text(f"SELECT topic, state FROM {self._table} WHERE originator_id = :id AND originator_version = 1")  # noqa: S608,E501
        with self.engine.connect() as connection:
            row = connection.execute(query, {"id": key}).first()
        if row is None:
            _remember(self._tenants, aggregate_id, None)
            return
        self._learn(aggregate_id, self._mapper.to_domain_event(StoredEvent(aggregate_id, 1, row[0], bytes(row[1]))))

    def _account(self, account_id: UUID) -> _AccountInfo | None:
        if account_id not in self._accounts:
            self._learn_from_creation(account_id)
        return self._accounts.get(account_id)

    def _tenant_id(self, tenant: str | UUID | None) -> UUID | None:
        if tenant is None or isinstance(tenant, UUID):
            return tenant
        try:
            return UUID(tenant)
        except ValueError:
            return tenant_id_for(tenant)  # a tenant's id is derived from its unique name

    def tenant_name(self, tenant_id: UUID) -> str | None:
        if tenant_id not in self._tenant_names:
            self._learn_from_creation(tenant_id)
        return self._tenant_names.get(tenant_id)

    # --- DataFrames -----------------------------------------------------------------------

    def tenants(self) -> pd.DataFrame:
        """One row per tenant: ``tenant_id``, ``name``, ``created_at``, ``position``."""
        rows = [{"tenant_id": e.originator_id, "name": e.event.name, "created_at": e.recorded_at,
                 "position": e.position} for e in self.events(types=["Tenant.Created"])]
        return _frame(rows, ["tenant_id", "name", "created_at", "position"])

    def accounts(self, *, tenant: str | UUID | None = None) -> pd.DataFrame:
        """One row per account as opened: ids, tenant, code, name, currency, type."""
        rows = [{"account_id": e.originator_id, "tenant_id": e.tenant_id, "tenant": self.tenant_name(e.tenant_id),
                 "code": e.event.code, "name": e.event.name, "currency": e.event.currency, "type": str(e.event.type),
                 "opened_at": e.recorded_at, "position": e.position}
                for e in self.events(types=["Account.Opened"], tenant=tenant)]
        return _frame(rows, ["account_id", "tenant_id", "tenant", "code", "name", "currency", "type", "opened_at",
                             "position"])

    def events_frame(self, after: int = 0, *, rows_max: int = ROWS_MAX_DEFAULT,
                     **filters: Unpack[EventFilters]) -> pd.DataFrame:
        """``events()`` as a DataFrame, with the same filters: position, type, tenant_id,
        originator_id, originator_version, recorded_at and ``data`` (the event's fields, a dict)."""
        found = self.events(after, limit=rows_max + 1, **filters)
        rows = [{"position": e.position, "type": e.type, "tenant_id": e.tenant_id, "originator_id": e.originator_id,
                 "originator_version": e.originator_version, "recorded_at": e.recorded_at, "data": e.data}
                for e in found]
        _check_rows(rows, rows_max)
        return _frame(rows, ["position", "type", "tenant_id", "originator_id", "originator_version", "recorded_at",
                             "data"])

    def postings_frame(  # noqa: PLR0913
        self,
        after: int = 0,
        *,
        upto: int | None = None,
        tenant: str | UUID | None = None,
        effective_from: date | None = None,
        effective_to: date | None = None,
        rows_max: int = ROWS_MAX_DEFAULT,
    ) -> pd.DataFrame:
        """One row per posted amount (statement entries): a transaction's postings,
        a reversal's, a captured hold's. Amounts are integer minor units, raw
        (debit-positive); ``amount`` is the same as a decimal string."""
        rows: list[dict[str, Any]] = []
        for logged in self.events(after, upto=upto, tenant=tenant, types=_POSTING_EVENTS):
            effective = logged.event.effective_date
            if (effective_from and effective < effective_from) or (effective_to and effective > effective_to):
                continue
            rows.extend(self._posting_rows(logged))
            _check_rows(rows, rows_max)
        return _frame(rows, ["position", "tenant_id", "transaction_id", "external_id", "kind", "effective_date",
                             "recorded_at", "account_id", "account_code", "amount_minor", "amount", "currency",
                             "description"])

    def _posting_rows(self, logged: LedgerEvent) -> list[dict[str, Any]]:
        event = logged.event
        if logged.type == "Transaction.HoldPosted":
            kind, external_id = "hold_capture", None
        else:
            kind = "reversal" if event.reverses is not None else "posted"
            external_id = event.external_id
        rows = []
        for posting in event.postings:
            account_id = UUID(posting["account_id"])
            info = self._account(account_id)
            rows.append({
                "position": logged.position, "tenant_id": logged.tenant_id, "transaction_id": logged.originator_id,
                "external_id": external_id, "kind": kind, "effective_date": event.effective_date,
                "recorded_at": logged.recorded_at, "account_id": account_id,
                "account_code": info.code if info else None, "amount_minor": posting["amount_minor"],
                "amount": format_amount(posting["amount_minor"], posting["currency"]),
                "currency": posting["currency"], "description": event.description,
            })
        return rows

    # --- replay -----------------------------------------------------------------------------

    def balances(
        self, *, as_of: date | None = None, position: int | None = None, tenant: str | UUID | None = None
    ) -> pd.DataFrame:
        """Every account's posted balance, replayed from the log.

        ``as_of``: only entries effective on or before that date (like the
        statements' ``as_of``); ``position``: only events up to that log position
        (the ledger as it was then). Both may be combined; the default is
        everything now. ``balance_minor`` is raw (debit-positive),
        ``balance_normal_minor`` seen from the account type's normal side.
        The frame's ``attrs["position"]`` is the log position replayed to.
        """
        upto = position if position is not None else self.head()
        opened: dict[UUID, LedgerEvent] = {}
        sums: dict[UUID, list[int]] = {}  # account -> [balance_minor, posting_count]
        for logged in self.events(upto=upto, tenant=tenant, types=("Account.Opened", *_POSTING_EVENTS)):
            if logged.type == "Account.Opened":
                opened[logged.originator_id] = logged
                continue
            if as_of is not None and logged.event.effective_date > as_of:
                continue
            for posting in logged.event.postings:
                total = sums.setdefault(UUID(posting["account_id"]), [0, 0])
                total[0] += posting["amount_minor"]
                total[1] += 1
        rows = [self._balance_row(account, sums.get(account_id, [0, 0])) for account_id, account in opened.items()]
        frame = _frame(rows, ["tenant", "code", "name", "type", "currency", "balance_minor", "balance_normal_minor",
                              "balance", "posting_count", "account_id", "tenant_id"])
        frame = frame.sort_values(["tenant", "code"], ignore_index=True)
        frame.attrs.update(position=upto, as_of=as_of)
        return frame

    def _balance_row(self, opened: LedgerEvent, total: list[int]) -> dict[str, Any]:
        event = opened.event
        balance = total[0]
        normal = balance if AccountType(event.type).is_debit_normal else -balance
        return {"tenant": self.tenant_name(event.tenant_id), "code": event.code, "name": event.name,
                "type": str(event.type), "currency": event.currency, "balance_minor": balance,
                "balance_normal_minor": normal, "balance": format_amount(normal, event.currency),
                "posting_count": total[1], "account_id": opened.originator_id, "tenant_id": event.tenant_id}


# --- helpers ---------------------------------------------------------------------------------


def _topics_of(types: Iterable[str] | None) -> list[str]:
    if types is None:
        return []
    names = [types] if isinstance(types, str) else list(types)
    unknown = sorted(set(names) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {', '.join(sorted(EVENT_TYPES))}")
    return sorted({EVENT_TYPES[name] for name in names})


def _remember(cache: OrderedDict[UUID, Any], key: UUID, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > DIRECTORY_SIZE_MAX:
        cache.popitem(last=False)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def _check_rows(rows: Sequence[Any], rows_max: int) -> None:
    if len(rows) > rows_max:
        raise ValueError(f"more than rows_max={rows_max} rows match: narrow the filters or raise rows_max")


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    try:  # deferred: pandas is optional and slow to import
        import pandas as pd
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("DataFrames need pandas: pip install 'invario[notebook]'") from None
    return pd.DataFrame(rows, columns=columns)
