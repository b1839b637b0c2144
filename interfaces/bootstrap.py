"""The composition root: the one place that builds Invario's parts from an opened runtime.

``infrastructure.runtime.open_runtime`` opens the store (ledger, engine, conflict
lane); everything built on it is built here: the followers and the integrity
verifier, the scheduled jobs, the batch store and runner, the recurring service
and its read model, and the HTTP API's services. The API, the command line and
the notebook call these builders and hand what they get down; the modules below
(projections, routes) receive their collaborators as arguments and read no
settings of their own. Like cosmicpython's ``bootstrap.py``: small, and nothing
else constructs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from application.access import AccessService
from application.recurring import RecurringTransactions
from infrastructure.batch_runner import BatchRunner
from infrastructure.batch_store import BatchStore
from infrastructure.correlation import install_log_record_factory
from infrastructure.idempotency import IdempotencyStore
from infrastructure.integrity_monitor import IntegrityMonitor, process_monitor
from infrastructure.jobs import CronSchedule, IntervalSchedule, Job, JobRunner, JobScheduler
from infrastructure.rate_limit import DatabaseTokenBucket, InProcessTokenBucket, RateLimiter, Unlimited
from infrastructure.runtime import Runtime, resolve_auth_pepper
from infrastructure.signing import SigningKey, load_signing_key
from infrastructure.sinks.nats_jetstream import NatsJetStreamSink
from infrastructure.telemetry import setup_telemetry, trace_event_store
from projections.following.follower import EveryEvent, Follower, FollowerGroup
from projections.following.registry import READ_MODELS_GROUP, read_model_projections
from projections.following.runner import waiter_for
from projections.jobs.checkpoints import Checkpointer, CheckpointPolicy
from projections.jobs.global_chain import GlobalChainProjection
from projections.jobs.merkle_tree import MerkleTreeProjection
from projections.jobs.proofs import LedgerProofs
from projections.jobs.hold_expiry import HoldExpiry
from projections.jobs.integrity import IntegrityVerifier, VerifierSchedule
from projections.jobs.scheduled_jobs import (
    MONTHLY_SNAPSHOT,
    RECONCILE,
    RECURRING,
    TICK_SECONDS_MAX,
    RecurringRunner,
    reconcile_daily,
    snapshot_previous_month,
)
from projections.read_models.queries import ReadModels
from projections.relay.relay import Relay
from projections.relay.runner import RelayLoop
from projections.read_models.recurring_queries import RecurringReadModel
from projections.read_models.tenant_directory import TenantDirectory

# --- followers ---------------------------------------------------------------------------


def build_followers(runtime: Runtime) -> list[FollowerGroup | IntegrityVerifier | HoldExpiry | Checkpointer]:
    """The global chain and the Merkle tree each on its own, and the read models moving together in one group.

    The group leaves a projection alone while a rebuild in another process is
    actively replaying it (see ``projections.following.rebuild``). The integrity verifier
    comes after the global chain: it verifies what that follower has just chained.
    The checkpointer signs the tree's head (only with INVARIO_SIGNING_KEY set).
    """
    batch_size = runtime.settings.follower_batch_size
    followers: list[FollowerGroup | IntegrityVerifier | HoldExpiry | Checkpointer] = [
        Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch_size),
        build_merkle_tree_follower(runtime, batch_size),
        build_read_models_group(runtime, batch_size, defer_to_rebuilds=True),
        build_integrity_verifier(runtime, batch_size),
        HoldExpiry(runtime.ledger, runtime.engine),  # voids holds past their deadline (docs/holds.md)
    ]
    checkpointer = build_checkpointer(runtime)
    if checkpointer is not None:
        followers.append(checkpointer)
    return followers


def build_merkle_tree_follower(runtime: Runtime, batch_size: int) -> FollowerGroup:
    """The tree's follower: every event a leaf (no transaction boundaries), and it leaves the tree
    alone while 'projections rebuild' replays it elsewhere (as the read models do): racing that
    replay would make it lose a batch and stop early."""
    return FollowerGroup(runtime.ledger, runtime.engine, [MerkleTreeProjection()], batch_size,
                         name=MerkleTreeProjection.name, defer_to_rebuilds=True, boundaries=EveryEvent)


def build_checkpointer(runtime: Runtime, *, signing_key: SigningKey | None = None) -> Checkpointer | None:
    """Signs checkpoints of the Merkle tree (docs/proofs.md); None without a signing key."""
    settings = runtime.settings
    if signing_key is None and settings.signing_key is not None:
        signing_key = load_signing_key(settings.signing_key.get_secret_value())
    if signing_key is None:
        return None
    policy = CheckpointPolicy(settings.checkpoint_origin, settings.checkpoint_every_events,
                              settings.checkpoint_every_seconds)
    return Checkpointer(runtime.engine, signing_key, policy)


def build_integrity_verifier(
    runtime: Runtime, batch_size: int, *, signing_key: SigningKey | None = None
) -> IntegrityVerifier:
    """The verifier with the runtime's intervals and signing key (INVARIO_SIGNING_KEY unless one is given)."""
    settings = runtime.settings
    if signing_key is None and settings.signing_key is not None:
        signing_key = load_signing_key(settings.signing_key.get_secret_value())
    schedule = VerifierSchedule(
        digest_interval_seconds=settings.digest_interval_seconds,
        recheck_seconds=settings.integrity_recheck_seconds,
        full_verify_seconds=settings.integrity_full_verify_seconds,
        state_refresh_seconds=settings.integrity_state_refresh_seconds,
    )
    return IntegrityVerifier(runtime.ledger, runtime.engine, batch_size, schedule=schedule,
                             signing_key=signing_key, monitor=process_monitor())


