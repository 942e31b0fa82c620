"""A per-slot decay half-life: serving and the stats API learn from time-decayed traffic."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bandits.discounted import time_decay_weights
from tests.helpers import gen_slot, sync
from webapp.learning.decay import Rows, decayed_counts
from webapp.management import services
from webapp.serving import runtime
from webapp.storage import store
from webapp.storage.events import traffic_bucket

NOW = dt.datetime(2026, 11, 23, 12, 7, tzinfo=dt.UTC)


def test_weights_halve_every_half_life_and_a_filling_bucket_weighs_one():
    assert time_decay_weights([0.0, 6.0, 12.0, 60.0, -0.1], 6.0).tolist() == pytest.approx(
        [1.0, 0.5, 0.25, 2.0 ** -10, 1.0])
    with pytest.raises(ValueError):
        time_decay_weights([1.0], 0.0)


def _rows(*entries):
    return Rows.from_rows([{"location": loc, "bucket": bucket.replace(tzinfo=None), "banner_id": banner,
                            "impressions": n, "clicks": c} for loc, bucket, banner, n, c in entries])


def test_decayed_counts_weight_each_bucket_by_the_age_of_its_middle():
    bucket = traffic_bucket(NOW) - dt.timedelta(hours=6)          # its middle is 6 h - 7.5 min + 7 min old
    age = (NOW - (bucket + dt.timedelta(minutes=7.5))).total_seconds() / 3600
    counts = decayed_counts([_rows(("", bucket, "a", 1000, 100), ("pune", bucket, "a", 10, 1),
                                   ("", traffic_bucket(NOW), "b", 40, 4))], NOW, half_life_hours=3.0)
    w = 2.0 ** (-age / 3.0)
    assert counts[""]["a"] == pytest.approx((1000 * w, 100 * w))
    assert counts["pune"]["a"] == pytest.approx((10 * w, 1 * w))
    assert counts[""]["b"] == pytest.approx((40.0, 4.0))          # the bucket still filling weighs 1


def test_buckets_beyond_the_horizon_are_left_out():
    old = traffic_bucket(NOW) - dt.timedelta(hours=8 * 2 + 1)      # more than 8 half-lives of 2 h
    assert decayed_counts([_rows(("", old, "a", 10**9, 10**8))], NOW, 2.0) == {}


def _put_slot(client, admin_headers, tenant, slot, body):
    return client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Hero", **body},
                      headers=admin_headers)


def test_put_slot_sets_keeps_and_clears_the_half_life(client, admin_headers):
    tenant, slot = gen_slot(client, ["a"])
    response = _put_slot(client, admin_headers, tenant, slot, {"decay_half_life_hours": 24})
    assert response.status_code == 200 and response.get_json()["decay_half_life_hours"] == 24.0
    response = client.patch(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Renamed"},
                            headers=admin_headers)                               # PATCH, left out: kept
    assert response.get_json()["decay_half_life_hours"] == 24.0
    response = _put_slot(client, admin_headers, tenant, slot, {})                # PUT, left out: the default
    assert response.get_json()["decay_half_life_hours"] is None
    response = _put_slot(client, admin_headers, tenant, slot, {"decay_half_life_hours": 24})
    response = _put_slot(client, admin_headers, tenant, slot, {"decay_half_life_hours": None})
    assert response.status_code == 200 and response.get_json()["decay_half_life_hours"] is None


@pytest.mark.parametrize("value", [0, 0.1, -1, 721, 10**400, "24", True, [24], {"h": 1}])
def test_a_bad_half_life_is_a_400_and_changes_nothing(app, client, admin_headers, value):
    tenant, slot = gen_slot(client, ["a"])
    assert _put_slot(client, admin_headers, tenant, slot, {"decay_half_life_hours": 6}).status_code == 200
    response = _put_slot(client, admin_headers, tenant, slot, {"name": "Renamed", "decay_half_life_hours": value})
    assert response.status_code == 400
    assert "decay_half_life_hours" in response.get_json()["error"]
    with app.app_context():
        slot_doc = services.get_slot(runtime.get(app).db, tenant, slot)
    assert slot_doc["name"] == "Hero" and slot_doc["decay_half_life_hours"] == 6.0


def _write_traffic(app, tenant, slot, when, banner, impressions, clicks, location=""):
    """Counts as the event writer would have flushed them for impressions served at ``when``."""
    with app.app_context():
        db = runtime.get(app).db
        deltas = {(tenant, slot, where, traffic_bucket(when), banner): [impressions, clicks]
                  for where in {location, ""}}
        for batch in store.traffic_batches(db, deltas).values():
            db.session().execute(batch)
        counter = {(tenant, slot, where, banner): [impressions, clicks, 0] for where in {location, ""}}
        for batch in store.counter_batches(db, counter, {}).values():
            db.session().execute(batch)


def _stats(client, admin_headers, tenant, slot, location=""):
    query = f"?location={location}" if location else ""
    response = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats{query}", headers=admin_headers)
    assert response.status_code == 200
    return response.get_json(), {b["id"]: b for b in response.get_json()["banners"]}


def test_old_evidence_fades_from_the_posterior_that_serving_and_the_stats_share(app, client, admin_headers):
    """Banner a won two days ago, banner b wins now. Without decay a's 2,000 old impressions keep it ahead;
    with a 6 h half-life they weigh 2^-8 of their count, b leads, and serving samples what the API reports."""
    tenant, slot = gen_slot(client, ["a", "b"])
    now = dt.datetime.now(dt.UTC)
    _write_traffic(app, tenant, slot, now - dt.timedelta(hours=48), "a", 2000, 200)
    _write_traffic(app, tenant, slot, now - dt.timedelta(hours=48), "b", 2000, 20)
    _write_traffic(app, tenant, slot, now, "a", 200, 2, location="pune")
    _write_traffic(app, tenant, slot, now, "b", 200, 20, location="pune")

    report, plain = _stats(client, admin_headers, tenant, slot)
    assert report["decay_half_life_hours"] is None
    assert plain["a"]["alpha"] == 1 + 202 and plain["a"]["weighted_impressions"] == 2200
    assert plain["a"]["p_best"] > 0.99

    assert _put_slot(client, admin_headers, tenant, slot, {"decay_half_life_hours": 6}).status_code == 200
    report, decayed = _stats(client, admin_headers, tenant, slot)
    assert report["decay_half_life_hours"] == 6.0
    assert decayed["a"]["impressions"] == 2200 and decayed["a"]["clicks"] == 202     # cumulative, unchanged
    assert decayed["a"]["weighted_impressions"] == pytest.approx(200 + 2000 * 2 ** -8, rel=0.02)
    assert decayed["b"]["weighted_clicks"] == pytest.approx(20 + 20 * 2 ** -8, rel=0.02)
    assert decayed["b"]["p_best"] > 0.99

    sync(app)
    for location, rows in (("", decayed), ("pune", _stats(client, admin_headers, tenant, slot, "pune")[1])):
        seen = {}
        for _ in range(40):
            served = client.get(f"/v1/serve/{tenant}/{slot}?location={location}", headers=admin_headers).get_json()
            seen[served["banner"]["id"]] = served["posterior"]
        for banner, posterior in seen.items():     # weights move by ~1e-5 per second at a 6 h half-life
            assert posterior["alpha"] == pytest.approx(rows[banner]["alpha"], rel=1e-4)
            assert posterior["beta"] == pytest.approx(rows[banner]["beta"], rel=1e-4)
        assert "b" in seen


def test_a_click_reaches_a_decaying_slot_at_the_next_refresh(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a"])
    assert _put_slot(client, admin_headers, tenant, slot, {"decay_half_life_hours": 24}).status_code == 200
    sync(app)
    first = client.get(f"/v1/serve/{tenant}/{slot}", headers=admin_headers).get_json()
    assert (first["posterior"]["alpha"], first["posterior"]["beta"]) == (1.0, 1.0)
    assert client.post("/v1/click", json={"token": first["token"]}).get_json()["status"] == "recorded"
    sync(app)          # writes the impression and the counters, re-reads the cache
    sync(app)
    again = client.get(f"/v1/serve/{tenant}/{slot}", headers=admin_headers).get_json()["posterior"]
    # One click, weighed by the age of its quarter hour's middle: at most 7.5 min, 2^(-7.5/60/24) > 0.996.
    assert 1.996 < again["alpha"] <= 2.0
    assert again["beta"] == pytest.approx(1.0, abs=1e-9)      # 1 + w·1 impression − w·1 click


def test_rows_without_traffic_give_no_counts():
    assert decayed_counts([_rows()], NOW, 1.0) == {}
    assert np.asarray(time_decay_weights([], 1.0)).size == 0
