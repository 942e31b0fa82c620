"""Serving, clicks and their dedupe on the bounded event log (cql/006), and click tokens signed before it."""

from __future__ import annotations

import datetime as dt
import uuid

from eventlog.partitions import partition_of
from tests.helpers import gen_slot, recent, sync
from webapp.serving import runtime
from webapp.serving.tokens import ClickClaim
from webapp.storage import store
from webapp.storage.events import Click


def counters(app, tenant: str, slot: str) -> list[tuple]:
    sync(app)
    db = app.extensions["cassandra"]
    return sorted((r["banner_id"], r["impressions"], r["clicks"]) for r in store.slot_counts(db, tenant, slot, ""))


def test_a_click_lands_in_its_impressions_partition_and_counts_once(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}?location=Pune").get_json()
    impression_id = uuid.UUID(served["impression_id"])
    assert [client.post("/v1/click", json={"token": served["token"]}).get_json()["status"] for _ in range(3)] == [
        "recorded", "duplicate", "duplicate"]
    assert counters(app, tenant, slot) == [("a", 1, 1)]
    db = app.extensions["cassandra"]
    bucket, shard = partition_of(impression_id)
    for table in ("impression_log", "click_log"):       # both rows in the partition the ID names, once
        rows = db.execute(f"SELECT impression_id FROM {{ks}}.{table} WHERE tenant_id = ? AND slot_id = ? "
                          "AND bucket = ? AND shard = ?", (tenant, slot, bucket, shard))
        assert [r["impression_id"] for r in rows] == [impression_id], table
    assert store.logged_impression_ids(db, tenant, slot, *recent()) == [impression_id]
    assert store.logged_ids(db, "clicks", tenant, slot, *recent()) == [impression_id]


def _old_token(app, served: dict, tenant: str, slot: str, banner: str, location: str) -> str:
    """The token serving signed before 006 for this impression: with the impression's UTC day."""
    impression_id = uuid.UUID(served["impression_id"])
    claim = ClickClaim(impression_id, tenant, slot, banner, location, dt.datetime.now(dt.UTC).date())
    token = runtime.get(app).tokens.sign(claim)
    assert runtime.get(app).tokens.verify(token) == claim          # the old format still verifies, with its day
    return token


def test_a_token_signed_before_the_upgrade_is_counted_once(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}?location=Pune").get_json()
    with app.app_context():
        token = _old_token(app, served, tenant, slot, "a", "pune")
    assert [client.post("/v1/click", json={"token": token}).get_json()["status"] for _ in range(2)] == [
        "recorded", "duplicate"]
    assert client.post("/v1/click", json={"token": served["token"]}).get_json()["status"] == "duplicate"
    assert counters(app, tenant, slot) == [("a", 1, 1)]
    row = store.get_click(app.extensions["cassandra"], tenant, slot, uuid.UUID(served["impression_id"]))
    assert (row["banner_id"], row["location"]) == ("a", "pune")


def test_a_click_recorded_in_the_old_table_is_a_duplicate_after_the_upgrade(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}?location=Pune").get_json()
    impression_id = uuid.UUID(served["impression_id"])
    db = app.extensions["cassandra"]
    # the click as a worker of before 006 recorded it (and counted it) in the day-partitioned table
    db.execute("INSERT INTO {ks}.clicks (tenant_id, slot_id, day, impression_id, clicked_at, banner_id, location, "
               "customer_id, referrer_id, valid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (tenant, slot, dt.datetime.now(dt.UTC).date(), impression_id, dt.datetime.now(dt.UTC), "a", "pune",
                "", "", True))
    before = counters(app, tenant, slot)
    with app.app_context():
        token = _old_token(app, served, tenant, slot, "a", "pune")
    assert client.post("/v1/click", json={"token": token}).get_json()["status"] == "duplicate"
    assert counters(app, tenant, slot) == before == [("a", 1, 0)]
    assert store.get_click(db, tenant, slot, impression_id) is None


def test_a_spooled_click_of_before_the_upgrade_keeps_its_day():
    impression_id = uuid.uuid1()
    record = {"kind": "click", "tenant_id": "t", "slot_id": "s", "day": "2026-12-03",
              "impression_id": impression_id.hex, "clicked_at": "2026-12-03T10:00:00+00:00", "banner_id": "a",
              "location": "", "customer_id": "", "referrer_id": "", "valid": True, "invalid_reason": None,
              "user_agent": "", "ip": ""}
    click = Click.from_record(record)
    assert click.legacy_day == dt.date(2026, 12, 3)
    assert Click.from_record(click.to_record()) == click
    fresh = Click("t", "s", impression_id, dt.datetime(2026, 12, 4, tzinfo=dt.UTC), "a", "", "", "")
    assert "day" not in fresh.to_record() and Click.from_record(fresh.to_record()) == fresh
    assert fresh.row()[2:5] == (*partition_of(impression_id), impression_id)


def _click_of(served: dict, tenant: str, slot: str) -> Click:
    return Click(tenant_id=tenant, slot_id=slot, impression_id=uuid.UUID(served["impression_id"]),
                 clicked_at=dt.datetime.now(dt.UTC), banner_id="a", location="pune", customer_id="",
                 referrer_id="")


def test_a_click_whose_write_a_retry_finished_is_this_requests_and_counts_once(app, client):
    """A coordinator dies with the click's proposal accepted; the driver's retry on another node completes it
    and answers "not applied" with the row. The row carries this request's id: recorded, counted once."""
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}?location=Pune").get_json()
    click = _click_of(served, tenant, slot)
    db = app.extensions["cassandra"]
    assert db.execute(store.INSERT_CLICK, click.row())[0]["[applied]"]     # the first attempt's write
    events = runtime.get(app).events
    assert events.record_click(click) is True                               # the retry finds its own row
    assert events.record_click(_click_of(served, tenant, slot)) is False     # another request: a duplicate
    assert counters(app, tenant, slot) == [("a", 1, 1)]
    assert store.get_click(db, tenant, slot, click.impression_id)["request_id"] == click.request_id


def test_a_replayed_click_found_written_is_not_counted_again(app, client):
    """A dead process's spooled click found in the log may have been counted by that process: not again."""
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    served = client.get(f"/v1/serve/{tenant}/{slot}?location=Pune").get_json()
    assert client.post("/v1/click", json={"token": served["token"]}).get_json()["status"] == "recorded"
    db = app.extensions["cassandra"]
    row = store.get_click(db, tenant, slot, uuid.UUID(served["impression_id"]))
    replayed = Click(tenant_id=tenant, slot_id=slot, impression_id=row["impression_id"],
                     clicked_at=row["clicked_at"].replace(tzinfo=dt.UTC), banner_id="a", location="pune",
                     customer_id="", referrer_id="", request_id=row["request_id"])
    assert Click.from_record(replayed.to_record()) == replayed       # the id survives the spool
    assert runtime.get(app).events._replay([replayed.to_record()]) == 0
    assert counters(app, tenant, slot) == [("a", 1, 1)]
