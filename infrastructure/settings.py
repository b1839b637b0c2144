"""Every setting of the service, in one class, read once from ``INVARIO_*`` by pydantic-settings."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./var/invario.db"
SECRET_LENGTH_MIN = 32
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVARIO_", extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="sqlite:///PATH (embedded default) or postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on")
    port: int = Field(8000, ge=1, le=65535, description="Port the HTTP API listens on")
    db_connect_timeout_seconds: int = Field(5, ge=1, le=60, description="Bound on connecting to the database")
    db_pool_size: int = Field(5, ge=1, le=100, description="PostgreSQL connections per process")
    db_lock_timeout_seconds: int = Field(5, ge=0, le=300, description="Bound on waiting for the event table lock")
    db_statement_timeout_seconds: float = Field(
        30.0, ge=0, le=86_400, description="Longest one SQL statement of the API may run before the database "
        "cancels it (503 database_busy); 0: no limit. Operator commands run without it"
    )
    worker_statement_timeout_seconds: float = Field(
        300.0, ge=0, le=86_400, description="Longest one SQL statement of 'invario worker' may run before the "
        "database cancels it (the batch is retried); 0: no limit. A connection still silent a TCP timeout "
        "after it is cut off"
    )
    db_pool_timeout_seconds: float = Field(
        1.5, gt=0, le=60, description="Longest a request waits for a pooled database connection "
        "(then 503 database_unavailable)"
    )
    db_probe_timeout_seconds: float = Field(
        1.0, ge=0.2, le=30, description="The API deems the database unreachable when its liveness probe "
        "(SELECT 1, four times a second) gets no answer within this; requests then answer 503 at once"
    )
    db_tcp_timeout_seconds: int = Field(
        10, ge=2, le=600, description="The operating system drops a database connection whose peer stays "
        "silent this long (TCP keepalives and tcp_user_timeout)"
    )
    aggregate_cache_size: int = Field(10_000, ge=0, le=1_000_000, description="Aggregates kept hot in memory")
    follower_batch_size: int = Field(500, ge=1, le=10_000, description="Events a follower handles per commit")
    follower_poll_seconds: float = Field(0.5, gt=0, le=60, description="How often followers poll the log")
    restore_epoch_check_seconds: float = Field(
        1.0, gt=0, le=60, description="How often the API and the worker look for a restore of their database "
        "(docs/backup-restore.md); on one they drop their caches and connections. Writes check it every time"
    )

    # --- HTTP API access (secrets are SecretStr: hidden from repr, logs and errors) ---
    auth_pepper: SecretStr | None = Field(
        None,
        description="Secret (>= 32 characters) under which API keys are HMAC'd; required by the API. "
        "With SQLite only, a random one is generated once beside the database file if unset.",
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token (>= 32 characters) of the /admin routes; unset disables them"
    )
    rate_limit_per_second: float = Field(
        50.0, ge=0, le=100_000, description="Requests per second each tenant may sustain (0 disables the limit)"
    )
    rate_limit_burst: int = Field(100, ge=1, le=1_000_000, description="Requests a tenant may make at once")
    auth_failures_max: int = Field(
        20, ge=0, le=1_000_000, description="Failed authentications (a missing, unknown or revoked key, a wrong "
        "admin token) one client address may make at once; past them it is answered 429 auth_throttled, before "
        "its key is checked, until the window gives it another try (0 disables the throttle)"
    )
    auth_failures_window_seconds: float = Field(
        60.0, gt=0, le=86_400, description="The window of INVARIO_AUTH_FAILURES_MAX: a throttled client regains "
        "one try every WINDOW/MAX seconds, and all of them after WINDOW seconds without failing"
    )
    trusted_proxies: str = Field(
        "127.0.0.1,::1", description="Reverse proxies (comma-separated IP addresses or networks, '*' for any, empty "
        "for none) whose X-Forwarded-For and X-Forwarded-Proto 'invario serve' believes: the client address that "
        "is logged and throttled is then the one the proxy forwarded, else the connection's peer"
    )
    http_body_max_bytes: int = Field(
        262_144, ge=1024, le=16_777_216, description="Largest request body accepted (larger: 413)"
    )
    idempotency_ttl_hours: int = Field(
        24, ge=24, le=24 * 90, description="How long an Idempotency-Key and its response are kept"
    )
    idempotency_lease_seconds: int = Field(
        60, ge=5, le=3600, description="After this long a key left in flight by a version before atomic "
        "idempotency records may be taken over (keys are now written with their command's events)"
    )
    read_wait_seconds: float = Field(
        5.0, ge=0, le=60, description="Longest a query waits for read models to reach ?min_position"
    )

    # --- observability (docs/observability.md) ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Lowest level logged by 'invario serve' and 'invario worker'"
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one JSON object per line on stdout; console: readable lines for development"
    )
    worker_metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of the worker's own /metrics (Prometheus text); 0 disables it"
    )
    worker_metrics_host: str = Field("127.0.0.1", description="Address the worker's /metrics listens on")

    # --- evidence collection ('invario evidence DIR'; docs/backup-restore.md) ---
    evidence_log_file: str | None = Field(
        None, description="File the service's logs are kept in (a redirect, docker's log file): "
        "'invario evidence' includes its tail"
    )
    evidence_journal_unit: str | None = Field(
        None, description="systemd unit whose journal 'invario evidence' includes (journalctl -u UNIT)"
    )
    evidence_log_tail_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="Most bytes of logs 'invario evidence' includes per source"
    )
    evidence_http_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Bound on each HTTP call of 'invario evidence' (/health, /metrics)"
    )

    # --- batch ingestion (docs/batches.md) ---
    batch_body_max_bytes: int = Field(
        268_435_456, ge=1024, le=4_294_967_296,
        description="Largest batch file POST /v1/batches accepts (larger: 413); INVARIO_HTTP_BODY_MAX_BYTES "
        "does not apply to it",
    )
    batch_lease_seconds: float = Field(
        60.0, ge=1, le=3600, description="A worker that has not recorded progress on its batch for this long "
        "is presumed dead: another worker takes the batch over",
    )
    batch_poll_seconds: float = Field(2.0, gt=0, le=60, description="How often a worker looks for queued batches")

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if value.strip().upper() in _LEVELS else value.strip().lower()

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: str) -> str:
        """Written as uvicorn's forwarded_allow_ips wants them: it takes a malformed entry for a name
        that never matches, silently; a network with host bits set (10.0.0.1/8) is one of those."""
        import ipaddress

        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if "*" in entries:
            return "*"
        written = []
        for entry in entries:
            try:
                written.append(str(ipaddress.ip_network(entry, strict=False)) if "/" in entry
                               else str(ipaddress.ip_address(entry)))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return ",".join(written)

    @field_validator("auth_pepper", "admin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < SECRET_LENGTH_MIN:
            raise ValueError(
                f"must be at least {SECRET_LENGTH_MIN} characters "
                "(generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return value

    # --- group commit (docs/architecture.md "Group commit") ---
    write_batch_size_max: int = Field(
        256, ge=1, le=1000, description="Most write commands committed together in one transaction (1: one each)"
    )
    write_batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="Longest a write waits for others to share its commit, in milliseconds"
    )

    # --- scheduled jobs (docs/jobs.md): run by 'invario worker'; cron expressions are UTC ---
    job_monthly_snapshot_schedule: str = Field(
        "0 1 1 * *", description="When the previous month's snapshots are recomputed (cron, UTC; default 01:00 "
        "on the 1st)"
    )
    job_reconcile_schedule: str = Field("30 2 * * *", description="When the daily reconciliation runs (cron, UTC)")
    job_recurring_interval_seconds: float = Field(
        60.0, ge=1, le=86_400, description="How often the recurring transactions job looks for runs that are due"
    )
    job_recurring_runs_per_cycle_max: int = Field(
        1000, ge=1, le=100_000, description="Most recurring runs one cycle posts (a long catch-up takes several)"
    )
    job_retry_seconds: float = Field(60.0, ge=1, le=86_400, description="How soon a failed job is run again")

    # --- HTTP serving (docs/performance.md "Serving the API") ---
    http_threads_max: int = Field(
        256, ge=1, le=4096, description="Requests one API process handles at once (threads; writers wait there for "
        "their group commit, so more threads means fuller batches)"
    )

    # --- integrity checks (docs/failure-modes.md; the worker's verifier and /health) ---
    signing_key: SecretStr | None = Field(
        None,
        description="Base64 of a 32-byte Ed25519 private key (seed) that signs digests of the global chain; "
        "never stored in the database (generate one: invario generate-signing-key)",
    )
    digest_interval_seconds: float = Field(
        3600.0, ge=0, le=7 * 86400, description="How often the worker signs and stores a digest (0: never)"
    )
    integrity_recheck_seconds: float = Field(
        30.0, gt=0, le=86400, description="While the chain is broken, how often the worker re-verifies it in full"
    )
    integrity_full_verify_seconds: float = Field(
        86400.0, ge=0, le=30 * 86400,
        description="How often the worker re-verifies the whole ledger while healthy (0: never)",
    )
    integrity_state_refresh_seconds: float = Field(
        1.0, gt=0, le=60, description="How stale a process's view of the shared integrity state may be"
    )
    # --- signed checkpoints of the Merkle tree (docs/proofs.md) ---
    checkpoint_every_events: int = Field(
        10_000, ge=1, le=10_000_000,
        description="Sign a checkpoint (tree head) once the tree has grown by this many events since the last one",
    )
    checkpoint_every_seconds: float = Field(
        10.0, gt=0, le=86_400,
        description="Sign a checkpoint this long after the last one if the tree has grown at all (whichever of "
        "the two comes first); needs INVARIO_SIGNING_KEY",
    )
    checkpoint_origin: str = Field(
        "invario.local/ledger", pattern=r"^[A-Za-z0-9._/:-]{1,128}$",
        description="The log's name in its checkpoints (C2SP origin line, also the signing key's name): this "
        "deployment's schema-less URL, e.g. ledger.example.com/invario",
    )
    health_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Bound on the database checks of /health and /health/ready"
    )
    ready_max_lag: int = Field(
        1000, ge=0, le=10_000_000, description="Largest projection lag (events) at which /health/ready says ready"
    )

    # --- the relay: committed events out to a broker (docs/events-out.md) ---
    relay_nats_url: str | None = Field(
        None, pattern=r"^(nats|tls|ws|wss)://\S+$",
        description="NATS server of the relay's JetStream sink, e.g. nats://127.0.0.1:4222 (credentials in it "
        "are never shown); unset: no relay. 'invario worker' runs the relay when set",
    )
    relay_nats_stream: str = Field(
        "INVARIO", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="JetStream stream the relay publishes to "
        "(created if missing)"
    )
    relay_nats_subject_prefix: str = Field(
        "invario", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="First token of the relay's subjects: PREFIX.<tenant>.<aggregate type>.<event>; "
        "the RabbitMQ routing keys are the same words",
    )
    relay_amqp_url: str | None = Field(
        None, pattern=r"^amqps?://\S+$",
        description="RabbitMQ server of the relay's AMQP sink, e.g. amqp://guest:guest@127.0.0.1:5672/ (the "
        "password in it is never shown); unset: no AMQP sink. With INVARIO_RELAY_NATS_URL too, each sink has "
        "its own position",
    )
    relay_amqp_exchange: str = Field(
        "invario", pattern=r"^[A-Za-z0-9._:-]{1,127}$",
        description="Durable topic exchange the relay publishes to (declared if missing); routing keys "
        "PREFIX.<tenant>.<aggregate type>.<event>",
    )
    relay_ledger_name: str = Field(
        "invario", pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="This ledger's name in the CloudEvents source of relayed events: /ledgers/NAME/tenants/<tenant>",
    )
    relay_batch_size: int = Field(500, ge=1, le=10_000, description="Most events the relay publishes per batch")
    relay_publish_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="Bound on connecting to the broker and on each acknowledgement"
    )
    relay_retry_max_seconds: float = Field(
        30.0, gt=0, le=3600, description="Longest pause between the relay's attempts while the broker fails"
    )

    # --- the pull feed for API clients: GET /v1/events and /v1/events/stream (docs/events-out.md) ---
    events_stream_per_tenant_max: int = Field(
        8, ge=1, le=1000, description="Open event streams a tenant may have per API process; beyond: 429"
    )
    events_stream_buffer_max: int = Field(
        1000, ge=1, le=100_000,
        description="Events buffered per stream client; a client that lets it fill is sent 'event: overflow' "
        "(with the position to resume from) and disconnected",
    )
    events_stream_heartbeat_seconds: float = Field(
        15.0, gt=0, le=300, description="A comment line is sent on an idle stream this often (keeps proxies open)"
    )
    events_stream_poll_seconds: float = Field(
        0.25, gt=0, le=60,
        description="How often the API process looks for new events while streams are open (one query per "
        "process, not per client; on PostgreSQL a NOTIFY wakes it sooner)",
    )
    events_stream_send_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="A stream client that accepts no data for this long is disconnected"
    )

    # --- webhooks: each tenant's events POSTed to its registered endpoints (docs/events-out.md) ---
    webhooks_enabled: bool = Field(
        True, description="'invario worker' and 'invario relay' deliver webhooks (false: registrations are kept, "
        "nothing is sent)"
    )
    webhook_allow_private_targets: bool = Field(
        False, description="Accept webhook URLs whose host is or resolves to a loopback or private address "
        "(on-premises receivers, tests); link-local and multicast addresses are always refused"
    )
    webhook_allow_http: bool = Field(
        False, description="Accept plain http:// webhook URLs for any host (without it: https only, or http "
        "to a loopback host)"
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Bound on one delivery attempt: connecting, sending and the answer"
    )
    webhook_attempts_max: int = Field(
        12, ge=1, le=100, description="Failed attempts in a row at one event before its endpoint is "
        "dead-lettered (then only a replay resumes it)"
    )
    webhook_retry_min_seconds: float = Field(
        5.0, gt=0, le=3600, description="Pause after an endpoint's first failed attempt; it doubles, with jitter"
    )
    webhook_retry_max_seconds: float = Field(
        3600.0, gt=0, le=86_400, description="Longest pause between two attempts at one endpoint"
    )
    webhook_concurrency_max: int = Field(
        8, ge=1, le=256, description="Endpoints delivered to at once; a slow endpoint holds only its own slot"
    )
    webhook_batch_size: int = Field(
        100, ge=1, le=10_000, description="Most events one endpoint is sent before its slot goes to another"
    )

    @field_validator("job_monthly_snapshot_schedule", "job_reconcile_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from infrastructure.jobs import check_cron

        return check_cron(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; a bad value is a one-line ``ConfigError``."""
    from infrastructure.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"INVARIO_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(problems) from None
