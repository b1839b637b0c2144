"""Token buckets: per tenant (``rate_limit_per_second`` sustained, ``rate_limit_burst`` at once), and per
client address for failed authentications (``FailureThrottle``).

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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Draw:
    """One attempt to take a token from a bucket."""

    wait_seconds: float  # 0.0: a token was taken; else the seconds until one is available
    next_wait_seconds: float  # after this attempt: 0.0 while a token is left, else the seconds until one is


class RateLimiter(Protocol):
    def acquire(self, bucket: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""

    def draw(self, bucket: str) -> Draw:
        """Take one token, and tell whether the bucket is now empty."""


class Unlimited:
    def acquire(self, bucket: str) -> float:
        return 0.0

    def draw(self, bucket: str) -> Draw:
        return Draw(0.0, 0.0)


def _wait_seconds(tokens: float, rate: float) -> float:
    return max(0.001, (1.0 - tokens) / rate)


def _draw(tokens_left: float, allowed: bool, rate: float) -> Draw:
    next_wait = 0.0 if tokens_left >= 1.0 else _wait_seconds(tokens_left, rate)
    return Draw(0.0 if allowed else next_wait, next_wait)


class InProcessTokenBucket:
    """Buckets in this process's memory (the embedded SQLite mode), LRU-bounded."""

    def __init__(self, rate_per_second: float, burst: int) -> None:
        assert rate_per_second > 0 and burst >= 1
        self.rate = rate_per_second
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, bucket: str) -> float:
        return self.draw(bucket).wait_seconds

    def draw(self, bucket: str) -> Draw:
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.pop(bucket, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            tokens_left = tokens - 1.0 if allowed else tokens
            self._buckets[bucket] = (tokens_left, now)
            if len(self._buckets) > IN_PROCESS_BUCKETS_MAX:
                self._buckets.popitem(last=False)
        return _draw(tokens_left, allowed, self.rate)


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


_FORGET_FULL = text(
    """
    DELETE FROM rate_limit_buckets
    WHERE bucket LIKE :prefix AND refreshed_at < now() - make_interval(secs => :full_after)
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
        return self.draw(bucket).wait_seconds

    def draw(self, bucket: str) -> Draw:
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
            return self._fallback.draw(bucket)
        return _draw(float(tokens), bool(allowed), self.rate)

    def forget_full(self, prefix: str) -> int:
        """Delete the buckets named ``prefix…`` untouched long enough to be full again (as good as absent):
        what keeps a table of buckets per client address bounded. How many were deleted."""
        with self.engine.begin() as connection:
            result = connection.execute(_FORGET_FULL, {"prefix": prefix + "%", "full_after": self.burst / self.rate})
        return result.rowcount or 0


CLIENT_BUCKET_PREFIX = "auth:"  # tenants' buckets are named by their UUID: the two never meet
BUCKET_NAME_LENGTH_MAX = 64  # rate_limit_buckets.bucket
FORGET_EVERY_FAILURES = 1000  # on PostgreSQL, full client buckets are deleted after this many failures here


class FailureThrottle:
    """Failed authentications per client address, counted in token buckets (``failures_max`` at once,
    refilled at ``failures_max`` per window): a client that has spent its bucket is refused with 429
    before its key is even checked, until a token is back.

    The buckets are the tenants' machinery: in PostgreSQL, shared by every API process, or in this
    process's memory on SQLite. Whether to refuse a client *before* checking its key is decided from
    this process's memory of the clients it saw spend their bucket (no round trip on the usual request,
    whose key is good); a client throttled through another process is refused here at its next failure.
    """

    def __init__(self, buckets: RateLimiter, *, clients_max: int = IN_PROCESS_BUCKETS_MAX) -> None:
        self.buckets = buckets
        self.shared = isinstance(buckets, DatabaseTokenBucket)  # drawing blocks on the database
        self.clients_max = clients_max
        self._refused_until: OrderedDict[str, float] = OrderedDict()  # client -> time.monotonic()
        self._failures = 0
        self._lock = threading.Lock()

    def refusing(self, client: str) -> float:
        """The seconds this client stays refused; 0.0: check its key. No I/O."""
        with self._lock:
            until = self._refused_until.get(client)
            if until is None:
                return 0.0
            left = until - time.monotonic()
            if left <= 0:
                del self._refused_until[client]
                return 0.0
            return left

    def failed(self, client: str) -> float:
        """Count one failed authentication: 0.0 when it was within the client's allowance (answer 401),
        else the seconds until the client may try again (answer 429). Blocks when ``shared``."""
        draw = self.buckets.draw((CLIENT_BUCKET_PREFIX + client)[:BUCKET_NAME_LENGTH_MAX])
        refused_seconds = draw.wait_seconds or draw.next_wait_seconds
        with self._lock:
            if refused_seconds > 0:
                self._refused_until.pop(client, None)
                self._refused_until[client] = time.monotonic() + refused_seconds
                if len(self._refused_until) > self.clients_max:
                    self._refused_until.popitem(last=False)
            self._failures += 1
            forget = self.shared and self._failures % FORGET_EVERY_FAILURES == 0
        if forget:
            assert isinstance(self.buckets, DatabaseTokenBucket)
            self.buckets.forget_full(CLIENT_BUCKET_PREFIX)
        return draw.wait_seconds


def retry_after_header(wait_seconds: float) -> str:
    """Whole seconds for ``Retry-After``, at least 1."""
    return str(max(1, math.ceil(wait_seconds)))
