"""Contextual slots through the running service (real Cassandra): the slot API, the serve's context, the
impression row, the context counters, and learning who clicks what (bandits/contextual.py)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tests.helpers import csrf_token, gen_slot, gen_user, login, sync
from webapp.storage import store

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.0 Mobile/15E148 Safari/604.1")
# In one city, newsletter readers click banner a, search visitors banner b; overall both banners are alike.
CTR = {("news", "a"): 0.30, ("news", "b"): 0.04, ("search", "a"): 0.04, ("search", "b"): 0.30}


def put_slot(client, headers, tenant, slot, **fields):
    return client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Hero", **fields},
                      headers=headers)


def test_a_slot_sets_its_policy_and_context_features(client, admin_headers):
    tenant, slot = gen_slot(client, ["a"])
    response = put_slot(client, admin_headers, tenant, slot, policy="contextual",
                        context=["hour", "referrer", "device"])
    assert response.status_code == 200
    assert response.get_json()["policy"] == "contextual"
    assert response.get_json()["context"] == ["referrer", "hour", "device"]          # canonical order
    kept = client.patch(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Renamed"},
                        headers=admin_headers).get_json()                            # PATCH: left out, kept
    assert (kept["policy"], kept["context"]) == ("contextual", ["referrer", "hour", "device"])
    replaced = put_slot(client, admin_headers, tenant, slot).get_json()              # PUT: the defaults
    assert (replaced["policy"], replaced["context"]) == ("thompson", [])


@pytest.mark.parametrize(("fields", "message"), [
    ({"policy": "contextual", "context": ["referrer", "colour"]}, "unknown context feature"),
    ({"policy": "contextual", "context": "referrer"}, "context"),
    ({"policy": "linucb", "context": ["referrer"]}, "policy must be one of"),
])
def test_an_unknown_feature_or_policy_is_a_400_and_nothing_is_written(app, client, admin_headers, fields,
                                                                      message):
    tenant, slot = gen_slot(client, ["a"])
    with app.app_context():
        before = store.get_slot(app.extensions["cassandra"], tenant, slot)
    response = put_slot(client, admin_headers, tenant, slot, **{**fields, "name": "Renamed"})
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    with app.app_context():
        stored = store.get_slot(app.extensions["cassandra"], tenant, slot)
    assert stored == before and stored["name"] == "Hero" and stored["context"] is None


@pytest.mark.parametrize("segment", ["x" * 129, "vip\x00", "new\nreturning"])
def test_an_oversized_or_control_character_segment_is_a_400(client, segment):
    tenant, slot = gen_slot(client, ["a"])
    response = client.get(f"/v1/serve/{tenant}/{slot}", query_string={"segment": segment})
    assert response.status_code == 400
    assert "segment" in response.get_json()["error"]


def test_a_contextual_serve_records_its_context_and_counts_its_cell(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    put_slot(client, admin_headers, tenant, slot, policy="contextual",
             context=["referrer", "hour", "weekday", "device", "segment"])
    served = client.get(f"/v1/serve/{tenant}/{slot}", headers={"User-Agent": IPHONE},
                        query_string={"referrer_id": "News", "segment": "VIP", "location": "Pune"})
    assert served.status_code == 200
    document = served.get_json()
    assert document["policy"] == "contextual"
    assert isinstance(document["features"], list)
    assert "alpha" not in str(document["features"])
    assert client.post("/v1/click", json={"token": document["token"]}).get_json()["status"] == "recorded"
    sync(app)
    with app.app_context():
        db = app.extensions["cassandra"]
        row = store.get_impression(db, tenant, slot, uuid.UUID(document["impression_id"]))
        cells = store.context_counts(db, tenant, slot)
    assert (row["segment"], row["device"], row["policy"]) == ("VIP", "mobile", "contextual")
    assert 0 <= row["hour"] <= 23 and 0 <= row["weekday"] <= 6
    levels = dict(pair.split("=", 1) for pair in row["context_cell"].split("\t"))
    assert levels == {"referrer": "news", "hour": str(row["hour"]), "weekday": str(row["weekday"]),
                      "device": "mobile", "segment": "vip"}
    assert 0 < row["propensity"] <= 1
    assert [(r["cell"], r["banner_id"], r["impressions"], r["clicks"]) for r in cells] == [
        (row["context_cell"], document["banner"]["id"], 1, 1)]


def _learn(app, client, tenant: str, slot: str, rounds: int, per_round: int, seed: int) -> dict[str, float]:
    """Serve visitors of both referrers in one city, click by CTR, sync after each round; the share of the
    last third of the rounds' serves that went to each referrer's better banner."""
    rng = np.random.default_rng(seed)
    right = {"news": [], "search": []}
    for round_ in range(rounds):
        for _ in range(per_round):
            for referrer, best in (("news", "a"), ("search", "b")):
                document = client.get(f"/v1/serve/{tenant}/{slot}",
                                      query_string={"location": "Pune", "referrer_id": referrer}).get_json()
                banner = document["banner"]["id"]
                if round_ >= 2 * rounds // 3:
                    right[referrer].append(banner == best)
                if rng.random() < CTR[(referrer, banner)]:
                    assert client.post("/v1/click", json={"token": document["token"]}).status_code == 200
        sync(app)
    return {referrer: float(np.mean(hits)) for referrer, hits in right.items()}


def test_a_contextual_slot_learns_each_referrers_winner_a_thompson_slot_cannot(app, client, admin_headers):
    tenant, contextual = gen_slot(client, ["a", "b"], slot="ctx")
    gen_slot(client, ["a", "b"], tenant=tenant, slot="city")
    put_slot(client, admin_headers, tenant, contextual, policy="contextual", context=["location", "referrer"])
    learned = _learn(app, client, tenant, contextual, rounds=30, per_round=25, seed=5)
    pooled = _learn(app, client, tenant, "city", rounds=30, per_round=25, seed=5)
    assert learned["news"] > 0.85 and learned["search"] > 0.85, learned
    # One posterior for the city: whatever it serves to one referrer, it serves to the other.
    assert pooled["news"] + pooled["search"] < 1.3, pooled


def test_what_one_worker_learns_reaches_another(app_factory):
    first, second = app_factory(), app_factory()
    client, other = first.test_client(), second.test_client()
    tenant, slot = gen_slot(client, ["a", "b"])
    put_slot(client, {"Authorization": f"Bearer {first.config['ADMIN_API_TOKEN']}"}, tenant, slot,
             policy="contextual", context=["referrer"])
    other.get(f"/v1/serve/{tenant}/{slot}?referrer_id=news")               # the second worker holds the slot
    for _ in range(300):                                                   # the first one learns: news → b
        document = client.get(f"/v1/serve/{tenant}/{slot}?referrer_id=news").get_json()
        if document["banner"]["id"] == "b":
            client.post("/v1/click", json={"token": document["token"]})
    sync(first)
    sync(second)
    served = [other.get(f"/v1/serve/{tenant}/{slot}?referrer_id=news").get_json()["banner"]["id"]
              for _ in range(200)]
    assert served.count("b") > 180


def test_stats_and_the_dashboard_show_the_policy_and_ctr_by_level(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    put_slot(client, admin_headers, tenant, slot, policy="contextual", context=["referrer"])
    for referrer in ["news"] * 30 + ["search"] * 30:
        document = client.get(f"/v1/serve/{tenant}/{slot}?referrer_id={referrer}").get_json()
        if (referrer, document["banner"]["id"]) in (("news", "a"), ("search", "b")):
            client.post("/v1/click", json={"token": document["token"]})
    sync(app)
    stats = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats", headers=admin_headers).get_json()
    assert stats["policy"] == "contextual"
    context = stats["context"]
    assert context["features"] == ["referrer"]
    assert context["levels"] == ["referrer=news", "referrer=search", "referrer=other"]
    news_a, news_b = context["by_banner"]["a"]["referrer=news"], context["by_banner"]["b"]["referrer=news"]
    assert news_a["ctr"] > news_b["ctr"] and news_a["low"] <= news_a["ctr"] <= news_a["high"]
    search_a, search_b = context["by_banner"]["a"]["referrer=search"], context["by_banner"]["b"]["referrer=search"]
    assert search_b["ctr"] > search_a["ctr"]
    thompson = gen_slot(client, ["a"], tenant=tenant, slot="plain")[1]
    plain = client.get(f"/v1/admin/tenants/{tenant}/slots/{thompson}/stats", headers=admin_headers).get_json()
    assert (plain["policy"], plain["context"]) == ("thompson", None)

    with app.app_context():
        user = gen_user(app)
    assert login(client, user).status_code == 302
    page = client.get(f"/admin/tenants/{tenant}/slots/{slot}/results").get_data(as_text=True)
    assert "contextual Thompson sampling" in page and 'id="context-table"' in page
    assert "referrer=search" in page
    edit = client.get(f"/admin/tenants/{tenant}/slots/{slot}/edit").get_data(as_text=True)
    assert '<option selected value="contextual">' in edit or 'value="contextual" selected' in edit
    response = client.post(f"/admin/tenants/{tenant}/slots/{slot}/edit", data={
        "csrf_token": csrf_token(edit), "slot_id": slot, "name": "Hero", "size": "728x250", "locations": "",
        "decay_half_life_hours": "", "policy": "contextual", "context": ["device", "referrer"]})
    assert response.status_code == 302
    with app.app_context():
        assert store.get_slot(app.extensions["cassandra"], tenant, slot)["context"] == ["referrer", "device"]
