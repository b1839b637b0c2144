"""Metrics and traces of one process: OpenTelemetry SDK, Prometheus text out, OTLP traces out.

``setup_telemetry(service)`` is called by the wiring of each long-running
process (``interfaces.bootstrap.build_api_services`` for the API, ``invario
worker``), never at import time, and only its first call in a process does
anything: OpenTelemetry allows one global MeterProvider and one TracerProvider per process.

- **Metrics** go to a ``PrometheusMetricReader``, which registers itself with
  ``prometheus_client``'s default registry; ``render_prometheus()`` is what
  ``GET /metrics`` serves. Each process counts for itself: scrape every
  process (one target each) and ``sum()`` in PromQL (docs/observability.md).
- **Traces** always get ids (so log lines can carry ``trace_id``), but leave
  the process only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over
  HTTP/protobuf, batched).

Every instrument of Invario is declared in ``Instruments`` with its
description, unit and bounded label set, so a name used by the runbooks and
the alert rules in ``ops/`` is defined in one place. Instruments are created on
the global meter, so those made before the provider is set (the OpenTelemetry
API's proxies) start recording once it is.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Histogram

log = logging.getLogger("invario.telemetry")

METER_NAME = "invario"
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"

# Request latencies of a ledger API: a few ms for a cached read, tens of ms for a
# commit, seconds only when something is wrong (the p95 alert fires at 1 s).
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# Jobs range from a follower batch (ms) to a full verification of a large ledger (minutes).
JOB_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# The bounded label values known in advance: they are exported as 0 from the start,
# so that a rate() over them, and the alerts built on it, work before the first event.
TRANSACTION_STATUSES = ("accepted", "rejected")
AUTH_FAILURE_REASONS = ("MISSING_TOKEN", "INVALID_TOKEN", "REVOKED_TOKEN")
STATUS_CLASSES = ("4xx", "5xx")
REPLAY_SOURCES = ("idempotency_key", "external_id")
BATCH_OUTCOMES = ("accepted", "rejected")
WEBHOOK_OUTCOMES = ("delivered", "failed", "dead_lettered")


@dataclass(frozen=True)
class Instruments:
    """Every metric Invario exports (Prometheus names; the exporter adds nothing to them)."""

    transactions: Counter
    http_duration: Histogram
    http_errors: Counter
    auth_failures: Counter
    auth_throttled: Counter
    rate_limited: Counter
    tenant_conflicts: Counter
    idempotent_replays: Counter
    job_duration: Histogram
    job_failures: Counter
    job_lock_contended: Counter
    batch_outcomes: Counter
    relay_published: Counter
    relay_failures: Counter
    webhook_deliveries: Counter


@functools.lru_cache(maxsize=1)
def instruments() -> Instruments:
    """The process's instruments, created once on the global meter."""
    meter = metrics.get_meter(METER_NAME)
    return Instruments(
        transactions=meter.create_counter(
            "invario_transactions_total", unit="{transaction}",
            description="Transactions (postings and reversals) the ledger decided on, by status: accepted "
            "(recorded) or rejected (a business rule refused it); replays are counted apart"),
        http_duration=meter.create_histogram(
            "http_request_duration_seconds", unit="s",
            description="HTTP request duration in seconds, by route template and method"),
        http_errors=meter.create_counter(
            "http_errors_total", unit="{response}",
            description="HTTP responses with an error status, by status class (4xx, 5xx)"),
        auth_failures=meter.create_counter(
            "auth_failures_total", unit="{request}",
            description="Requests refused for want of a valid API key or admin token, by reason"),
        auth_throttled=meter.create_counter(
            "auth_throttled_total", unit="{request}",
            description="Requests refused with 429 auth_throttled: their client address had failed to "
            "authenticate too often (no label: addresses are unbounded; the logs carry them)"),
        rate_limited=meter.create_counter(
            "rate_limited_total", unit="{request}",
            description="Requests refused with 429 by the per-tenant rate limit, by tenant name"),
        tenant_conflicts=meter.create_counter(
            "tenant_conflicts_total", unit="{response}",
            description="Requests answered 409: a conflict with the current state, a version or a request in flight"),
        idempotent_replays=meter.create_counter(
            "invario_idempotent_replays_total", unit="{request}",
            description="Repeated requests answered with the original result, by source: an Idempotency-Key "
            "or a transaction's external_id"),
        job_duration=meter.create_histogram(
            "job_duration_seconds", unit="s",
            description="Duration of one run of a background job (a follower batch, a reconciliation), by job"),
        job_failures=meter.create_counter(
            "job_failures_total", unit="{run}", description="Runs of a background job that failed, by job"),
        job_lock_contended=meter.create_counter(
            "job_lock_contended_total", unit="{run}",
            description="Runs of a background job that lost the race for its work to another process, by job"),
        batch_outcomes=meter.create_counter(
            "invario_batch_outcomes_total", unit="{batch}",
            description="Batches of transactions submitted together, by outcome (accepted, rejected)"),
        relay_published=meter.create_counter(
            "invario_relay_published_total", unit="{event}",
            description="Events the relay published and the broker acknowledged, by sink (re-sent ones included)"),
        relay_failures=meter.create_counter(
            "invario_relay_failures_total", unit="{attempt}",
            description="Attempts of the relay that failed (broker unreachable, no acknowledgement), by sink"),
        webhook_deliveries=meter.create_counter(
            "invario_webhook_deliveries_total", unit="{attempt}",
            description="Attempts to deliver an event to a webhook endpoint, by outcome: delivered (2xx), failed "
            "(retried later), dead_lettered (the failure that dead-lettered its endpoint)"),
    )


