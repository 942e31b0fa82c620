"""migrate-events on a log written with the schema of before cql/006: the bounded log then holds exactly the old
rows, a second run adds nothing, and the counter audit still agrees with the counters."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

import pytest
from cassandra.util import uuid_from_time

from eventlog import counting
from spark_jobs import counter_audit
from tests.spark_support import job_config, local_spark
from webapp.management import migrate_events
from webapp.storage import store
from webapp.storage.database import Database

# The INSERTs of the event writer before 006 (day partitions).
OLD_INSERT_IMPRESSION = (
    "INSERT INTO {ks}.impressions (tenant_id, slot_id, day, impression_id, served_at, banner_id, location, "
    "customer_id, referrer_id, posterior_scope, alpha, beta, prior_source, propensity, policy, policy_state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
OLD_INSERT_CLICK = (
    "INSERT INTO {ks}.clicks (tenant_id, slot_id, day, impression_id, clicked_at, banner_id, location, "
    "customer_id, referrer_id, valid, invalid_reason, user_agent, ip) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
LOCATIONS = ("pune", "", "delhi")


@pytest.fixture(scope="module")
def config(keyspace):
    return job_config(CASSANDRA_KEYSPACE=keyspace)


@pytest.fixture(scope="module")
def db(config):
    database = Database(config)
    yield database
    database.shutdown()


@pytest.fixture(scope="module")
def spark(config):
    session = local_spark(CASSANDRA_KEYSPACE=config["CASSANDRA_KEYSPACE"])
    yield session
    session.stop()


def write_old_log(db: Database, tenant: str, slot: str, days: list[dt.date]
                  ) -> tuple[dict[uuid.UUID, dict], dict[uuid.UUID, dict]]:
    """Impressions and clicks of ``days`` written with the old INSERTs, and counted by the counter rules as
    the old writer counted them. Returns the rows written, by impression ID."""
    impressions, clicks = {}, {}
    deltas: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    traffic: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    reasons: dict[tuple, int] = defaultdict(int)
    referred: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for day in days:
        for i in range(24):
            served_at = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(minutes=i * 59, seconds=7)
            impression_id = uuid_from_time(served_at)
            row = {"impression_id": impression_id, "served_at": served_at, "banner_id": "ab"[i % 2],
                   "location": LOCATIONS[i % 3], "customer_id": f"c-{i}", "referrer_id": "r",
                   "posterior_scope": "slot", "alpha": 1.0 + i, "beta": 2.0, "prior_source": "uniform",
                   "propensity": 0.5, "policy": "thompson", "policy_state": "{}"}
            db.execute(OLD_INSERT_IMPRESSION, (tenant, slot, day, *row.values()))
            impressions[impression_id] = row
            events = [counting.Event("impression", tenant, slot, row["location"], row["banner_id"], served_at,
                                     referrer_id=row["referrer_id"])]
            if i % 3 == 0:
                valid = i % 2 == 0
                click = {"impression_id": impression_id, "clicked_at": served_at + dt.timedelta(seconds=30),
                         "banner_id": row["banner_id"], "location": row["location"], "customer_id": f"c-{i}",
                         "referrer_id": "r", "valid": valid, "invalid_reason": None if valid else "too_fast",
                         "user_agent": "Mozilla/5.0", "ip": "203.0.113.9"}
                assert db.execute(OLD_INSERT_CLICK, (tenant, slot, day, *click.values()))[0]["[applied]"]
                clicks[impression_id] = click
                events.append(counting.Event("click", tenant, slot, row["location"], row["banner_id"], served_at,
                                             valid=valid, invalid_reason=click["invalid_reason"],
                                             referrer_id=click["referrer_id"]))
            for event in events:
                for counter in counting.counter_rows(event):
                    if counter.table == "banner_counts":
                        for k, v in enumerate(counter.values):
                            deltas[counter.key][k] += v
                    elif counter.table == "traffic_counts":
                        t, s, _day, where, bucket, banner = counter.key
                        for k, v in enumerate(counter.values):
                            traffic[(t, s, where, bucket, banner)][k] += v
                    elif counter.table == "filtered_click_reasons":
                        reasons[counter.key] += counter.values[0]
                    elif counter.table == "referrer_counts":
                        for k, v in enumerate(counter.values):
                            referred[counter.key][k] += v
    session = db.session()
    for batch in store.counter_batches(db, deltas, reasons).values():
        session.execute(batch)
    for batch in store.traffic_batches(db, traffic).values():
        session.execute(batch)
    for batch in store.referrer_batches(db, referred).values():
        session.execute(batch)
    return impressions, clicks


def new_log(db: Database, tenant: str, slot: str, start: dt.datetime, end: dt.datetime | None = None
            ) -> tuple[dict, dict]:
    end = end or dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    return ({r["impression_id"]: r for r in store.logged_events(db, "impressions", tenant, slot, start, end)},
            {r["impression_id"]: r for r in store.logged_events(db, "clicks", tenant, slot, start, end)})


def same_rows(written: dict[uuid.UUID, dict], stored: dict[uuid.UUID, dict]) -> bool:
    def plain(value):
        return value.replace(tzinfo=dt.UTC) if isinstance(value, dt.datetime) else value
    return written.keys() == stored.keys() and all(
        {k: plain(stored[i][k]) for k in row} == {k: plain(v) for k, v in row.items()} for i, row in written.items())


def test_the_old_log_is_copied_once_and_the_audit_agrees(db, spark, config, app_factory):
    tenant, slot = f"mig-{uuid.uuid4().hex[:8]}", "hero"
    db.execute("INSERT INTO {ks}.slots (tenant_id, slot_id, name) VALUES (?, ?, ?)", (tenant, slot, slot))
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=3), today - dt.timedelta(days=2)]     # whole past days, so marked done
    impressions, clicks = write_old_log(db, tenant, slot, days)
    start = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    assert new_log(db, tenant, slot, start) == ({}, {})

    first = migrate_events.migrate(db, progress=False, log=lambda _: None)
    stored_impressions, stored_clicks = new_log(db, tenant, slot, start)
    assert same_rows(impressions, stored_impressions)                 # exactly the old rows, every column
    assert same_rows(clicks, stored_clicks)
    assert first.tables["impressions"].rows_read >= len(impressions)
    assert first.tables["clicks"].rows_written >= len(clicks)
    assert {(t, s, d) for t, s, d in store.migrated_partitions(db, "impressions") if t == tenant} == {
        (tenant, slot, day) for day in days}                           # the resume points

    # A second run (through the command): every marked partition is skipped, nothing doubles.
    app = app_factory()
    output = app.test_cli_runner().invoke(args=["migrate-events", "--no-progress"]).output
    assert "migrate-events:" in output, output
    again = migrate_events.migrate(db, progress=False, log=lambda _: None)
    assert again.tables["impressions"].skipped >= len(days) and again.tables["clicks"].rows_written == 0
    assert new_log(db, tenant, slot, start) == (stored_impressions, stored_clicks)
    assert store.count_events(db, "impressions", tenant, slot, start, dt.datetime.now(dt.UTC)) == len(impressions)
    assert store.count_events(db, "clicks", tenant, slot, start, dt.datetime.now(dt.UTC)) == len(clicks)

    # The log under the new layout = the counters. Rows written before cql/014 have no lift counters: the upgrade's
    # repair adds them (docs/operations.md, "Upgrading"), and only them.
    audit = counter_audit.run(spark, config, [tenant], settle=0.0, repair_slots=True)
    assert not audit.ahead(), counter_audit.describe(audit, 20)
    assert all(not report.rows for name, report in audit.reports.items() if name != "lift_counts"), \
        counter_audit.describe(audit, 20)
    again = counter_audit.run(spark, config, [tenant], settle=0.0)
    assert again.consistent, counter_audit.describe(again, 20)


def test_a_partition_of_today_is_copied_but_not_marked(db):
    tenant, slot = f"mig-{uuid.uuid4().hex[:8]}", "hero"
    today = dt.datetime.now(dt.UTC).date()
    impressions, _ = write_old_log(db, tenant, slot, [today])
    migrate_events.migrate(db, progress=False, log=lambda _: None)
    start = dt.datetime.combine(today, dt.time(), dt.UTC)
    stored = new_log(db, tenant, slot, start, start + dt.timedelta(days=1))[0]
    assert same_rows(impressions, stored)
    assert not any(t == tenant for t, _, _ in store.migrated_partitions(db, "impressions"))
