"""The worker's continuous verification: new events as they are chained, and the whole ledger now and then.

``IntegrityVerifier`` runs in the follower loop (``invario worker`` and
``invario serve``) next to the followers. Each call of ``process_batch``:

1. checks that the last verified event (the checkpoint) is still in the log,
   unchanged; a dropped tip or an edit at the checkpoint is a break;
2. verifies the events the global chain follower has chained since the
   checkpoint, with the same ``ChainWalk`` as ``invario verify``, continuing
   the recomputed global chain from the checkpoint, and moves the checkpoint
   forward by compare-and-set (two workers never both move it);
3. when idle, signs a digest of the checkpoint every
   ``INVARIO_DIGEST_INTERVAL_SECONDS`` (if ``INVARIO_SIGNING_KEY`` is set), and
   runs a full verification every ``INVARIO_INTEGRITY_FULL_VERIFY_SECONDS``,
   one page per call, so that edits of old events are found too.

While the ledger is broken it verifies nothing new; it re-verifies the whole
ledger every ``INVARIO_INTEGRITY_RECHECK_SECONDS`` instead, so that once a good
backup is restored the break clears (and writes resume) on its own.

The verifier reads no settings itself: ``interfaces.bootstrap`` passes it those
intervals (a ``VerifierSchedule``) and the signing key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from application.ledger import Ledger
from domain.integrity import CHANGED, CHECKPOINT, MISSING, AggregateHeads, ChainRow, ChainWalk, Damage
from infrastructure.integrity_monitor import IntegrityMonitor, process_monitor
from infrastructure.integrity_store import Checkpoint, advance_checkpoint, read_checkpoint, store_digest
from infrastructure.signing import SigningKey
from projections.following.follower import drain
from projections.jobs.verification import LedgerLookups, LedgerVerification, check_event, record_outcome, stored_chain_rows

log = logging.getLogger("invario.integrity")

SOURCE = "worker"
FULL_STEP_EVENTS = 5_000  # one step of a full verification per loop turn keeps the loop responsive


@dataclass(frozen=True)
class VerifierSchedule:
    """How often the verifier acts, in seconds (``INVARIO_DIGEST_INTERVAL_SECONDS`` and the like)."""

    digest_interval_seconds: float  # sign a digest (0: never)
    recheck_seconds: float  # while broken, re-verify the whole ledger
    full_verify_seconds: float  # while healthy, re-verify the whole ledger (0: never)
    state_refresh_seconds: float  # how stale the process's view of the shared integrity state may be


class IntegrityVerifier:
    name = "integrity"

    def __init__(  # noqa: PLR0913
        self,
        ledger: Ledger,
        engine: Engine,
        batch_size: int = 500,
        *,
        schedule: VerifierSchedule,
        signing_key: SigningKey | None = None,
        monitor: IntegrityMonitor | None = None,
    ) -> None:
        self.ledger, self.engine, self.batch_size = ledger, engine, batch_size
        self.schedule = schedule
        self.signing_key = signing_key  # None: no digests
        self.monitor = monitor or process_monitor()
        self.monitor.attach(engine, schedule.state_refresh_seconds)
        self.lookups = LedgerLookups(ledger)
        self.heads = AggregateHeads()
        self._continues_from: Checkpoint | None = None
        now = time.monotonic()
        self._full: LedgerVerification | None = None
        self._next_recheck_at = now + self.schedule.recheck_seconds
        self._next_sweep_at = now + self.schedule.full_verify_seconds
        self._next_digest_at = now
        self._was_broken = False

    # --- the follower protocol (see projections.following.runner) --------------------------------

    def process_batch(self) -> int:
        """One unit of work; the number of events verified (0: nothing to do now)."""
        if self.monitor.is_broken():
            return self._recheck_step()
        self._was_broken = False
        verified = self.verify_new_events()
        if verified:
            return verified
        self._sign_if_due()
        return self._sweep_step()

    def catch_up(self, batches_max: int = 1_000_000, on_batch: Callable[[int], None] | None = None) -> int:
        return drain(self.process_batch, batches_max, on_batch)

    def record_error(self, message: str, names: Iterable[str] | None = None) -> None:  # noqa: ARG002
        log.error("integrity verifier failed: %s", message)

    # --- new events ------------------------------------------------------------------------------

    def verify_new_events(self) -> int:
        """Verify the events chained since the checkpoint (at most a batch); report any damage."""
        with self.engine.connect() as connection:
            checkpoint = read_checkpoint(connection)
            rows = stored_chain_rows(connection, checkpoint.sequence, self.batch_size)
        continues = self._continues_from
        if continues is None or (checkpoint.sequence, checkpoint.hash) != (continues.sequence, continues.hash):
            self.heads.clear()  # another worker moved it, or a backup was restored: start afresh
        damage = self._checkpoint_damage(checkpoint)
        if damage is not None:
            self._break(damage)
            return 0
        if not rows:
            return 0
        try:
            return self._walk(checkpoint, rows)
        except BaseException:
            # The walk moved the aggregates' heads past the checkpoint it did not advance: walking the
            # same events again from those heads would report them out of order. Start afresh.
            self._continues_from = None
            raise

    def _walk(self, checkpoint: Checkpoint, rows: dict[int, ChainRow]) -> int:
        walk = ChainWalk(sequence=checkpoint.sequence, link=checkpoint.hash, heads=self.heads)
        notifications = self.ledger.recorder.select_notifications(start=checkpoint.position + 1, limit=len(rows))
        for notification in notifications:
            walk.visit(check_event(self.ledger, notification), rows.get(walk.sequence + 1), self.lookups)
        if walk.sequence + 1 in rows:  # the chain recorded more events than the log holds
            walk.missing_rows(rows[walk.sequence + 1])
        if walk.first_damage is not None:
            self._break(walk.first_damage)
            return 0
        return self._advance(checkpoint, walk)

    def _advance(self, checkpoint: Checkpoint, walk: ChainWalk) -> int:
        new = Checkpoint(walk.sequence, walk.last_position, walk.link, walk.last_event_hash)
        with self.engine.begin() as connection:
            moved = advance_checkpoint(connection, checkpoint, new)
        self._continues_from = new if moved else None
        return walk.events if moved else 0

    def _checkpoint_damage(self, checkpoint: Checkpoint) -> Damage | None:
        """The last verified event must still be in the log, unchanged."""
        if checkpoint.sequence == 0:
            return None
        found = self.ledger.recorder.select_notifications(start=checkpoint.position, limit=1)
        if not found or found[0].id != checkpoint.position:
            return Damage(MISSING, CHECKPOINT, checkpoint.sequence, checkpoint.position, None, None, None,
                          checkpoint.event_hash or "", "",
                          "the last verified event is gone from the log (its tip was dropped or rolled back)")
        event = check_event(self.ledger, found[0])
        if event.chain_hash == checkpoint.event_hash:
            return None
        return Damage(CHANGED, CHECKPOINT, checkpoint.sequence, checkpoint.position, str(event.originator_id),
                      event.originator_version, event.event_type, checkpoint.event_hash or "", event.chain_hash,
                      "the last verified event was changed")

    def _break(self, damage: Damage) -> None:
        self._continues_from = None
        self.monitor.report_break(self.engine, damage, SOURCE)
        self._was_broken = True
        self._next_recheck_at = time.monotonic() + self.schedule.recheck_seconds

    # --- whole-ledger verifications -----------------------------------------------------------------

    def _recheck_step(self) -> int:
        """While broken: a full verification every recheck interval, one step per call."""
        now = time.monotonic()
        if not self._was_broken:
            self._was_broken = True
            self._full = None
            self._next_recheck_at = now + self.schedule.recheck_seconds
        if self._full is None and now < self._next_recheck_at:
            return 0
        return self._full_step("re-verification after a break")

    def _sweep_step(self) -> int:
        """While healthy: a full verification every INVARIO_INTEGRITY_FULL_VERIFY_SECONDS (0: never)."""
        if self.schedule.full_verify_seconds == 0:
            return 0
        if self._full is None and time.monotonic() < self._next_sweep_at:
            return 0
        return self._full_step("periodic full verification")

    def _full_step(self, purpose: str) -> int:
        if self._full is None:
            log.info("integrity: starting a %s", purpose)
            self._full = LedgerVerification(self.ledger, self.engine)
        verified = self._full.step(FULL_STEP_EVENTS)
        if not self._full.done:
            return verified
        report, self._full = self._full.report(), None
        now = time.monotonic()
        self._next_recheck_at = now + self.schedule.recheck_seconds
        self._next_sweep_at = now + self.schedule.full_verify_seconds
        intact = record_outcome(self.engine, report, f"{SOURCE} {purpose}")
        log.info("integrity: %s of %d events done in %.1f s: %s", purpose, report.events, report.elapsed_seconds,
                 "intact" if intact else "broken")
        return verified

    # --- digests ---------------------------------------------------------------------------------------

    def _sign_if_due(self) -> None:
        if self.signing_key is None or self.schedule.digest_interval_seconds == 0:
            return
        now = time.monotonic()
        if now < self._next_digest_at:
            return
        self._next_digest_at = now + self.schedule.digest_interval_seconds
        with self.engine.connect() as connection:
            checkpoint = read_checkpoint(connection)
        if checkpoint.sequence > 0:
            digest = self.signing_key.sign_head(checkpoint.sequence, checkpoint.position, checkpoint.hash)
            if store_digest(self.engine, digest):
                log.info("integrity: signed the digest of sequence %d (key %s)", digest.sequence, digest.key_id)