def _prezero(each: Instruments) -> None:
    for status in TRANSACTION_STATUSES:
        each.transactions.add(0, {"status": status})
    for reason in AUTH_FAILURE_REASONS:
        each.auth_failures.add(0, {"reason": reason})
    for status_class in STATUS_CLASSES:
        each.http_errors.add(0, {"status_class": status_class})
    for source in REPLAY_SOURCES:
        each.idempotent_replays.add(0, {"source": source})
    for outcome in BATCH_OUTCOMES:
        each.batch_outcomes.add(0, {"outcome": outcome})
    for outcome in WEBHOOK_OUTCOMES:
        each.webhook_deliveries.add(0, {"outcome": outcome})
    each.tenant_conflicts.add(0)
    each.auth_throttled.add(0)
    # Labels unknown in advance (tenant names, job names) appear with their first event.


# --- the process-wide providers --------------------------------------------------------------


@dataclass(frozen=True)
class Telemetry:
    service: str
    exporting_traces: bool


_lock = threading.Lock()
_telemetry: Telemetry | None = None


def setup_telemetry(service: str) -> Telemetry:
    """Install the MeterProvider (Prometheus) and TracerProvider (OTLP if configured), once per process."""
    global _telemetry  # noqa: PLW0603 - OpenTelemetry's providers are process-wide by design
    with _lock:
        if _telemetry is not None:
            return _telemetry
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource

        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service)})
        views = [
            View(instrument_name="http_request_duration_seconds",
                 aggregation=ExplicitBucketHistogramAggregation(HTTP_DURATION_BUCKETS)),
            View(instrument_name="job_duration_seconds",
                 aggregation=ExplicitBucketHistogramAggregation(JOB_DURATION_BUCKETS)),
        ]
        # scope_info off: otel_scope_* labels on every series would only add noise for one meter.
        reader = PrometheusMetricReader(scope_info_enabled=False)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource, views=views))
        _prezero(instruments())
        _register_job_gauge()
        _register_relay_gauge()
        _register_webhook_gauge()
        exporting = _setup_tracing(resource)
        _telemetry = Telemetry(service, exporting)
        return _telemetry


def _setup_tracing(resource: Any) -> bool:
    provider = _processed_spans_provider()(resource=resource)
    endpoint = os.environ.get(OTLP_ENDPOINT_ENV, "").strip()
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers, timeout).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("exporting traces over OTLP/HTTP to %s", endpoint.split("@")[-1])  # no credentials in URLs
    trace.set_tracer_provider(provider)
    return bool(endpoint)


@functools.lru_cache(maxsize=1)
def _processed_spans_provider() -> type:
    """The SDK's TracerProvider, recording spans only once a processor is attached
    (classes built on first use: the SDK is imported when telemetry is set up)."""
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class RecordingOnceProcessed(Sampler):
        """Records spans only once something processes them (an exporter, a test's processor).

        Without one, a recorded span is built, filled with attributes and ended for
        nothing: that was a tenth of the API process's CPU per write. An unrecorded
        span still carries its trace and span ids, so log lines keep their trace_id
        and outgoing context still propagates."""

        def __init__(self, recording: Sampler) -> None:
            self.recording = recording
            self.processed = False

        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            if not self.processed:
                return SamplingResult(Decision.DROP)
            return self.recording.should_sample(*args, **kwargs)

        def get_description(self) -> str:
            return f"RecordingOnceProcessed{{{self.recording.get_description()}}}"

    class ProcessedSpansProvider(TracerProvider):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.sampler = RecordingOnceProcessed(self.sampler)  # OTEL_TRACES_SAMPLER still decides after

        def add_span_processor(self, span_processor: SpanProcessor) -> None:
            super().add_span_processor(span_processor)
            self.sampler.processed = True

    return ProcessedSpansProvider


# --- reading the metrics ------------------------------------------------------------------------


