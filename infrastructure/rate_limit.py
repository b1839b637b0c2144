"""Per-tenant token buckets: ``rate_limit_per_second`` sustained, ``rate_limit_burst`` at once.

On PostgreSQL the buckets live in the database (``rate_limit_buckets``), so every
process serving the API draws from the same bucket: one atomic upsert per request
refills the bucket by the time elapsed (on the database's clock) and takes a token
if there is one. The embedded SQLite store serves one process, so its buckets are
kept in memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Protocol

from sqlalchemy import Boolean, Column, DateTime, Engine, Float, String, Table, text
from sqlalchemy.exc import DBAPIError

from infrastructure.db_errors import DATABASE_READ_ONLY, classify_database_error
from infrastructure.schema import metadata

IN_PROCESS_BUCKETS_MAX = 100_000

rate_limit_buckets = Table(
    "rate_limit_buckets",
    metadata,
    Column("bucket", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refreshed_at", DateTime(timezone=True), nullable=False),
    Column("allowed", Boolean, nullable=False),
)


class RateLimiter(Protocol):
    def acquire(self, bucket: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""


class Unlimited:
    def acquire(self, bucket: str) -> float:
        return 0.0


def _wait_seconds(tokens: float, rate: float) -> float:
    return max(0.001, (1.0 - tokens) / rate)


class InProcessTokenBucket:
    """Buckets in this process's memory (the embedded SQLite mode), LRU-bounded."""

    def __init__(self, rate_per_second: float, burst: int) -> None:
        assert rate_per_second > 0 and burst >= 1
        self.rate = rate_per_second
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, bucket: str) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.pop(bucket, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[bucket] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > IN_PROCESS_BUCKETS_MAX:
                self._buckets.popitem(last=False)
        return 0.0 if allowed else _wait_seconds(tokens, self.rate)


_TAKE_TOKEN = text(
    """
    INSERT INTO rate_limit_buckets AS b (bucket, tokens, refreshed_at, allowed)
    VALUES (:bucket, :burst - 1, now(), true)
    ON CONFLICT (bucket) DO UPDATE SET
        tokens = CASE
            WHEN LEAST(:burst, b.tokens + EXTRACT(EPOCH FROM now() - b.refreshed_at)::float8 * :rate) >= 1
            THEN LEAST(:burst, b.tokens + EXTRACT(EPOCH FROM now() - b.refreshed_at)::float8 * :rate) - 1
            ELSE LEAST(:burst, b.tokens + EXTRACT(EPOCH FROM now() - b.refreshed_at)::float8 * :rate)
        END,
        allowed = LEAST(:burst, b.tokens + EXTRACT(EPOCH FROM now() - b.refreshed_at)::float8 * :rate) >= 1,
        refreshed_at = now()
    RETURNING tokens, allowed
    """
)


class DatabaseTokenBucket:
    """Buckets shared by every process through PostgreSQL (one short statement per request)."""

    def __init__(self, engine: Engine, rate_per_second: float, burst: int) -> None:
        assert engine.dialect.name == "postgresql"
        assert rate_per_second > 0 and burst >= 1
        self.engine = engine
        self.rate = rate_per_second
        self.burst = float(burst)
        self._fallback = InProcessTokenBucket(rate_per_second, burst)

    def acquire(self, bucket: str) -> float:
        try:
            with self.engine.begin() as connection:
                tokens, allowed = connection.execute(
                    _TAKE_TOKEN, {"bucket": bucket, "burst": self.burst, "rate": self.rate}
                ).one()
        except DBAPIError as exc:
            # A read-only database (a standby, default_transaction_read_only) still serves reads:
            # limit them in this process meanwhile rather than refusing them all.
            failure = classify_database_error(exc)
            if failure is None or failure.code != DATABASE_READ_ONLY:
                raise
            return self._fallback.acquire(bucket)
        return 0.0 if allowed else _wait_seconds(float(tokens), self.rate)


def retry_after_header(wait_seconds: float) -> str:
    """Whole seconds for ``Retry-After``, at least 1."""
    return str(max(1, math.ceil(wait_seconds)))
