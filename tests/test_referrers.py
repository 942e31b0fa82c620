"""The referrer breakdown and the visitor estimate: counted by the event writer (referrer_counts, visitor
sketches), shown on the results page, the CSV and the stats API, on the real Cassandra."""

from __future__ import annotations

import csv
import io
import re

import pytest

from eventlog import counting
from tests.helpers import ADMIN_TOKEN, INSTANT_CLICKS, gen_slot, gen_user, login, make_config, sync
from webapp import create_app
from webapp.management import referrers
from webapp.storage import store

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def platform_user(keyspace):
    app = create_app(make_config(keyspace))
    yield gen_user(app)
    app.extensions["cassandra"].shutdown()


def serve_and_click(client, tenant: str, slot: str, referrer: str, customer: str, click: bool) -> str:
    query = {"referrer_id": referrer, "customer_id": customer} if referrer else {"customer_id": customer}
    served = client.get(f"/v1/serve/{tenant}/{slot}", query_string=query).get_json()
    if click:   # the served click URL, as a visitor's browser follows it
        path = served["click_url"].removeprefix("http://localhost")
        assert client.get(path).status_code == 302
    return served["banner"]["id"]


def traffic(client, tenant: str, slot: str) -> dict[tuple[str, str], list[int]]:
    """newsletter: 12 serves, every third clicked; search: 6, every second clicked; none: 4, one clicked.
    Returns (referrer, banner) → [impressions, clicks] as served."""
    sent: dict[tuple[str, str], list[int]] = {}
    plan = [("newsletter", 12, 3), ("search", 6, 2), ("", 4, 4)]
    for referrer, serves, every in plan:
        for i in range(serves):
            click = i % every == 0
            banner = serve_and_click(client, tenant, slot, referrer, f"c{i % 5}", click)
            counts = sent.setdefault((referrer, banner), [0, 0])
            counts[0] += 1
            counts[1] += click
    return sent


def test_the_writer_counts_referrers_and_the_reports_show_them(app, client, platform_user):
    tenant, slot = gen_slot(client, ["a", "b"])
    sync(app)
    sent = traffic(client, tenant, slot)
    sync(app)
    db = app.extensions["cassandra"]

    # The API: per referrer and banner, as sent; top referrers first.
    stats = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats?days=1", headers=AUTH)
    assert stats.status_code == 200, stats.get_data(as_text=True)
    audience = stats.get_json()["audience"]
    assert [r["referrer"] for r in audience["referrers"]] == ["newsletter", "search", ""]
    got = {(r["referrer"], b["id"]): [b["impressions"], b["clicks"]] for r in audience["referrers"]
           for b in r["banners"]}
    assert got == sent
    newsletter = audience["referrers"][0]
    assert (newsletter["impressions"], newsletter["clicks"]) == (12, 4)
    assert newsletter["ctr"] == pytest.approx(4 / 12, abs=1e-6)
    # Five customer IDs (c0..c4): the estimate of so few is exact.
    assert audience["visitors"]["unique"] == 5
    assert audience["visitors"]["clicks_per_visitor"] == pytest.approx((4 + 3 + 1) / 5)

    # The results page: the referrer table shows the clicks sent.
    assert login(client, platform_user).status_code == 302
    html = client.get(f"/admin/tenants/{tenant}/slots/{slot}/results?days=1").get_data(as_text=True)
    row = re.search(r'<tr data-referrer="newsletter">(.*?)</tr>', html, re.S)[1]
    assert re.findall(r'class="num ref-(?:impressions|clicks)">(\d+)<', row) == ["12", "4"]
    assert 'id="unique-visitors">5<' in html

    # The CSV: referrer rows after the per-location table.
    text = client.get(f"/admin/tenants/{tenant}/slots/{slot}/results.csv?days=1").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    referred = {(r["referrer"], r["banner"]): [int(r["impressions"]), int(r["clicks"])] for r in rows
                if r["scope"] == "referrer" and r["banner"]}
    assert referred == sent
    assert {r["referrer"] for r in rows if r["scope"] != "referrer"} == {""}

    # The counters agree with the counting rules applied to the log.
    log = db.execute("SELECT referrer_id, banner_id FROM {ks}.impression_log WHERE tenant_id = ? AND slot_id = ? "
                     "ALLOW FILTERING", (tenant, slot))
    assert sum(1 for _ in log) == sum(v[0] for v in sent.values())
    day = store.utcnow().date()
    counted = {(r["referrer_id"], r["banner_id"]): [r["impressions"], r["clicks"]]
               for r in store.referrer_rows(db, tenant, slot, [day])}
    assert counted == sent


def test_a_flagged_click_is_not_a_referrer_click(app, client):
    tenant, slot = gen_slot(client, ["a"], click_filter={**INSTANT_CLICKS, "min_delay_seconds": 60})
    sync(app)
    serve_and_click(client, tenant, slot, "newsletter", "c1", click=True)      # too fast: flagged
    sync(app)
    audience = referrers.referrer_report(app.extensions["cassandra"], tenant, slot, 1, ["a"])
    assert [(r["referrer"], r["impressions"], r["clicks"]) for r in audience["referrers"]] == [("newsletter", 1, 0)]
    assert counting.referrer_counts(counting.click_counts(False)) == (0, 0)


def test_unique_visitors_are_estimated_within_the_sketch_error(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    for i in range(1500):          # 600 distinct visitors, most seen more than once
        client.get(f"/v1/serve/{tenant}/{slot}", query_string={"customer_id": f"visitor-{i % 600}"})
    sync(app)
    unique = referrers.referrer_report(app.extensions["cassandra"], tenant, slot, 1, ["a"])["visitors"]["unique"]
    assert abs(unique - 600) <= 4 * referrers.SKETCH_ERROR * 600, unique


def test_many_referrers_are_cut_to_the_top_and_the_rest_summed(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    for i in range(referrers.TOP_REFERRERS + 3):
        for _ in range(2 if i < referrers.TOP_REFERRERS else 1):
            client.get(f"/v1/serve/{tenant}/{slot}", query_string={"referrer_id": f"site-{i:02d}"})
    sync(app)
    audience = referrers.referrer_report(app.extensions["cassandra"], tenant, slot, 1, ["a"])
    assert len(audience["referrers"]) == referrers.TOP_REFERRERS + 1
    assert audience["referrer_count"] == referrers.TOP_REFERRERS + 3
    other = audience["referrers"][-1]
    assert (other["referrer"], other["referrers"], other["impressions"]) == (None, 3, 3)


@pytest.mark.parametrize("days", ["0", "91", "x", "1.5", "-1"])
def test_bad_days_are_a_clear_400(app, client, days):
    tenant, slot = gen_slot(client, ["a"])
    response = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/stats?days={days}", headers=AUTH)
    assert response.status_code == 400
    assert "days must be a whole number from 1 to 90" in response.get_json()["error"]
