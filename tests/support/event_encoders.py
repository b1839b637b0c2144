"""Reading one store with both event encoders: the reference (json) and the fast one (orjson).

Shared by the integration test of mixed stores and the test of a backup written by
an earlier release (``infrastructure.fast_events``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.persistence import JSONTranscoder

from application.ledger import Ledger
from domain import chain
from infrastructure.runtime import eventsourcing_env
from infrastructure.database import DatabaseURL
from infrastructure.fast_events import canonical_bytes
from infrastructure.settings import Settings
from tests.integration.helpers import broken_chains, notifications


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
