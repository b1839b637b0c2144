"""Per-tenant token buckets: 429 with Retry-After; shared by every process on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.e2e.http_fixtures import assert_problem, make_api


def test_over_the_limit_is_429_per_tenant(database_url: str) -> None:
    apps = make_api(database_url, rate_limit_per_second=0.5, rate_limit_burst=3)
    api = next(apps)
    try:
        acme, globex = api.tenant("acme"), api.tenant("globex")
        for _ in range(3):
            assert api.client.get("/v1/accounts", headers=acme.headers).status_code == 200
        limited = api.client.get("/v1/accounts", headers=acme.headers)
        assert_problem(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 2
        assert api.client.get("/v1/accounts", headers=globex.headers).status_code == 200
    finally:
        apps.close()


@pytest.mark.postgres
def test_processes_share_the_bucket_on_postgres(pg_database_url: str) -> None:
    first = make_api(pg_database_url, rate_limit_per_second=0.5, rate_limit_burst=3)
    second = make_api(pg_database_url, rate_limit_per_second=0.5, rate_limit_burst=3)
    one, two = next(first), next(second)
    try:
        acme = one.tenant("acme")
        assert one.client.get("/v1/accounts", headers=acme.headers).status_code == 200
        assert one.client.get("/v1/accounts", headers=acme.headers).status_code == 200
        assert two.client.get("/v1/accounts", headers=acme.headers).status_code == 200
        assert_problem(two.client.get("/v1/accounts", headers=acme.headers), 429, "rate_limited")
        assert_problem(one.client.get("/v1/accounts", headers=acme.headers), 429, "rate_limited")
    finally:
        first.close()
        second.close()
