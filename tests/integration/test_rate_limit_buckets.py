"""The buckets in PostgreSQL: a draw says when it emptied the bucket, and the per-client buckets
of the failed-authentication throttle are deleted once full again (so the table stays bounded)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from infrastructure.migrate import upgrade_to_head
from infrastructure.rate_limit import CLIENT_BUCKET_PREFIX, DatabaseTokenBucket, FailureThrottle
from tests.integration.conftest import OpenRuntime, open_rt  # noqa: F401 - the fixture

pytestmark = pytest.mark.postgres


def test_full_client_buckets_are_forgotten_and_tenant_buckets_kept(pg_database_url: str,
                                                                     open_rt: OpenRuntime) -> None:  # noqa: F811
    runtime = open_rt(pg_database_url)
    upgrade_to_head(runtime.engine)
    slow = DatabaseTokenBucket(runtime.engine, rate_per_second=0.01, burst=2)
    first, second = slow.draw("tenant-a"), slow.draw("tenant-a")
    assert (first.wait_seconds, first.next_wait_seconds) == (0.0, 0.0)
    assert second.wait_seconds == 0.0 and second.next_wait_seconds == pytest.approx(100, abs=1)
    assert slow.draw("tenant-a").wait_seconds == pytest.approx(100, abs=1)

    fast = DatabaseTokenBucket(runtime.engine, rate_per_second=1000.0, burst=1)
    throttle = FailureThrottle(fast)
    assert throttle.shared
    throttle.failed("203.0.113.7")
    throttle.failed("2001:db8::" + "ffff:" * 8)  # names are cut to the column's 64 characters
    fast.draw("tenant-b")
    time.sleep(0.05)  # all full again (one token, refilled in a millisecond): only the clients' go
    assert fast.forget_full(CLIENT_BUCKET_PREFIX) == 2
    with runtime.engine.connect() as connection:
        left = connection.execute(text("SELECT bucket FROM rate_limit_buckets ORDER BY bucket")).scalars().all()
    assert left == ["tenant-a", "tenant-b"]
