"""The dashboard's forms and pages through the Flask test client on the real Cassandra: configuration,
uploads, pause/resume, autoescaping, results, CSV, the hourly series and the create-admin command."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import struct
import uuid
import zlib

import numpy as np
import pytest
from scipy import stats

from tests.helpers import (
    ADMIN_TOKEN,
    PASSWORD,
    csrf_token,
    gen_slot,
    gen_user,
    login,
    make_config,
    simulate_history,
    sync,
)
from webapp import create_app
from webapp.dashboard import accounts
from webapp.management import services
from webapp.storage import store
from webapp.storage.events import traffic_bucket

XSS = "<script>window.__xss = 1</script>"


def png_bytes(width: int = 4, height: int = 2) -> bytes:
    """A real (tiny, grey) PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def platform_user(keyspace):
    app = create_app(make_config(keyspace))
    yield gen_user(app)
    app.extensions["cassandra"].shutdown()


@pytest.fixture
def admin(client, platform_user):
    assert login(client, platform_user).status_code == 302
    return client


def submit(client, path: str, data: dict, **kwargs):
    """GET the form page for its CSRF token, then POST ``data`` to it."""
    token = csrf_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data}, **kwargs)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def test_create_tenant_slot_and_banners_through_the_forms(app, admin):
    db = app.extensions["cassandra"]
    tenant = unique("shop")
    response = submit(admin, "/admin/new-tenant",
                      {"tenant_id": tenant, "name": "Shop", "timezone": "Europe/Berlin"})
    assert response.status_code == 302
    assert services.require_tenant(db, tenant)["timezone"] == "Europe/Berlin"

    response = submit(admin, f"/admin/tenants/{tenant}/new-slot",
                      {"slot_id": "hero", "name": "Hero", "size": "300x250",
                       "locations": "Mumbai\r\n  NEW delhi, pune"})     # a textarea posts CRLF
    assert response.status_code == 302
    slot = services.get_slot(db, tenant, "hero")
    assert (slot["width"], slot["height"], slot["locations"]) == (300, 250, ["mumbai", "new delhi", "pune"])

    by_url = submit(admin, f"/admin/tenants/{tenant}/slots/hero/new-banner", {
        "banner_id": "by-url", "image_url": "https://cdn.example.com/a.png",
        "target_url": "https://shop.example.com/a", "alt": "A", "active": "y"})
    assert by_url.status_code == 302
    uploaded = submit(admin, f"/admin/tenants/{tenant}/slots/hero/new-banner", {
        "banner_id": "uploaded", "image_file": (io.BytesIO(png_bytes()), "banner.png"),
        "target_url": "https://shop.example.com/b", "alt": "B"}, content_type="multipart/form-data")
    assert uploaded.status_code == 302
    banners = {b["id"]: b for b in services.list_banners(db, tenant, "hero")}
    assert banners["by-url"]["active"] is True
    assert banners["uploaded"]["active"] is False                 # the box was left unticked
    image = admin.get(banners["uploaded"]["image_url"].removeprefix("http://localhost"))
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data == png_bytes()

    # A second tenant or slot of the same ID is refused, not overwritten.
    again = submit(admin, "/admin/new-tenant", {"tenant_id": tenant, "name": "Other", "timezone": "UTC"})
    assert again.status_code == 200 and f"tenant {tenant} already exists" in again.get_data(as_text=True)
    assert services.require_tenant(db, tenant)["name"] == "Shop"


def test_edits_keep_what_was_not_changed(app, admin, admin_headers):
    db = app.extensions["cassandra"]
    tenant, slot = gen_slot(admin, ["b1"])
    settings = admin.put(f"/v1/admin/tenants/{tenant}", headers=admin_headers,
                         json={"name": "T", "click_filter": {"min_delay_seconds": 3}}).get_json()["click_filter"]
    assert submit(admin, f"/admin/tenants/{tenant}/edit",
                  {"tenant_id": "ignored", "name": "Renamed", "timezone": "UTC"}).status_code == 302
    found = services.require_tenant(db, tenant)
    assert (found["name"], found["timezone"]) == ("Renamed", "UTC")
    assert admin.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).get_json()["click_filter"] == settings
    assert submit(admin, f"/admin/tenants/{tenant}/slots/{slot}/edit",
                  {"name": "Hero 2", "size": "160x600", "locations": "Goa"}).status_code == 302
    assert services.get_slot(db, tenant, slot)["size"] == "160x600"
    response = submit(admin, f"/admin/tenants/{tenant}/slots/{slot}/banners/b1/edit",
                      {"target_url": "https://shop.example.com/new", "alt": "New alt", "active": "y"})
    assert response.status_code == 302
    banner = services.get_banner(db, tenant, slot, "b1")
    assert banner["target_url"] == "https://shop.example.com/new" and banner["alt"] == "New alt"
    assert banner["image_url"] == "https://cdn.example.com/b1.png"    # no new image given: kept


