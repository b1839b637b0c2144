"""Stores written with the reference encoders and with orjson are the same store.

Events written by the standard library's encoders (every release before
``infrastructure.fast_events``) must load and verify with the fast ones, and the
other way round, on SQLite and on PostgreSQL: same stored bytes, same decoded
values, same hashes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from application.ledger import Ledger
from domain import chain
from infrastructure.fast_events import OrjsonTranscoder, canonical_bytes
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, leg
from tests.support.event_encoders import assert_same_store, reference_ledger


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
