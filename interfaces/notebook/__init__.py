"""Notebook access to a ledger: read-only, paged, replayable (docs/notebooks.md).

    from interfaces.notebook import open_ledger
    with open_ledger("sqlite:///var/invario.db") as book:
        book.balances(as_of=date(2025, 3, 31))
"""

from interfaces.demo import DemoOptions, DemoRefused, DemoSummary, create_demo_ledger
from interfaces.notebook.reader import EVENT_TYPES, LedgerEvent, ReadOnlyLedger, open_ledger

__all__ = [
    "EVENT_TYPES",
    "DemoOptions",
    "DemoRefused",
    "DemoSummary",
    "LedgerEvent",
    "ReadOnlyLedger",
    "create_demo_ledger",
    "open_ledger",
]