def test_the_slot_form_sets_and_clears_the_decay_half_life(app, admin):
    db = app.extensions["cassandra"]
    tenant, slot = gen_slot(admin, ["b1"])
    path = f"/admin/tenants/{tenant}/slots/{slot}/edit"
    assert submit(admin, path, {"name": "Hero", "size": "728x250", "decay_half_life_hours": "12"}).status_code == 302
    assert services.get_slot(db, tenant, slot)["decay_half_life_hours"] == 12.0
    assert "old evidence halves every 12 h" in admin.get(f"/admin/tenants/{tenant}/slots/{slot}").get_data(as_text=True)
    assert 'value="12"' in admin.get(path).get_data(as_text=True)
    for bad in ("soon", "0", "nan", "1e9"):
        response = submit(admin, path, {"name": "Other", "size": "728x250", "decay_half_life_hours": bad})
        assert response.status_code == 200 and "decay_half_life_hours must be a number of hours" in \
            response.get_data(as_text=True)
        assert services.get_slot(db, tenant, slot)["name"] == "Hero"
    assert submit(admin, path, {"name": "Hero", "size": "728x250", "decay_half_life_hours": ""}).status_code == 302
    assert services.get_slot(db, tenant, slot)["decay_half_life_hours"] is None


@pytest.mark.parametrize(("form", "message"), [
    ({"name": "x", "size": "huge", "locations": ""}, "size must be WIDTHxHEIGHT"),
    ({"name": "x", "size": "0x10", "locations": ""}, "size must be between"),
    ({"name": "x", "size": "10x10", "locations": "ok, bad\x07city"}, "location contains control"),
    ({"slot_id": "bad slot!", "name": "x", "size": "10x10", "locations": ""}, "slot must be 1-64 characters"),
])
def test_invalid_slot_input_shows_the_service_message(admin, form, message):
    tenant, _ = gen_slot(admin, ["b1"])
    response = submit(admin, f"/admin/tenants/{tenant}/new-slot", {"slot_id": "s2", **form})
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize(("data", "message"), [
    ({"image_url": "javascript:alert(1)"}, "image URL must be an absolute http(s) URL"),
    ({}, "give an image URL or upload an image file"),
    ({"image_file": (io.BytesIO(b"MZ\x90\x00 not an image"), "evil.png")}, "must be a PNG, JPEG, GIF, WebP or SVG"),
    ({"image_file": (io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"x" * 3000), "big.png")}, "larger than 2,048 bytes"),
    ({"image_url": "https://cdn.example.com/a.png", "target_url": "ftp://x"}, "target URL must be an absolute"),
])
def test_invalid_banner_input_is_refused_and_nothing_is_stored(app_factory, platform_user, data, message):
    app = app_factory(MAX_IMAGE_BYTES=2048)
    client = app.test_client()
    login(client, platform_user)
    tenant, slot = gen_slot(client, ["b1"])
    form = {"banner_id": "b2", "target_url": "https://shop.example.com/", "alt": "x", **data}
    response = submit(client, f"/admin/tenants/{tenant}/slots/{slot}/new-banner", form,
                      content_type="multipart/form-data")
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    db = app.extensions["cassandra"]
    assert [b["id"] for b in services.list_banners(db, tenant, slot)] == ["b1"]
    assert db.execute("SELECT count(*) AS n FROM {ks}.images WHERE tenant_id = ? ALLOW FILTERING",
                      (tenant,))[0]["n"] == 0


