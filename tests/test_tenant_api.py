"""Issue 25 on the real Cassandra: tenant API keys and their isolation, server-side clicks, read-back,
PUT/PATCH, deletes and banner schedules."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid

import pytest

from tests.helpers import csrf_token, gen_slot, gen_user, login, sync
from webapp.dashboard import accounts
from webapp.storage import store

BANNER = {"image_url": "https://cdn.example.com/a.png", "target_url": "https://shop.example.com/a"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_key(client, admin_headers, tenant: str, scopes: list[str], name: str = "backend") -> str:
    response = client.post(f"/v1/admin/tenants/{tenant}/api-keys", json={"name": name, "scopes": scopes},
                           headers=admin_headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["key"]


def poll(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


# -- keys --------------------------------------------------------------------------------------------------

def test_key_is_shown_once_listed_without_secret_and_stored_hashed(app, client, admin_headers):
    tenant, _ = gen_slot(client, ["a"])
    created = client.post(f"/v1/admin/tenants/{tenant}/api-keys", json={"name": "shop backend",
                                                                        "scopes": ["events", "read"]},
                          headers=admin_headers)
    assert created.status_code == 201
    document = created.get_json()
    assert set(document) == {"id", "name", "scopes", "key", "created_at"}
    assert document["scopes"] == ["read", "events"] and document["name"] == "shop backend"
    listed = client.get(f"/v1/admin/tenants/{tenant}/api-keys", headers=admin_headers).get_json()["api_keys"]
    assert listed == [{"id": document["id"], "name": "shop backend", "scopes": ["read", "events"],
                       "created_at": document["created_at"], "last_used_at": None}]
    row = store.get_api_key(app.extensions["cassandra"], document["id"])
    assert document["key"] not in str(row) and document["key"].split("_")[-1] not in str(row)
    # the key works, and its use is noted
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=bearer(document["key"])).status_code == 200
    listed = client.get(f"/v1/admin/tenants/{tenant}/api-keys", headers=admin_headers).get_json()["api_keys"]
    assert listed[0]["last_used_at"] is not None


@pytest.mark.parametrize("body", [
    {"name": "x", "scopes": ["read", "admin"]},       # unknown scope
    {"name": "", "scopes": ["read"]},                 # empty name
    {"name": "   ", "scopes": ["read"]},
    {"name": "x", "scopes": []},
    {"name": "x", "scopes": "read"},
    {"name": "x"},
    {"name": "x", "scopes": ["read"], "secret": "mine"},
    {"name": "x" * 101, "scopes": ["read"]},
])
def test_bad_key_requests_are_400_and_create_nothing(client, admin_headers, body):
    tenant, _ = gen_slot(client, ["a"])
    response = client.post(f"/v1/admin/tenants/{tenant}/api-keys", json=body, headers=admin_headers)
    assert response.status_code == 400 and response.get_json()["error"]
    assert client.get(f"/v1/admin/tenants/{tenant}/api-keys", headers=admin_headers).get_json() == {"api_keys": []}


def test_revoked_key_stops_working_on_every_server(app_factory, admin_headers):
    one, two = (app_factory(API_KEY_CACHE_SECONDS=0.5).test_client() for _ in range(2))
    tenant, _ = gen_slot(one, ["a"])
    created = one.post(f"/v1/admin/tenants/{tenant}/api-keys", json={"name": "k", "scopes": ["read"]},
                       headers=admin_headers).get_json()
    path = f"/v1/admin/tenants/{tenant}"
    assert one.get(path, headers=bearer(created["key"])).status_code == 200
    assert two.get(path, headers=bearer(created["key"])).status_code == 200     # now cached on server two
    assert one.delete(f"{path}/api-keys/{created['id']}", headers=admin_headers).status_code == 204
    assert one.get(path, headers=bearer(created["key"])).status_code == 401     # at once where revoked
    assert poll(lambda: two.get(path, headers=bearer(created["key"])).status_code == 401)
    assert one.get(f"{path}/api-keys", headers=admin_headers).get_json() == {"api_keys": []}
    assert one.delete(f"{path}/api-keys/{created['id']}", headers=admin_headers).status_code == 404


def test_wrong_or_forged_keys_are_401(client, admin_headers):
    tenant, _ = gen_slot(client, ["a"])
    key = new_key(client, admin_headers, tenant, ["read"])
    prefix, key_id, secret = key.split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' * len(secret)}"
    for token in (forged, f"bb_{'0' * 16}_{secret}", key + "x"):
        response = client.get(f"/v1/admin/tenants/{tenant}", headers=bearer(token))
        assert response.status_code == 401, token


# Every management operation: (method, path template, body); {t} is the tenant, {o} another tenant.
def operations(tenant: str) -> list[tuple[str, str, dict | None, str]]:
    base = f"/v1/admin/tenants/{tenant}"
    return [
        ("get", base, None, "read"),
        ("put", base, {"name": "renamed"}, "write"),
        ("patch", base, {"name": "renamed"}, "write"),
        ("get", f"{base}/slots", None, "read"),
        ("get", f"{base}/slots/hero", None, "read"),
        ("put", f"{base}/slots/hero", {"name": "Hero 2"}, "write"),
        ("patch", f"{base}/slots/hero", {"name": "Hero 2"}, "write"),
        ("get", f"{base}/slots/hero/banners", None, "read"),
        ("get", f"{base}/slots/hero/banners/a", None, "read"),
        ("put", f"{base}/slots/hero/banners/n", BANNER, "write"),
        ("patch", f"{base}/slots/hero/banners/a", {"alt": "x"}, "write"),
        ("get", f"{base}/slots/hero/stats", None, "read"),
        ("get", f"{base}/api-keys", None, "read"),
        ("post", f"{base}/api-keys", {"name": "k", "scopes": ["write"]}, "write"),
        ("delete", f"{base}/slots/hero/banners/b", None, "write"),
        ("delete", f"{base}/api-keys/0123456789abcdef", None, "write"),
        ("delete", f"{base}/slots/hero", None, "write"),
    ]


def test_tenant_keys_are_isolated_on_every_management_endpoint(client, admin_headers):
    mine, _ = gen_slot(client, ["a", "b"])
    other, _ = gen_slot(client, ["a", "b"])
    keys = {scope: new_key(client, admin_headers, mine, [scope]) for scope in ("read", "write", "events")}
    before = client.get(f"/v1/admin/tenants/{other}/slots", headers=admin_headers).get_json()
    # Another tenant's paths: 403 for every key and operation, and nothing changes there.
    for scope, key in keys.items():
        for method, path, body, _ in operations(other):
            response = getattr(client, method)(path, json=body, headers=bearer(key))
            assert response.status_code == 403, (scope, method, path)
            assert "another tenant" in response.get_json()["error"]
    assert client.get(f"/v1/admin/tenants/{other}/slots", headers=admin_headers).get_json() == before
    assert client.get(f"/v1/admin/tenants/{other}/slots/hero/banners/n", headers=admin_headers).status_code == 404
    # Platform-only operations: 403 for every tenant key.
    for key in keys.values():
        assert client.get("/v1/admin/tenants", headers=bearer(key)).status_code == 403
        assert client.delete(f"/v1/admin/tenants/{mine}", headers=bearer(key)).status_code == 403
        assert client.put(f"/v1/admin/tenants/t{uuid.uuid4().hex[:10]}", json={"name": "x"},
                          headers=bearer(key)).status_code == 403
    # Its own tenant: the scope decides; a missing scope is 403 and says which.
    for method, path, body, needed in operations(mine):
        for scope, key in keys.items():
            if scope == needed:
                continue
            response = getattr(client, method)(path, json=body, headers=bearer(key))
            assert response.status_code == 403, (scope, method, path)
            assert f"'{needed}' scope" in response.get_json()["error"]
        response = getattr(client, method)(path, json=body, headers=bearer(keys[needed]))
        assert response.status_code in (200, 201, 204, 404), (method, path, response.get_json())
    assert client.get(f"/v1/admin/tenants/{mine}", headers=admin_headers).get_json()["name"] == "renamed"


def test_a_key_cannot_grant_scopes_it_lacks(client, admin_headers):
    tenant, _ = gen_slot(client, ["a"])
    key = new_key(client, admin_headers, tenant, ["write"])
    response = client.post(f"/v1/admin/tenants/{tenant}/api-keys", json={"name": "k", "scopes": ["events"]},
                           headers=bearer(key))
    assert response.status_code == 403
    assert len(client.get(f"/v1/admin/tenants/{tenant}/api-keys", headers=admin_headers).get_json()[
        "api_keys"]) == 1


# -- server-side clicks -------------------------------------------------------------------------------------

def served(client, tenant: str) -> dict:
    response = client.get(f"/v1/serve/{tenant}/hero")
    assert response.status_code == 200
    return response.get_json()


def clicked(app, tenant: str, document: dict):
    return store.get_click(app.extensions["cassandra"], tenant, "hero", uuid.UUID(document["impression_id"]))


def test_server_side_click_is_judged_by_the_visitor_it_vouches_for(app, client, admin_headers):
    tenant, _ = gen_slot(client, ["a", "b"])
    key = new_key(client, admin_headers, tenant, ["events"])
    browser = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    # The backend's own user agent would be flagged; the visitor's is judged instead.
    document = served(client, tenant)
    response = client.post("/v1/click", json={"token": document["token"], "visitor_ip": "203.0.113.7",
                                              "user_agent": browser},
                           headers={**bearer(key), "User-Agent": "python-requests/2.32"})
    assert response.get_json() == {"status": "recorded", "counted": True, "reason": None}
    row = clicked(app, tenant, document)
    assert (row["valid"], row["ip"], row["user_agent"]) == (True, "203.0.113.7", browser)
    again = client.post("/v1/click", json={"token": document["token"]}, headers=bearer(key))
    assert again.get_json() == {"status": "duplicate", "counted": False, "reason": "duplicate"}
    # A bot visitor is flagged, and the answer says why.
    document = served(client, tenant)
    response = client.post("/v1/click", json={"token": document["token"], "visitor_ip": "2001:db8::1",
                                              "user_agent": "Googlebot/2.1"}, headers=bearer(key))
    assert response.get_json() == {"status": "recorded", "counted": False, "reason": "bot_user_agent"}
    assert clicked(app, tenant, document)["ip"] == "2001:db8::1"


def test_server_side_click_refusals_record_nothing(app, client, admin_headers):
    tenant, _ = gen_slot(client, ["a"])
    other, _ = gen_slot(client, ["a"])
    events = new_key(client, admin_headers, tenant, ["events"])
    other_events = new_key(client, admin_headers, other, ["events"])
    read_write = new_key(client, admin_headers, tenant, ["read", "write"])
    document = served(client, tenant)
    token = document["token"]
    cases = [
        ({"token": token, "visitor_ip": "203.0.113.7"}, {}, 400),                # no key: cannot choose
        ({"token": token, "user_agent": "Mozilla/5.0"}, {}, 400),
        ({"token": token, "visitor_ip": "203.0.113.7"}, bearer(other_events), 403),   # another tenant's key
        ({"token": token}, bearer(read_write), 403),                              # no events scope
        ({"token": token, "visitor_ip": "999.1.1.1"}, bearer(events), 400),       # bad IP
        ({"token": token, "visitor_ip": 12}, bearer(events), 400),
        ({"token": token, "user_agent": "M" * 513}, bearer(events), 400),          # oversized user agent
        ({"token": token, "user_agent": "a\nb"}, bearer(events), 400),
        ({"token": token}, bearer("bb_0123456789abcdef_" + "A" * 43), 401),
    ]
    for body, headers, status in cases:
        response = client.post("/v1/click", json=body, headers=headers)
        assert response.status_code == status, (body, response.get_json())
        assert response.get_json()["error"]
        assert clicked(app, tenant, document) is None, body
    # the keyless browser path answers as before, without the verdict
    assert client.post("/v1/click", json={"token": token}).get_json() == {"status": "recorded"}


# -- read back, PUT and PATCH -------------------------------------------------------------------------------

def test_put_replaces_whole_resources_and_patch_changes_only_what_it_sends(client, admin_headers):
    tenant, _ = gen_slot(client, ["a"])
    base = f"/v1/admin/tenants/{tenant}"
    slot = client.put(f"{base}/slots/hero", json={"name": "Hero", "size": "300x250", "locations": ["Pune"],
                                                  "decay_half_life_hours": 24}, headers=admin_headers).get_json()
    assert (slot["size"], slot["locations"], slot["decay_half_life_hours"]) == ("300x250", ["pune"], 24)
    patched = client.patch(f"{base}/slots/hero", json={"name": "Top"}, headers=admin_headers)
    assert patched.status_code == 200
    assert patched.get_json() == {**slot, "name": "Top"}
    assert client.get(f"{base}/slots/hero", headers=admin_headers).get_json() == {**slot, "name": "Top"}
    # null in a patch takes the field back to its default
    assert client.patch(f"{base}/slots/hero", json={"decay_half_life_hours": None},
                        headers=admin_headers).get_json()["decay_half_life_hours"] is None
    # PUT without the optional fields: their documented defaults, shown in the answer
    replaced = client.put(f"{base}/slots/hero", json={"name": "Hero"}, headers=admin_headers).get_json()
    assert (replaced["size"], replaced["locations"], replaced["decay_half_life_hours"], replaced["policy"]) == (
        "728x250", [], None, "thompson")
    assert client.get(f"{base}/slots", headers=admin_headers).get_json() == {"slots": [replaced]}

    banner = client.put(f"{base}/slots/hero/banners/a", json={**BANNER, "alt": "A", "active": False},
                        headers=admin_headers).get_json()
    patched = client.patch(f"{base}/slots/hero/banners/a", json={"alt": "B"}, headers=admin_headers).get_json()
    assert patched == {**banner, "alt": "B"} and patched["active"] is False
    replaced = client.put(f"{base}/slots/hero/banners/a", json=BANNER, headers=admin_headers).get_json()
    assert (replaced["alt"], replaced["active"], replaced["starts_at"], replaced["ends_at"]) == ("", True, None,
                                                                                                None)
    assert client.get(f"{base}/slots/hero/banners/a", headers=admin_headers).get_json() == replaced

    tenant_doc = client.patch(base, json={"click_filter": {"max_clicks_per_ip": 5}},
                              headers=admin_headers).get_json()
    assert tenant_doc["click_filter"]["max_clicks_per_ip"] == 5
    assert tenant_doc["click_filter"]["min_delay_seconds"] == 0      # gen_slot's, kept
    listed = client.get("/v1/admin/tenants", headers=admin_headers).get_json()["tenants"]
    assert tenant_doc in listed
    # bad patches: 400 and nothing changed
    for body in ({"name": None}, {"size": "huge"}, {"nope": 1}, {"click_filter": {"window_seconds": 1}}):
        path = base if "click_filter" in body else f"{base}/slots/hero"
        assert client.patch(path, json=body, headers=admin_headers).status_code == 400, body
    assert client.get(base, headers=admin_headers).get_json() == tenant_doc
    assert client.patch(f"{base}/slots/nope", json={"name": "x"}, headers=admin_headers).status_code == 404


# -- deletes ------------------------------------------------------------------------------------------------

def test_deleted_banner_is_never_served_and_its_old_click_token_is_refused(app, client, admin_headers):
    tenant, _ = gen_slot(client, ["a", "b"])
    served_b = next(d for d in (served(client, tenant) for _ in range(200)) if d["banner"]["id"] == "b")
    assert client.delete(f"/v1/admin/tenants/{tenant}/slots/hero/banners/b",
                         headers=admin_headers).status_code == 204
    sync(app)                                         # what every worker's refresh does within a second
    assert {served(client, tenant)["banner"]["id"] for _ in range(100)} == {"a"}
    response = client.get(f"/v1/click/{served_b['token']}")
    assert response.status_code == 404
    assert clicked(app, tenant, served_b) is None
    assert client.get(f"/v1/admin/tenants/{tenant}/slots/hero/banners/b", headers=admin_headers).status_code == 404
    assert client.delete(f"/v1/admin/tenants/{tenant}/slots/hero/banners/b",
                         headers=admin_headers).status_code == 404
    stats = client.get(f"/v1/admin/tenants/{tenant}/slots/hero/stats", headers=admin_headers).get_json()
    assert [b["id"] for b in stats["banners"]] == ["a"]
    # the event log keeps the impression of the deleted banner
    row = store.get_impression(app.extensions["cassandra"], tenant, "hero", uuid.UUID(served_b["impression_id"]))
    assert row is not None and row["banner_id"] == "b"


def test_deleted_slot_and_tenant_stop_serving_and_take_their_keys(app, client, admin_headers):
    tenant, _ = gen_slot(client, ["a"])
    key = new_key(client, admin_headers, tenant, ["read"])
    served(client, tenant)
    assert client.delete(f"/v1/admin/tenants/{tenant}/slots/hero", headers=admin_headers).status_code == 204
    sync(app)
    assert client.get(f"/v1/serve/{tenant}/hero").status_code == 404
    assert client.get(f"/v1/admin/tenants/{tenant}/slots", headers=admin_headers).get_json() == {"slots": []}
    assert client.delete(f"/v1/admin/tenants/{tenant}", headers=admin_headers).status_code == 204
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).status_code == 404
    assert client.delete(f"/v1/admin/tenants/{tenant}", headers=admin_headers).status_code == 404
    assert poll(lambda: client.get(f"/v1/admin/tenants/{tenant}", headers=bearer(key)).status_code == 401)


# -- schedules ----------------------------------------------------------------------------------------------

def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).isoformat()


def test_schedule_boundaries_take_effect_without_a_refresh(app, client, admin_headers):
    tenant, _ = gen_slot(client, ["always"])
    base = f"/v1/admin/tenants/{tenant}/slots/hero/banners"
    boundary = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    ending = client.put(f"{base}/ending", json={**BANNER, "ends_at": iso(boundary)}, headers=admin_headers)
    starting = client.put(f"{base}/starting", json={**BANNER, "starts_at": iso(boundary)}, headers=admin_headers)
    assert (ending.status_code, starting.status_code) == (201, 201)
    assert ending.get_json()["schedule"] == "live" and starting.get_json()["schedule"] == "scheduled"
    assert starting.get_json()["starts_at"] == boundary.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sync(app)
    before = {served(client, tenant)["banner"]["id"] for _ in range(150)}
    if dt.datetime.now(dt.UTC) < boundary:            # a loaded machine may have taken longer than 4 s
        assert "starting" not in before and "ending" in before
    assert poll(lambda: dt.datetime.now(dt.UTC) >= boundary + dt.timedelta(milliseconds=50))
    after = {served(client, tenant)["banner"]["id"] for _ in range(150)}     # no sync(): no refresh needed
    assert after == {"always", "starting"}
    stats = client.get(f"/v1/admin/tenants/{tenant}/slots/hero/stats", headers=admin_headers).get_json()
    assert {b["id"]: b["schedule"] for b in stats["banners"]} == {"always": "live", "ending": "ended",
                                                                 "starting": "live"}


@pytest.mark.parametrize("schedule", [
    {"starts_at": "2026-12-24T00:00:00+05:30", "ends_at": "2026-12-23T00:00:00+05:30"},   # ends before start
    {"starts_at": "2026-12-24T00:00:00+05:30", "ends_at": "2026-12-24T00:00:00+05:30"},
    {"starts_at": "2026-12-24T00:00:00"},                                                # no offset
    {"ends_at": "tomorrow"},
    {"ends_at": 1766534400},
])
def test_bad_schedules_are_400_and_write_nothing(client, admin_headers, schedule):
    tenant, _ = gen_slot(client, ["a"])
    base = f"/v1/admin/tenants/{tenant}/slots/hero/banners"
    assert client.put(f"{base}/new", json={**BANNER, **schedule}, headers=admin_headers).status_code == 400
    assert client.patch(f"{base}/a", json=schedule, headers=admin_headers).status_code == 400
    assert client.get(f"{base}/new", headers=admin_headers).status_code == 404
    assert client.get(f"{base}/a", headers=admin_headers).get_json()["starts_at"] is None


# -- dashboard -----------------------------------------------------------------------------------------------

def test_tenant_admin_creates_and_revokes_keys_on_the_dashboard(app, client, admin_headers):
    tenant, _ = gen_slot(client, ["a"])
    other, _ = gen_slot(client, ["a"])
    login(client, gen_user(app, accounts.ROLE_TENANT, tenant))
    page = f"/admin/tenants/{tenant}/api-keys"
    token = csrf_token(client.get(page).get_data(as_text=True))
    shown = client.post(page, data={"csrf_token": token, "name": "shop backend", "scopes": ["read", "events"]})
    assert shown.status_code == 200
    key = re.search(r'<code class="secret">(bb_[^<]+)</code>', shown.get_data(as_text=True))[1]
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=bearer(key)).status_code == 200
    listing = client.get(page).get_data(as_text=True)
    assert "shop backend" in listing and key not in listing            # shown once
    # bad input: a form error, nothing created
    refused = client.post(page, data={"csrf_token": token, "name": "x", "scopes": ["admin"]})
    assert refused.status_code == 200 and "is not a valid choice" in refused.get_data(as_text=True)
    assert len(client.get(f"/v1/admin/tenants/{tenant}/api-keys", headers=admin_headers).get_json()[
        "api_keys"]) == 1
    # another tenant's page: 404, as for every dashboard page
    assert client.get(f"/admin/tenants/{other}/api-keys").status_code == 404
    key_id = key.split("_")[1]
    revoked = client.post(f"/admin/tenants/{tenant}/api-keys/revoke", data={"csrf_token": token, "key_id": key_id})
    assert revoked.status_code == 302
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=bearer(key)).status_code == 401
