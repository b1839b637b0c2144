"""Response bodies of the integrity routes: health, readiness, signed digests and audits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BreakOut(BaseModel):
    """Where a hash chain is broken and how (see docs/integrity.md)."""

    kind: Literal["changed", "missing", "extra", "reordered", "relinked"]
    chain: Literal["aggregate", "global", "checkpoint", "digest"]
    sequence: int | None = Field(None, description="The event's place in the global chain (1-based, log order)")
    position: int | None = Field(None, description="The event's position in the notification log")
    aggregate_id: str | None = None
    aggregate_version: int | None = None
    event_type: str | None = None
    expected_hash: str
    found_hash: str
    detail: str


class DetectedBreakOut(BreakOut):
    detection_id: str | None = None
    detected_at: str | None = None
    detected_by: str | None = None


class HealthOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [
        {"status": "ok", "database": "ok", "integrity": "ok"},
    ]})

    status: Literal["ok", "error"]
    database: Literal["ok", "error"]
    integrity: Literal["ok", "broken"]
    broken_at: DetectedBreakOut | None = Field(
        None, alias="break", description="Present while the chain is broken: where, and since when"
    )


class ReadyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ready", "database": "ok", "migrations": "current", "projection_lag": 0,
         "max_projection_lag": 1000, "failing_projections": [], "integrity": "ok", "reasons": []},
    ]})

    status: Literal["ready", "not_ready"]
    database: Literal["ok", "error"]
    migrations: Literal["current", "pending", "unknown"]
    projection_lag: int | None = Field(description="Events the slowest projection has yet to apply")
    max_projection_lag: int = Field(description="INVARIO_READY_MAX_LAG")
    failing_projections: list[str] = Field(
        default_factory=list,
        description="Projections stuck on an event they cannot apply (not ready while any is; see 'invario projections status')")
    integrity: Literal["ok", "broken"]
    reasons: list[str] = Field(description="Why the process is not ready (empty when ready)")


class DigestOut(BaseModel):
    """A signed digest of the global chain's head; verify it with 'invario verify --digest FILE'."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "sequence": 1204, "position": 1207,
        "hash": "9f2b7c0d4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c",
        "time": "2026-11-23T12:00:00Z", "key_id": "3a9f0c1d2e4b5a6c",
        "public_key": "Xq2m9Yy8gD3pJ1y0b0s1kQ2r3t4u5v6w7x8y9z0A1B0=", "algorithm": "ed25519",
        "format": "invario-ledger-digest/1",
        "signature": "m0JvY2tlZC1zaWduYXR1cmUtZm9yLWRvY3Mtb25seS1ub3QtcmVhbC1tb2NrZWQtc2lnbmF0dXJlLWZvci1kb2NzLW9ubHk=",
    }]})

    sequence: int = Field(description="Events in the global chain up to this head")
    position: int = Field(description="Log position of the last of them")
    hash: str = Field(description="The global chain's head: SHA-256 link over every event up to here")
    time: str = Field(description="When it was signed (UTC)")
    key_id: str
    public_key: str = Field(description="Base64 of the raw Ed25519 public key")
    algorithm: Literal["ed25519"]
    format: Literal["invario-ledger-digest/1"]
    signature: str = Field(description="Base64 Ed25519 signature of the other members (see docs/integrity.md)")


class HeadOut(BaseModel):
    sequence: int
    position: int
    hash: str


class GlobalChainOut(BaseModel):
    rows_compared: int
    unchained_events: int = Field(description="Events the global chain follower has not chained yet")


class AnchorOut(BaseModel):
    chain: Literal["checkpoint", "digest"]
    sequence: int
    position: int
    hash: str
    matches: bool


class DigestSummaryOut(BaseModel):
    sequence: int
    position: int
    hash: str
    time: str
    key_id: str


class AuditOut(BaseModel):
    """A full verification, narrowed to one tenant: its aggregates' damage and the ledger-wide damage."""

    intact: bool
    tenant_id: str | None
    events_checked: int
    head: HeadOut
    global_chain: GlobalChainOut
    first_break: BreakOut | None
    breaks: list[BreakOut]
    breaks_total: int
    breaks_elsewhere: int = Field(description="Breaks found in other tenants' data")
    anchors: list[AnchorOut]
    digest: DigestSummaryOut | None
    started_at: str
    elapsed_seconds: float
    events_per_second: int
