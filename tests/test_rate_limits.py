"""Rate limits per client on the public endpoints (webapp.web.rate_limits.client_limit over the `limits` package) and
the dashboard login (Flask-Limiter), with tiny configured limits."""

from __future__ import annotations

import pytest

from tests.helpers import gen_slot, sync
from webapp import create_app
from webapp.storage import store

ALICE = {"REMOTE_ADDR": "198.51.100.7"}
BOB = {"REMOTE_ADDR": "198.51.100.8"}


def limited_app(app_factory, **overrides):
    config = {"RATELIMIT_ENABLED": True, "RATELIMIT_SERVE": "3/minute", "RATELIMIT_CLICK": "2/minute"}
    return app_factory(**{**config, **overrides})


def impressions(app, tenant, slot) -> int:
    sync(app)
    return sum(r["impressions"] for r in store.slot_counts(app.extensions["cassandra"], tenant, slot, ""))


def test_serve_and_embed_share_one_budget_per_client(app_factory):
    app = limited_app(app_factory)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    for path in (f"/v1/serve/{tenant}/{slot}", f"/v1/embed/{tenant}/{slot}", f"/v1/serve/{tenant}/{slot}"):
        assert client.get(path, environ_base=ALICE).status_code == 200
    for path in (f"/v1/serve/{tenant}/{slot}", f"/v1/embed/{tenant}/{slot}"):
        refused = client.get(path, environ_base=ALICE)
        assert refused.status_code == 429
        assert refused.is_json
        message = refused.get_json()["error"]
        assert message.startswith("too many requests from this client: the limit is 3 per 1 minute; retry in ")
        assert 1 <= int(refused.headers["Retry-After"]) <= 61     # the window, rounded up
        assert refused.headers["Access-Control-Allow-Origin"] == "*"    # a browser script can read why
    assert impressions(app, tenant, slot) == 3                      # a refused request logs nothing
    # Another client has its own budget; the admin API, ping and the document are not limited.
    assert client.get(f"/v1/serve/{tenant}/{slot}", environ_base=BOB).status_code == 200
    for _ in range(5):
        assert client.get("/v1/ping", environ_base=ALICE).status_code == 200
        assert client.get("/openapi.json", environ_base=ALICE).status_code == 200


def test_both_click_endpoints_share_one_budget_and_a_refused_click_is_not_recorded(app_factory):
    app = limited_app(app_factory, RATELIMIT_SERVE="100/minute")
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    tokens = [client.get(f"/v1/serve/{tenant}/{slot}", environ_base=BOB).get_json()["token"] for _ in range(3)]
    assert client.post("/v1/click", json={"token": tokens[0]}, environ_base=ALICE).get_json() == {
        "status": "recorded"}
    assert client.get(f"/v1/click/{tokens[1]}", environ_base=ALICE).status_code == 302
    refused = client.post("/v1/click", json={"token": tokens[2]}, environ_base=ALICE)
    assert refused.status_code == 429
    assert "the limit is 2 per 1 minute" in refused.get_json()["error"]
    assert client.get(f"/v1/click/{tokens[2]}", environ_base=ALICE).status_code == 429
    sync(app)
    counts = store.slot_counts(app.extensions["cassandra"], tenant, slot, "")
    assert [(r["impressions"], r["clicks"]) for r in counts] == [(3, 2)]
    # The same click from another client goes through: it was refused, not lost.
    assert client.post("/v1/click", json={"token": tokens[2]}, environ_base=BOB).get_json() == {
        "status": "recorded"}


def test_rate_limit_headers_when_enabled(app_factory):
    app = limited_app(app_factory, RATELIMIT_HEADERS_ENABLED=True, RATELIMIT_SERVE="2/minute")
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    remaining = []
    for _ in range(2):
        response = client.get(f"/v1/serve/{tenant}/{slot}", environ_base=ALICE)
        assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "2"
        remaining.append(response.headers["X-RateLimit-Remaining"])
    assert remaining == ["1", "0"]
    refused = client.get(f"/v1/embed/{tenant}/{slot}", environ_base=ALICE, headers={"Accept": "text/html"})
    assert refused.status_code == 429 and refused.is_json        # an iframe's script reads why
    assert "the limit is 2 per 1 minute" in refused.get_json()["error"] and int(refused.headers["Retry-After"]) >= 1


def test_rate_limits_can_be_switched_off(app_factory):
    app = limited_app(app_factory, RATELIMIT_ENABLED=False)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    assert {client.get(f"/v1/serve/{tenant}/{slot}", environ_base=ALICE).status_code for _ in range(6)} == {200}


def test_behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for(app_factory):
    app = limited_app(app_factory, TRUSTED_PROXIES=1, RATELIMIT_SERVE="1/minute")
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    path = f"/v1/serve/{tenant}/{slot}"
    assert client.get(path, environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert client.get(path, environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 200
    assert client.get(path, environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app_factory):
    app = limited_app(app_factory, RATELIMIT_SERVE="1/minute")
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    path = f"/v1/serve/{tenant}/{slot}"
    assert client.get(path, environ_base=ALICE, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert client.get(path, environ_base=ALICE, headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 429


@pytest.mark.parametrize("key,value", [("RATELIMIT_SERVE", "lots"), ("RATELIMIT_CLICK", "10 per fortnight")])
def test_a_malformed_limit_fails_at_start_with_a_clear_message(key, value):
    with pytest.raises(ValueError, match=f"{key}=.* is not a rate limit such as '600/minute'"):
        create_app({key: value, "CASSANDRA_KEYSPACE": "unused"})
