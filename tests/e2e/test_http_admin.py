"""/admin on both stores: operators create, read, list, suspend and resume tenants."""

from __future__ import annotations

from tests.e2e.http_fixtures import ADMIN, Api, api, assert_problem  # noqa: F401


def test_create_read_and_list_tenants(api: Api) -> None:
    created = api.client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert (tenant["name"], tenant["status"], tenant["version"]) == ("acme", "active", 1)
    assert created.headers["Location"] == f"/admin/tenants/{tenant['id']}"
    duplicate = api.client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)
    assert_problem(duplicate, 409, "tenant_already_exists")
    assert_problem(api.client.post("/admin/tenants", json={"name": "No Spaces!"}, headers=ADMIN), 422, "invalid_tenant")
    for name in ("beta", "gamma"):
        assert api.client.post("/admin/tenants", json={"name": name}, headers=ADMIN).status_code == 201
    api.catch_up()

    read = api.client.get(f"/admin/tenants/{tenant['id']}", headers=ADMIN,
                          params={"min_position": tenant["position"]})
    assert read.status_code == 200 and read.json()["name"] == "acme" and read.headers["ETag"] == '"1"'
    first = api.client.get("/admin/query/tenants", headers=ADMIN, params={"limit": 2}).json()
    assert [t["name"] for t in first["items"]] == ["acme", "beta"]
    rest = api.client.get("/admin/query/tenants", headers=ADMIN, params={"cursor": first["next_cursor"]}).json()
    assert [t["name"] for t in rest["items"]] == ["gamma"] and rest["next_cursor"] is None
    assert_problem(api.client.get("/admin/query/tenants", headers=ADMIN, params={"cursor": "%%%"}),
                   400, "invalid_cursor")
    missing = api.client.get("/admin/tenants/00000000-0000-0000-0000-000000000000", headers=ADMIN)
    assert_problem(missing, 404, "tenant_not_found")


def test_suspend_and_resume_with_if_match(api: Api) -> None:
    tenant = api.client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN).json()
    path = f"/admin/tenants/{tenant['id']}"
    assert_problem(api.client.post(f"{path}/resume", headers=ADMIN), 409, "tenant_not_suspended")
    stale = api.client.post(f"{path}/suspend", json={"reason": "x"}, headers={**ADMIN, "If-Match": '"7"'})
    assert_problem(stale, 409, "version_mismatch")
    suspended = api.client.post(f"{path}/suspend", json={"reason": "unpaid invoice"},
                                headers={**ADMIN, "If-Match": '"1"'})
    assert suspended.status_code == 200 and suspended.headers["ETag"] == '"2"'
    assert (suspended.json()["status"], suspended.json()["suspension_reason"]) == ("suspended", "unpaid invoice")
    assert_problem(api.client.post(f"{path}/suspend", headers=ADMIN), 409, "tenant_already_suspended")
    api.catch_up()
    listed = api.client.get("/admin/query/tenants", headers=ADMIN, params={"status": "suspended"}).json()
    assert [t["name"] for t in listed["items"]] == ["acme"]
    resumed = api.client.post(f"{path}/resume", headers={**ADMIN, "If-Match": '"2"'})
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    unknown = api.client.post("/admin/tenants/00000000-0000-0000-0000-000000000000/suspend", headers=ADMIN)
    assert_problem(unknown, 404, "tenant_not_found")
