"""A worker's posterior cache follows its working set: a slot is read on its first serve, only held slots are
re-read, idle and surplus slots are dropped, and a held slot keeps serving when Cassandra cannot answer.
Reads are counted with the driver's request listener on the app's own session (every request it sends)."""

from __future__ import annotations

import contextlib
import time
import uuid

from tests.helpers import ADMIN_TOKEN, free_port, gen_slot, sync
from webapp.serving import runtime
from webapp.web import metrics

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Requests:
    """Every request the app's Cassandra session sends while counting; with the bound values of each."""

    def __init__(self, app) -> None:
        self.session = app.extensions["cassandra"].session()
        self.values: list[list[bytes]] = []

    def _seen(self, future) -> None:
        self.values.append(list(getattr(future.query, "values", None) or []))

    def __enter__(self) -> Requests:
        self.session.add_request_init_listener(self._seen)
        return self

    def __exit__(self, *exc) -> None:
        self.session.remove_request_init_listener(self._seen)

    @property
    def count(self) -> int:
        return len(self.values)

    def mentioning(self, text: str) -> int:
        """Requests with ``text`` among their bound values."""
        return sum(text.encode() in values for values in self.values)


def _cache(app):
    with app.app_context():
        return runtime.get(app).cache


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_slot_created_after_the_worker_started_serves_at_once(app, client):
    first, _ = gen_slot(client, ["a"])
    assert client.get(f"/v1/serve/{first}/hero").status_code == 200       # the worker runs, holding one slot
    tenant, slot = gen_slot(client, ["new"])
    response = client.get(f"/v1/serve/{tenant}/{slot}")                   # no refresh in between
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["banner"]["id"] == "new"


def test_an_idle_worker_reads_nothing(app_factory):
    app = app_factory(BACKGROUND_THREADS=True, CACHE_REFRESH_SECONDS=0.05)
    cache = _cache(app)
    with Requests(app) as sent:
        start = cache.refreshes
        _wait(lambda: cache.refreshes >= start + 10, "ten background refreshes")
    assert cache.held == 0
    assert sent.count == 0


def test_a_full_refresh_reads_the_held_slots_only_by_partition(app, client):
    served, slot = gen_slot(client, ["a", "b"])
    unserved, _ = gen_slot(client, ["a", "b"])
    assert client.get(f"/v1/serve/{served}/{slot}").status_code == 200
    cache = _cache(app)
    with Requests(app) as sent:
        for _ in range(3):
            cache.refresh(full=True)        # the safety re-read (tests/test_change_feed.py: the feed's refresh)
    # Per refresh: the tenant row, then the slot row, banners, counters, priors and context counts of the one
    # held slot.
    assert sent.count == 3 * 6
    assert sent.mentioning(served) == 3 * 6
    assert sent.mentioning(unserved) == 0


def test_a_tenants_held_slots_share_one_read_of_their_slot_rows(app, client):
    tenant, _ = gen_slot(client, ["a"], slot="one")
    gen_slot(client, ["a"], tenant=tenant, slot="two")
    gen_slot(client, ["a"], tenant=tenant, slot="three")           # stored, never served
    for slot in ("one", "two"):
        assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    with Requests(app) as sent:
        _cache(app).refresh(full=True)
    # The tenant row, one read of the slots partition for both, then banners, counters, priors and context
    # counts of each.
    assert sent.count == 1 + 1 + 2 * 4
    assert sent.mentioning("three") == 0


def test_an_unchanged_slot_keeps_its_policy_and_a_click_replaces_it(app, client):
    tenant, slot = gen_slot(client, ["a", "b"])
    served = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    cache = _cache(app)
    before = cache.slot(tenant, slot).policy
    cache.refresh()
    assert cache.slot(tenant, slot).policy is before            # same rows: nothing rebuilt
    assert client.post("/v1/click", json={"token": served["token"]}).get_json()["status"] == "recorded"
    sync(app)
    after = cache.slot(tenant, slot)
    assert after.policy is not before
    assert after.policy.statistics.counts[""][served["banner"]["id"]] == (1, 1)


