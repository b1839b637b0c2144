"""Spans are recorded only once something processes them; their ids exist either way.

Unrecorded spans are what the API builds on every write when no exporter is
configured (``infrastructure.telemetry``): they must still give log lines a
trace id, and start recording as soon as a processor (an exporter) is attached."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infrastructure.telemetry import _processed_spans_provider


def test_without_a_processor_spans_carry_ids_but_are_not_recorded() -> None:
    provider = _processed_spans_provider()(resource=Resource.create({}), shutdown_on_exit=False)
    with provider.get_tracer("test").start_as_current_span("write") as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid  # log lines still get a trace_id


def test_once_a_processor_is_attached_spans_are_recorded_and_exported() -> None:
    provider = _processed_spans_provider()(resource=Resource.create({}), shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("write", attributes={"a": 1}) as span:
        assert span.is_recording()
    assert [(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()] == [("write", {"a": 1})]
