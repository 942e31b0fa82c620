"""The dashboard's holdout setting, the "What it earned" panel on the results page, and the offline evaluation
page, through the Flask test client on the real Cassandra."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.helpers import csrf_token, gen_slot, gen_user, login, make_config, sync
from webapp import create_app
from webapp.storage import store


@pytest.fixture(scope="module")
def platform_user(keyspace):
    app = create_app(make_config(keyspace))
    yield gen_user(app)
    app.extensions["cassandra"].shutdown()


@pytest.fixture
def admin(client, platform_user):
    assert login(client, platform_user).status_code == 302
    return client


def _edit(client, tenant, slot, holdout):
    path = f"/admin/tenants/{tenant}/slots/{slot}/edit"
    token = csrf_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "slot_id": slot, "name": "Hero", "size": "728x250",
                                   "locations": "", "decay_half_life_hours": "", "holdout_percent": holdout})


def test_the_slot_form_sets_the_holdout_and_refuses_a_bad_one(app, admin):
    tenant, slot = gen_slot(admin, ["a", "b"])
    db = app.extensions["cassandra"]
    assert _edit(admin, tenant, slot, "20").status_code == 302
    assert store.get_slot(db, tenant, slot)["holdout_percent"] == 20
    page = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/edit").get_data(as_text=True)
    assert re.search(r'name="holdout_percent"[^>]*value="20"', page)
    for bad in ("60", "-5", "ten"):
        response = _edit(admin, tenant, slot, bad)
        assert response.status_code == 200 and "holdout_percent must be" in response.get_data(as_text=True)
    assert store.get_slot(db, tenant, slot)["holdout_percent"] == 20


def test_results_show_what_it_earned_with_the_lift_and_extra_clicks(app, admin):
    tenant, slot = gen_slot(admin, ["a", "b"])
    assert _edit(admin, tenant, slot, "50").status_code == 302
    for i in range(120):
        document = admin.get(f"/v1/serve/{tenant}/{slot}").get_json()
        # the bandit's visitors click every second serve, the holdout's every fourth
        if i % (2 if document["group"] == "policy" else 4) == 0:
            assert admin.post("/v1/click", json={"token": document["token"]}).status_code == 200
    sync(app)
    page = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results").get_data(as_text=True)
    assert 'id="earned-lift"' in page and 'id="chart-lift"' in page
    lifted = re.search(r"CTR was\s*<strong>([+-][0-9.]+)%</strong>", page)
    assert lifted and float(lifted[1]) > 0
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert today in page or (dt.date.fromisoformat(today) + dt.timedelta(days=1)).isoformat() in page


def test_results_without_a_holdout_say_how_to_get_one(admin):
    tenant, slot = gen_slot(admin, ["a"])
    page = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/results").get_data(as_text=True)
    assert 'id="earned-off"' in page and 'id="earned-lift"' not in page


def test_the_evaluation_page_shows_the_latest_run(app, admin):
    tenant, slot = gen_slot(admin, ["a", "b"])
    empty = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/evaluation").get_data(as_text=True)
    assert 'id="no-evaluation"' in empty
    run_at = dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
    candidates = (("uniform", 0.0312, 4800.0, 0.0, set()),
                  ("always:b", 0.0455, 40.0, 0.3, {"zero_support", "small_ess"}))
    rows = [{"tenant_id": tenant, "slot_id": slot, "run_at": run_at, "candidate": candidate, "estimator": estimator,
             "estimate": value, "low": value - 0.01, "high": value + 0.01, "effective_sample_size": ess,
             "events": 5000, "left_out": 7, "zero_support": support, "observed_ctr": 0.031,
             "since": run_at - dt.timedelta(days=7), "until": run_at, "flags": flags}
            for candidate, value, ess, support, flags in candidates for estimator in ("ips", "snips", "dr")]
    store.put_evaluation_results(app.extensions["cassandra"], rows)
    page = admin.get(f"/admin/tenants/{tenant}/slots/{slot}/evaluation").get_data(as_text=True)
    assert "<code>uniform</code>" in page and "3.12%" in page and "4.55%" in page
    assert "30% of its choices were never" in page and "too few comparable impressions" in page
    assert "7 left out" in page