def test_an_unknown_slot_is_404_and_not_read_again_at_once(app, client):
    tenant, _ = gen_slot(client, ["a"])
    assert client.get(f"/v1/serve/{tenant}/hero").status_code == 200
    with Requests(app) as sent:
        first = client.get(f"/v1/serve/{tenant}/later")
        assert first.status_code == 404 and "unknown tenant/slot" in first.get_json()["error"]
        read_once = sent.count
        assert client.get(f"/v1/serve/{tenant}/later").status_code == 404
        stranger = f"nobody{uuid.uuid4().hex[:8]}"
        for n in range(5):                  # one read tells that the tenant does not exist, for all its slots
            assert client.get(f"/v1/serve/{stranger}/s{n}").status_code == 404
    assert read_once == 5                   # the slot's partitions (its tenant is held)
    assert sent.count == read_once + 6      # nothing for the repeat; the stranger's tenant row and slot once
    # Created now, it serves within about a second (the remembered 404 expires).
    client.put(f"/v1/admin/tenants/{tenant}/slots/later", json={"name": "Later"}, headers=AUTH)
    client.put(f"/v1/admin/tenants/{tenant}/slots/later/banners/x", headers=AUTH, json={
        "image_url": "https://cdn.example.com/x.png", "target_url": "https://shop.example.com/x"})
    _wait(lambda: client.get(f"/v1/serve/{tenant}/later").status_code == 200, "the new slot to serve", 10)


def test_idle_slots_are_dropped_and_load_again(app_factory):
    app = app_factory(SLOT_IDLE_SECONDS=0.3)
    client = app.test_client()
    tenant, slot = gen_slot(client, ["a"])
    assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    cache = _cache(app)
    assert cache.holds(tenant, slot)
    with app.app_context():
        metrics.observe_runtime(runtime.get(app))
    assert "banner_bandit_cached_slots 1.0" in client.get("/metrics").get_data(as_text=True)
    time.sleep(0.5)
    with Requests(app) as sent:
        cache.refresh()
    assert not cache.holds(tenant, slot) and cache.held == 0
    assert sent.mentioning(slot) == 0 and cache.stats["evicted_idle"] == 1
    with app.app_context():
        metrics.observe_runtime(runtime.get(app))
    assert "banner_bandit_cached_slots 0.0" in client.get("/metrics").get_data(as_text=True)
    assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    assert cache.holds(tenant, slot) and cache.stats["loads"] == 2


def test_the_cache_holds_at_most_slot_cache_max_least_recently_served_out(app_factory):
    app = app_factory(SLOT_CACHE_MAX=2)
    client = app.test_client()
    tenant, _ = gen_slot(client, ["x"], slot="a")
    for slot in ("b", "c"):
        gen_slot(client, ["x"], tenant=tenant, slot=slot)
    for slot in ("a", "b", "a", "c"):
        assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
    cache = _cache(app)
    assert [cache.holds(tenant, slot) for slot in ("a", "b", "c")] == [True, False, True]
    assert cache.held == 2 and cache.stats["evicted_capacity"] == 1


def test_a_held_slot_serves_from_memory_when_its_keyspace_vanishes(app_factory):
    keyspace = f"bb_vanish_{uuid.uuid4().hex[:10]}"
    app = app_factory(CASSANDRA_KEYSPACE=keyspace, STALE_AFTER_SECONDS=0.2)
    db = app.extensions["cassandra"]
    db.apply_schema()
    try:
        client = app.test_client()
        tenant, slot = gen_slot(client, ["a", "b"])
        assert client.get(f"/v1/serve/{tenant}/{slot}").status_code == 200
        cache = _cache(app)
        db.drop_keyspace()
        db.session().cluster.control_connection.wait_for_schema_agreement()
        failed = cache.stats["failed_reads"]
        time.sleep(0.3)
        cache.refresh()                         # every read fails: the slot keeps its state
        assert cache.stats["failed_reads"] > failed and cache.holds(tenant, slot)
        answers = [client.get(f"/v1/serve/{tenant}/{slot}") for _ in range(20)]
        assert [r.status_code for r in answers] == [200] * 20
        assert {r.get_json()["banner"]["id"] for r in answers} <= {"a", "b"}
        assert all(float(r.headers["X-Banner-Bandit-Stale"]) > 0.2 for r in answers)
        cold = client.get(f"/v1/serve/{tenant}/other")        # not held, cannot be read: 503, not 404/500
        assert cold.status_code == 503 and int(cold.headers["Retry-After"]) >= 1
        assert "cannot be loaded" in cold.get_json()["error"]
    finally:
        with contextlib.suppress(Exception):
            db.drop_keyspace()


def test_a_cold_slot_is_503_with_retry_after_when_cassandra_is_unreachable(app_factory):
    app = app_factory(CASSANDRA_PORT=free_port(), SLOT_LOAD_TIMEOUT_SECONDS=0.3)
    client = app.test_client()
    response = client.get("/v1/serve/acme/hero")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "cannot be loaded" in response.get_json()["error"]
    assert _cache(app).held == 0 and _cache(app).stats["unavailable"] == 1
