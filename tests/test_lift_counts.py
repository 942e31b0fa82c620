"""The lift report from counters (lift_counts, cql/014): the same answer as the event log on the same traffic,
clicks counted once whatever the spool replays, the window's bad input. Through the app, on the real Cassandra."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from evaluation import lift
from eventlog import counting
from tests.helpers import INSTANT_CLICKS, gen_slot, sync
from webapp.management.lift import window
from webapp.serving import runtime
from webapp.serving.tokens import ClickClaim, ClickTokens
from webapp.storage import store
from webapp.storage.events import Click
from webapp.web.errors import InvalidInput


def _set_holdout(client, headers, tenant, slot, percent):
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Hero", "holdout_percent": percent},
                          headers=headers)
    assert response.status_code == 200, response.get_json()


def _lift(client, headers, tenant, slot, **query):
    response = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/lift", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _flat(document: dict, prefix: str = "") -> dict:
    """A nested document as {path: value}, for pytest.approx (which takes no nested dicts)."""
    flat = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _from_log(app, tenant, slot, since, until, location=""):
    """The lift report computed from the event log of [since, until) by the counting rules (rule 8): what the
    counters must give; and the visitor-level report (evaluation.lift.lift_report) of the same rows."""
    with app.app_context():
        db = app.extensions["cassandra"]
        rows = store.group_impressions(db, tenant, slot, since, until - dt.timedelta(microseconds=1))
        clicked = store.clicked_impressions(db, tenant, slot, since, until - dt.timedelta(microseconds=1))
    if location:
        rows = [r for r in rows if r["location"] == location]
    rows.sort(key=lambda r: r["impression_id"].time)
    cells = lift.cells_of((r["serving_group"] or lift.POLICY, counting.lift_shard(r["customer_id"], r["impression_id"]),
                           1, int(r["impression_id"] in clicked), counting.share_micros(r["holdout_share"]))
                          for r in rows)
    visitors = lift.lift_report(lift.units_of((r["customer_id"] or "", r["serving_group"] or lift.POLICY,
                                               r["holdout_share"] or 0.0, r["impression_id"] in clicked)
                                              for r in rows))
    return lift.counted_report(cells, counting.LIFT_SHARDS), visitors, len(rows)


def test_lift_from_counters_equals_lift_from_the_log(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b", "c"], click_filter=INSTANT_CLICKS)
    _set_holdout(client, admin_headers, tenant, slot, 30)
    served = 0
    for i in range(240):
        # 40 returning visitors (6 serves each, half in Pune) and every fourth serve anonymous, in Delhi
        query = {"location": "Delhi"} if i % 4 == 3 else {"customer_id": f"v{i % 40}",
                                                           "location": "Pune" if i % 2 else "Mumbai"}
        document = client.get(f"/v1/serve/{tenant}/{slot}", query_string=query).get_json()
        served += 1
        # the policy group's visitors click more often than the holdout's: a lift to find
        if i % (3 if document["group"] == "policy" else 5) == 0:
            assert client.post("/v1/click", json={"token": document["token"]}).status_code == 200
    _set_holdout(client, admin_headers, tenant, slot, 10)       # the split changes within the window
    sync(app)                                                   # (the cache re-reads the slot)
    for i in range(60):
        document = client.get(f"/v1/serve/{tenant}/{slot}", query_string={"location": "Pune"}).get_json()
        served += 1
        if i % 4 == 0:
            assert client.post("/v1/click", json={"token": document["token"]}).status_code == 200
    sync(app)

    now = dt.datetime.now(dt.UTC)
    report = _lift(client, admin_headers, tenant, slot, since=(now - dt.timedelta(hours=1)).isoformat())
    since, until = dt.datetime.fromisoformat(report["since"]), dt.datetime.fromisoformat(report["until"])
    assert since.minute % 15 == 0 and until.minute % 15 == 0 and since.second == until.second == 0
    expected, visitors, logged = _from_log(app, tenant, slot, since, until)
    assert logged == served
    for key in ("groups", "lift", "extra_clicks", "sample_ratio"):
        assert _flat(report[key]) == pytest.approx(_flat(expected[key])), key
    assert report["groups"]["holdout"]["impressions"] > 0 and report["groups"]["policy"]["clicks"] > 0
    # the counts and point estimates are the visitor-level report's exactly; only the intervals and the SRM
    # statistic are taken over shards
    for group in ("policy", "holdout"):
        for field in ("impressions", "clicks", "ctr"):
            assert report["groups"][group][field] == pytest.approx(visitors["groups"][group][field])
    assert report["lift"]["estimate"] == pytest.approx(visitors["lift"]["estimate"])
    assert report["extra_clicks"]["estimate"] == pytest.approx(visitors["extra_clicks"]["estimate"])
    # 240 serves at 30 % and 60 at 10 %, each impression's own share
    assert report["sample_ratio"]["expected"]["holdout"] == pytest.approx(240 * 0.3 + 60 * 0.1)
    assert sum(d["impressions"]["holdout"] + d["impressions"]["policy"] for d in report["daily"]) == served

    pune = _lift(client, admin_headers, tenant, slot, since=report["since"], until=report["until"], location="pune")
    expected, _, logged = _from_log(app, tenant, slot, since, until, "pune")
    assert logged == 60 + 60
    for key in ("groups", "lift", "extra_clicks", "sample_ratio"):
        assert _flat(pune[key]) == pytest.approx(_flat(expected[key])), key


def test_a_click_is_counted_once_under_a_replayed_spool(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a"], click_filter=INSTANT_CLICKS)
    _set_holdout(client, admin_headers, tenant, slot, 50)
    visitor = next(f"v{i}" for i in range(100) if client.get(f"/v1/serve/{tenant}/{slot}?customer_id=v{i}")
                   .get_json()["group"] == "holdout")
    first = client.get(f"/v1/serve/{tenant}/{slot}?customer_id={visitor}").get_json()
    second = client.get(f"/v1/serve/{tenant}/{slot}?customer_id={visitor}").get_json()
    assert first["group"] == second["group"] == "holdout"
    assert client.post("/v1/click", json={"token": first["token"]}).get_json()["status"] == "recorded"
    sync(app)
    before = _lift(client, admin_headers, tenant, slot)["groups"]["holdout"]
    assert before["clicks"] == 1

    def record(document):
        """The spool record a process would have left for a click of ``document`` (accepted, not yet written)."""
        impression_id = uuid.UUID(document["impression_id"])
        return Click(tenant, slot, impression_id, dt.datetime.now(dt.UTC), document["banner"]["id"], "",
                     visitor, "", serving_group="holdout",
                     lift_shard=counting.lift_shard(visitor, impression_id)).to_record()

    with app.app_context():
        rt = runtime.get(app)
        # a dead process's spool: the first click again (already in Cassandra) and the second one (not yet)
        (rt.spool.directory / "seg-0-dead.jsonl").write_text(
            json.dumps(record(first)) + "\n" + json.dumps(record(second)) + "\n")
        assert rt.events.replay_orphans() == 1
        # and another copy of both, replayed later
        (rt.spool.directory / "seg-0-dead-again.jsonl").write_text(
            json.dumps(record(first)) + "\n" + json.dumps(record(second)) + "\n")
        assert rt.events.replay_orphans() == 0
    sync(app)
    after = _lift(client, admin_headers, tenant, slot)["groups"]["holdout"]
    assert after["clicks"] == 2 and after["impressions"] == before["impressions"]


def test_a_click_of_a_token_signed_before_lift_counts_counts_elsewhere_not_in_lift(app, client, admin_headers):
    """Such a click is logged and learned from, and left to the counter audit for lift_counts (never guessed)."""
    tenant, slot = gen_slot(client, ["a"], click_filter=INSTANT_CLICKS)
    document = client.get(f"/v1/serve/{tenant}/{slot}").get_json()
    with app.app_context():
        tokens: ClickTokens = runtime.get(app).tokens
        claim = tokens.verify(document["token"])
        assert claim.serving_group == "policy"
        assert claim.lift_shard == counting.lift_shard("", uuid.UUID(document["impression_id"]))
        old = tokens.sign(ClickClaim(claim.impression_id, tenant, slot, claim.banner_id, claim.location,
                                     ip_hash=claim.ip_hash, ua_hash=claim.ua_hash))    # the nine-field format
    assert client.post("/v1/click", json={"token": old}).get_json()["status"] == "recorded"
    sync(app)
    report = _lift(client, admin_headers, tenant, slot)
    assert report["groups"]["policy"] == {"units": 1, "impressions": 1, "clicks": 0, "ctr": 0.0}
    with app.app_context():
        counts = store.slot_counts(app.extensions["cassandra"], tenant, slot, "")
    assert [(r["impressions"], r["clicks"]) for r in counts] == [(1, 1)]


def test_the_window_is_widened_to_quarter_hours_and_said(client, admin_headers):
    tenant, slot = gen_slot(client, ["a"])
    report = _lift(client, admin_headers, tenant, slot, since="2026-12-01T10:07:30Z", until="2026-12-01T10:20:00+00:00")
    assert (report["since"], report["until"]) == ("2026-12-01T10:00:00+00:00", "2026-12-01T10:30:00+00:00")
    same = _lift(client, admin_headers, tenant, slot, since="2026-12-01T10:15:00Z", until="2026-12-01T10:15:00Z")
    assert (same["since"], same["until"]) == ("2026-12-01T10:15:00+00:00", "2026-12-01T10:30:00+00:00")
    day = _lift(client, admin_headers, tenant, slot, since="2026-12-01", until="2026-12-02")
    assert (day["since"], day["until"]) == ("2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00")
    assert day["groups"]["policy"]["impressions"] == 0 and day["daily"] == []


@pytest.mark.parametrize("query", [
    {"since": "2026-12-01T10:00:01Z", "until": "2026-12-01T10:00:00Z"},      # since after until, even by a second
    {"since": "2026-12-01T25:00"}, {"until": "12/01/2026"}, {"since": "1999-12-31T20:00:00Z"},
    {"until": "9999-12-31T23:59:59-14:00"}, {"since": "2026-11-01", "until": "2026-12-02T00:00:01Z"},
    {"since": "２０２６-１２-０１"}, {"since": "2026-12-01\x00"}])
def test_a_bad_window_is_a_400_json_error(client, admin_headers, query):
    tenant, slot = gen_slot(client, ["a"])
    response = client.get(f"/v1/admin/tenants/{tenant}/slots/{slot}/lift", query_string=query, headers=admin_headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]


def test_a_token_carries_the_group_and_shard_and_older_formats_still_verify():
    tokens = ClickTokens("secret", 3600)
    impression_id = uuid.uuid1()
    claim = ClickClaim(impression_id, "t", "s", "b", "pune", ip_hash="i", ua_hash="u", serving_group="holdout",
                       lift_shard=17)
    assert tokens.verify(tokens.sign(claim)) == claim
    nine = ClickClaim(impression_id, "t", "s", "b", "pune", ip_hash="i", ua_hash="u")
    assert tokens.verify(tokens.sign(nine)) == nine and nine.serving_group is None and nine.lift_shard is None
    five = ClickClaim(impression_id, "t", "s", "b", "pune")
    assert tokens.verify(tokens.sign(five)) == five


def test_a_window_widens_to_quarter_hours_and_defaults_to_the_last_week():
    utc = dt.UTC
    now = dt.datetime(2026, 12, 4, 19, 7, 12, tzinfo=utc)
    assert window(None, None, now) == (dt.datetime(2026, 11, 27, 19, 0, tzinfo=utc),
                                       dt.datetime(2026, 12, 4, 19, 15, tzinfo=utc))
    assert window("2026-12-01T05:30:00+05:30", "2026-12-01T00:45:00Z", now) == (
        dt.datetime(2026, 12, 1, 0, 0, tzinfo=utc), dt.datetime(2026, 12, 1, 0, 45, tzinfo=utc))
    with pytest.raises(InvalidInput, match="since must not be after until"):
        window("2026-12-01T00:45:00.000001Z", "2026-12-01T00:45:00Z", now)
    with pytest.raises(InvalidInput, match="at most 31 days"):
        window("2026-11-01T00:00:00Z", "2026-12-02T00:00:01Z", now)
