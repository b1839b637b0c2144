"""After a restore: bring the derived data back in line with the restored events, then prove it.

A backup taken by ``invario backup`` is one snapshot, so its derived data
(read models, the global chain, the incremental verifier's checkpoint) agrees
with its events. A *partial* restore does not: tables restored from different
backups, or a hand-made mix. ``settle`` handles both directions:

- **derived data behind the events** (older read models, older chain): the
  followers simply continue from the restored positions (catch up);
- **derived data ahead of the events** (newer read models or chain than the
  restored events; ``status`` says ``diverged``): the read models are rebuilt
  from the log; the global chain loses only its rows for events the log does
  not hold, and a checkpoint past the log is reset. Chain rows for events the
  log does hold are never re-derived: ``verify`` checks them, so a restore
  cannot launder a rewritten history;
- anything ``missing``, ``failing`` or left half-rebuilt is rebuilt;
- the Merkle tree is derived like a read model (caught up, or rebuilt from the
  log); its signed checkpoints are kept, and ``verify`` checks the rebuilt tree
  against them, so a rebuild cannot launder a rewritten history either.

Then a full verification of every hash chain (recorded, so ``/health`` and the
write guard follow it) and a reconciliation at one common position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from datetime import datetime, timezone

from sqlalchemy import delete, inspect, select, update

from infrastructure.runtime import Runtime
from infrastructure.integrity_store import INCREMENTAL, integrity_checkpoint, read_checkpoint
from projections.following.follower import Follower, FollowerGroup, ensure_tracking_row, projection_tracking
from projections.jobs.global_chain import GlobalChainProjection, ledger_chain
from projections.jobs.merkle_tree import MerkleTreeProjection
from projections.following.rebuild import replay, start_rebuild
from projections.jobs.reconcile import Reconciliation, reconcile
from projections.following.registry import GLOBAL_CHAIN, MERKLE_TREE, READ_MODELS
from projections.following.status import (
    BEHIND,
    CURRENT,
    DIVERGED,
    FAILING,
    MISSING,
    REBUILDING,
    ProjectionStatus,
    projection_statuses,
)
from projections.jobs.verification import LedgerVerification, VerificationReport, record_outcome

RESTORE_SOURCE = "invario restore"
Stage = Callable[[str], Callable[[int], None]]  # announces a stage; returns the callback counting its events


@dataclass
class Settlement:
    head: int = 0
    before: list[ProjectionStatus] = field(default_factory=list)
    after: list[ProjectionStatus] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    verification: VerificationReport | None = None
    reconciliation: Reconciliation | None = None

    @property
    def consistent(self) -> bool:
        return (
            self.verification is not None and self.verification.intact
            and self.reconciliation is not None and not self.reconciliation.divergences
            and all(status.state == CURRENT for status in self.after)
        )


def settle(runtime: Runtime, stage: Stage, *, verification_steps: Callable[[LedgerVerification], None],
           read_models_group: Callable[[], FollowerGroup]) -> Settlement:
    """Repair what the restore left inconsistent, verify every chain, reconcile; report each step.

    ``read_models_group`` builds the follower group that catches read models up (``interfaces.bootstrap`` builds it).
    """
    settlement = Settlement()
    settlement.head, settlement.before = projection_statuses(runtime)
    _settle_global_chain(runtime, settlement, stage)
    _, statuses = projection_statuses(runtime)
    states = [s.state for s in statuses if s.name in READ_MODELS]
    _settle_read_models(runtime, states, settlement, stage, read_models_group)
    _settle_merkle_tree(runtime, next(s.state for s in statuses if s.name == MERKLE_TREE), settlement, stage)
    verification = LedgerVerification(runtime.ledger, runtime.engine)
    verification_steps(verification)
    settlement.verification = verification.report()
    record_outcome(runtime.engine, settlement.verification, RESTORE_SOURCE)
    stage("reconciling")
    settlement.reconciliation = reconcile(runtime.ledger, runtime.engine)
    _, settlement.after = projection_statuses(runtime)
    return settlement


def _settle_global_chain(runtime: Runtime, settlement: Settlement, stage: Stage) -> None:
    """Bring the chain to the restored log without ever re-deriving rows the log still holds.

    Rows for events the log does not hold (the chain ran ahead of the restored
    events) are removed; the rest stay and ``verify`` compares them with the
    events, so a restore cannot launder a rewritten history. A chain that
    disagrees with the log *within* it is left alone for ``verify`` to report.
    """
    head = settlement.head
    if _reset_checkpoint_beyond_log(runtime, head):
        settlement.actions.append("integrity checkpoint was past the restored log: reset (re-verified below)")
    removed = _trim_chain_beyond_log(runtime, head)
    if removed:
        settlement.actions.append(f"global chain ran past the restored log: {removed} row(s) for events it does "
                                  "not hold removed; the rest is verified below")
    _, statuses = projection_statuses(runtime)
    state = next(s.state for s in statuses if s.name == GLOBAL_CHAIN)
    if state in (MISSING, REBUILDING):
        start_rebuild(runtime, (GLOBAL_CHAIN,))  # resumes a rebuild the backup caught in the middle
        replay(runtime, (GLOBAL_CHAIN,), on_batch=stage("deriving the global chain"))
        settlement.actions.append(f"global chain was {state}: derived from the restored events")
    elif state in (BEHIND, FAILING):
        applied = Follower(runtime.ledger, runtime.engine, GlobalChainProjection(),
                           runtime.settings.follower_batch_size).catch_up(on_batch=stage("chaining newer events"))
        settlement.actions.append(f"global chain was {state}: caught up ({applied} events)")
    elif state == DIVERGED:
        settlement.actions.append("global chain disagrees with the restored events: left as it is for "
                                  "'invario verify' (see docs/integrity.md, the broken-chain procedure)")


def _trim_chain_beyond_log(runtime: Runtime, head: int) -> int:
    """Delete chain rows past the log's head and point the chain's tracking row at the last row kept."""
    c = ledger_chain.c
    with runtime.engine.begin() as connection:
        if not inspect(connection).has_table(ledger_chain.name):
            return 0
        removed = connection.execute(delete(ledger_chain).where(c.position > head)).rowcount
        if not removed:
            return 0
        last = connection.execute(select(c.position, c.event_hash).order_by(c.sequence.desc()).limit(1)).first()
        ensure_tracking_row(connection, GLOBAL_CHAIN)
        connection.execute(
            update(projection_tracking).where(projection_tracking.c.name == GLOBAL_CHAIN)
            .values(position=last.position if last else 0, event_hash=last.event_hash if last else None,
                    last_error=None, updated_at=datetime.now(timezone.utc))
        )
    return int(removed)


def _settle_read_models(runtime: Runtime, states: list[str], settlement: Settlement, stage: Stage,
                        read_models_group: Callable[[], FollowerGroup]) -> None:
    """Read models are not evidence: anything but behind or current is rebuilt from the log."""
    if any(state not in (CURRENT, BEHIND) for state in states):
        start_rebuild(runtime, READ_MODELS, from_scratch=True)
        replay(runtime, READ_MODELS, on_batch=stage("rebuilding the read models"))
        worst = sorted(set(states) - {CURRENT, BEHIND})
        settlement.actions.append(f"read models were {'/'.join(worst)}: rebuilt from the log")
    elif BEHIND in states:
        applied = read_models_group().catch_up(on_batch=stage("catching the read models up"))
        settlement.actions.append(f"read models were behind: caught up ({applied} events)")


def _settle_merkle_tree(runtime: Runtime, state: str, settlement: Settlement, stage: Stage) -> None:
    """The tree is derived from the log: behind catches up, anything else but current is rebuilt."""
    if state == BEHIND:
        applied = Follower(runtime.ledger, runtime.engine, MerkleTreeProjection(),
                           runtime.settings.follower_batch_size).catch_up(on_batch=stage("extending the Merkle tree"))
        settlement.actions.append(f"Merkle tree was behind: caught up ({applied} events)")
    elif state != CURRENT:
        start_rebuild(runtime, (MERKLE_TREE,), from_scratch=True)
        replay(runtime, (MERKLE_TREE,), on_batch=stage("rebuilding the Merkle tree"))
        settlement.actions.append(f"Merkle tree was {state}: rebuilt from the log (its signed checkpoints kept)")


def _reset_checkpoint_beyond_log(runtime: Runtime, head: int) -> bool:
    """Drop an incremental-verification checkpoint past the restored log (within it, verify judges it)."""
    with runtime.engine.connect() as connection:
        checkpoint = read_checkpoint(connection)
    if checkpoint.position <= head:
        return False
    with runtime.engine.begin() as connection:
        connection.execute(delete(integrity_checkpoint).where(integrity_checkpoint.c.name == INCREMENTAL))
    return True
