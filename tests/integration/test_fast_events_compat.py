"""Stores written with the reference encoders and with orjson are the same store.

Events written by the standard library's encoders (every release before
``infrastructure.fast_events``) must load and verify with the fast ones, and the
other way round, on SQLite and on PostgreSQL: same stored bytes, same decoded
values, same hashes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from eventsourcing.persistence import JSONTranscoder

from application.ledger import Ledger
from domain import chain
from infrastructure.bootstrap import eventsourcing_env
from infrastructure.database import DatabaseURL
from infrastructure.fast_events import OrjsonTranscoder, canonical_bytes
from infrastructure.settings import Settings
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, broken_chains, leg, notifications


@contextmanager
def reference_ledger(url: str) -> Iterator[Ledger]:
    """A ledger as releases before the fast encoders opened it: json for the store and the hashes."""
    previous = chain._fast_encoding  # noqa: SLF001 - restored below
    env = eventsourcing_env(Settings(database_url=url), DatabaseURL.parse(url))
    del env["TRANSCODER_TOPIC"]
    chain.install_fast_encoding(None)
    ledger = Ledger(env=env)
    try:
        assert type(ledger.mapper.transcoder) is JSONTranscoder
        yield ledger
    finally:
        ledger.close()
        chain.install_fast_encoding(previous)


def write_some(ledger: Ledger, tenant: str) -> None:
    tenant_id = ledger.create_tenant(tenant).aggregate.id
    cash = ledger.open_account(tenant_id, "cash", "Caf\u00e9 \u2028 \U0001f600", "BRL", "asset",
                               metadata={"\u00e9": "\"q\" \\ \t"}).aggregate.id
    wallet = ledger.open_account(tenant_id, "wallet", "Wallet", "BRL", "liability").aggregate.id
    for n in range(5):
        ledger.post_transaction(tenant_id, f"t-{n}", DAY, [leg(cash, f"{n + 1}.25"), leg(wallet, f"-{n + 1}.25")],
                                description=f"transfer {n} \u00e0", metadata={"n": str(n)})
    expires = datetime.now(timezone(timedelta(hours=-3))) + timedelta(days=1)  # stored in another offset
    ledger.place_hold(tenant_id, "h-1", DAY, [leg(cash, "1.00"), leg(wallet, "-1.00")], expires_at=expires)
    ledger.suspend_tenant(tenant_id, "audit")


def assert_same_store(reader: Ledger, other: Ledger) -> int:
    """Every event decodes alike with both mappers and re-encodes to its stored bytes; chains verify."""
    count = 0
    for stored in notifications(reader):
        mine, theirs = reader.mapper.to_domain_event(stored), other.mapper.to_domain_event(stored)
        assert type(mine) is type(theirs)
        assert vars(mine) == vars(theirs)
        assert reader.mapper.to_stored_event(mine).state == stored.state
        assert other.mapper.to_stored_event(theirs).state == stored.state
        document = {"event_type": type(mine).__qualname__,
                    "fields": {k: v for k, v in vars(mine).items() if k not in ("hash", "originator_topic")}}
        assert canonical_bytes(document) == chain.reference_encoding(document)
        assert chain.compute_event_hash(mine) == mine.hash
        count += 1
    assert broken_chains(reader) == {}
    return count


def test_reference_and_fast_encoders_read_each_others_stores(database_url: str, open_rt: OpenRuntime) -> None:
    with reference_ledger(database_url) as reference:
        write_some(reference, "old")
    runtime = open_rt(database_url)
    fast = runtime.ledger
    assert isinstance(fast.mapper.transcoder, OrjsonTranscoder) and fast.mapper.transcoder.fast
    assert chain._fast_encoding is canonical_bytes  # noqa: SLF001 - the runtime hashes with orjson
    write_some(fast, "new")
    with reference_ledger(database_url) as reference:
        assert assert_same_store(reference, fast) == assert_same_store(fast, reference) > 20
        for name in ("old", "new"):  # aggregates load through either mapper, with the same state
            tenant = reference.get_tenant_by_name(name)
            assert fast.get_tenant_by_name(name).chain_hash == tenant.chain_hash
