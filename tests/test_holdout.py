"""The holdout through the server: the slot setting, sticky groups, the logged group and propensity, the lift
endpoint and its bad input."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.helpers import gen_slot, recent, sync
from webapp.storage import store


def _set_holdout(client, headers, tenant, slot, percent):
    return client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Hero", "holdout_percent": percent},
                      headers=headers)


def test_holdout_visitors_are_sticky_uniform_and_logged(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b", "c", "d"])
    response = _set_holdout(client, admin_headers, tenant, slot, 50)
    assert response.status_code == 200 and response.get_json()["holdout_percent"] == 50
    served = {}
    for i in range(120):
        document = client.get(f"/v1/serve/{tenant}/{slot}?customer_id=c{i}").get_json()
        served[f"c{i}"] = document
    groups = {c: d["group"] for c, d in served.items()}
    assert 20 < list(groups.values()).count("holdout") < 100           # 50 % of 120, far from both ends
    for i in range(0, 120, 7):                                         # the same visitor again: same group
        assert client.get(f"/v1/serve/{tenant}/{slot}?customer_id=c{i}").get_json()["group"] == groups[f"c{i}"]
    for document in served.values():
        if document["group"] == "holdout":
            assert document["posterior"]["propensity"] == 0.25 and document["posterior"]["scope"] == "holdout"
    sync(app)
    with app.app_context():
        db = app.extensions["cassandra"]
        for customer in ("c0", "c1", "c2", "c3"):
            row = store.get_impression(db, tenant, slot, uuid.UUID(served[customer]["impression_id"]))
            assert row["serving_group"] == groups[customer]
            assert row["holdout_share"] == 0.5
            if groups[customer] == "holdout":
                assert row["propensity"] == 0.25


def test_the_lift_endpoint_counts_each_group_and_its_clicks(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    assert _set_holdout(client, admin_headers, tenant, slot, 30).status_code == 200
    clicks = {"policy": 0, "holdout": 0}
    impressions = {"policy": 0, "holdout": 0}
    for i in range(150):
        document = client.get(f"/v1/serve/{tenant}/{slot}?location=Pune").get_json()
        impressions[document["group"]] += 1
        if i % 3 == 0:
            assert client.post("/v1/click", json={"token": document["token"]}).status_code == 200
            clicks[document["group"]] += 1
    sync(app)
    since, until = (t.isoformat() for t in recent())
    response = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/lift",
                          query_string={"since": since, "until": until}, headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    for group in ("policy", "holdout"):
        assert report["groups"][group]["impressions"] == impressions[group]
        assert report["groups"][group]["clicks"] == clicks[group]
        assert report["groups"][group]["units"] == impressions[group]           # anonymous: one serve, one unit
    assert report["holdout_percent"] == 30
    assert report["sample_ratio"]["expected"]["holdout"] == pytest.approx(150 * 0.3)
    assert report["daily"] and sum(d["impressions"]["holdout"] for d in report["daily"]) == impressions["holdout"]
    elsewhere = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/lift?location=Delhi",
                           headers=admin_headers).get_json()
    assert elsewhere["groups"]["policy"]["impressions"] == 0


@pytest.mark.parametrize("percent", [-1, 51, 12.5, "10", True])
def test_a_holdout_outside_0_to_50_is_a_400_and_changes_nothing(app, client, admin_headers, percent):
    tenant, slot = gen_slot(client, ["a"])
    assert _set_holdout(client, admin_headers, tenant, slot, 10).status_code == 200
    response = _set_holdout(client, admin_headers, tenant, slot, percent)
    assert response.status_code == 400 and "holdout_percent" in response.get_json()["error"]
    with app.app_context():
        assert store.get_slot(app.extensions["cassandra"], tenant, slot)["holdout_percent"] == 10
    again = _set_holdout(client, admin_headers, tenant, slot, None).get_json()     # null: back to 0
    assert again["holdout_percent"] == 0


@pytest.mark.parametrize("query", [{"since": "2026-12-02", "until": "2026-12-01"}, {"since": "yesterday"},
                                   {"since": "2026-01-01", "until": "2026-03-01"}, {"until": "0001-01-01T00:00+01:00"}])
def test_a_bad_lift_window_is_a_400(client, admin_headers, query):
    tenant, slot = gen_slot(client, ["a"])
    response = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/lift", query_string=query, headers=admin_headers)
    assert response.status_code == 400
    assert "error" in response.get_json()


def test_the_evaluation_endpoint_serves_the_latest_run_and_refuses_an_unknown_candidate(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    url = f"/v1/admin/tenants/{tenant}/slots/{slot}/evaluation"
    assert client.get(url, headers=admin_headers).get_json() == {
        "tenant": tenant, "slot": slot, "run_at": None, "since": None, "until": None, "candidates": []}
    old, new = (dt.datetime(2026, 11, d, tzinfo=dt.UTC) for d in (1, 2))
    rows = [{"tenant_id": tenant, "slot_id": slot, "run_at": run_at, "candidate": candidate, "estimator": estimator,
             "estimate": value, "low": value / 2, "high": value * 2, "effective_sample_size": 900.0, "events": 1000,
             "left_out": 3, "zero_support": 0.0, "observed_ctr": 0.03, "since": run_at - dt.timedelta(days=7),
             "until": run_at, "flags": set()}
            for run_at, value in ((old, 0.01), (new, 0.04)) for candidate in ("uniform", "always:a")
            for estimator in ("ips", "snips", "dr")]
    with app.app_context():
        store.put_evaluation_results(app.extensions["cassandra"], rows)
    latest = client.get(url, headers=admin_headers).get_json()
    assert dt.datetime.fromisoformat(latest["run_at"]) == new
    assert {c["candidate"] for c in latest["candidates"]} == {"uniform", "always:a"}
    assert all(c["estimates"]["dr"]["estimate"] == 0.04 for c in latest["candidates"])
    one = client.get(url, query_string={"candidate": "uniform"}, headers=admin_headers).get_json()
    assert [c["candidate"] for c in one["candidates"]] == ["uniform"]
    refused = client.get(url, query_string={"candidate": "greedy"}, headers=admin_headers)
    assert refused.status_code == 400 and "unknown candidate" in refused.get_json()["error"]
    assert client.get(url, query_string={"candidate": "always:zzz"}, headers=admin_headers).status_code == 404
