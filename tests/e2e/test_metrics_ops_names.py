"""The dashboard and the alert rules in ops/ use only metric names Invario exports (an alert on a
misspelt name could never fire)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.e2e.http_fixtures import Api, sqlite_api  # noqa: F401

OPS = Path(__file__).resolve().parents[2] / "ops"
_NAME = re.compile(r"\b((?:invario|http|auth|rate|tenant|job)_[a-z_]+)\b")
_SUFFIXES = ("_bucket", "_count", "_sum")
# Exported from their first event on (labels not known in advance: tenants, jobs, routes).
LATER = {"rate_limited_total", "http_request_duration_seconds", "job_duration_seconds", "job_failures_total", "job_lock_contended_total",
         "job_last_success_timestamp_seconds", "invario_reconciliation_divergences_total",
         "job_next_run_timestamp_seconds",  # published by the worker's job scheduler (docs/jobs.md)
         "invario_projection_failing",  # published by processes that run followers (projections/following/runner.py)
         # published by a process that runs the relay (docs/events-out.md), from its first batch on
         "invario_relay_lag_events", "invario_relay_published_total", "invario_relay_failures_total",
         "invario_webhook_dead_letters",  # published by a process that delivers webhooks
         # published with INVARIO_SIGNING_KEY (tests/e2e/test_http_proofs.py reads them)
         "invario_checkpoint_age_seconds", "invario_checkpoint_uncovered_events"}


def used_names(text: str) -> set[str]:
    names = set()
    for name in _NAME.findall(text):
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and name != "invario_projection_lag_events":
                name = name[: -len(suffix)]
        names.add(name)
    return names


def test_ops_files_use_exported_names(sqlite_api: Api) -> None:
    text = sqlite_api.client.get("/metrics").text
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")} | LATER
    exported |= {name + "_total" for name in list(exported)}  # counters: HELP/TYPE may name them without _total
    dashboard = json.loads((OPS / "grafana" / "invario-dashboard.json").read_text())
    expressions = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    rules = (OPS / "prometheus" / "invario-alerts.yml").read_text()
    for where, source in (("dashboard", expressions), ("alert rules", rules)):
        unknown = used_names(source) - exported
        assert not unknown, f"{where} use names nothing exports: {sorted(unknown)}"