def render_prometheus() -> bytes:
    """This process's metrics in the Prometheus text format (version 0.0.4)."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)


def metrics_document() -> dict[str, Any]:
    """The same metrics as a JSON-able document: ``{"metrics": [{name, type, help, samples}]}``."""
    from prometheus_client.parser import text_string_to_metric_families

    families = []
    for family in text_string_to_metric_families(render_prometheus().decode("utf-8")):
        families.append({
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "unit": family.unit or None,
            "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value} for s in family.samples],
        })
    return {"metrics": families}


# --- traces -------------------------------------------------------------------------------------


_tracer: tuple[Any, trace.Tracer] | None = None


def tracer() -> trace.Tracer:
    """This service's tracer, cached per provider: the SDK's own lookup (a warnings
    filter and a scope comparison per call) cost more than a span."""
    global _tracer  # noqa: PLW0603 - a cache of the process-wide provider's tracer
    provider = trace.get_tracer_provider()
    cached = _tracer
    if cached is None or cached[0] is not provider:
        cached = _tracer = (provider, provider.get_tracer(METER_NAME))
    return cached[1]


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span in progress, if any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def trace_event_store(recorder: Any) -> None:
    """Wrap the event store's one write (``insert_events``: the database commit) in a child span."""
    if getattr(recorder, "_invario_traced", False):
        return
    insert_events: Callable[..., Any] = recorder.insert_events

    @functools.wraps(insert_events)
    def traced(stored_events: Any, *args: Any, **kwargs: Any) -> Any:
        with tracer().start_as_current_span("db.commit", attributes={
            "db.operation": "insert_events", "invario.events": len(stored_events),
        }):
            return insert_events(stored_events, *args, **kwargs)

    recorder.insert_events = traced
    recorder._invario_traced = True  # noqa: SLF001 - our own marker on the instance


class TraceContext:
    """Hands a caller's trace context to the group-commit writer thread
    (``application.group_commit.CallerContext``), so a batch's ``db.commit`` span is a
    child of its first command's span instead of a root of its own."""

    def capture(self) -> Any:
        return otel_context.get_current()

    @contextlib.contextmanager
    def attached(self, captured: Any) -> Iterator[None]:
        token = otel_context.attach(captured) if captured is not None else None
        try:
            yield
        finally:
            if token is not None:
                otel_context.detach(token)


# --- jobs ---------------------------------------------------------------------------------------

_last_success: dict[str, float] = {}  # job -> unix time; bounded by the number of jobs
_next_run: dict[str, float] = {}  # scheduled job -> unix time its next run is due (docs/jobs.md)


def job_succeeded(job: str) -> None:
    """Note that ``job`` just ran to completion (even with nothing to do): it is alive, not stuck."""
    _last_success[job] = time.time()


def job_scheduled(job: str, next_run_unix: float) -> None:
    """Note when scheduled ``job`` is next due; long past due means no worker runs it (stuck)."""
    _next_run[job] = next_run_unix


def _observer(values: dict[str, Any], label: str) -> Callable[[Any], Iterator[Any]]:
    """A gauge's callback reporting ``values`` (kept in this process's memory), one series per key."""

    def observe(_options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        for key, value in list(values.items()):
            yield Observation(value, {label: key})

    return observe


def _register_gauge(name: str, values: dict[str, Any], label: str, unit: str, description: str) -> None:
    metrics.get_meter(METER_NAME).create_observable_gauge(
        name, callbacks=[_observer(values, label)], unit=unit, description=description)


def _register_job_gauge() -> None:
    _register_gauge("job_last_success_timestamp_seconds", _last_success, "job", "s",
                    "Unix time at which a background job last ran to completion, by job (stuck: too long ago)")
    _register_gauge("job_next_run_timestamp_seconds", _next_run, "job", "s",
                    "Unix time at which a scheduled job is next due, by job (long past: no worker runs it)")


# --- the relay (docs/events-out.md) -------------------------------------------------------------

_relay_lag: dict[str, int] = {}  # sink -> events of the log not yet acknowledged by it; bounded by the sinks


def relay_lag(sink: str, events: int) -> None:
    """Note how far ``sink`` is behind the head of the log, as the relay last saw it."""
    _relay_lag[sink] = events


def _register_relay_gauge() -> None:
    # Read from the relay's memory, like the failing gauge: a scrape never waits on the database.
    _register_gauge("invario_relay_lag_events", _relay_lag, "sink", "{event}",
                    "Events of the log the relay has not yet had acknowledged by a sink, by sink")


# --- webhooks (docs/events-out.md) --------------------------------------------------------------

_webhook_dead_letters: dict[str, int] = {}  # one key: the dead-lettered endpoints, as the dispatcher last counted


def webhook_dead_letters(count: int) -> None:
    """Note how many webhook endpoints are dead-lettered (the dispatcher counts them every few seconds)."""
    _webhook_dead_letters["all"] = count


def _register_webhook_gauge() -> None:
    def observe(_options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        if "all" in _webhook_dead_letters:
            yield Observation(_webhook_dead_letters["all"])

    metrics.get_meter(METER_NAME).create_observable_gauge(
        "invario_webhook_dead_letters", callbacks=[observe], unit="{endpoint}",
        description="Webhook endpoints dead-lettered: nothing is sent to them until a replay")
