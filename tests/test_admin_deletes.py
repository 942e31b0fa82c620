"""The dashboard's deletes (tenant, slot, banner: a confirm page, then a POST with CSRF) and banner schedules
entered and shown in the tenant's time zone, through the Flask test client on the real Cassandra."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import ADMIN_TOKEN, csrf_token, gen_slot, gen_user, login, make_config, recent, sync
from webapp import create_app
from webapp.dashboard import accounts
from webapp.management import services
from webapp.storage import store
from webapp.web.errors import NotFound

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def users(keyspace):
    """A platform admin, and a tenant admin of a tenant of their own (password hashing is slow: once)."""
    app = create_app(make_config(keyspace))
    own, _ = gen_slot(app.test_client(), ["a", "b"])
    yield {"platform": gen_user(app), "tenant_admin": gen_user(app, accounts.ROLE_TENANT, own), "own": own}
    app.extensions["cassandra"].shutdown()


@pytest.fixture
def admin(client, users):
    assert login(client, users["platform"]).status_code == 302
    return client


def confirm_then_delete(client, path: str):
    """Open the confirm page (which deletes nothing), then POST its form with its CSRF token."""
    page = client.get(path)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "event log" in text and f'action="{path}"' in text
    return page, client.post(path, data={"csrf_token": csrf_token(text)})


def serve(client, tenant: str, slot: str = "hero"):
    return client.get(f"/v1/serve/{tenant}/{slot}")


# -- deletes --------------------------------------------------------------------------------------------------

def test_banner_delete_asks_first_then_stops_serving_it_and_keeps_its_events(app, admin):
    db = app.extensions["cassandra"]
    tenant, slot = gen_slot(admin, ["a", "b"])
    served_b = next(d for d in (serve(admin, tenant).get_json() for _ in range(300)) if d["banner"]["id"] == "b")
    sync(app)
    path = f"/admin/tenants/{tenant}/slots/{slot}/banners/b/delete"
    page = admin.get(path)
    assert [b["id"] for b in services.list_banners(db, tenant, slot)] == ["a", "b"]     # a GET changes nothing
    assert "Delete banner b?" in page.get_data(as_text=True)
    _, response = confirm_then_delete(admin, path)
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/tenants/{tenant}/slots/{slot}"
    assert "Banner b is deleted" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert [b["id"] for b in services.list_banners(db, tenant, slot)] == ["a"]
    sync(app)
    assert {serve(admin, tenant).get_json()["banner"]["id"] for _ in range(60)} == {"a"}
    row = store.get_impression(db, tenant, slot, uuid.UUID(served_b["impression_id"]))
    assert row is not None and row["banner_id"] == "b"                  # the event log stays
    listing = admin.get(f"/admin/tenants/{tenant}/slots/{slot}").get_data(as_text=True)
    assert 'data-banner="a"' in listing and 'data-banner="b"' not in listing


def test_slot_delete_stops_serving_and_keeps_the_event_log(app, admin):
    db = app.extensions["cassandra"]
    tenant, slot = gen_slot(admin, ["a"])
    for _ in range(5):
        assert serve(admin, tenant).status_code == 200
    sync(app)
    start, end = recent()
    logged = store.count_events(db, "impressions", tenant, slot, start, end)
    assert logged == 5
    assert f'href="/admin/tenants/{tenant}/slots/{slot}/delete"' in admin.get(
        f"/admin/tenants/{tenant}").get_data(as_text=True)
    page, response = confirm_then_delete(admin, f"/admin/tenants/{tenant}/slots/{slot}/delete")
    assert "1 banner(s)" in page.get_data(as_text=True)
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/tenants/{tenant}"
    sync(app)
    assert serve(admin, tenant).status_code == 404
    with pytest.raises(NotFound):
        services.get_slot(db, tenant, slot)
    assert store.count_events(db, "impressions", tenant, slot, start, end) == logged


def test_tenant_delete_is_for_platform_admins_and_stops_serving(app, client, admin, users):
    db = app.extensions["cassandra"]
    tenant, _ = gen_slot(admin, ["a"])
    assert serve(admin, tenant).status_code == 200
    assert "delete tenant" in admin.get(f"/admin/tenants/{tenant}").get_data(as_text=True)
    _, response = confirm_then_delete(admin, f"/admin/tenants/{tenant}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert f"Tenant {tenant} is deleted" in admin.get("/admin/").get_data(as_text=True)
    with pytest.raises(NotFound):
        services.require_tenant(db, tenant)
    sync(app)
    assert serve(admin, tenant).status_code == 404
    # A second delete of what is gone: a clear 404 page, nothing else.
    assert admin.get(f"/admin/tenants/{tenant}/delete").status_code == 404


def test_a_tenant_admin_cannot_delete_their_tenant(app, users):
    client = app.test_client()
    own = users["own"]
    assert login(client, users["tenant_admin"]).status_code == 302
    page = client.get(f"/admin/tenants/{own}").get_data(as_text=True)
    assert "delete tenant" not in page
    assert client.get(f"/admin/tenants/{own}/delete").status_code == 403
    token = csrf_token(client.get(f"/admin/tenants/{own}").get_data(as_text=True))
    assert client.post(f"/admin/tenants/{own}/delete", data={"csrf_token": token}).status_code == 403
    assert services.require_tenant(app.extensions["cassandra"], own)["name"] == own     # still there


def test_a_delete_without_csrf_deletes_nothing(app, admin):
    tenant, slot = gen_slot(admin, ["a"])
    for path in (f"/admin/tenants/{tenant}/slots/{slot}/banners/a/delete",
                 f"/admin/tenants/{tenant}/slots/{slot}/delete", f"/admin/tenants/{tenant}/delete"):
        assert admin.post(path, data={}).status_code == 400
    assert [b["id"] for b in services.list_banners(app.extensions["cassandra"], tenant, slot)] == ["a"]


# -- schedules ------------------------------------------------------------------------------------------------

def banner_form(client, tenant: str, slot: str, banner: str | None = None) -> tuple[str, str]:
    path = (f"/admin/tenants/{tenant}/slots/{slot}/banners/{banner}/edit" if banner
            else f"/admin/tenants/{tenant}/slots/{slot}/new-banner")
    return path, client.get(path).get_data(as_text=True)


def field_value(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
    assert match, name
    value = re.search(r'value="([^"]*)"', match.group(0))
    return value.group(1) if value else ""


def test_schedule_is_entered_and_shown_in_the_tenant_time_zone(app, admin):
    db = app.extensions["cassandra"]
    tenant, slot = gen_slot(admin, ["a"])
    assert admin.put(f"/v1/admin/tenants/{tenant}", headers=HEADERS,
                     json={"name": tenant, "timezone": "Asia/Kolkata"}).status_code == 200
    path, html = banner_form(admin, tenant, slot)
    assert 'type="datetime-local"' in html and "Asia/Kolkata" in html
    response = admin.post(path, data={
        "csrf_token": csrf_token(html), "banner_id": "xmas", "image_url": "https://cdn.example.com/x.png",
        "target_url": "https://shop.example.com/x", "active": "y",
        "starts_at": "2099-12-24T09:30", "ends_at": "2099-12-26T00:00"})
    assert response.status_code == 302, response.get_data(as_text=True)
    saved = services.get_banner(db, tenant, slot, "xmas")
    # 09:30 in Kolkata (UTC+05:30) is 04:00 UTC
    assert (saved["starts_at"], saved["ends_at"]) == ("2099-12-24T04:00:00.000Z", "2099-12-25T18:30:00.000Z")
    assert saved["schedule"] == "scheduled"
    # shown back in the tenant's zone, in the form and the banners list
    _, html = banner_form(admin, tenant, slot, "xmas")
    assert field_value(html, "starts_at") == "2099-12-24T09:30"
    assert field_value(html, "ends_at") == "2099-12-26T00:00"
    listing = admin.get(f"/admin/tenants/{tenant}/slots/{slot}").get_data(as_text=True)
    assert "from 2099-12-24 09:30 until 2099-12-26 00:00" in listing
    assert re.search(r'class="badge schedule scheduled"', listing)
    assert re.search(r'class="badge schedule live"', listing)             # banner a: no schedule
    # an edit that keeps the fields keeps the schedule
    response = admin.post(f"/admin/tenants/{tenant}/slots/{slot}/banners/xmas/edit", data={
        "csrf_token": csrf_token(html), "target_url": "https://shop.example.com/x2", "active": "y",
        "starts_at": field_value(html, "starts_at"), "ends_at": field_value(html, "ends_at")})
    assert response.status_code == 302
    again = services.get_banner(db, tenant, slot, "xmas")
    assert (again["starts_at"], again["ends_at"], again["target_url"]) == (
        saved["starts_at"], saved["ends_at"], "https://shop.example.com/x2")


def test_ended_banner_shows_ended_and_is_not_served(app, admin):
    tenant, slot = gen_slot(admin, ["a"])
    path, html = banner_form(admin, tenant, slot)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)       # the tenant's zone: the default
    zone = services.require_tenant(app.extensions["cassandra"], tenant)["timezone"]
    local = past.astimezone(ZoneInfo(zone))
    response = admin.post(path, data={
        "csrf_token": csrf_token(html), "banner_id": "old", "image_url": "https://cdn.example.com/o.png",
        "target_url": "https://shop.example.com/o", "active": "y",
        "starts_at": f"{local:%Y-%m-%dT%H:%M}", "ends_at": f"{local + dt.timedelta(days=1):%Y-%m-%dT%H:%M}"})
    assert response.status_code == 302
    listing = admin.get(f"/admin/tenants/{tenant}/slots/{slot}").get_data(as_text=True)
    row = re.search(r'<tr[^>]*data-banner="old".*?</tr>', listing, re.S).group(0)
    assert 'class="badge schedule ended"' in row and "serving" not in row     # active, but not served
    sync(app)
    assert {serve(admin, tenant).get_json()["banner"]["id"] for _ in range(40)} == {"a"}


@pytest.mark.parametrize(("starts", "ends", "error"), [
    ("2099-12-26T00:00", "2099-12-24T00:00", "The end must be after the start."),
    ("2099-12-24T00:00", "2099-12-24T00:00", "The end must be after the start."),
    ("24/12/2099", "", "Not a valid datetime value."),
])
def test_bad_schedule_is_a_form_error_and_nothing_is_stored(app, admin, starts, ends, error):
    db = app.extensions["cassandra"]
    tenant, slot = gen_slot(admin, ["a"])
    path, html = banner_form(admin, tenant, slot)
    response = admin.post(path, data={
        "csrf_token": csrf_token(html), "banner_id": "bad", "image_url": "https://cdn.example.com/b.png",
        "target_url": "https://shop.example.com/b", "active": "y", "starts_at": starts, "ends_at": ends})
    assert response.status_code == 200
    assert error in response.get_data(as_text=True)
    assert [b["id"] for b in services.list_banners(db, tenant, slot)] == ["a"]
    # on an existing banner, the bad schedule leaves the banner as it was
    path, html = banner_form(admin, tenant, slot, "a")
    response = admin.post(path, data={
        "csrf_token": csrf_token(html), "target_url": "https://shop.example.com/changed", "active": "y",
        "starts_at": starts, "ends_at": ends})
    assert response.status_code == 200 and error in response.get_data(as_text=True)
    kept = services.get_banner(db, tenant, slot, "a")
    assert (kept["target_url"], kept["starts_at"], kept["ends_at"]) == ("https://shop.example.com/a", None, None)