def test_an_upload_larger_than_the_request_limit_is_413(app_factory, platform_user):
    app = app_factory(MAX_IMAGE_BYTES=2048)
    client = app.test_client()
    login(client, platform_user)
    tenant, slot = gen_slot(client, ["b1"])
    form = {"banner_id": "b2", "target_url": "https://shop.example.com/",
            "image_file": (io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"x" * 200_000), "huge.png")}
    response = submit(client, f"/admin/tenants/{tenant}/slots/{slot}/new-banner", form,
                      content_type="multipart/form-data")
    assert response.status_code == 413
    assert "at most 2,048 bytes" in response.get_data(as_text=True)


def test_svg_uploads_are_served_so_that_their_scripts_cannot_run(app, admin):
    tenant, slot = gen_slot(admin, ["b1"])
    svg = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
           b'<script>alert(document.cookie)</script><rect width="10" height="10"/></svg>')
    response = submit(admin, f"/admin/tenants/{tenant}/slots/{slot}/new-banner", {
        "banner_id": "svg", "image_file": (io.BytesIO(svg), "b.svg"), "target_url": "https://shop.example.com/",
        "active": "y"}, content_type="multipart/form-data")
    assert response.status_code == 302
    url = services.get_banner(app.extensions["cassandra"], tenant, slot, "svg")["image_url"]
    image = admin.get(url.removeprefix("http://localhost"))
    assert image.mimetype == "image/svg+xml" and image.data == svg
    policy = image.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy and "script-src" not in policy
    assert image.headers["X-Content-Type-Options"] == "nosniff"


def test_images_of_unknown_ids_are_404(client):
    assert client.get("/media/acme/" + "0" * 64).status_code == 404
    assert client.get("/media/acme/not-a-hash").status_code == 404


def test_a_paused_banner_is_no_longer_served_and_a_resumed_one_is(app, admin):
    tenant, slot = gen_slot(admin, ["b1", "b2"])
    path = f"/admin/tenants/{tenant}/slots/{slot}"
    token = csrf_token(admin.get(path).get_data(as_text=True))
    assert admin.post(f"{path}/banners/b1/active", data={"csrf_token": token, "active": "0"}).status_code == 302
    sync(app)                                  # what every serving process's cache refresh does each second
    served = {admin.get(f"/v1/serve/{tenant}/{slot}").get_json()["banner"]["id"] for _ in range(40)}
    assert served == {"b2"}
    assert "paused" in admin.get(path).get_data(as_text=True)
    assert admin.post(f"{path}/banners/b1/active", data={"csrf_token": token, "active": "1"}).status_code == 302
    sync(app)                                  # b2 has 40 impressions and no click: b1 is now far likelier
    served = {admin.get(f"/v1/serve/{tenant}/{slot}").get_json()["banner"]["id"] for _ in range(20)}
    assert "b1" in served


def test_alt_text_with_a_script_is_shown_as_text_everywhere(app, admin):
    tenant, slot = gen_slot(admin, ["b1"])
    services.put_banner(app.extensions["cassandra"], tenant, slot, "b1", image_url="https://cdn.example.com/x.png",
                        target_url="https://shop.example.com/", alt=XSS, active=True)
    sync(app)
    pages = [f"/admin/tenants/{tenant}/slots/{slot}", f"/admin/tenants/{tenant}/slots/{slot}/banners/b1/edit",
             f"/admin/tenants/{tenant}/slots/{slot}/results", f"/v1/embed/{tenant}/{slot}"]
    escaped = "&lt;script&gt;window.__xss = 1&lt;/script&gt;"
    for page in pages:
        html = admin.get(page).get_data(as_text=True)
        assert XSS not in html, page
        assert escaped in html, page


def test_the_embed_page_offers_the_three_snippets_for_this_slot(admin):
    tenant, slot = gen_slot(admin, ["b1"])
    html = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/embed").get_data(as_text=True)
    assert f'data-tenant=&#34;{tenant}&#34; data-slot=&#34;{slot}&#34;' in html
    assert f"http://localhost/v1/embed/{tenant}/{slot}" in html
    assert f"curl -G &#39;http://localhost/v1/serve/{tenant}/{slot}&#39;" in html
    assert f'data-preview-src="/admin/tenants/{tenant}/slots/{slot}/preview"' in html


