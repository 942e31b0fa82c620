"""Bot and invalid clicks are stored but flagged, and never reach the posteriors."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.helpers import gen_slot, recent, sync
from webapp.serving.click_filter import ClickFilterSettings, classify, is_bot_user_agent
from webapp.storage import store

HUMAN = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


# -- the rules, pure --------------------------------------------------------------------------------------

def test_classify_each_rule():
    s = ClickFilterSettings(min_delay_seconds=1.0, max_clicks_per_customer=3, max_clicks_per_ip=5)
    ok = {"delay_seconds": 2.0, "user_agent": HUMAN, "customer_clicks": 1, "ip_clicks": 1}
    assert classify(s, **ok) is None
    assert classify(s, **{**ok, "delay_seconds": 0.2}) == "too_fast"
    assert classify(s, **{**ok, "user_agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}) == "bot_user_agent"
    assert classify(s, **{**ok, "customer_clicks": 4}) == "customer_rate"
    assert classify(s, **{**ok, "customer_clicks": 3}) is None
    assert classify(s, **{**ok, "ip_clicks": 6}) == "ip_rate"
    assert classify(s, **{**ok, "customer_clicks": None, "ip_clicks": None}) is None
    assert classify(ClickFilterSettings(enabled=False), **{**ok, "delay_seconds": 0}) is None


@pytest.mark.parametrize("agent,bot", [
    (HUMAN, False), ("Mozilla/5.0 (compatible; bingbot/2.0)", True), ("curl/8.5.0", True),
    ("Mozilla/5.0 HeadlessChrome/156.0", False), ("", True), ("facebookexternalhit/1.1", True),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148", False),
])
def test_bot_user_agents(agent, bot):
    assert is_bot_user_agent(agent) is bot


@pytest.mark.parametrize("data,message", [
    ({"min_delay_seconds": -1}, "min_delay_seconds"), ({"max_clicks_per_ip": 1.5}, "max_clicks_per_ip"),
    ({"window_seconds": 5}, "window_seconds"), ({"enabled": "yes"}, "true or false"),
    ({"colour": 1}, "unknown"), ("strict", "object"), ({"min_delay_seconds": "1"}, "number"),
    ({"min_delay_seconds": 10**400}, "min_delay_seconds"), ({"min_delay_seconds": float("nan")}, "min_delay_seconds"),
])
def test_invalid_settings_are_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        ClickFilterSettings.from_dict(data)


# -- through the service -----------------------------------------------------------------------------------

def _serve_and_click(client, tenant, slot, user_agent=HUMAN, customer_id=None, wait=0.0):
    served = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    time.sleep(wait)
    body = {"token": served["token"]} | ({"customer_id": customer_id} if customer_id else {})
    response = client.post("/v1/click", json=body, headers={"User-Agent": user_agent})
    assert response.status_code == 200
    return served, response.get_json()["status"]


def _stats(client, admin_headers, tenant, slot):
    return client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats", headers=admin_headers).get_json()


def test_flagged_clicks_are_stored_but_not_learned_from(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["only"], click_filter={"min_delay_seconds": 0.3,
                                                            "max_clicks_per_customer": 2})
    sync(app)
    fast, status = _serve_and_click(client, tenant, slot)
    assert status == "recorded"
    _, bot_status = _serve_and_click(client, tenant, slot, user_agent="AhrefsBot/7.0", wait=0.4)
    assert bot_status == "recorded"
    human = [_serve_and_click(client, tenant, slot, customer_id="cust-1", wait=0.4) for _ in range(3)]
    assert client.post("/v1/click", json={"token": fast["token"]}).get_json() == {"status": "duplicate"}
    sync(app)

    db = app.extensions["cassandra"]
    row = store.get_click(db, tenant, slot, uuid.UUID(fast["impression_id"]))
    assert (row["valid"], row["invalid_reason"]) == (False, "too_fast")
    third = store.get_click(db, tenant, slot, uuid.UUID(human[2][0]["impression_id"]))
    assert (third["valid"], third["invalid_reason"], third["user_agent"]) == (False, "customer_rate", HUMAN)
    assert store.count_events(db, "clicks", tenant, slot, *recent()) == 5          # all stored

    stats = _stats(client, admin_headers, tenant, slot)
    [banner] = stats["banners"]
    assert (banner["impressions"], banner["clicks"], banner["filtered_clicks"]) == (5, 2, 3)
    assert banner["alpha"] == 1 + 2                                          # only valid clicks learned
    assert stats["filtered_clicks_by_reason"] == {"too_fast": 1, "bot_user_agent": 1, "customer_rate": 1}


def test_filter_can_be_switched_off_per_tenant(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["only"], click_filter={"enabled": False})
    sync(app)
    _serve_and_click(client, tenant, slot, user_agent="Googlebot/2.1")
    sync(app)
    [banner] = _stats(client, admin_headers, tenant, slot)["banners"]
    assert (banner["clicks"], banner["filtered_clicks"]) == (1, 0)


def test_default_settings_flag_an_instant_click(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["only"], click_filter=None)
    sync(app)
    _serve_and_click(client, tenant, slot)
    sync(app)
    [banner] = _stats(client, admin_headers, tenant, slot)["banners"]
    assert (banner["clicks"], banner["filtered_clicks"]) == (0, 1)
    tenant_doc = client.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).get_json()
    assert tenant_doc["click_filter"] == ClickFilterSettings().to_dict()


def test_invalid_click_filter_is_400_and_writes_nothing(client, admin_headers):
    tenant = f"t{uuid.uuid4().hex[:10]}"
    response = client.put(f"/v1/admin/tenants/{tenant}", headers=admin_headers,
                          json={"name": "x", "click_filter": {"window_seconds": 1}})
    assert response.status_code == 400
    assert "window_seconds" in response.get_json()["error"]
    assert client.get(f"/v1/admin/tenants/{tenant}", headers=admin_headers).status_code == 404
