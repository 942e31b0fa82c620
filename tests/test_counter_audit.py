"""The counter audit (spark_jobs/counter_audit.py): its transforms on small DataFrames, then the job on a local
Spark session against the test Cassandra, with events the service itself served, clicked and counted."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from cassandra.util import uuid_from_time
from pyspark.sql import functions as F

from eventlog import counting
from spark_jobs import counter_audit
from tests.helpers import INSTANT_CLICKS, gen_slot, sync
from tests.spark_support import job_config, local_spark
from webapp.storage.database import Database

DAY = dt.date(2026, 11, 30)
IMPRESSION_SCHEMA = ("tenant_id string, slot_id string, day date, impression_id string, served_at timestamp, "
                     "location string, banner_id string, posterior_scope string, context_cell string, "
                     "referrer_id string")
CLICK_SCHEMA = ("tenant_id string, slot_id string, day date, impression_id string, clicked_at timestamp, "
                "location string, banner_id string, valid boolean, invalid_reason string, referrer_id string")
HUMAN = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def at(hour: int, minute: int, second: float = 0.0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute), dt.UTC) + dt.timedelta(seconds=second)


def impression_id(served_at: dt.datetime) -> str:
    return str(uuid_from_time(served_at))


@pytest.fixture(scope="module")
def config(keyspace):
    return job_config(CASSANDRA_KEYSPACE=keyspace)


@pytest.fixture(scope="module")
def spark(config):
    session = local_spark(CASSANDRA_KEYSPACE=config["CASSANDRA_KEYSPACE"])
    yield session
    session.stop()


@pytest.fixture(scope="module")
def db(config):
    database = Database(config)
    yield database
    database.shutdown()


# -- transforms -------------------------------------------------------------------------------------------------

# (impression time, location, banner, posterior_scope, click: None | (valid, reason)). One click's impression
# row is missing (still spooled when the audit ran): the writer counts a click when its own row is written.
LOG = [
    (at(12, 14, 59.5), "mumbai", "a", "location", (True, None)),      # clicked at 12:20, counts at 12:00
    (at(12, 30), None, "a", "slot", None),                             # no location: the slot-wide row only
    (at(12, 31), "delhi", "b", "import", (True, None)),                # imported history: in no counter
    (at(12, 32), "delhi", "b", "location", (False, "too_fast")),       # flagged: filtered, not learned
    (at(12, 33), "delhi", "b", "location", (False, None)),             # flagged before reasons were stored
    (at(12, 34), "chennai", "a", None, None),                          # a row from before posterior_scope
]
ORPHAN_CLICK = (at(13, 0, 1.0), "pune", "a")
# The context cells of LOG's impressions served by a contextual policy (by index); the others have none.
CELLS = {0: "referrer=news", 3: "referrer=news", 5: "referrer=search"}


def referrer_of(banner: str) -> str | None:
    return {"a": "newsletter", "b": None}[banner]        # None: a row from before referrers, or none given


def log_frames(spark):
    impressions, clicks = [], []
    for index, (served_at, location, banner, scope, click) in enumerate(LOG):
        key = ("t", "s", DAY, impression_id(served_at))
        impressions.append((*key, served_at, location, banner, scope, CELLS.get(index), referrer_of(banner)))
        if click is not None:
            clicks.append((*key, served_at + dt.timedelta(minutes=6), location, banner, *click, referrer_of(banner)))
    served_at, location, banner = ORPHAN_CLICK
    clicks.append(("t", "s", DAY, impression_id(served_at), served_at + dt.timedelta(minutes=20), location, banner,
                   True, None, None))
    return (spark.createDataFrame(impressions, IMPRESSION_SCHEMA), spark.createDataFrame(clicks, CLICK_SCHEMA))


def rows(frame, columns) -> set[tuple]:
    return {tuple(r[c] for c in columns) for r in frame.collect()}


def test_expected_counts_follow_the_event_writers_rules(spark):
    live_impressions, live_clicks = counter_audit.live_events(*log_frames(spark))
    banner_counts = counter_audit.expected_banner_counts(live_impressions, live_clicks)
    assert rows(banner_counts, counter_audit.BANNER_COUNTS_KEY + counter_audit.BANNER_COUNTS_COLUMNS) == {
        ("t", "s", "mumbai", "a", 1, 1, 0),
        ("t", "s", "chennai", "a", 1, 0, 0),
        ("t", "s", "pune", "a", 0, 1, 0),
        ("t", "s", "", "a", 3, 2, 0),          # mumbai, no location, chennai; mumbai's and pune's clicks
        ("t", "s", "delhi", "b", 2, 0, 2),
        ("t", "s", "", "b", 2, 0, 2),
    }
    assert rows(counter_audit.expected_reasons(live_clicks), counter_audit.REASONS_KEY + ["clicks"]) == {
        ("t", "s", "too_fast", 1), ("t", "s", "invalid", 1)}
    traffic = counter_audit.expected_traffic(live_impressions, live_clicks).withColumn(
        "bucket", F.date_format("bucket", "HH:mm"))
    assert rows(traffic, counter_audit.TRAFFIC_KEY + counter_audit.TRAFFIC_COLUMNS) == {
        ("t", "s", DAY, "mumbai", "12:00", "a", 1, 1),
        ("t", "s", DAY, "", "12:00", "a", 1, 1),
        ("t", "s", DAY, "", "12:30", "a", 2, 0),       # no location and chennai
        ("t", "s", DAY, "chennai", "12:30", "a", 1, 0),
        ("t", "s", DAY, "delhi", "12:30", "b", 2, 0),  # flagged clicks are not traffic
        ("t", "s", DAY, "", "12:30", "b", 2, 0),
        ("t", "s", DAY, "pune", "13:00", "a", 0, 1),   # the impression's quarter hour, not the click's
        ("t", "s", DAY, "", "13:00", "a", 0, 1),
    }


def writer_rows(table: str) -> set[tuple]:
    """LOG's counter rows by eventlog.counting.counter_rows (the event writer's rules), summed per key."""
    events = []
    for index, (served_at, location, banner, scope, click) in enumerate(LOG):
        imported = counting.is_imported(scope)
        events.append(counting.Event("impression", "t", "s", location or counting.SLOT_WIDE, banner, served_at,
                                     imported=imported, cell=CELLS.get(index),
                                     referrer_id=referrer_of(banner) or ""))
        if click is not None:
            events.append(counting.Event("click", "t", "s", location or counting.SLOT_WIDE, banner,
                                         counting.click_served_at(uuid.UUID(impression_id(served_at)), served_at),
                                         valid=click[0], invalid_reason=click[1], imported=imported,
                                         cell=CELLS.get(index), referrer_id=referrer_of(banner) or ""))
    served_at, location, banner = ORPHAN_CLICK
    events.append(counting.Event("click", "t", "s", location, banner, served_at))
    sums: dict[tuple, list[int]] = {}
    for row in (row for event in events for row in counting.counter_rows(event) if row.table == table):
        total = sums.setdefault(row.key, [0] * len(row.values))
        for i, value in enumerate(row.values):
            total[i] += value
    return {(*key, *values) for key, values in sums.items()}


def test_the_audits_transforms_and_the_writers_counting_rules_agree(spark):
    live_impressions, live_clicks = counter_audit.live_events(*log_frames(spark))
    banner_counts = counter_audit.expected_banner_counts(live_impressions, live_clicks)
    assert rows(banner_counts, counter_audit.BANNER_COUNTS_KEY + counter_audit.BANNER_COUNTS_COLUMNS) == \
        writer_rows("banner_counts")
    assert rows(counter_audit.expected_reasons(live_clicks), counter_audit.REASONS_KEY + ["clicks"]) == \
        writer_rows("filtered_click_reasons")
    traffic = counter_audit.expected_traffic(live_impressions, live_clicks).withColumn(
        "bucket", F.unix_seconds("bucket"))      # collect() would give the machine's local wall time
    got = {(*r[:4], dt.datetime.fromtimestamp(r[4], dt.UTC), *r[5:])
           for r in rows(traffic, counter_audit.TRAFFIC_KEY + counter_audit.TRAFFIC_COLUMNS)}
    assert got == writer_rows("traffic_counts")
    assert len(got) == 8
    context = counter_audit.expected_context(live_impressions, live_clicks)
    assert rows(context, counter_audit.CONTEXT_KEY + counter_audit.CONTEXT_COLUMNS) == writer_rows("context_counts")
    # mumbai's valid click counts in its cell; delhi's flagged one does not
    assert writer_rows("context_counts") == {("t", "s", "referrer=news", "a", 1, 1),
                                             ("t", "s", "referrer=news", "b", 1, 0),
                                             ("t", "s", "referrer=search", "a", 1, 0)}
    referrers = rows(counter_audit.expected_referrers(live_impressions, live_clicks),
                     counter_audit.REFERRERS_KEY + counter_audit.REFERRERS_COLUMNS)
    assert referrers == writer_rows("referrer_counts") == {
        ("t", "s", DAY, "newsletter", "a", 3, 1),   # mumbai, no location, chennai; mumbai's click
        ("t", "s", DAY, "", "a", 0, 1),             # the orphan click names no referrer
        ("t", "s", DAY, "", "b", 2, 0),             # delhi's two live impressions; flagged clicks are not in it
    }


def test_a_clicks_quarter_hour_is_its_impressions_even_at_the_edge(spark):
    edge = at(23, 59, 59.999)                 # served in the last quarter hour of the day, clicked the next day
    clicks = spark.createDataFrame([("t", "s", DAY, impression_id(edge), edge + dt.timedelta(minutes=1), "x", "a",
                                     True, None, None)], CLICK_SCHEMA)
    live_impressions, live_clicks = counter_audit.live_events(spark.createDataFrame([], IMPRESSION_SCHEMA), clicks)
    traffic = counter_audit.expected_traffic(live_impressions, live_clicks)
    assert rows(traffic.withColumn("bucket", F.date_format("bucket", "HH:mm")),
                ["location", "day", "bucket", "clicks"]) == {("x", DAY, "23:45", 1), ("", DAY, "23:45", 1)}


def test_differences_keep_only_rows_that_disagree(spark):
    schema = "tenant_id string, slot_id string, reason string, clicks long"
    log = spark.createDataFrame([("t", "s", "bot", 5), ("t", "s", "too_fast", 2), ("t", "s", "rate", 1)], schema)
    counted = spark.createDataFrame([("t", "s", "bot", 5), ("t", "s", "too_fast", 1), ("t", "s", "old", 4)], schema)
    found = counter_audit.differences(log, counted, counter_audit.REASONS)
    assert rows(found, ["reason", "log_clicks", "counted_clicks", "missing_clicks"]) == {
        ("too_fast", 2, 1, 1), ("rate", 1, 0, 1), ("old", 0, 4, -4)}


# -- the job against the service's own events -----------------------------------------------------------------

def serve_and_click(client, tenant: str, slot: str, visitors: list[tuple[str | None, bool]],
                    user_agent: str = HUMAN) -> None:
    for location, clicked in visitors:
        query = f"?location={location}" if location else ""
        served = client.get(f"/v1/serve/{tenant}/{slot}{query}").get_json()
        if clicked:
            response = client.post("/v1/click", json={"token": served["token"]}, headers={"User-Agent": user_agent})
            assert response.status_code == 200, response.get_json()


def lose(db: Database, tenant: str, slot: str, location: str, banner: str, impressions: int, clicks: int) -> None:
    """What a counter batch that timed out leaves: the counts of the location row and the slot-wide row."""
    for where in {location, ""}:
        db.execute("UPDATE {ks}.banner_counts SET impressions = impressions - ?, clicks = clicks - ? "
                   "WHERE tenant_id = ? AND slot_id = ? AND location = ? AND banner_id = ?",
                   (impressions, clicks, tenant, slot, where, banner))


def counts(db: Database, tenant: str, slot: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    return counter_audit.slot_counters(db, tenant, slot)


def report_rows(audit: counter_audit.Audit, table: counter_audit.Table, tenant: str) -> list[dict]:
    return [r for r in audit.reports[table.name].rows if r["tenant_id"] == tenant]


def test_audit_finds_lost_counts_and_repair_adds_them_back_once(app, client, spark, config, db):
    tenant, slot = gen_slot(client, ["a", "b"], click_filter={**INSTANT_CLICKS, "block_bot_user_agents": True})
    sync(app)
    serve_and_click(client, tenant, slot, [("mumbai", True), ("mumbai", False), ("delhi", True), (None, True),
                                           ("delhi", False), ("mumbai", True), ("mumbai", False)] * 4)
    serve_and_click(client, tenant, slot, [("pune", True)] * 3, user_agent="AhrefsBot/7.0")    # filtered
    sync(app)
    served = counts(db, tenant, slot)
    assert sum(v[0] for (location, _), v in served.items() if location == "") == 31

    clean = counter_audit.run(spark, config, [tenant], settle=0.0)
    assert clean.consistent, counter_audit.describe(clean, 20)       # the audit's rules are the writer's

    banner = next(b for (location, b), v in served.items() if location == "mumbai" and v[0] >= 2 and v[1] >= 1)
    lose(db, tenant, slot, "mumbai", banner, impressions=2, clicks=1)
    db.execute("UPDATE {ks}.filtered_click_reasons SET clicks = clicks - 1 WHERE tenant_id = ? AND slot_id = ? "
               "AND reason = 'bot_user_agent'", (tenant, slot))
    today = dt.datetime.now(dt.UTC).date()
    traffic = max((r for day in (today - dt.timedelta(days=1), today) for r in db.execute(
        "SELECT day, bucket, impressions FROM {ks}.traffic_counts WHERE tenant_id = ? AND slot_id = ? AND day = ? "
        "AND location = 'mumbai' AND banner_id = ? ALLOW FILTERING", (tenant, slot, day, banner))),
        key=lambda r: r["impressions"])
    assert traffic["impressions"] >= 2
    db.execute("UPDATE {ks}.traffic_counts SET impressions = impressions - 2 WHERE tenant_id = ? AND slot_id = ? "
               "AND day = ? AND location = 'mumbai' AND bucket = ? AND banner_id = ?",
               (tenant, slot, traffic["day"], traffic["bucket"], banner))

    lost = counter_audit.run(spark, config, [tenant], settle=0.0)
    assert not lost.consistent
    assert lost.repairable_slots() == [(tenant, slot)] and lost.busy_slots == []
    assert {(r["location"], r["banner_id"], r["missing_impressions"], r["missing_clicks"])
            for r in report_rows(lost, counter_audit.BANNER_COUNTS, tenant)} == {
        ("mumbai", banner, 2, 1), ("", banner, 2, 1)}
    assert [(r["reason"], r["missing_clicks"]) for r in report_rows(lost, counter_audit.REASONS, tenant)] == [
        ("bot_user_agent", 1)]
    assert [(r["location"], r["missing_impressions"]) for r in report_rows(lost, counter_audit.TRAFFIC, tenant)] == [
        ("mumbai", 2)]
    assert counter_audit.exit_status(lost, repaired=False) == 1

    counter_audit.repair(db, lost, settle=0.0)
    assert (lost.repaired_slots, lost.busy_slots, lost.unknown_batches) == ([(tenant, slot)], [], 0)
    assert counter_audit.exit_status(lost, repaired=True) == 0
    assert counts(db, tenant, slot) == served                           # back to what serving had counted
    again = counter_audit.run(spark, config, [tenant], repair_slots=True, settle=0.0)
    assert again.consistent and again.repaired_slots == []             # nothing to add twice


def test_repair_skips_a_slot_taking_traffic_and_never_subtracts(app, client, spark, config, db):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    serve_and_click(client, tenant, slot, [("mumbai", True), ("delhi", False)] * 3)
    sync(app)
    lose(db, tenant, slot, "mumbai", "a", impressions=1, clicks=0)

    audit = counter_audit.run(spark, config, [tenant], settle=0.0)
    assert {(r["location"], r["missing_impressions"], r["missing_clicks"])
            for r in report_rows(audit, counter_audit.BANNER_COUNTS, tenant)} == {("mumbai", 1, 0), ("", 1, 0)}
    serve_and_click(client, tenant, slot, [("delhi", False)])       # traffic after the audit read the counters
    sync(app)
    before = counts(db, tenant, slot)
    counter_audit.repair(db, audit, settle=0.0)
    assert (audit.repaired_slots, audit.busy_slots) == ([], [(tenant, slot)])
    assert counts(db, tenant, slot) == before                          # a busy slot gets nothing added
    assert counter_audit.exit_status(audit, repaired=True) == 3       # only a busy slot differs: not judged
    assert "took traffic during the audit" in counter_audit.describe(audit, 5)

    db.execute("UPDATE {ks}.banner_counts SET clicks = clicks + 5 WHERE tenant_id = ? AND slot_id = ? "
               "AND location = 'delhi' AND banner_id = 'a'", (tenant, slot))        # ahead of the log
    quiet = counter_audit.run(spark, config, [tenant], repair_slots=True, settle=0.5)
    assert quiet.repaired_slots == [(tenant, slot)]
    assert [r["location"] for r in quiet.reports[counter_audit.BANNER_COUNTS.name].ahead()
            if r["tenant_id"] == tenant] == ["delhi"]
    assert counter_audit.exit_status(quiet, repaired=True) == 1        # the counter ahead remains, reported
    after = counts(db, tenant, slot)
    assert after[("mumbai", "a")][0] == before[("mumbai", "a")][0] + 1
    impressions, clicks, filtered = before[("delhi", "a")]
    assert after[("delhi", "a")] == (impressions, clicks + 5, filtered)   # never subtracted
    left = counter_audit.run(spark, config, [tenant], settle=0.0)
    assert {(r["location"], r["missing_impressions"], r["missing_clicks"])
            for r in report_rows(left, counter_audit.BANNER_COUNTS, tenant)} == {("delhi", 0, -5)}
    assert counter_audit.exit_status(left, repaired=False) == 1


def test_command_line_refuses_bad_arguments():
    for argv in (["--settle", "-1"], ["--show", "-2"], ["--nonsense"]):
        with pytest.raises(SystemExit) as exit_info:
            counter_audit.parse_args(argv)
        assert exit_info.value.code == 2


# -- lift_counts (eventlog.counting rule 8, cql/014) -----------------------------------------------------------

LIFT_IMPRESSION_SCHEMA = IMPRESSION_SCHEMA + ", customer_id string, serving_group string, holdout_share double"
# (impression time, location, customer, group, share, posterior_scope, click: None | valid)
LIFT_LOG = [
    (at(18, 29, 59.5), "pune", "v1", "holdout", 0.1, "location", True),   # clicked in the next quarter hour
    (at(18, 31), "pune", "v1", "holdout", 0.1, "location", None),         # the same visitor: the same shard
    (at(18, 32), None, "", "policy", 0.1, "slot", False),                 # anonymous; a flagged click
    (at(18, 33), "delhi", None, None, None, None, True),                  # before cql/013: policy, share 0
    (at(18, 34), "delhi", "v2", "holdout", 0.2, "import", True),          # imported history: nowhere
]


def test_the_audits_lift_counts_and_the_writers_rule_agree(spark):
    impressions, clicks, events = [], [], []
    for served_at, location, customer, group, share, scope, click in LIFT_LOG:
        key = ("t", "s", DAY, impression_id(served_at))
        impressions.append((*key, served_at, location, "a", scope, None, None, customer, group, share))
        shard = counting.lift_shard(customer, uuid.UUID(key[3]))
        common = {"imported": counting.is_imported(scope), "serving_group": group or counting.POLICY_GROUP,
                  "lift_shard": shard}
        events.append(counting.Event("impression", "t", "s", location or "", "a", served_at,
                                     holdout_share=share or 0.0, **common))
        if click is not None:
            clicks.append((*key, served_at + dt.timedelta(minutes=3), location, "a", click, None, None))
            events.append(counting.Event("click", "t", "s", location or "", "a",
                                         counting.click_served_at(uuid.UUID(key[3]), served_at), valid=click,
                                         **common))
    expected = counter_audit.expected_lift(spark.createDataFrame(impressions, LIFT_IMPRESSION_SCHEMA),
                                           spark.createDataFrame(clicks, CLICK_SCHEMA))
    got = {(*r[:4], dt.datetime.fromtimestamp(r[4], dt.UTC), *r[5:])
           for r in rows(expected.withColumn("bucket", F.unix_seconds("bucket")),
                         counter_audit.LIFT_KEY + counter_audit.LIFT_COLUMNS)}
    sums: dict[tuple, list[int]] = {}
    for row in (row for event in events for row in counting.counter_rows(event) if row.table == "lift_counts"):
        total = sums.setdefault(row.key, [0, 0, 0])
        for i, value in enumerate(row.values):
            total[i] += value
    assert got == {(*key, *values) for key, values in sums.items()}
    v1 = counting.lift_shard("v1", uuid.uuid1())
    assert ("t", "s", "pune", DAY, at(18, 15), "holdout", v1, 1, 1, 100_000) in got    # the click: 18:15, its own
    assert ("t", "s", "pune", DAY, at(18, 30), "holdout", v1, 1, 0, 100_000) in got
    assert sum(r[-3] for r in got if r[2] == "") == 4 and sum(r[-2] for r in got if r[2] == "") == 2


def test_audit_finds_a_damaged_lift_counter_and_repairs_it(app, client, spark, config, db, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"], click_filter=INSTANT_CLICKS)
    assert client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Hero", "holdout_percent": 40},
                      headers=admin_headers).status_code == 200
    for i in range(30):
        served = client.get(f"/v1/serve/{tenant}/{slot}?customer_id=v{i % 7}&location=pune").get_json()
        if i % 3 == 0:
            assert client.post("/v1/click", json={"token": served["token"]}).status_code == 200
    sync(app)
    clean = counter_audit.run(spark, config, [tenant], settle=0.0)
    assert clean.consistent, counter_audit.describe(clean, 20)
    url = f"/v1/admin/tenants/{tenant}/slots/{slot}/lift?location=pune"
    before = client.get(url, headers=admin_headers).get_json()

    row = max(db.execute("SELECT day, bucket, serving_group, shard, clicks FROM {ks}.lift_counts WHERE tenant_id = ? "
                         "AND slot_id = ? AND location = 'pune' AND day = ?",
                         (tenant, slot, dt.datetime.now(dt.UTC).date())), key=lambda r: r["clicks"])
    assert row["clicks"] >= 1
    db.execute("UPDATE {ks}.lift_counts SET clicks = clicks - 1, holdout_share_micros = holdout_share_micros - 5 "
               "WHERE tenant_id = ? AND slot_id = ? AND location = 'pune' AND day = ? AND bucket = ? "
               "AND serving_group = ? AND shard = ?",
               (tenant, slot, row["day"], row["bucket"], row["serving_group"], row["shard"]))
    damaged = client.get(url, headers=admin_headers).get_json()["groups"][row["serving_group"]]
    assert damaged["clicks"] == before["groups"][row["serving_group"]]["clicks"] - 1

    lost = counter_audit.run(spark, config, [tenant], settle=0.0)
    assert [(r["location"], r["serving_group"], r["shard"], r["missing_clicks"], r["missing_holdout_share_micros"])
            for r in report_rows(lost, counter_audit.LIFT, tenant)] == [
        ("pune", row["serving_group"], row["shard"], 1, 5)]
    assert lost.repairable_slots() == [(tenant, slot)]
    assert counter_audit.exit_status(lost, repaired=False) == 1
    counter_audit.repair(db, lost, settle=0.0)
    assert counter_audit.exit_status(lost, repaired=True) == 0
    assert counter_audit.run(spark, config, [tenant], settle=0.0).consistent
    assert client.get(url, headers=admin_headers).get_json()["groups"] == before["groups"]
