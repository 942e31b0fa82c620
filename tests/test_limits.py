"""Input limits: body size, parameter lengths and character sets, banners per slot: 4xx JSON, nothing written."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.helpers import gen_slot, sync
from webapp.storage import store

BANNER = {"image_url": "https://cdn.example.com/a.png", "target_url": "https://shop.example.com/a", "alt": "A"}


def tid() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def error_of(response) -> str:
    assert response.is_json, response.get_data(as_text=True)[:200]
    body = response.get_json()
    assert set(body) == {"error"}
    return body["error"]


def banner_ids(client, admin_headers, tenant, slot) -> list[str]:
    listed = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners", headers=admin_headers)
    return [b["id"] for b in listed.get_json()["banners"]]


# -- request body size ------------------------------------------------------------------------------------

def test_a_body_over_max_content_length_is_413_json_and_writes_nothing(app_factory, admin_headers):
    client = app_factory(MAX_CONTENT_LENGTH=1000).test_client()
    tenant = tid()
    response = client.put(f"/v1/admin/tenants/{tenant}", headers=admin_headers,
                          json={"name": "x", "timezone": "UTC", "pad": "p" * 2000})
    assert response.status_code == 413
    assert error_of(response) == "request body is too large (at most 1000 bytes)"
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).status_code == 404
    assert client.put(f"/v1/admin/tenants/{tenant}", headers=admin_headers, json={"name": "x"}).status_code == 201


def test_a_click_body_over_the_default_limit_is_413(client):
    response = client.post("/v1/click", data=json.dumps({"token": "a" * 70_000}),
                           content_type="application/json")
    assert response.status_code == 413
    assert "at most 65536 bytes" in error_of(response)


def test_a_deeply_nested_body_is_400_not_a_server_error(client, admin_headers):
    deep = "[" * 20_000 + "]" * 20_000                     # 40 KB: under the size limit
    for method, path in (("post", "/v1/click"), ("put", f"/v1/admin/tenants/{tid()}")):
        response = getattr(client, method)(path, data=deep, content_type="application/json",
                                           headers=admin_headers)
        assert response.status_code == 400, path
        assert error_of(response) == "request body is nested too deeply"


# -- identifiers in paths ---------------------------------------------------------------------------------

BAD_IDS = ["-starts-with-dash", "x" * 65, "a%20b", "new%0Aline", "caf%C3%A9", "semi;colon", "a%00b"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_identifiers_in_any_path_are_400_and_write_nothing(client, admin_headers, bad):
    tenant, slot = gen_slot(client, ["a"])
    puts = [
        (f"/v1/admin/tenants/{bad}", {"name": "x"}),
        (f"/v1/admin/tenants/{tenant}/slots/{bad}", {"name": "x"}),
        (f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/{bad}", BANNER),
    ]
    for path, body in puts:
        response = client.put(path, json=body, headers=admin_headers)
        assert response.status_code == 400, path
        assert "letters, digits" in error_of(response)
    gets = [f"/v1/serve/{bad}/{slot}", f"/v1/serve/{tenant}/{bad}", f"/v1/embed/{tenant}/{bad}",
            f"/v1/admin/tenants/{bad}", f"/v1/admin/tenants/{tenant}/slots/{bad}/banners",
            f"/v1/admin/tenants/{bad}/slots/{slot}/stats"]
    for path in gets:
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 400, path
        assert "letters, digits" in error_of(response)
    assert banner_ids(client, admin_headers, tenant, slot) == ["a"]


def test_an_identifier_with_a_trailing_newline_is_not_created(client, admin_headers):
    """'$' in a Python regex also matches before a final newline: the check must be a full match."""
    tenant = tid()
    response = client.put(f"/v1/admin/tenants/{tenant}%0A", json={"name": "x"}, headers=admin_headers)
    assert response.status_code == 400
    db = client.application.extensions["cassandra"]
    assert store.get_tenant(db, tenant + "\n") is None


# -- query parameters -------------------------------------------------------------------------------------

@pytest.mark.parametrize("query,message", [
    ("location=" + "x" * 129, "location is too long"),
    ("customer_id=" + "c" * 129, "customer_id is too long"),
    ("referrer_id=a%07b", "referrer_id contains control"),
    ("location=a%C2%85b", "location contains control"),           # U+0085, a C1 control
    ("customer_id=%EE%80%80", "customer_id contains control"),     # U+E000, private use
])
def test_invalid_embed_parameters_are_400_and_write_nothing(app, client, query, message):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    response = client.get(f"/v1/embed/{tenant}/{slot}?{query}")
    assert response.status_code == 400
    assert message in error_of(response)
    sync(app)
    assert store.slot_counts(app.extensions["cassandra"], tenant, slot, "") == []


def test_max_param_length_is_configurable(app_factory):
    app = app_factory(MAX_PARAM_LENGTH=8)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    assert client.get(f"/v1/serve/{tenant}/{slot}?location=12345678").status_code == 200
    response = client.get(f"/v1/serve/{tenant}/{slot}?location=123456789")
    assert (response.status_code, error_of(response)) == (400, "location is too long (9 characters, at most 8)")


def test_invalid_stats_location_is_400(client, admin_headers):
    tenant, slot = gen_slot(client, ["a"])
    for location in ("x" * 129, "a%00b"):
        response = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats?location={location}",
                              headers=admin_headers)
        assert response.status_code == 400
        assert "location" in error_of(response)


def test_invalid_click_query_parameters_are_400_and_record_nothing(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    for query in ("customer_id=" + "c" * 129, "referrer_id=x%0Dy"):
        response = client.get(f"/v1/click/{served['token']}?{query}")
        assert response.status_code == 400
        assert "customer_id" in error_of(response) or "referrer_id" in error_of(response)
    sync(app)
    impression_id = uuid.UUID(served["impression_id"])
    assert store.get_click(app.extensions["cassandra"], tenant, slot, impression_id) is None
    assert client.get(f"/v1/click/{served['token']}").status_code == 302


# -- click tokens -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("token,message", [
    ("\udc80", "malformed"),                         # a lone surrogate: cannot even be encoded as UTF-8
    ("abc def", "malformed"),
    ("é" * 10, "malformed"),
    ("a" * 2049, "malformed"),
    ("abc.def", "invalid"),                          # the right characters, but not signed by us
])
def test_malformed_tokens_are_400(client, token, message):
    response = client.post("/v1/click", json={"token": token})
    assert response.status_code == 400
    assert message in error_of(response)


# -- body fields ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    ({"name": "x", "timezone": "Asia"}, "not a known IANA time zone"),        # a directory of tzdata
    ({"name": "x", "timezone": "localtime"}, "not a known IANA time zone"),   # a file of the host
    ({"name": "x", "timezone": "Etc/../UTC"}, "not a known IANA time zone"),
    ({"name": "x", "timezone": "t" * 65}, "IANA time zone name"),
    ({"name": "x\u200by"}, "control"),                                      # U+200B, a format character
])
def test_bad_tenant_fields_are_400_and_write_nothing(client, admin_headers, body, message):
    tenant = tid()
    response = client.put(f"/v1/admin/tenants/{tenant}", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert message in error_of(response)
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).status_code == 404


def test_slot_name_limits(client, admin_headers):
    tenant, _ = gen_slot(client, [])
    for name, message in (("n" * 301, "too long"), ("a\x1bb", "control"), ("   ", "non-empty")):
        response = client.put(f"/v1/admin/tenants/{tenant}/slots/other", json={"name": name},
                              headers=admin_headers)
        assert response.status_code == 400
        assert message in error_of(response)
    assert client.get(f"/v1/admin/tenants/{tenant}/slots/other/banners",
                      headers=admin_headers).status_code == 404


@pytest.mark.parametrize("change,message", [
    ({"image_url": "http://[::1"}, "not a valid URL"),
    ({"target_url": "https://shop.example.com:99999/"}, "not a valid URL"),
    ({"target_url": "https://:443/"}, "absolute http(s) URL"),
    ({"target_url": "https://shop.example.com/" + "p" * 2048}, "too long"),
    ({"target_url": "data:text/html,hi"}, "absolute http(s) URL"),
    ({"alt": "a" * 301}, "too long"),
    ({"alt": "a\x7fb"}, "control"),
])
def test_bad_banner_fields_are_400_and_write_nothing(client, admin_headers, change, message):
    tenant, slot = gen_slot(client, [])
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/b1", json={**BANNER, **change},
                          headers=admin_headers)
    assert response.status_code == 400
    assert message in error_of(response)
    assert banner_ids(client, admin_headers, tenant, slot) == []


# -- banners per slot -------------------------------------------------------------------------------------

def test_a_full_slot_refuses_a_new_banner_but_accepts_replacements(app_factory, admin_headers):
    client = app_factory(MAX_BANNERS_PER_SLOT=3).test_client()
    tenant, slot = gen_slot(client, {"b1": True, "b2": True, "b3": False})   # a paused banner counts too
    url = f"/v1/admin/tenants/{tenant}/slots/{slot}/banners"
    response = client.put(f"{url}/b4", json=BANNER, headers=admin_headers)
    assert response.status_code == 409
    assert error_of(response) == (f"slot {tenant}/{slot} already has 3 banners, the most allowed "
                                  "(MAX_BANNERS_PER_SLOT=3); replace an existing banner instead")
    assert sorted(banner_ids(client, admin_headers, tenant, slot)) == ["b1", "b2", "b3"]
    replaced = client.put(f"{url}/b3", json={**BANNER, "alt": "new"}, headers=admin_headers)
    assert replaced.status_code == 200
    assert replaced.get_json()["alt"] == "new"
    # Another slot of the same tenant has its own budget.
    client.put(f"/v1/admin/tenants/{tenant}/slots/side", json={"name": "Side"}, headers=admin_headers)
    assert client.put(f"/v1/admin/tenants/{tenant}/slots/side/banners/b4", json=BANNER,
                      headers=admin_headers).status_code == 201


def test_the_default_cap_is_50(app, client, admin_headers):
    assert app.config["MAX_BANNERS_PER_SLOT"] == 50
    tenant, slot = gen_slot(client, [f"b{i:02d}" for i in range(50)])
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/one-more", json=BANNER,
                          headers=admin_headers)
    assert response.status_code == 409
    assert len(banner_ids(client, admin_headers, tenant, slot)) == 50


# -- methods ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,allowed", [
    ("delete", "/v1/ping", {"GET", "HEAD", "OPTIONS"}),
    ("trace", "/v1/serve/demo/home-hero", {"GET", "HEAD", "OPTIONS"}),
    ("post", "/v1/admin/tenants/demo", {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "PUT"}),
])
def test_405_is_json_and_keeps_the_allow_header(client, method, path, allowed):
    response = client.open(path, method=method.upper())
    assert response.status_code == 405
    assert "not allowed" in error_of(response)
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
