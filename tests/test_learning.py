"""Learning through the HTTP path on the real Cassandra: simulated visitors click with known CTRs."""

from __future__ import annotations

from collections import Counter

import numpy as np

from tests.helpers import COUNTS, gen_slot, sync


def simulate(app, client, tenant, slot, true_ctr: dict[str, dict[str, float]], rounds: int,
             rng: np.random.Generator, sync_every: int = 50) -> dict[str, Counter]:
    """Serve `rounds` visitors per location; each clicks with its banner's true CTR there."""
    served: dict[str, Counter] = {location: Counter() for location in true_ctr}
    for i in range(rounds):
        for location, ctrs in true_ctr.items():
            body = client.get(f"/v1/serve/{tenant}/{slot}?location={location}").get_json()
            banner = body["banner"]["id"]
            served[location][banner] += 1
            if rng.random() < ctrs[banner]:
                assert client.post("/v1/click", json={"token": body["token"]}).status_code == 200
        if (i + 1) % sync_every == 0:
            sync(app)
    return served


def test_a_clearly_better_banner_ends_up_with_most_traffic(app, client):
    tenant, slot = gen_slot(client, ["low", "mid", "best"])
    sync(app)
    rng = np.random.default_rng(101)
    ctr = {"low": 0.03, "mid": 0.08, "best": 0.25}
    simulate(app, client, tenant, slot, {"pune": ctr}, rounds=600, rng=rng)
    late = simulate(app, client, tenant, slot, {"pune": ctr}, rounds=300, rng=rng)["pune"]
    assert late["best"] / 300 > 0.8, late


def test_different_cities_learn_different_winners(app, client):
    tenant, slot = gen_slot(client, ["a", "b"])
    sync(app)
    rng = np.random.default_rng(202)
    cities = {"mumbai": {"a": 0.30, "b": 0.05}, "delhi": {"a": 0.05, "b": 0.30}}
    simulate(app, client, tenant, slot, cities, rounds=300, rng=rng)
    late = simulate(app, client, tenant, slot, cities, rounds=150, rng=rng)
    assert late["mumbai"]["a"] / 150 > 0.8, late
    assert late["delhi"]["b"] / 150 > 0.8, late


def test_unknown_or_missing_location_uses_the_slot_wide_posterior(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    sync(app)
    rng = np.random.default_rng(303)
    simulate(app, client, tenant, slot, {"chennai": {"a": 0.4, "b": 0.02}}, rounds=200, rng=rng)
    sync(app)
    stats = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats", headers=admin_headers).get_json()
    slot_wide = {b["id"]: (b["alpha"], b["beta"]) for b in stats["banners"]}
    for query in ("", "?location=Atlantis", "?location=%20"):
        body = client.get(f"/v1/serve/{tenant}/{slot}{query}", headers=COUNTS).get_json()
        assert body["posterior"]["scope"] == "slot"
        assert (body["posterior"]["alpha"], body["posterior"]["beta"]) == slot_wide[body["banner"]["id"]]
    known = client.get(f"/v1/serve/{tenant}/{slot}?location=CHENNAI").get_json()
    assert known["posterior"]["scope"] == "location"
    # The slot-wide posterior learned that "a" is better, so a stranger is sent to "a" too.
    strangers = Counter(client.get(f"/v1/serve/{tenant}/{slot}?location=Atlantis").get_json()["banner"]["id"]
                        for _ in range(100))
    assert strangers["a"] > 90, strangers


def test_stats_report_counts_posterior_and_probability_of_best(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    sync(app)
    rng = np.random.default_rng(404)
    served = simulate(app, client, tenant, slot, {"kolkata": {"a": 0.5, "b": 0.0}}, rounds=200, rng=rng)
    sync(app)
    stats = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats?location=Kolkata",
                       headers=admin_headers).get_json()
    assert stats["location"] == "kolkata"
    by_id = {b["id"]: b for b in stats["banners"]}
    assert by_id["a"]["impressions"] == served["kolkata"]["a"]
    assert by_id["b"]["impressions"] == served["kolkata"]["b"]
    for b in by_id.values():
        assert b["alpha"] == 1 + b["clicks"]
        assert b["beta"] == 1 + b["impressions"] - b["clicks"]
        assert b["ctr"] == (b["clicks"] / b["impressions"] if b["impressions"] else 0.0)
    assert by_id["b"]["clicks"] == 0 and by_id["a"]["clicks"] > 50
    assert by_id["a"]["p_best"] > 0.99
    assert abs(sum(b["p_best"] for b in by_id.values()) - 1) < 1e-3     # each rounded to 4 places


def _put_prior(app, tenant, slot, location, banner, alpha, beta):
    app.extensions["cassandra"].execute(
        "INSERT INTO {ks}.priors (tenant_id, slot_id, location, banner_id, alpha, beta, source, computed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'test', toTimestamp(now()))", (tenant, slot, location, banner, alpha, beta))


def test_priors_fall_back_from_location_to_slot_to_uniform(app, client):
    tenant, slot = gen_slot(client, ["only"])
    sync(app)
    assert client.get(f"/v1/serve/{tenant}/{slot}", headers=COUNTS).get_json()["posterior"] | {"propensity": 1} == {
        "scope": "slot", "alpha": 1.0, "beta": 1.0, "prior": "uniform", "propensity": 1}

    _put_prior(app, tenant, slot, "", "only", 3.0, 97.0)            # slot-wide prior
    _put_prior(app, tenant, slot, "surat", "only", 8.0, 92.0)       # a city's prior
    sync(app)
    slot_wide = client.get(f"/v1/serve/{tenant}/{slot}?location=Nagpur", headers=COUNTS).get_json()["posterior"]
    # Slot-wide: the slot prior plus the one impression served above.
    assert (slot_wide["scope"], slot_wide["prior"], slot_wide["alpha"], slot_wide["beta"]) == (
        "slot", "slot", 3.0, 97.0 + 1)
    city = client.get(f"/v1/serve/{tenant}/{slot}?location=Surat", headers=COUNTS).get_json()
    assert (city["posterior"]["scope"], city["posterior"]["prior"]) == ("location", "location")
    assert (city["posterior"]["alpha"], city["posterior"]["beta"]) == (8.0, 92.0)

    client.post("/v1/click", json={"token": city["token"]})
    sync(app)
    # Surat has its prior plus its one impression and click; slot-wide has the slot prior plus all traffic.
    after = client.get(f"/v1/serve/{tenant}/{slot}?location=Surat", headers=COUNTS).get_json()["posterior"]
    assert (after["alpha"], after["beta"]) == (9.0, 92.0)
    slot_after = client.get(f"/v1/serve/{tenant}/{slot}", headers=COUNTS).get_json()["posterior"]
    assert (slot_after["alpha"], slot_after["beta"]) == (3.0 + 1, 97.0 + 3 - 1)