def test_the_snippets_carry_no_fixed_city_but_say_where_it_goes(app, admin):
    """A known location of the slot is never written into a snippet: pasted as-is, every visitor would be
    filed under it."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant, slot = gen_slot(admin, ["b1"])
    assert admin.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", headers=headers,
                     json={"name": "Hero", "locations": ["Bengaluru", "Pune"]}).status_code == 200
    html = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/embed").get_data(as_text=True)
    snippets = re.findall(r'<code id="snippet-(\w+)">(.*?)</code>', html, re.S)
    assert [key for key, _ in snippets] == ["js", "iframe", "curl"]
    for key, text in snippets:
        assert "bengaluru" not in text.lower() and "pune" not in text.lower(), key
        assert "the visitor&#39;s city" in text, key
    js = dict(snippets)["js"]
    assert "data-location=&#34;&#34;" in js
    assert f"/v1/embed/{tenant}/{slot}?location=&#34;" in dict(snippets)["iframe"]
    assert "GeoIP" in html          # the page says the publisher must pass the city


def test_a_preview_serves_a_banner_and_records_nothing(app, admin):
    tenant, slot = gen_slot(admin, ["b1", "b2"])
    db = app.extensions["cassandra"]
    for _ in range(5):
        response = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/preview?location=Goa")
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["banner"]["id"] in {"b1", "b2"} and body["recorded"] is False
        assert body["target_url"].startswith("http") and "click" not in body
    sync(app)
    assert store.slot_counts(db, tenant, slot, "") == []
    rows = db.execute("SELECT impression_id FROM {ks}.impression_log WHERE tenant_id = ? AND slot_id = ? "
                      "ALLOW FILTERING", (tenant, slot))
    assert list(rows) == []


def test_the_preview_is_for_a_dashboard_session_only(client, app):
    tenant, slot = gen_slot(client, ["b1"])
    response = client.get(f"/admin/tenants/{tenant}/slots/{slot}/preview")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_results_show_counts_posterior_interval_and_winner(app, admin):
    tenant, slot = gen_slot(admin, ["good", "bad"])
    db = app.extensions["cassandra"]
    history = simulate_history(app, tenant, slot, {"good": 0.30, "bad": 0.02}, hours=3, serves_per_hour=150,
                               seed=7, location="goa")
    page = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results?location=Goa").get_data(as_text=True)
    report = services.slot_results(db, tenant, slot, "goa", np.random.default_rng(1))
    rows = {r["id"]: r for r in report["banners"]}
    for banner, (impressions, clicks) in history.items():
        assert (rows[banner]["impressions"], rows[banner]["clicks"]) == (impressions, clicks)
        low, high = stats.beta.ppf([0.025, 0.975], 1 + clicks, 1 + impressions - clicks)   # Beta(1,1) prior
        assert rows[banner]["ci_low"] == pytest.approx(low) and rows[banner]["ci_high"] == pytest.approx(high)
        row_html = re.search(rf'<tr data-banner="{banner}".*?</tr>', page, re.S)[0]
        assert f'<td class="num impressions">{impressions}</td>' in row_html
        assert f'<td class="num clicks">{clicks}</td>' in row_html
    assert report["winner"] == "good" and rows["good"]["p_best"] >= 0.95
    assert 'id="winner"' in page and "★ winner" in page
    # The hourly series of the page agree with the counts, and its shares add up to one each hour.
    series = services.traffic_series(db, tenant, slot, "goa", hours=24)
    for banner, (impressions, clicks) in history.items():
        assert sum(series["banners"][banner]["impressions"]) == impressions
        assert sum(series["banners"][banner]["clicks"]) == clicks
    for hour in range(24):
        shares = [s["share"][hour] for s in series["banners"].values() if s["share"][hour] is not None]
        assert not shares or sum(shares) == pytest.approx(1.0, abs=1e-3)
    # Slot-wide, nobody came without a location: the same numbers.
    slot_wide = services.slot_results(db, tenant, slot, "", np.random.default_rng(1))
    assert {r["id"]: r["impressions"] for r in slot_wide["banners"]} == {b: v[0] for b, v in history.items()}


def test_csv_has_one_row_per_banner_and_location(app, admin):
    tenant, slot = gen_slot(admin, ["b1", "b2"])
    for location in ("Goa", "Pune", "=cmd|' /C calc'!A0"):
        admin.get(f"/v1/serve/{tenant}/{slot}", query_string={"location": location})
    sync(app)
    response = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results.csv")
    assert response.mimetype == "text/csv"
    assert f'filename="{tenant}-{slot}-results.csv"' in response.headers["Content-Disposition"]
    everything = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(everything[0]) == services.CSV_COLUMNS + ["referrer"]
    rows = [r for r in everything if r["scope"] != "referrer"]      # the referrer rows follow (test_referrers)
    referred = everything[len(rows):]          # no referrer given: its total, then the banners served
    assert {r["scope"] for r in referred} == {"referrer"} and (referred[0]["banner"], referred[0]["impressions"]) == (
        "", "3")
    assert [(r["scope"], r["location"], r["banner"]) for r in rows] == [
        ("slot", "", "b1"), ("slot", "", "b2"),
        ("location", "'=cmd|' /c calc'!a0", "b1"), ("location", "'=cmd|' /c calc'!a0", "b2"),
        ("location", "goa", "b1"), ("location", "goa", "b2"),
        ("location", "pune", "b1"), ("location", "pune", "b2"),
    ]
    assert sum(int(r["impressions"]) for r in rows if r["scope"] == "slot") == 3
    assert sum(int(r["impressions"]) for r in rows if r["location"] == "goa") == 1
    for r in rows:
        assert float(r["ci95_low"]) < float(r["posterior_mean"]) < float(r["ci95_high"])


def test_p_best_is_the_same_in_the_api_the_csv_and_the_page(app, admin, admin_headers):
    """Computed once per posterior snapshot (seeded by it), not per request: a location's P(best) in the CSV
    (drawn after the slot-wide rows) matches the API's and the page's."""
    tenant, slot = gen_slot(admin, ["good", "fair", "poor"])
    simulate_history(app, tenant, slot, {"good": 0.10, "fair": 0.09, "poor": 0.08}, hours=2, serves_per_hour=100,
                     seed=11, location="goa")
    rows = list(csv.DictReader(io.StringIO(
        admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results.csv").get_data(as_text=True))))
    from_csv = {(r["location"], r["banner"]): float(r["p_best"]) for r in rows if r["scope"] != "referrer"}
    for location in ("", "goa"):
        stats = [admin.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats", query_string={"location": location},
                           headers=admin_headers).get_json() for _ in range(2)]
        from_api = {(location, b["id"]): b["p_best"] for b in stats[0]["banners"]}
        assert from_api == {(location, b["id"]): b["p_best"] for b in stats[1]["banners"]}
        assert from_api == {k: v for k, v in from_csv.items() if k[0] == location}
        assert 0.02 < max(from_api.values()) < 0.98        # a real draw, not a certainty
        page = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results?location={location}").get_data(as_text=True)
        for (_, banner), p_best in from_api.items():
            row = re.search(rf'<tr data-banner="{banner}".*?</tr>', page, re.S)[0]
            assert f'<td class="num p-best">{100 * p_best:.1f}%</td>' in row


def test_the_click_filter_form_saves_thresholds_and_refuses_bad_ones(app, admin, admin_headers):
    tenant, slot = gen_slot(admin, ["b1"])
    path = f"/admin/tenants/{tenant}/click-filter"
    page = admin.get(path).get_data(as_text=True)
    assert 'name="max_clicks_per_customer" required type="text" value="0"' in page or \
        re.search(r'name="max_clicks_per_customer"[^>]*value="0"', page)          # gen_slot's INSTANT_CLICKS
    good = {"enabled": "y", "min_delay_seconds": "1.5", "max_clicks_per_customer": "4", "max_clicks_per_ip": "0",
            "window_seconds": "600", "block_bot_user_agents": "y"}
    response = submit(admin, path, good)
    assert response.status_code == 302 and response.headers["Location"].endswith(path)
    saved = admin.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).get_json()["click_filter"]
    assert saved == {"enabled": True, "min_delay_seconds": 1.5, "max_clicks_per_customer": 4,
                     "max_clicks_per_ip": 0, "window_seconds": 600, "block_bot_user_agents": True,
                     "flag_ua_mismatch": False, "flag_ip_mismatch": False}      # not on the form: kept as stored
    for field, bad, message in [("min_delay_seconds", "soon", "min_delay_seconds must be a number"),
                                ("min_delay_seconds", "7200", "min_delay_seconds must be between 0 and 3600"),
                                ("max_clicks_per_customer", "2.5", "max_clicks_per_customer must be an integer"),
                                ("window_seconds", "10", "window_seconds must be an integer between 60")]:
        response = submit(admin, path, {**good, field: bad})
        assert response.status_code == 200 and message in response.get_data(as_text=True), (field, bad)
        assert admin.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).get_json()["click_filter"] == saved
    # Unchecked boxes turn the filter and the bot rule off.
    unchecked = {k: v for k, v in good.items() if k not in ("enabled", "block_bot_user_agents")}
    assert submit(admin, path, unchecked).status_code == 302
    saved = admin.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).get_json()["click_filter"]
    assert (saved["enabled"], saved["block_bot_user_agents"]) == (False, False)
    # The tenant's other settings stay as they were.
    tenant_doc = admin.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).get_json()
    assert tenant_doc["name"] and tenant_doc["timezone"] == "Asia/Kolkata"


def test_the_click_filter_page_shows_what_was_filtered_and_why(app, admin, admin_headers):
    tenant, slot = gen_slot(admin, ["b1"])
    assert "No click of this tenant" in admin.get(f"/admin/tenants/{tenant}/click-filter").get_data(as_text=True)
    admin.put(f"/v1/admin/tenants/{tenant}", headers=admin_headers,
              json={"name": "T", "click_filter": {"min_delay_seconds": 3600}})
    sync(app)
    for user_agent in ("Mozilla/5.0", "Googlebot/2.1"):
        token = admin.get(f"/v1/serve/{tenant}/{slot}").get_json()["token"]
        assert admin.post("/v1/click", json={"token": token}, headers={"User-Agent": user_agent}).status_code == 200
    sync(app)
    page = admin.get(f"/admin/tenants/{tenant}/click-filter").get_data(as_text=True)
    row = re.search(rf'<tr data-slot="{slot}">.*?</tr>', page, re.S)[0]
    cells = dict(re.findall(r'data-reason="(\w+)">(\d+)<', row))
    assert sum(int(v) for v in cells.values()) == 2 and '<td class="num total">2</td>' in row
    assert set(cells) <= {"too_fast", "bot_user_agent"}


def test_flagged_clicks_show_as_filtered_not_as_clicks(app, admin, admin_headers):
    tenant, slot = gen_slot(admin, ["b1"])
    admin.put(f"/v1/admin/tenants/{tenant}", headers=admin_headers,       # any click within the hour is
              json={"name": "T", "click_filter": {"min_delay_seconds": 3600}})  # "too fast"
    sync(app)
    token = admin.get(f"/v1/serve/{tenant}/{slot}").get_json()["token"]
    assert admin.post("/v1/click", json={"token": token}).status_code == 200
    sync(app)
    page = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results").get_data(as_text=True)
    row = re.search(r'<tr data-banner="b1".*?</tr>', page, re.S)[0]
    assert '<td class="num clicks">0</td>' in row and '<td class="num filtered">1</td>' in row
    assert "by reason:" in page and "too fast 1" in page
    rows = list(csv.DictReader(io.StringIO(
        admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results.csv").get_data(as_text=True))))
    assert [(r["scope"], r["clicks"], r["filtered_clicks"]) for r in rows] == [("slot", "0", "1"),
                                                                                ("referrer", "0", ""),
                                                                                ("referrer", "0", "")]


def test_hourly_series_use_the_tenants_time_zone_and_only_the_range_shown(app, admin):
    """IST is UTC+5:30, so local hours start at :30 UTC; the range spans two UTC-day partitions."""
    db = app.extensions["cassandra"]
    tenant, slot = gen_slot(admin, ["b1"])              # time zone defaults to Asia/Kolkata
    utc = dt.UTC
    served = [dt.datetime(2026, 3, 10, 10, 20, tzinfo=utc),   # 15:50 IST → hour 15:00
              dt.datetime(2026, 3, 10, 10, 29, tzinfo=utc),   # 15:59 IST → hour 15:00
              dt.datetime(2026, 3, 10, 10, 31, tzinfo=utc),   # 16:01 IST → hour 16:00
              dt.datetime(2026, 3, 9, 20, 0, tzinfo=utc),     # 10 Mar 01:30 IST, the other UTC day
              dt.datetime(2026, 3, 9, 12, 10, tzinfo=utc)]    # 17:40 IST on 9 Mar: before the range
    deltas: dict[tuple, list[int]] = {}
    for t in served:
        deltas.setdefault((tenant, slot, "", traffic_bucket(t), "b1"), [0, 0])[0] += 1
    for batch in store.traffic_batches(db, deltas).values():
        db.session().execute(batch)
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=utc)         # 17:30 IST: the range ends at 18:00 IST
    series = services.traffic_series(db, tenant, slot, "", hours=24, now=now)
    assert series["labels"][0] == "09 Mar 18:00" and series["labels"][-1] == "10 Mar 17:00"
    counts = dict(zip(series["labels"], series["banners"]["b1"]["impressions"]))
    assert {label: n for label, n in counts.items() if n} == {"10 Mar 01:00": 1, "10 Mar 15:00": 2,
                                                             "10 Mar 16:00": 1}


def test_results_of_an_unknown_slot_are_404(admin):
    tenant, _ = gen_slot(admin, ["b1"])
    assert admin.get(f"/admin/tenants/{tenant}/slots/nope/results").status_code == 404


def test_a_platform_admin_creates_a_tenant_admin_who_sees_only_that_tenant(app, admin):
    tenant, _ = gen_slot(admin, ["b1"])
    username = unique("ta")
    response = submit(admin, "/admin/new-user", {"username": username, "password": PASSWORD, "role": "tenant",
                                                 "tenant_id": tenant})
    assert response.status_code == 302
    user = accounts.get_user(app.extensions["cassandra"], username)
    assert user == accounts.User(username, "tenant", tenant)
    short = submit(admin, "/admin/new-user", {"username": unique("x"), "password": "short", "role": "platform"})
    assert "password must be 10-256 characters" in short.get_data(as_text=True)


def test_create_admin_command(app, keyspace):
    runner = app.test_cli_runner()
    username = unique("cli")
    result = runner.invoke(args=["create-admin", username, "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "platform admin" in result.output
    again = app.test_cli_runner().invoke(args=["create-admin", username, "--password-stdin"], input=PASSWORD + "\n")
    assert again.exit_code != 0 and "already exists" in again.output
    fresh = create_app(make_config(keyspace))       # the command shut its app's session down
    try:
        db = fresh.extensions["cassandra"]
        assert accounts.authenticate(db, username, PASSWORD) == accounts.User(username, "platform", "")
        assert accounts.authenticate(db, username, "wrong password") is None
        bad = fresh.test_cli_runner().invoke(args=["create-admin", unique("t"), "--tenant", "no-such-tenant",
                                                   "--password-stdin"], input=PASSWORD + "\n")
        assert bad.exit_code != 0 and "unknown tenant no-such-tenant" in bad.output
    finally:
        fresh.extensions["cassandra"].shutdown()


def test_the_management_api_sets_and_keeps_slot_size_and_locations(client, admin_headers):
    tenant, slot = gen_slot(client, ["b1"])
    path = f"/v1/admin/tenants/{tenant}/slots/{slot}"
    response = client.put(path, json={"name": "Hero", "size": "300x600", "locations": ["Goa", " PUNE "]},
                          headers=admin_headers)
    assert response.status_code == 200
    assert response.get_json() == {"tenant": tenant, "id": slot, "name": "Hero", "size": "300x600", "width": 300,
                                   "height": 600, "locations": ["goa", "pune"], "decay_half_life_hours": None,
                                   "policy": "thompson", "holdout_percent": 0,
                                   "context": []}
    # PATCH keeps what it does not name; PUT replaces the whole slot (issue 25: one rule for all resources)
    renamed = client.patch(path, json={"name": "Renamed"}, headers=admin_headers).get_json()
    assert (renamed["name"], renamed["size"], renamed["locations"]) == ("Renamed", "300x600", ["goa", "pune"])
    replaced = client.put(path, json={"name": "Renamed"}, headers=admin_headers).get_json()
    assert (replaced["size"], replaced["locations"]) == ("728x250", [])
    bad = client.put(path, json={"name": "x", "size": "300"}, headers=admin_headers)
    assert bad.status_code == 400 and "size must be WIDTHxHEIGHT" in bad.get_json()["error"]
