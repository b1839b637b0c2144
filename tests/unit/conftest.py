"""Fixtures of the unit tests: an in-memory ledger with one tenant's books."""

from __future__ import annotations

import pytest

from application.ledger import Ledger
from tests.unit.books import Books, in_memory_ledger


@pytest.fixture
def ledger() -> Ledger:
    return in_memory_ledger()


@pytest.fixture
def books(ledger: Ledger) -> Books:
    """Tenant ``acme`` with no accounts yet."""
    return Books.create(ledger, "acme")