def build_read_models_group(runtime: Runtime, batch_size: int, *, defer_to_rebuilds: bool) -> FollowerGroup:
    return FollowerGroup(runtime.ledger, runtime.engine, read_model_projections(), batch_size,
                         name=READ_MODELS_GROUP, defer_to_rebuilds=defer_to_rebuilds)


# --- the relay (docs/events-out.md) -------------------------------------------------------


def relay_configured(runtime: Runtime) -> bool:
    return runtime.settings.relay_nats_url is not None


def build_relay(runtime: Runtime) -> Relay:
    """The relay to the configured NATS JetStream sink; its position row is keyed by the stream."""
    settings = runtime.settings
    assert settings.relay_nats_url is not None, "relay_configured() first"
    sink = NatsJetStreamSink(settings.relay_nats_url, settings.relay_nats_stream,
                             settings.relay_nats_subject_prefix, settings.relay_publish_timeout_seconds)
    return Relay(runtime.ledger, runtime.engine, sink, settings.relay_batch_size, settings.relay_ledger_name,
                 position_key=f"{sink.name}:{settings.relay_nats_stream}")


def build_relay_loop(runtime: Runtime, stop: threading.Event) -> RelayLoop:
    """The relay with its own waiter (on PostgreSQL its own LISTEN connection) and back-off."""
    waiter, idle_seconds = waiter_for(runtime, stop)
    return RelayLoop(build_relay(runtime), stop, waiter, idle_seconds, runtime.settings.relay_retry_max_seconds)


# --- scheduled jobs, batches, recurring transactions ---------------------------------------


def build_recurring(runtime: Runtime) -> tuple[RecurringTransactions, RecurringReadModel]:
    """The recurring use case and the read model of its schedules (the API's routes and the job share them)."""
    return RecurringTransactions(runtime.ledger), RecurringReadModel(runtime.engine)


