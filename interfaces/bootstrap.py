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
from infrastructure.errors import ConfigError
from infrastructure.idempotency import IdempotencyStore
from infrastructure.integrity_monitor import IntegrityMonitor, process_monitor
from infrastructure.log_notifications import LogWaiter, PostgresNotifyWaiter
from infrastructure.jobs import CronSchedule, IntervalSchedule, Job, JobRunner, JobScheduler
from infrastructure.rate_limit import (
    DatabaseTokenBucket,
    FailureThrottle,
    InProcessTokenBucket,
    RateLimiter,
    Unlimited,
)
from infrastructure.runtime import Runtime, resolve_auth_pepper
from infrastructure.signing import SigningKey, load_signing_key
from infrastructure.sinks.amqp import SINK_NAME as AMQP_SINK
from infrastructure.sinks.amqp import AmqpSink
from infrastructure.sinks.message import Sink
from infrastructure.sinks.nats_jetstream import SINK_NAME as NATS_SINK
from infrastructure.sinks.nats_jetstream import NatsJetStreamSink
from infrastructure.telemetry import setup_telemetry, trace_event_store
from infrastructure.webhooks.secrets import SecretBox
from infrastructure.webhooks.sender import WebhookSender
from infrastructure.webhooks.store import WebhookStore
from infrastructure.webhooks.targets import TargetPolicy
from projections.following.follower import EveryEvent, Follower, FollowerGroup
from projections.following.registry import READ_MODELS_GROUP, read_model_projections
from projections.following.runner import FollowerLoop, waiter_for
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
from projections.read_models.event_feed import EventFeed
from projections.read_models.queries import ReadModels
from projections.relay.relay import Relay
from projections.relay.feed import TenantEvents
from projections.relay.runner import RelayLoop
from projections.relay.stream import StreamHub
from projections.relay.webhook_runner import WebhookLoop
from projections.relay.webhooks import RetryPolicy, WebhookDispatcher
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


def relay_sinks(runtime: Runtime) -> list[str]:
    """The sinks configured, each relayed from a position of its own: "nats", "amqp"."""
    settings = runtime.settings
    return [name for name, url in ((NATS_SINK, settings.relay_nats_url), (AMQP_SINK, settings.relay_amqp_url)) if url]


def relay_configured(runtime: Runtime) -> bool:
    return bool(relay_sinks(runtime))


def build_relay(runtime: Runtime, sink: str | None = None) -> Relay:
    """The relay to one configured sink (the first one unless named); its position row is keyed by
    the sink and its stream or exchange, its metrics are labelled with the sink."""
    settings = runtime.settings
    sink = sink or next(iter(relay_sinks(runtime)), None)
    if sink == NATS_SINK and settings.relay_nats_url is not None:
        nats = NatsJetStreamSink(settings.relay_nats_url, settings.relay_nats_stream,
                                 settings.relay_nats_subject_prefix, settings.relay_publish_timeout_seconds)
        return _relay_to(runtime, nats, settings.relay_nats_stream)
    if sink == AMQP_SINK and settings.relay_amqp_url is not None:
        amqp = AmqpSink(settings.relay_amqp_url, settings.relay_amqp_exchange, settings.relay_nats_subject_prefix,
                        settings.relay_publish_timeout_seconds)
        return _relay_to(runtime, amqp, settings.relay_amqp_exchange)
    raise ValueError(f"relay sink {sink!r} is not configured; relay_sinks() first")


def _relay_to(runtime: Runtime, sink: Sink, destination: str) -> Relay:
    settings = runtime.settings
    return Relay(runtime.ledger, runtime.engine, sink, settings.relay_batch_size, settings.relay_ledger_name,
                 position_key=f"{sink.name}:{destination}")


def build_relay_loop(runtime: Runtime, stop: threading.Event, sink: str | None = None) -> RelayLoop:
    """The relay with its own waiter (on PostgreSQL its own LISTEN connection) and back-off."""
    waiter, idle_seconds = waiter_for(runtime, stop)
    return RelayLoop(build_relay(runtime, sink), stop, waiter, idle_seconds, runtime.settings.relay_retry_max_seconds)


def build_relay_loops(runtime: Runtime, stop: threading.Event) -> list[RelayLoop]:
    """One loop per configured sink: a broker that is down delays only its own sink."""
    return [build_relay_loop(runtime, stop, sink) for sink in relay_sinks(runtime)]


def webhook_policy(runtime: Runtime) -> TargetPolicy:
    settings = runtime.settings
    return TargetPolicy(allow_private=settings.webhook_allow_private_targets, allow_http=settings.webhook_allow_http)


def build_webhook_store(runtime: Runtime, *, secrets: bool = True) -> WebhookStore:
    """The endpoints' table; their secrets sealed under a key derived from the auth pepper
    (``secrets=False``: the operators' commands, which list and replay and need no pepper)."""
    box = SecretBox(resolve_auth_pepper(runtime.settings, runtime.database)) if secrets else None
    return WebhookStore(runtime.engine, box)


def webhooks_off(runtime: Runtime) -> str | None:
    """Why this process cannot deliver webhooks, or None: switched off, or no auth pepper to open secrets with."""
    if not runtime.settings.webhooks_enabled:
        return "INVARIO_WEBHOOKS_ENABLED is false"
    try:
        resolve_auth_pepper(runtime.settings, runtime.database)
    except ConfigError as exc:
        return f"the endpoints' secrets are sealed under the auth pepper: {exc}"
    return None


