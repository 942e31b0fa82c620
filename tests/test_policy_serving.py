"""A slot's policy through the server: the management API, the impression row, and the replay of spool
records written before the policy columns."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from tests.helpers import COUNTS, gen_slot, sync
from webapp.serving import runtime
from webapp.storage import store


def test_a_served_impression_logs_its_policy_and_state(app, client):
    tenant, slot = gen_slot(client, ["a", "b"])
    served = client.get(f"/v1/serve/{tenant}/{slot}?location=Pune", headers=COUNTS).get_json()
    assert served["policy"] == "thompson"
    sync(app)
    with app.app_context():
        row = store.get_impression(app.extensions["cassandra"], tenant, slot,
                                   uuid.UUID(served["impression_id"]))
    assert row["policy"] == "thompson"
    posterior = served["posterior"]
    assert json.loads(row["policy_state"]) == {"scope": posterior["scope"], "alpha": posterior["alpha"],
                                               "beta": posterior["beta"], "prior": posterior["prior"]}
    assert (row["posterior_scope"], row["alpha"], row["beta"], row["prior_source"]) == (
        posterior["scope"], posterior["alpha"], posterior["beta"], posterior["prior"])
    assert round(row["propensity"], 4) == posterior["propensity"]


def test_a_spool_record_from_before_the_policy_columns_replays(app, client):
    tenant, slot = gen_slot(client, ["a"])
    served_at = dt.datetime.now(dt.UTC)
    impression_id = uuid.uuid1()
    old = {"tenant_id": tenant, "slot_id": slot, "impression_id": impression_id.hex,
           "served_at": served_at.isoformat(), "banner_id": "a", "location": "pune", "customer_id": "c-1",
           "referrer_id": "", "posterior_scope": "location", "alpha": 3.0, "beta": 41.0, "prior_source": "slot",
           "propensity": 1.0, "kind": "impression"}          # Impression.to_record before cql/005
    with app.app_context():
        rt = runtime.get(app)
        (rt.spool.directory / "seg-0-old.jsonl").write_text(json.dumps(old) + "\n")   # no process holds it
        assert rt.events.replay_orphans() == 1
        sync(app)
        db = app.extensions["cassandra"]
        row = store.get_impression(db, tenant, slot, impression_id)
        counts = {r["banner_id"]: r["impressions"] for r in store.slot_counts(db, tenant, slot, "pune")}
    assert (row["banner_id"], row["customer_id"], row["alpha"], row["beta"], row["propensity"]) == (
        "a", "c-1", 3.0, 41.0, 1.0)
    assert row["policy"] == "thompson"
    assert json.loads(row["policy_state"]) == {"scope": "location", "alpha": 3.0, "beta": 41.0, "prior": "slot"}
    assert counts == {"a": 1}


def test_a_slot_names_its_policy_and_an_unknown_one_is_a_400(client, admin_headers):
    tenant, slot = gen_slot(client, ["a"])
    url = f"/v1/admin/tenants/{tenant}/slots/{slot}"
    assert client.put(url, json={"name": "Hero"}, headers=admin_headers).get_json()["policy"] == "thompson"
    response = client.put(url, json={"name": "Hero", "policy": "linucb"}, headers=admin_headers)
    assert response.status_code == 400
    assert "policy must be one of contextual, thompson" in response.get_json()["error"]
    response = client.put(url, json={"name": "Hero", "policy": "thompson"}, headers=admin_headers)
    assert response.status_code == 200 and response.get_json()["policy"] == "thompson"
    assert client.put(url, json={"name": "Hero", "policy": None}, headers=admin_headers).get_json()["policy"] == \
        "thompson"


def test_an_unknown_stored_policy_still_serves_with_the_default(app, client):
    tenant, slot = gen_slot(client, ["a"])
    with app.app_context():
        app.extensions["cassandra"].execute("UPDATE {ks}.slots SET policy = ? WHERE tenant_id = ? AND slot_id = ?",
                                            ("from-a-newer-server", tenant, slot))
    sync(app)
    response = client.get(f"/v1/serve/{tenant}/{slot}")
    assert response.status_code == 200 and response.get_json()["policy"] == "thompson"
