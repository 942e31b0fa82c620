"""The event log's shared rules (eventlog/): the time inside timeuuids and the counting rules. Pure: no
services."""

from __future__ import annotations

import datetime as dt
import uuid
import zlib

from cassandra.util import datetime_from_uuid1, uuid_from_time

from eventlog import counting, timeuuids

UTC = dt.UTC


def test_the_time_inside_a_timeuuid_is_the_drivers_to_the_microsecond():
    for at in (dt.datetime(2026, 11, 30, 12, 14, 59, 500000, tzinfo=UTC), dt.datetime(1999, 1, 1, tzinfo=UTC)):
        value = uuid_from_time(at)
        assert timeuuids.uuid_datetime(value) == at
        assert timeuuids.uuid_seconds(value) == at.timestamp()
    minted = timeuuids.timeuuid()
    assert minted.version == 1
    assert abs(timeuuids.uuid_datetime(minted) - datetime_from_uuid1(minted).replace(tzinfo=UTC)) \
        <= dt.timedelta(microseconds=1)


def test_an_id_without_time_falls_back():
    clicked_at = dt.datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert timeuuids.event_time(uuid.uuid4(), clicked_at) == clicked_at


def test_an_impression_counts_under_its_location_and_slot_wide():
    served_at = dt.datetime(2026, 11, 30, 12, 14, 59, tzinfo=UTC)
    rows = counting.counter_rows(counting.Event("impression", "t", "s", "pune", "b", served_at))
    bucket = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert {(r.table, r.key, r.values) for r in rows} == {
        ("banner_counts", ("t", "s", "pune", "b"), (1, 0, 0)),
        ("banner_counts", ("t", "s", "", "b"), (1, 0, 0)),
        ("traffic_counts", ("t", "s", bucket.date(), "pune", bucket, "b"), (1, 0)),
        ("traffic_counts", ("t", "s", bucket.date(), "", bucket, "b"), (1, 0)),
        ("referrer_counts", ("t", "s", bucket.date(), "", "b"), (1, 0)),       # once, not per location
        ("lift_counts", ("t", "s", "pune", bucket.date(), bucket, "policy", 0), (1, 0, 0)),
        ("lift_counts", ("t", "s", "", bucket.date(), bucket, "policy", 0), (1, 0, 0)),
    }


def test_a_slot_wide_event_counts_once():
    at = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    rows = counting.counter_rows(counting.Event("click", "t", "s", "", "b", at))
    assert [(r.table, r.key, r.values) for r in rows] == [
        ("banner_counts", ("t", "s", "", "b"), (0, 1, 0)),
        ("traffic_counts", ("t", "s", at.date(), "", at, "b"), (0, 1)),
        ("referrer_counts", ("t", "s", at.date(), "", "b"), (0, 1)),
        ("lift_counts", ("t", "s", "", at.date(), at, "policy", 0), (0, 1, 0))]


def test_an_event_counts_under_its_own_referrer_and_a_flagged_click_not_at_all():
    at = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    impression = counting.Event("impression", "t", "s", "pune", "b", at, referrer_id="newsletter")
    valid = counting.Event("click", "t", "s", "pune", "b", at, referrer_id="newsletter")
    flagged = counting.Event("click", "t", "s", "pune", "b", at, valid=False, referrer_id="newsletter")
    referred = [[(r.key, r.values) for r in counting.counter_rows(e) if r.table == "referrer_counts"]
                for e in (impression, valid, flagged)]
    key = ("t", "s", at.date(), "newsletter", "b")
    assert referred == [[(key, (1, 0))], [(key, (0, 1))], []]


def test_a_flagged_click_counts_only_as_filtered_under_its_reason():
    at = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    for reason, counted_as in (("too_fast", "too_fast"), (None, counting.INVALID_REASON)):
        rows = counting.counter_rows(counting.Event("click", "t", "s", "pune", "b", at, valid=False,
                                                    invalid_reason=reason))
        assert {(r.table, r.key, r.values) for r in rows} == {
            ("banner_counts", ("t", "s", "pune", "b"), (0, 0, 1)),
            ("banner_counts", ("t", "s", "", "b"), (0, 0, 1)),
            ("filtered_click_reasons", ("t", "s", counted_as), (1,)),
        }


def test_imported_history_counts_nowhere():
    at = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert counting.is_imported(counting.IMPORT_SCOPE) and not counting.is_imported(None)
    for kind in ("impression", "click"):
        assert counting.counter_rows(counting.Event(kind, "t", "s", "pune", "b", at, imported=True)) == []


def test_a_click_counts_in_its_impressions_quarter_hour():
    served_at = dt.datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)
    clicked_at = served_at + dt.timedelta(minutes=1)
    counted_at = counting.click_served_at(uuid_from_time(served_at), clicked_at)
    assert counting.traffic_bucket(counted_at) == dt.datetime(2026, 11, 30, 23, 45, tzinfo=UTC)


def test_lift_counts_a_holdout_impression_with_its_share_and_its_valid_click_only():
    """Rule 8: group and visitor shard of the impression, P(holdout) in millionths, filtered clicks nowhere."""
    at = dt.datetime(2026, 11, 30, 18, 44, 59, tzinfo=UTC)
    bucket = dt.datetime(2026, 11, 30, 18, 30, tzinfo=UTC)
    impression_id = uuid.uuid1()
    shard = counting.lift_shard("", impression_id)
    assert shard == zlib.crc32(str(impression_id).encode()) % counting.LIFT_SHARDS
    common = {"serving_group": "holdout", "lift_shard": shard}
    events = (counting.Event("impression", "t", "s", "pune", "b", at, holdout_share=0.07, **common),
              counting.Event("click", "t", "s", "pune", "b", at, **common),
              counting.Event("click", "t", "s", "pune", "b", at, valid=False, **common),
              counting.Event("click", "t", "s", "pune", "b", at, serving_group=None))
    lifted = [sorted((r.key, r.values) for r in counting.counter_rows(e) if r.table == "lift_counts")
              for e in events]
    key = ("t", "s", "pune", at.date(), bucket, "holdout", shard)
    slot_wide = ("t", "s", "", at.date(), bucket, "holdout", shard)
    assert lifted == [sorted([(key, (1, 0, 70_000)), (slot_wide, (1, 0, 70_000))]),
                      sorted([(key, (0, 1, 0)), (slot_wide, (0, 1, 0))]), [], []]


def test_a_visitor_keeps_one_lift_shard_and_shares_are_exact_in_millionths():
    assert counting.lift_shard("visitor-7", uuid.uuid1()) == counting.lift_shard("visitor-7", uuid.uuid1())
    assert {counting.lift_shard(f"v{i}", uuid.uuid1()) for i in range(2000)} == set(range(counting.LIFT_SHARDS))
    assert [counting.share_micros(p / 100) for p in range(51)] == [p * 10_000 for p in range(51)]
    assert counting.share_micros(None) == 0
