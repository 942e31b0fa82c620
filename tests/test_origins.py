"""Issue 24: allowed origins per tenant, impression/click client mismatch, private counts, trusted hosts and
forwarded headers, /metrics access, chunked bodies over the limit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.helpers import ADMIN_TOKEN, COUNTS, INSTANT_CLICKS, free_port, gen_slot, sync
from webapp.serving import provenance, runtime
from webapp.storage import store

ROOT = Path(__file__).resolve().parent.parent
SHOP = "https://shop.example"
EVIL = "https://evil.example"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


def _put_tenant(client, tenant: str, **body):
    return client.put(f"/v1/admin/tenants/{tenant}", json={"name": tenant, **body}, headers=COUNTS)


def _stats(client, tenant: str, slot: str) -> dict:
    return client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats", headers=COUNTS).get_json()


# -- origins, pure ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given,normalized", [
    ("HTTPS://Shop.Example:443/", "https://shop.example"), ("http://localhost:8000", "http://localhost:8000"),
    ("https://bücher.example", "https://xn--bcher-kva.example"), ("http://127.0.0.1:80", "http://127.0.0.1"),
])
def test_origins_are_normalized_as_browsers_send_them(given, normalized):
    assert provenance.normalize_origin(given) == normalized


@pytest.mark.parametrize("bad", ["shop.example", "https://shop.example/path", "ftp://shop.example",
                                 "https://*.shop.example", "https://user@shop.example", "https://a..example",
                                 "https://shop.example?q=1", "", 7])
def test_what_is_not_an_origin_is_refused(bad):
    with pytest.raises(provenance.InvalidOrigin):
        provenance.normalize_origin(bad)


def test_request_origin_reads_origin_then_referer_for_navigations():
    assert provenance.request_origin({"Origin": "https://Shop.example"}) == SHOP
    assert provenance.request_origin({"Referer": f"{SHOP}/p?x=1"}) is None            # not a navigation
    assert provenance.request_origin({"Referer": f"{SHOP}/p?x=1"}, navigation=True) == SHOP
    assert provenance.request_origin({"Origin": "null"}) == "null"
    assert provenance.request_origin({}, navigation=True) is None
    assert provenance.is_allowed(None, {SHOP}, ("http://localhost",))          # no origin: other rules judge
    assert not provenance.is_allowed("null", {SHOP}, ("http://localhost",))
    assert provenance.is_allowed(EVIL, set(), ("http://localhost",))            # no list: any origin


def test_client_hashes_are_keyed_and_compare_ipv6_by_its_64():
    one, other = provenance.ClientHasher("k1"), provenance.ClientHasher("k2")
    assert one.ip("203.0.113.7") == one.ip("203.0.113.7") != other.ip("203.0.113.7")
    assert one.ip("203.0.113.7") != one.ip("203.0.113.8")
    assert one.ip("2001:db8::1") == one.ip("2001:db8::ffff:2") != one.ip("2001:db8:0:1::1")
    assert "203.0.113.7" not in one.ip("203.0.113.7") and len(one.user_agent(BROWSER)) == 16


# -- the management API --------------------------------------------------------------------------------------

def test_allowed_origins_are_validated_normalized_kept_and_cleared(client):
    tenant = f"t{uuid.uuid4().hex[:10]}"
    response = _put_tenant(client, tenant, allowed_origins=["HTTPS://Shop.Example/", "https://m.shop.example"])
    assert response.status_code == 201
    assert response.get_json()["allowed_origins"] == ["https://m.shop.example", SHOP]
    bad = _put_tenant(client, tenant, name="renamed", allowed_origins=["https://shop.example/*"])
    assert bad.status_code == 400 and "allowed_origins" in bad.get_json()["error"]
    got = client.get(f"/v1/admin/tenants/{tenant}", headers=COUNTS).get_json()
    assert (got["name"], got["allowed_origins"]) == (tenant, ["https://m.shop.example", SHOP])   # unchanged
    kept = client.patch(f"/v1/admin/tenants/{tenant}", json={"name": "kept"}, headers=COUNTS)   # PATCH: kept
    assert kept.get_json()["allowed_origins"] == ["https://m.shop.example", SHOP]
    assert _put_tenant(client, tenant, name="replaced").get_json()["allowed_origins"] == []      # PUT: replaced
    assert _put_tenant(client, tenant, allowed_origins=[SHOP]).get_json()["allowed_origins"] == [SHOP]
    assert _put_tenant(client, tenant, allowed_origins=None).get_json()["allowed_origins"] == []
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=COUNTS).get_json()["allowed_origins"] == []
    assert _put_tenant(client, tenant, allowed_origins="https://shop.example").status_code == 200   # one string
    assert _put_tenant(client, tenant, allowed_origins=[1]).status_code == 400


# -- serving and clicks from other origins ---------------------------------------------------------------------

def _origin_slot(app, client, **click_filter) -> tuple[str, str]:
    tenant, slot = gen_slot(client, ["a", "b"], click_filter={**INSTANT_CLICKS, **click_filter})
    assert _put_tenant(client, tenant, click_filter={**INSTANT_CLICKS, **click_filter},
                       allowed_origins=[SHOP]).status_code == 200
    sync(app)
    return tenant, slot


def test_a_foreign_origin_is_not_served_and_an_allowed_one_gets_its_own_cors(app, client):
    tenant, slot = _origin_slot(app, client)
    refused = client.get(f"/v1/serve/{tenant}/{slot}", headers={"Origin": EVIL})
    assert refused.status_code == 403 and "allowed origins" in refused.get_json()["error"]
    assert "Access-Control-Allow-Origin" not in refused.headers
    served = client.get(f"/v1/serve/{tenant}/{slot}", headers={"Origin": SHOP})
    assert served.status_code == 200
    assert served.headers["Access-Control-Allow-Origin"] == SHOP and "Origin" in served.headers["Vary"]
    assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200      # a backend: no Origin
    embed = client.get(f"/v1/embed/{tenant}/{slot}", headers={"Referer": f"{EVIL}/page"})
    assert embed.status_code == 403
    framed = client.get(f"/v1/embed/{tenant}/{slot}", headers={"Referer": f"{SHOP}/page"})
    assert framed.status_code == 200 and f"frame-ancestors http://localhost {SHOP}" in \
        framed.headers["Content-Security-Policy"]
    sync(app)
    stats = _stats(client, tenant, slot)
    assert sum(b["impressions"] for b in stats["banners"]) == 3     # the refused serves logged nothing
    row = store.get_impression(app.extensions["cassandra"], tenant, slot, uuid.UUID(served.get_json()["impression_id"]))
    assert row["origin"] == SHOP and len(row["ip_hash"]) == len(row["ua_hash"]) == 16


def test_a_tenant_without_allowed_origins_answers_every_origin_as_before(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}", headers={"Origin": EVIL})
    assert served.status_code == 200 and served.headers["Access-Control-Allow-Origin"] == "*"
    clicked = client.post("/v1/click", json={"token": served.get_json()["token"]}, headers={"Origin": EVIL})
    assert clicked.get_json() == {"status": "recorded"}
    sync(app)
    assert _stats(client, tenant, slot)["banners"][0]["clicks"] == 1


def test_clicks_from_a_foreign_origin_are_stored_but_not_learned_from(app, client):
    tenant, slot = _origin_slot(app, client)
    tokens = [client.get(f"/v1/serve/{tenant}/{slot}").get_json()["token"] for _ in range(4)]
    posted = client.post("/v1/click", json={"token": tokens[0]}, headers={"Origin": EVIL})
    assert posted.status_code == 200 and "Access-Control-Allow-Origin" not in posted.headers
    followed = client.get(f"/v1/click/{tokens[1]}", headers={"Referer": f"{EVIL}/landing"})
    assert followed.status_code == 302                      # the visitor still gets the banner's target
    assert client.post("/v1/click", json={"token": tokens[2]}, headers={"Origin": SHOP}).status_code == 200
    assert client.get(f"/v1/click/{tokens[3]}", headers={"Referer": f"{SHOP}/home"}).status_code == 302
    sync(app)
    stats = _stats(client, tenant, slot)
    assert sum(b["clicks"] for b in stats["banners"]) == 2
    assert stats["filtered_clicks_by_reason"] == {"foreign_origin": 2}
    db = app.extensions["cassandra"]
    origins = []
    with app.app_context():
        for token in tokens:
            claim = runtime.get(app).tokens.verify(token)
            origins.append(store.get_click(db, tenant, slot, claim.impression_id)["origin"])
    assert origins == [EVIL, EVIL, SHOP, SHOP]


def test_a_click_from_another_client_than_its_impression_is_flagged_per_tenant(app, client):
    tenant, slot = _origin_slot(app, client, flag_ua_mismatch=True, flag_ip_mismatch=True)
    visitor = {"User-Agent": BROWSER}

    def serve() -> str:
        return client.get(f"/v1/serve/{tenant}/{slot}", headers=visitor,
                          environ_base={"REMOTE_ADDR": "198.51.100.4"}).get_json()["token"]

    same = serve()
    other_agent, other_address = serve(), serve()
    client.post("/v1/click", json={"token": same}, headers=visitor, environ_base={"REMOTE_ADDR": "198.51.100.4"})
    client.post("/v1/click", json={"token": other_agent}, headers={"User-Agent": BROWSER + " Edg/156"},
                environ_base={"REMOTE_ADDR": "198.51.100.4"})
    client.post("/v1/click", json={"token": other_address}, headers=visitor,
                environ_base={"REMOTE_ADDR": "192.0.2.99"})
    sync(app)
    stats = _stats(client, tenant, slot)
    assert sum(b["clicks"] for b in stats["banners"]) == 1
    assert stats["filtered_clicks_by_reason"] == {"ua_mismatch": 1, "ip_mismatch": 1}
    # Off (the default): the same clicks count.
    assert _put_tenant(client, tenant, click_filter=INSTANT_CLICKS).get_json()["click_filter"][
        "flag_ip_mismatch"] is False
    sync(app)
    token = serve()
    client.post("/v1/click", json={"token": token}, headers={"User-Agent": "Other/1.0"},
                environ_base={"REMOTE_ADDR": "192.0.2.99"})
    sync(app)
    assert sum(b["clicks"] for b in _stats(client, tenant, slot)["banners"]) == 2


# -- the public serve answer ------------------------------------------------------------------------------------

def test_the_public_serve_answer_has_no_counts_and_the_platform_token_sees_them(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    public = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    assert set(public["posterior"]) == {"scope", "prior", "propensity"}
    assert set(public) == {"impression_id", "location", "banner", "click_url", "token", "posterior", "policy",
                           "group"}
    wrong = client.get(f"/v1/serve/{tenant}/{slot}", headers={"Authorization": "Bearer not-the-token"})
    assert "alpha" not in wrong.get_json()["posterior"]
    sync(app)
    private = client.get(f"/v1/serve/{tenant}/{slot}", headers=COUNTS).get_json()["posterior"]
    assert (private["alpha"], private["beta"]) == (1.0, 1.0 + 2)   # the two serves before it, no click


# -- hosts, forwarded headers, /metrics, chunked bodies ----------------------------------------------------------

def test_an_unknown_host_is_refused_and_cannot_change_click_urls(app_factory):
    app = app_factory(PUBLIC_BASE_URL="https://ads.example.com/")
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    evil = client.get(f"/v1/serve/{tenant}/{slot}", headers={"Host": "evil.example"})
    assert evil.status_code == 400 and "evil.example" in evil.get_json()["error"]
    for host in ("localhost", "ads.example.com"):
        served = client.get(f"/v1/serve/{tenant}/{slot}", headers={"Host": host})
        assert served.status_code == 200
        assert served.get_json()["click_url"].startswith("https://ads.example.com/v1/click/")


def test_allowed_hosts_add_names_and_subdomains(app_factory):
    client = app_factory(ALLOWED_HOSTS="ads.example.com, .cdn.example").test_client()
    assert client.get("/v1/ping", headers={"Host": "ads.example.com"}).status_code == 200
    assert client.get("/v1/ping", headers={"Host": "eu.cdn.example"}).status_code == 200
    assert client.get("/v1/ping", headers={"Host": "ads.example.com.evil.example"}).status_code == 400


def test_metrics_are_for_loopback_or_the_metrics_token(app_factory):
    client = app_factory(METRICS_TOKEN="scrape-me").test_client()
    assert client.get("/metrics").status_code == 200                          # 127.0.0.1
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=outside).status_code == 403
    assert client.get("/metrics", environ_base=outside,
                      headers={"Authorization": "Bearer scrape-me"}).status_code == 200
    assert client.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer nope"}).status_code == 403
    closed = app_factory(METRICS_ALLOW_FROM="").test_client()
    assert closed.get("/metrics").status_code == 403         # no token set, no network: nobody


def test_a_chunked_body_over_the_limit_is_413(app):
    body = b'{"token": "' + b"a" * 70_000 + b'"}'
    response = app.test_client().post("/v1/click", input_stream=io.BytesIO(body),
                                      headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
                                      environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    small = app.test_client().post("/v1/click", input_stream=io.BytesIO(b'{"token": "x.y.z"}'),
                                   headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
                                   environ_overrides={"wsgi.input_terminated": True})
    assert small.status_code == 400 and "token" in small.get_json()["error"]


@pytest.fixture
def gunicorn_server(keyspace):
    """A real gunicorn (TRUSTED_PROXIES=0, no PUBLIC_BASE_URL) on a free port."""
    port = free_port()
    env = {**os.environ, "CASSANDRA_KEYSPACE": keyspace, "ADMIN_API_TOKEN": ADMIN_TOKEN, "PORT": str(port),
           "WEB_CONCURRENCY": "1", "SECRET_KEY": "origins-test", "TRUSTED_PROXIES": "0", "PUBLIC_BASE_URL": ""}
    env.pop("FORWARDED_ALLOW_IPS", None)
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                if requests.get(f"{base}/v1/ping", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_forwarded_headers_from_loopback_change_nothing_without_trusted_proxies(app, client, gunicorn_server):
    tenant, slot = gen_slot(client, ["a"])
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "X-Forwarded-For": "10.9.9.9",
              "X-Forwarded-Ssl": "on", "Forwarded": "proto=https;host=evil.example"}
    deadline = time.monotonic() + 60
    while True:     # the new slot: its first serve may meet a busy Cassandra on a loaded machine
        served = requests.get(f"{gunicorn_server}/v1/serve/{tenant}/{slot}", headers=forged, timeout=10)
        if served.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert served.status_code == 200, served.text
    assert served.json()["click_url"].startswith(f"{gunicorn_server}/v1/click/")
    evil = requests.get(f"{gunicorn_server}/v1/ping", headers={"Host": "evil.example"}, timeout=10)
    assert evil.status_code == 400
    # A chunked body over MAX_CONTENT_LENGTH, through gunicorn's own chunked reader.
    body = b'{"token": "' + b"a" * 70_000 + b'"}'
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    chunked = requests.post(f"{gunicorn_server}/v1/click", data=chunks, timeout=10,
                            headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413


# -- the dashboard -----------------------------------------------------------------------------------------------

def test_the_dashboard_sets_allowed_origins_and_warns_when_there_are_none(app, client):
    from tests.helpers import csrf_token, gen_user, login

    assert login(client, gen_user(app)).status_code == 302
    tenant, _ = gen_slot(client, ["a"])
    page = client.get(f"/admin/tenants/{tenant}").get_data(as_text=True)
    assert "Any website can show this tenant&#39;s banners and\n    send it clicks" in page \
        or "Any website can show this tenant's banners" in page
    path = f"/admin/tenants/{tenant}/edit"

    def save(origins: str):
        token = csrf_token(client.get(path).get_data(as_text=True))
        return client.post(path, data={"csrf_token": token, "tenant_id": tenant, "name": "Shop",
                                       "timezone": "Asia/Kolkata", "allowed_origins": origins})

    bad = save("https://shop.example/cart")
    assert bad.status_code == 200 and "allowed_origins" in bad.get_data(as_text=True)
    assert store.get_tenant(app.extensions["cassandra"], tenant)["allowed_origins"] is None      # unchanged
    assert save("HTTPS://Shop.Example\r\nhttps://m.shop.example").status_code == 302
    assert store.get_tenant(app.extensions["cassandra"], tenant)["allowed_origins"] == {SHOP, "https://m.shop.example"}
    page = client.get(f"/admin/tenants/{tenant}").get_data(as_text=True)
    assert "Any website can" not in page and "<code>https://shop.example</code>" in page
    assert "https://m.shop.example\nhttps://shop.example" in client.get(path).get_data(as_text=True)
