"""The expiry job: voids holds whose deadline has passed, each exactly once.

It asks the transactions read model which pending holds are due, and calls the
``expire_hold`` use case for each. Exactly-once comes from the hold itself, not
from this job: a hold's state refuses a second expiry (``hold_expired``), a
posted or voided hold refuses it too (``hold_already_resolved``), and two
workers expiring one hold at once conflict on its version, so only one
``HoldExpired`` event is ever saved; the other worker re-decides and is refused.
So the job can run in every worker, be restarted at any moment, and catch up on
holds that expired while no worker ran. A read model that lags only makes it
ask again about a hold that is already resolved, which changes nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from application.ledger import Ledger
from domain.errors import HoldAlreadyResolved, HoldExpired, HoldNotExpired, LedgerError
from infrastructure.hold_metrics import EXPIRED, count_hold
from projections.following.follower import drain
from projections.read_models.queries import ReadModels

log = logging.getLogger(__name__)

EXPIRY_BATCH = 100


class HoldExpiry:
    """A job with the followers' interface (``name``, ``process_batch``, ``catch_up``, ``record_error``)."""

    name = "hold_expiry"

    def __init__(self, ledger: Ledger, engine: Engine, batch_size: int = EXPIRY_BATCH) -> None:
        self.ledger = ledger
        self.models = ReadModels(engine)
        self.batch_size = batch_size

    def process_batch(self) -> int:
        """Expire the holds that are due now (at most one batch); return how many this call expired."""
        expired = 0
        for tenant_id, transaction_id in self.models.holds_due(self.ledger.clock(), self.batch_size):
            try:
                self.ledger.expire_hold(tenant_id, transaction_id)
            except (HoldExpired, HoldAlreadyResolved, HoldNotExpired):
                continue  # another worker got there first, or the read model is behind: nothing to do
            except LedgerError as error:
                log.warning("could not expire hold %s: %s", transaction_id, error.code)
                continue
            count_hold(EXPIRED)
            log.info("hold_expired %s", transaction_id, extra={"event": "hold_expired",
                                                               "transaction_id": str(transaction_id)})
            expired += 1
        return expired

    def catch_up(self, batches_max: int = 1_000_000) -> int:
        return drain(self.process_batch, batches_max)

    def record_error(self, message: str, names: object = None) -> None:  # noqa: ARG002
        log.error("hold expiry failed: %s", message)