def build_job_runner(runtime: Runtime, clock: Callable[[], datetime] | None = None) -> JobRunner:
    settings = runtime.settings
    service, schedules = build_recurring(runtime)
    recurring = RecurringRunner(runtime.engine, service, schedules, settings.job_recurring_runs_per_cycle_max)
    jobs = [
        Job(MONTHLY_SNAPSHOT, CronSchedule(settings.job_monthly_snapshot_schedule),
            lambda now: snapshot_previous_month(runtime.engine, now)),
        Job(RECONCILE, CronSchedule(settings.job_reconcile_schedule),
            lambda _now: reconcile_daily(runtime.ledger, runtime.engine)),
        Job(RECURRING, IntervalSchedule(settings.job_recurring_interval_seconds), recurring.run),
    ]
    return JobRunner(runtime.engine, jobs, clock=clock, retry_seconds=settings.job_retry_seconds)


def build_job_scheduler(runtime: Runtime) -> JobScheduler:
    """The worker's hook: one follower-like object that runs the due jobs."""
    tick = min(TICK_SECONDS_MAX, runtime.settings.job_recurring_interval_seconds)
    return JobScheduler(build_job_runner(runtime), tick)


def build_batch_store(runtime: Runtime) -> BatchStore:
    return BatchStore(runtime.engine, runtime.settings.batch_lease_seconds)


def build_batch_runner(runtime: Runtime, role: str = "worker", store: BatchStore | None = None) -> BatchRunner:
    """A runner of queued batches; ``store``: one already built for the same process (the API's)."""
    return BatchRunner(runtime.ledger, store or build_batch_store(runtime), runtime.settings.batch_poll_seconds,
                       role=role)


# --- the HTTP API ---------------------------------------------------------------------------


@dataclass
class ApiServices:
    """What the HTTP API needs beside the runtime, built once. Secrets are kept out of reprs."""

    access: AccessService
    idempotency: IdempotencyStore
    rate_limiter: RateLimiter
    read_models: ReadModels
    tenant_directory: TenantDirectory
    recurring: RecurringTransactions
    recurring_reads: RecurringReadModel
    batch_store: BatchStore
    batch_runner: BatchRunner | None  # on SQLite only: no separate worker is needed there
    integrity_monitor: IntegrityMonitor
    proofs: LedgerProofs  # checkpoints and proofs over the global log (docs/proofs.md)
    admin_token: str | None = field(default=None, repr=False)


def build_api_services(runtime: Runtime) -> ApiServices:
    """Wire the API's services; a missing or short pepper is a one-line ``ConfigError``."""
    settings = runtime.settings
    install_log_record_factory()
    setup_telemetry("invario-api")  # once per process: the MeterProvider behind GET /metrics, the tracer
    trace_event_store(runtime.ledger.recorder)
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    recurring, recurring_reads = build_recurring(runtime)
    batch_store = build_batch_store(runtime)
    return ApiServices(
        access=open_access(runtime),
        idempotency=IdempotencyStore(
            runtime.engine, settings.idempotency_ttl_hours, settings.idempotency_lease_seconds
        ),
        rate_limiter=_rate_limiter(runtime),
        read_models=ReadModels(runtime.engine),
        tenant_directory=TenantDirectory(runtime.engine),
        recurring=recurring,
        recurring_reads=recurring_reads,
        batch_store=batch_store,
        batch_runner=None if runtime.database.is_postgres else build_batch_runner(runtime, "api", batch_store),
        integrity_monitor=process_monitor(),
        proofs=LedgerProofs(runtime.engine, runtime.ledger),
        admin_token=admin_token,
    )


def open_access(runtime: Runtime) -> AccessService:
    return AccessService(runtime.ledger, resolve_auth_pepper(runtime.settings, runtime.database))


def _rate_limiter(runtime: Runtime) -> RateLimiter:
    settings = runtime.settings
    if settings.rate_limit_per_second == 0:
        return Unlimited()
    if runtime.database.is_postgres:
        return DatabaseTokenBucket(runtime.engine, settings.rate_limit_per_second, settings.rate_limit_burst)
    return InProcessTokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