def build_webhook_dispatcher(runtime: Runtime) -> WebhookDispatcher:
    settings = runtime.settings
    sender = WebhookSender(settings.webhook_timeout_seconds, webhook_policy(runtime), settings.webhook_concurrency_max)
    retry = RetryPolicy(settings.webhook_attempts_max, settings.webhook_retry_min_seconds,
                        settings.webhook_retry_max_seconds)
    return WebhookDispatcher(runtime.ledger, build_webhook_store(runtime), sender, settings.relay_ledger_name,
                             batch_size=settings.webhook_batch_size,
                             concurrency_max=settings.webhook_concurrency_max, retry=retry)


def build_webhook_loop(runtime: Runtime, stop: threading.Event) -> WebhookLoop:
    return WebhookLoop(build_webhook_dispatcher(runtime), stop)


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
    auth_throttle: FailureThrottle
    read_models: ReadModels
    tenant_directory: TenantDirectory
    recurring: RecurringTransactions
    recurring_reads: RecurringReadModel
    batch_store: BatchStore
    batch_runner: BatchRunner | None  # on SQLite, or with run_batches: no separate worker is needed
    integrity_monitor: IntegrityMonitor
    tenant_events: TenantEvents  # GET /v1/events
    event_stream: StreamHub  # GET /v1/events/stream
    webhooks: WebhookStore
    webhook_policy: TargetPolicy
    proofs: LedgerProofs  # checkpoints and proofs over the global log (docs/proofs.md)
    admin_token: str | None = field(default=None, repr=False)


def watch_for_restores(runtime: Runtime) -> None:
    """Long-running processes (the API, the worker) look for a restore of their database now and then,
    besides at every write (``infrastructure.restore_epoch``)."""
    if runtime.restore_epoch is not None:
        runtime.restore_epoch.start()


def resume_followers_when_the_database_returns(runtime: Runtime, loop: FollowerLoop) -> None:
    """At the liveness probe's first answer after an outage, the followers retry at once
    (instead of after their back-off, up to 30 s)."""
    if runtime.watch is None:
        return
    was_down = False

    def follow(failure: object) -> None:
        nonlocal was_down
        if failure is not None:
            was_down = True
        elif was_down:
            was_down = False
            loop.retry_now()

    runtime.watch.subscribe(follow)


def build_api_services(runtime: Runtime, *, run_batches: bool = False) -> ApiServices:
    """Wire the API's services; a missing or short pepper is a one-line ``ConfigError``.

    The API runs queued batches itself on SQLite (one process serves it), and on PostgreSQL
    when ``run_batches`` (``invario serve`` with its followers: the single-process layout).
    """
    settings = runtime.settings
    install_log_record_factory()
    setup_telemetry("invario-api")  # once per process: the MeterProvider behind GET /metrics, the tracer
    trace_event_store(runtime.ledger.recorder)
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    watch_for_restores(runtime)
    recurring, recurring_reads = build_recurring(runtime)
    batch_store = build_batch_store(runtime)
    tenant_events = TenantEvents(runtime.ledger, EventFeed(runtime.engine), settings.relay_ledger_name)
    return ApiServices(
        access=open_access(runtime),
        idempotency=IdempotencyStore(
            runtime.engine, settings.idempotency_ttl_hours, settings.idempotency_lease_seconds
        ),
        rate_limiter=_rate_limiter(runtime),
        auth_throttle=_auth_throttle(runtime),
        read_models=ReadModels(runtime.engine),
        tenant_directory=TenantDirectory(runtime.engine),
        recurring=recurring,
        recurring_reads=recurring_reads,
        batch_store=batch_store,
        batch_runner=(build_batch_runner(runtime, "api", batch_store)
                      if run_batches or not runtime.database.is_postgres else None),
        integrity_monitor=process_monitor(),
        tenant_events=tenant_events,
        event_stream=build_event_stream(runtime, tenant_events),
        webhooks=build_webhook_store(runtime),
        webhook_policy=webhook_policy(runtime),
        proofs=LedgerProofs(runtime.engine, runtime.ledger),
        admin_token=admin_token,
    )


def build_event_stream(runtime: Runtime, tenant_events: TenantEvents) -> StreamHub:
    """The process's one follower of the event feed for its stream clients; it wakes as the followers do."""
    settings = runtime.settings

    def waiter(stop: threading.Event) -> tuple[LogWaiter, bool]:
        found, _idle_seconds = waiter_for(runtime, stop)
        return found, isinstance(found, PostgresNotifyWaiter)

    return StreamHub(tenant_events, waiter, poll_seconds=settings.events_stream_poll_seconds,
                     per_tenant_max=settings.events_stream_per_tenant_max,
                     buffer_max=settings.events_stream_buffer_max)


def open_access(runtime: Runtime) -> AccessService:
    return AccessService(runtime.ledger, resolve_auth_pepper(runtime.settings, runtime.database))


def _rate_limiter(runtime: Runtime) -> RateLimiter:
    settings = runtime.settings
    return _token_buckets(runtime, settings.rate_limit_per_second, settings.rate_limit_burst)


def _auth_throttle(runtime: Runtime) -> FailureThrottle:
    settings = runtime.settings
    failures_max = settings.auth_failures_max
    return FailureThrottle(_token_buckets(runtime, failures_max / settings.auth_failures_window_seconds,
                                          max(1, failures_max)))


def _token_buckets(runtime: Runtime, rate_per_second: float, burst: int) -> RateLimiter:
    """Shared by every API process on PostgreSQL, in this process's memory on SQLite; a rate of 0: none."""
    if rate_per_second == 0:
        return Unlimited()
    if runtime.database.is_postgres:
        return DatabaseTokenBucket(runtime.engine, rate_per_second, burst)
    return InProcessTokenBucket(rate_per_second, burst)
