"""Public serving and click tracking on the real Cassandra."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter

import pytest

from eventlog.partitions import partition_of
from tests.helpers import gen_slot, recent, sync
from webapp.storage import store


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def event_counts(app, tenant, slot) -> tuple[int, int, list]:
    """(impression rows, click rows, counter rows) of a slot, after flushing this process's writes."""
    sync(app)
    db = app.extensions["cassandra"]
    counters = sorted((loc, r["banner_id"], r["impressions"], r["clicks"])
                      for loc in ("", "mumbai", "delhi") for r in store.slot_counts(db, tenant, slot, loc))
    return (store.count_events(db, "impressions", tenant, slot, *recent()),
            store.count_events(db, "clicks", tenant, slot, *recent()), counters)


def test_serve_returns_a_banner_and_logs_the_impression(app, client):
    tenant, slot = gen_slot(client, ["a", "b"])
    sync(app)
    response = client.get(f"/v1/serve/{tenant}/{slot}?location=%20%20New%20%20Delhi &customer_id=c-1"
                          "&referrer_id=r-9")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    body = response.get_json()
    assert body["location"] == "new delhi"
    assert body["banner"]["id"] in {"a", "b"}
    assert body["banner"]["image_url"] == f"https://cdn.example.com/{body['banner']['id']}.png"
    assert body["click_url"].endswith("/v1/click/" + body["token"] + "?referrer_id=r-9")
    sync(app)
    row = store.get_impression(app.extensions["cassandra"], tenant, slot,
                               uuid.UUID(body["impression_id"]))
    assert row is not None
    assert (row["banner_id"], row["location"], row["customer_id"], row["referrer_id"]) == (
        body["banner"]["id"], "new delhi", "c-1", "r-9")
    assert (row["alpha"], row["beta"], row["prior_source"], row["posterior_scope"]) == (
        1.0, 1.0, "uniform", "slot")
    assert row["propensity"] == pytest.approx(0.5, abs=0.05)


