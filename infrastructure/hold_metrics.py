"""What is counted about holds: ``invario_holds_total{outcome=created|posted|voided|expired}``.

Counted where a hold command succeeds (the HTTP API and the expiry job), never
by projections, so a rebuild counts nothing twice.
"""

from __future__ import annotations

from opentelemetry import metrics

CREATED, POSTED, VOIDED, EXPIRED = "created", "posted", "voided", "expired"

_holds = metrics.get_meter("invario").create_counter(
    "invario_holds_total", unit="{hold}", description="Holds created, posted, voided and expired, by outcome"
)


def count_hold(outcome: str) -> None:
    assert outcome in (CREATED, POSTED, VOIDED, EXPIRED), outcome
    _holds.add(1, {"outcome": outcome})
