"""The change feed (cql/007_slot_changes.cql): a worker re-reads only the held slots named there since its last
read. A quiet held slot costs nothing but the feed's own read; a change through the API, a click counted by
another worker and new priors reach every worker holding the slot; a feed row that never came is made up for by
the safety re-read (CACHE_SAFETY_REFRESH_SECONDS). Reads are counted as in tests/test_working_set.py."""

from __future__ import annotations

import datetime as dt
import time

from tests.helpers import ADMIN_TOKEN, gen_slot
from tests.test_working_set import Requests
from webapp.serving import runtime
from webapp.storage import store

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NO_SAFETY = 3600.0          # a safety re-read this rare cannot be what delivered a change in these tests


def _runtime(app):
    with app.app_context():
        return runtime.get(app)


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _counts(cache, tenant: str, slot: str) -> dict:
    return cache.slot(tenant, slot).policy.statistics.counts.get("", {})


def test_configuration_writes_name_the_slot_in_the_feed(app, client):
    since = store.utcnow() - dt.timedelta(seconds=1)
    tenant, slot = gen_slot(client, ["a"])
    rows = [(r["tenant_id"], r["slot_id"], r["kind"]) for r in store.changed_slots(app.extensions["cassandra"], since)
            if r["tenant_id"] == tenant]
    assert (tenant, store.TENANT_WIDE, "tenant") in rows
    assert (tenant, slot, "slot") in rows and (tenant, slot, "banner") in rows


def test_an_idle_held_slot_costs_only_the_feed_read(app_factory):
    app = app_factory(CACHE_SAFETY_REFRESH_SECONDS=NO_SAFETY)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a", "b"])
    assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    cache = _runtime(app).cache
    cache.refresh()                         # takes in the feed rows of the slot's creation
    feed_reads = cache.stats["feed_reads"]
    with Requests(app) as sent:
        for _ in range(5):
            cache.refresh()
    assert cache.holds(tenant, slot)
    assert sent.mentioning(tenant) == 0                         # the held slot was not re-read
    assert sent.count == cache.stats["feed_reads"] - feed_reads  # every request was a read of the feed
    assert 5 <= sent.count <= 10                                # one partition a refresh (two across a window)
    assert cache.age() < 5.0                                    # and the slot counts as fresh: the feed said so


def test_a_configuration_change_through_the_api_reaches_a_worker_holding_the_slot(app_factory):
    worker = app_factory(BACKGROUND_THREADS=True, CACHE_SAFETY_REFRESH_SECONDS=NO_SAFETY)
    admin = app_factory().test_client()
    tenant, slot = gen_slot(admin, {"a": True, "b": True}, click_filter=None)
    serve = worker.test_client()
    assert serve.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    cache = _runtime(worker).cache
    assert {b.banner_id for b in cache.slot(tenant, slot).active} == {"a", "b"}
    assert cache.click_filter(tenant).max_clicks_per_ip != 7
    full = cache.stats["full_refreshes"]
    assert admin.put(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/a", headers=AUTH, json={
        "image_url": "https://cdn.example.com/a.png", "target_url": "https://shop.example.com/a",
        "active": False}).status_code == 200
    assert admin.put(f"/v1/admin/tenants/{tenant}", headers=AUTH, json={
        "name": "Renamed", "click_filter": {"max_clicks_per_ip": 7}}).status_code == 200
    _wait(lambda: {b.banner_id for b in cache.slot(tenant, slot).active} == {"b"}, "the paused banner to go")
    _wait(lambda: cache.click_filter(tenant).max_clicks_per_ip == 7, "the new click filter")
    assert cache.stats["full_refreshes"] == full            # the feed brought both, not the safety re-read
    answers = [serve.get(f"/v1/serve/{tenant}/{slot}").get_json()["banner"]["id"] for _ in range(20)]
    assert set(answers) == {"b"}


def test_a_click_counted_by_one_worker_reaches_another_through_the_feed(app_factory):
    a = app_factory()                       # flushes by hand
    b = app_factory(BACKGROUND_THREADS=True, CACHE_SAFETY_REFRESH_SECONDS=NO_SAFETY)
    client_a, client_b = a.test_client(), b.test_client()
    tenant, slot = gen_slot(client_a, ["a", "b"])
    assert client_b.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    cache_b = _runtime(b).cache
    served = client_a.get(f"/v1/serve/{tenant}/{slot}").get_json()
    assert client_a.post("/v1/click", json={"token": served["token"]}).get_json()["status"] == "recorded"
    writer = _runtime(a).events
    writer.drain()
    assert writer.stats["change_notes"] >= 1
    # (B's own first serve counts an impression too: the click is what B can only have learned from A.)
    _wait(lambda: _counts(cache_b, tenant, slot).get(served["banner"]["id"], (0, 0))[1] == 1, "worker B to learn")
    assert cache_b.stats["full_refreshes"] == 0


def test_counts_written_without_a_feed_row_are_picked_up_by_the_safety_reread(app_factory):
    app = app_factory(CACHE_SAFETY_REFRESH_SECONDS=2.0)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a", "b"])
    assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    cache = _runtime(app).cache
    cache.refresh()
    db = app.extensions["cassandra"]
    # A flush whose feed row was lost: the counters change, the feed says nothing.
    for batch in store.counter_batches(db, {(tenant, slot, "", "a"): [9, 4, 0]}, {}).values():
        db.session().execute(batch)
    refreshes = 0
    deadline = time.monotonic() + 60
    while _counts(cache, tenant, slot).get("a") != (9, 4):
        assert time.monotonic() < deadline, "the safety re-read never came"
        full = cache.stats["full_refreshes"]
        cache.refresh()
        refreshes += 1
        if _counts(cache, tenant, slot).get("a") == (9, 4):
            assert cache.stats["full_refreshes"] == full + 1        # a safety re-read found it, not the feed
        time.sleep(0.1)
    assert refreshes >= 1


def test_a_decaying_slots_first_load_is_bounded_by_the_load_timeout(app_factory):
    app = app_factory(SLOT_LOAD_TIMEOUT_SECONDS=1.5)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    assert client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", headers=AUTH,
                      json={"name": "Hero", "decay_half_life_hours": 1}).status_code == 200
    timeouts: list[float | None] = []
    session = app.extensions["cassandra"].session()

    def seen(future) -> None:
        if tenant.encode() in list(getattr(future.query, "values", None) or []):
            timeouts.append(future.timeout)
    session.add_request_init_listener(seen)
    try:
        assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    finally:
        session.remove_request_init_listener(seen)
    # Four partitions of the slot, then its traffic_counts days (the decayed counts): each bounded.
    assert len(timeouts) >= 5
    assert all(t is not None and 0 < t <= 1.5 for t in timeouts), timeouts


def test_a_feed_read_covers_each_window_from_its_start_once():
    at = dt.datetime(2026, 12, 4, 12, 0, 3, 500000, tzinfo=dt.UTC)
    assert store.change_bucket(at) == dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)
    one = store.change_reads(at, at + dt.timedelta(seconds=1))            # within one window: one partition
    assert [params for _, params in one] == [(dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC), at)]
    two = store.change_reads(at, at + dt.timedelta(seconds=2))            # across a window's end: two
    assert [params[0].second for _, params in two] == [0, 5] and all(params[1] == at for _, params in two)
