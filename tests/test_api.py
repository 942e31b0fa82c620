"""Management API on the real Cassandra: auth, create/replace, bad input changes nothing."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import gen_slot


def tid() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


BANNER = {"image_url": "https://cdn.example.com/a.png", "target_url": "https://shop.example.com/a",
          "alt": "A", "active": True}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"},
                                     {"Authorization": "Bearer "}])
def test_admin_api_rejects_missing_or_wrong_token(client, headers):
    tenant = tid()
    for method, path, body in [
        ("put", f"/v1/admin/tenants/{tenant}", {"name": "x"}),
        ("put", f"/v1/admin/tenants/{tenant}/slots/s", {"name": "x"}),
        ("put", f"/v1/admin/tenants/{tenant}/slots/s/banners/b", BANNER),
        ("get", f"/v1/admin/tenants/{tenant}/slots/s/stats", None),
    ]:
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == 401, path
        assert "token" in response.get_json()["error"]
    ok = {"Authorization": "Bearer test-admin-token"}
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=ok).status_code == 404   # nothing was created


def test_admin_api_is_disabled_without_a_configured_token(app_factory):
    client = app_factory(ADMIN_API_TOKEN="").test_client()
    response = client.put(f"/v1/admin/tenants/{tid()}", json={"name": "x"}, headers={"Authorization": "Bearer "})
    assert response.status_code == 401


def test_put_creates_then_replaces(client, admin_headers):
    tenant = tid()
    first = client.put(f"/v1/admin/tenants/{tenant}", json={"name": "Shop"}, headers=admin_headers)
    assert first.status_code == 201
    assert first.get_json() | {"click_filter": None} == {"id": tenant, "name": "Shop", "timezone": "Asia/Kolkata",
                                                         "click_filter": None, "allowed_origins": []}
    assert first.get_json()["click_filter"]["enabled"] is True          # defaults
    again = client.put(f"/v1/admin/tenants/{tenant}", json={"name": "Shop 2", "timezone": "Europe/Berlin"},
                       headers=admin_headers)
    assert again.status_code == 200
    document = client.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).get_json()
    assert (document["id"], document["name"], document["timezone"]) == (tenant, "Shop 2", "Europe/Berlin")

    assert client.put(f"/v1/admin/tenants/{tenant}/slots/hero", json={"name": "Hero"},
                      headers=admin_headers).status_code == 201
    assert client.put(f"/v1/admin/tenants/{tenant}/slots/hero", json={"name": "Hero"},
                      headers=admin_headers).status_code == 200
    url = f"/v1/admin/tenants/{tenant}/slots/hero/banners/b1"
    assert client.put(url, json=BANNER, headers=admin_headers).status_code == 201
    assert client.put(url, json={**BANNER, "alt": "new", "active": False}, headers=admin_headers).status_code == 200
    banners = client.get(f"/v1/admin/tenants/{tenant}/slots/hero/banners", headers=admin_headers).get_json()
    assert banners == {"banners": [{"id": "b1", "image_url": BANNER["image_url"],
                                    "target_url": BANNER["target_url"], "alt": "new", "active": False,
                                    "starts_at": None, "ends_at": None, "schedule": "live"}]}


def test_slot_and_banner_of_unknown_parents_are_404(client, admin_headers):
    tenant = tid()
    assert client.put(f"/v1/admin/tenants/{tenant}/slots/s", json={"name": "x"},
                      headers=admin_headers).status_code == 404
    client.put(f"/v1/admin/tenants/{tenant}", json={"name": "x"}, headers=admin_headers)
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/nope/banners/b", json=BANNER, headers=admin_headers)
    assert response.status_code == 404
    assert "unknown slot" in response.get_json()["error"]
    assert client.get(f"/v1/admin/tenants/{tenant}/slots/nope/stats", headers=admin_headers).status_code == 404


@pytest.mark.parametrize("body,message", [
    (None, "JSON object"),
    ([1, 2], "JSON object"),
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": 5}, "name"),
    ({"name": "x" * 301}, "too long"),
    ({"name": "x", "timezone": "Mars/Olympus"}, "time zone"),
    ({"name": "x", "color": "red"}, "unknown field"),
    ({"name": "a\x00b"}, "control"),
])
def test_bad_tenant_bodies_are_400_and_write_nothing(client, admin_headers, body, message):
    tenant = tid()
    response = client.put(f"/v1/admin/tenants/{tenant}", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).status_code == 404


@pytest.mark.parametrize("change,message", [
    ({"image_url": "javascript:alert(1)"}, "http(s)"),
    ({"image_url": "ftp://x/y.png"}, "http(s)"),
    ({"target_url": "//evil.example.com"}, "http(s)"),
    ({"target_url": "https://a b.com"}, "whitespace"),
    ({"target_url": None}, "non-empty"),
    ({"active": "yes"}, "true or false"),
    ({"alt": 3}, "string"),
    ({"extra": 1}, "unknown field"),
])
def test_bad_banner_bodies_are_400_and_write_nothing(client, admin_headers, change, message):
    tenant, slot = gen_slot(client, [])
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/b1", json={**BANNER, **change},
                          headers=admin_headers)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    listed = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners", headers=admin_headers).get_json()
    assert listed == {"banners": []}


@pytest.mark.parametrize("path", ["/v1/admin/tenants/-bad", "/v1/admin/tenants/" + "x" * 65,
                                  "/v1/admin/tenants/a%20b"])
def test_bad_identifiers_are_400(client, admin_headers, path):
    response = client.put(path, json={"name": "x"}, headers=admin_headers)
    assert response.status_code == 400
    assert "letters, digits" in response.get_json()["error"]