def test_percent_encoded_utf8_and_literal_percent_signs_are_read_as_sent(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    response = client.get(f"/v1/serve/{tenant}/{slot}?location=M%C3%BCNCHEN&customer_id=100%25")
    assert response.status_code == 200
    body = response.get_json()
    assert body["location"] == "münchen"
    sync(app)
    row = store.get_impression(app.extensions["cassandra"], tenant, slot,
                               uuid.UUID(body["impression_id"]))
    assert (row["location"], row["customer_id"]) == ("münchen", "100%")


def test_unknown_tenant_or_slot_is_404(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    for path in (f"/v1/serve/nobody/{slot}", f"/v1/serve/{tenant}/nothing", f"/v1/embed/{tenant}/nothing"):
        response = client.get(path)
        assert response.status_code == 404
        assert "unknown tenant/slot" in response.get_json()["error"]


def test_slot_without_active_banner_is_404(app, client):
    tenant, slot = gen_slot(client, {"a": False})
    sync(app)
    response = client.get(f"/v1/serve/{tenant}/{slot}")
    assert response.status_code == 404
    assert "no active banner" in response.get_json()["error"]


def test_paused_banners_are_never_served(app, client):
    tenant, slot = gen_slot(client, {"on": True, "off1": False, "off2": False})
    sync(app)
    served = {client.get(f"/v1/serve/{tenant}/{slot}").get_json()["banner"]["id"] for _ in range(200)}
    assert served == {"on"}


def test_pausing_a_banner_stops_it_after_a_refresh(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    sync(app)
    assert {client.get(f"/v1/serve/{tenant}/{slot}").get_json()["banner"]["id"] for _ in range(100)} == {"a", "b"}
    client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/b", headers=admin_headers,
               json={"image_url": "https://x.example/b.png", "target_url": "https://x.example/", "active": False})
    sync(app)
    assert {client.get(f"/v1/serve/{tenant}/{slot}").get_json()["banner"]["id"] for _ in range(100)} == {"a"}


@pytest.mark.parametrize("query,message", [
    ("location=" + "x" * 129, "location is too long"),
    ("customer_id=" + "c" * 200, "customer_id is too long"),
    ("referrer_id=a%00b", "referrer_id contains control"),
    ("location=Mum%0Abai", "location contains control"),
    ("location=%E2%80%AE", "location contains control"),
    ("location=%C3%28", "query string is not UTF-8"),
    ("location=Mumbai&customer_id=%FF", "query string is not UTF-8"),
])
def test_invalid_serve_parameters_are_400_and_write_nothing(app, client, query, message):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    before = event_counts(app, tenant, slot)
    response = client.get(f"/v1/serve/{tenant}/{slot}?{query}")
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert event_counts(app, tenant, slot) == before


def test_click_is_recorded_once(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}?location=Mumbai").get_json()
    first = client.post("/v1/click", json={"token": served["token"], "customer_id": "cust-7",
                                           "referrer_id": "ref-3"})
    assert (first.status_code, first.get_json()) == (200, {"status": "recorded"})
    for _ in range(3):
        again = client.post("/v1/click", json={"token": served["token"]})
        assert (again.status_code, again.get_json()) == (200, {"status": "duplicate"})
    redirect = client.get(f"/v1/click/{served['token']}")
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == "https://shop.example.com/a"
    impressions, clicks, counters = event_counts(app, tenant, slot)
    assert (impressions, clicks) == (1, 1)
    assert counters == [("", "a", 1, 1), ("mumbai", "a", 1, 1)]
    row = store.get_click(app.extensions["cassandra"], tenant, slot, uuid.UUID(served["impression_id"]))
    assert (row["banner_id"], row["location"], row["customer_id"], row["referrer_id"]) == (
        "a", "mumbai", "cust-7", "ref-3")
    assert row["clicked_at"] is not None


def test_get_click_redirects_and_counts_once(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    for _ in range(2):
        response = client.get(served["click_url"].split("localhost", 1)[1])
        assert response.status_code == 302
    assert event_counts(app, tenant, slot)[:2] == (1, 1)


def _tamper(token: str) -> str:
    payload, _, signature = token.rpartition(".")
    return f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize("make_token,message", [
    (lambda t: _tamper(t), "invalid"),
    (lambda t: "not-a-token", "invalid"),
    (lambda t: "", "missing"),
    (lambda t: 42, "missing"),
    (lambda t: t + "x" * 3000, "malformed"),
])
def test_forged_or_malformed_tokens_are_400_and_record_nothing(app, client, make_token, message):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    response = client.post("/v1/click", json={"token": make_token(served["token"])})
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert event_counts(app, tenant, slot)[1] == 0


def test_token_signed_with_another_secret_is_rejected(app_factory):
    other = app_factory(SECRET_KEY="another-secret")
    app = app_factory()
    client, other_client = app.test_client(), other.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(other)
    forged = other_client.get(f"/v1/serve/{tenant}/{slot}").get_json()["token"]
    response = client.post("/v1/click", json={"token": forged})
    assert response.status_code == 400
    assert event_counts(app, tenant, slot)[1] == 0


def test_expired_token_is_400_and_records_nothing(app_factory):
    app = app_factory(CLICK_WINDOW_SECONDS=1)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    time.sleep(2.2)
    response = client.post("/v1/click", json={"token": served["token"]})
    assert response.status_code == 400
    assert "expired" in response.get_json()["error"]
    assert client.get(f"/v1/click/{served['token']}").status_code == 400
    assert event_counts(app, tenant, slot)[1] == 0


@pytest.mark.parametrize("kwargs", [
    {"data": "not json", "content_type": "application/json"},
    {"json": ["token"]},
    {"json": {"token": "x", "extra": 1}},
])
def test_bad_click_bodies_are_400(client, kwargs):
    response = client.post("/v1/click", **kwargs)
    assert response.status_code == 400
    assert "error" in response.get_json()


def test_bad_click_customer_id_is_400_and_records_nothing(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    for customer in ("c" * 500, 17):
        response = client.post("/v1/click", json={"token": served["token"], "customer_id": customer})
        assert response.status_code == 400
    assert event_counts(app, tenant, slot)[1] == 0
    assert client.post("/v1/click", json={"token": served["token"]}).get_json() == {"status": "recorded"}


def test_embed_page_renders_the_banner_escaped(app, client, admin_headers):
    tenant, slot = gen_slot(client, [])
    client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/x", headers=admin_headers,
               json={"image_url": "https://cdn.example.com/x.png", "target_url": "https://shop.example.com/",
                     "alt": "<script>alert(1)</script>"})
    sync(app)
    response = client.get(f"/v1/embed/{tenant}/{slot}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert "/v1/click/" in html and "https://cdn.example.com/x.png" in html


def test_demo_page_and_embed_script(client):
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-banner-bandit' in page.get_data(as_text=True)
    script = client.get("/static/embed.js")
    assert script.status_code == 200
    assert "/v1/serve/" in script.get_data(as_text=True)
    script.close()


def test_cors_preflight_for_click(client):
    response = client.options("/v1/click", headers={"Origin": "https://shop.example.com",
                                                    "Access-Control-Request-Method": "POST"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("base_url", ["http://localhost/", "https://shop.example:8443/banners/"])
def test_click_url_is_what_url_for_builds(app_factory, base_url):
    """serving.click_url skips the URL map for speed; it must still give url_for's absolute URL, also
    under a script root (a reverse proxy mounting the service under a path) and another scheme/port."""
    from flask import url_for

    from webapp.serving.views import click_url

    app = app_factory(ALLOWED_HOSTS="shop.example")

    token = "eyJhIjoxfQ.ZyX-_a.b1_c-D"
    with app.test_request_context("/v1/serve/t/s", base_url=base_url):
        assert click_url(token) == url_for("serving.click_redirect", token=token, _external=True)


def test_impressions_are_written_in_single_partition_batches_and_counted_once(app_factory):
    """Queued impressions go out as UNLOGGED batches of at most IMPRESSION_BATCH_ROWS rows of one
    partition; every row lands, and the counters count each impression once."""
    app = app_factory(IMPRESSION_BATCH_ROWS=4)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a", "b"])
    other_tenant, other_slot = gen_slot(client, ["c"])
    sync(app)
    ids = [client.get(f"/v1/serve/{tenant}/{slot}?location=Pune").get_json()["impression_id"] for _ in range(10)]
    ids += [client.get(f"/v1/serve/{other_tenant}/{other_slot}").get_json()["impression_id"] for _ in range(3)]
    with app.app_context():
        from webapp.serving import runtime
        events = runtime.get(app).events
        assert events.backlog == 13                       # queued (and spooled), not yet sent
        before = events.stats["impression_batches"]
        sync(app)
        assert events.backlog == 0
        # the rows of each partition (tenant, slot, bucket, shard) in batches of ≤ 4: never mixed
        rows = Counter((t, s, partition_of(uuid.UUID(i)))
                       for i, (t, s) in zip(ids, [(tenant, slot)] * 10 + [(other_tenant, other_slot)] * 3))
        assert events.stats["impression_batches"] - before == sum(-(-n // 4) for n in rows.values())
    db = app.extensions["cassandra"]
    for impression_id, (t, s) in zip(ids, [(tenant, slot)] * 10 + [(other_tenant, other_slot)] * 3):
        assert store.get_impression(db, t, s, uuid.UUID(impression_id)) is not None
    assert sum(r["impressions"] for r in store.slot_counts(db, tenant, slot, "pune")) == 10
    assert sum(r["impressions"] for r in store.slot_counts(db, tenant, slot, "")) == 10
    assert sum(r["impressions"] for r in store.slot_counts(db, other_tenant, other_slot, "")) == 3


def test_timeuuids_are_version_1_of_now_unique_and_ordered():
    """Impression ids come from serving.timeuuid (uuid1 with a random per-process node, not libuuid)."""
    import datetime as dt

    from cassandra.util import datetime_from_uuid1

    from webapp.serving.views import timeuuid

    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ids = [timeuuid() for _ in range(10_000)]
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert len(set(ids)) == len(ids)
    assert all(u.version == 1 and u.node & (1 << 40) for u in ids)     # random node: multicast bit set
    assert len({u.node for u in ids}) == 1                              # one node per process
    times = [u.time for u in ids]
    assert times == sorted(times) and len(set(times)) == len(times)     # strictly increasing
    tolerance = dt.timedelta(milliseconds=1)
    assert before - tolerance <= datetime_from_uuid1(ids[0]) and datetime_from_uuid1(ids[-1]) <= after + tolerance


def test_click_tokens_are_itsdangerous_timestamp_signatures_of_the_secret():
    """The pre-derived key signs exactly as itsdangerous does from the secret: tokens issued before the
    change (or by another server of the same secret) stay valid, and one signed with another secret is not."""
    import datetime as dt
    import uuid

    from itsdangerous import TimestampSigner

    from webapp.serving.tokens import SALT, ClickClaim, ClickTokens
    from webapp.web.errors import InvalidToken

    tokens = ClickTokens("a-secret", window_seconds=60)
    claim = ClickClaim(uuid.uuid1(), "t", "s", "b", "pune", dt.date.today())
    token = tokens.sign(claim)
    value = token.rsplit(".", 2)[0].encode()
    assert TimestampSigner("a-secret", salt=SALT).unsign(token, max_age=60) == value
    assert tokens.verify(TimestampSigner("a-secret", salt=SALT).sign(value).decode()) == claim
    with pytest.raises(InvalidToken):
        tokens.verify(TimestampSigner("another", salt=SALT).sign(value).decode())
