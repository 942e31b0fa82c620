"""The off-policy evaluation job (spark_jobs/evaluate.py) on a local Spark session against the test Cassandra:
a small constructed log in, the estimates stored in evaluation_results out."""

from __future__ import annotations

import datetime as dt

import pytest
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.util import uuid_from_time

from eventlog.partitions import partition_of
from spark_jobs import evaluate
from spark_jobs.city_priors import Window
from tests.spark_support import job_config, local_spark
from webapp.storage import store
from webapp.storage.database import Database

TODAY = dt.datetime.now(dt.UTC).date()
SERVED = dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(9), dt.UTC)
WINDOW = Window(TODAY - dt.timedelta(days=3), TODAY + dt.timedelta(days=1))
# (banner, location, impressions, valid clicks, flagged clicks, propensity): logged uniformly over a and b
LOG = [("a", "pune", 400, 40, 5, 0.5), ("b", "pune", 400, 8, 0, 0.5),
       ("a", "", 200, 10, 0, 0.5), ("b", "", 200, 20, 0, 0.5),
       ("a", "pune", 50, 50, 0, None)]         # imported history without a propensity: left out, counted


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


def write_log(db: Database, tenant: str, slot: str) -> None:
    impressions, clicks = [], []
    for banner, location, n, c, flagged, propensity in LOG:
        for i in range(n):
            served_at = SERVED + dt.timedelta(seconds=len(impressions))
            impression_id = uuid_from_time(served_at)
            key = (tenant, slot, *partition_of(impression_id), impression_id)
            impressions.append((*key, served_at, banner, location, propensity))
            if i < c + flagged:
                clicks.append((*key, served_at, banner, location, i < c))
    session = db.session()
    insert_impression = db.prepare(
        "INSERT INTO {ks}.impression_log (tenant_id, slot_id, bucket, shard, impression_id, served_at, banner_id, "
        "location, propensity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    insert_click = db.prepare("INSERT INTO {ks}.click_log (tenant_id, slot_id, bucket, shard, impression_id, "
                              "clicked_at, banner_id, location, valid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    for statement, rows in ((insert_impression, impressions), (insert_click, clicks)):
        for ok, result in execute_concurrent_with_args(session, statement, rows, concurrency=64):
            assert ok, result


def test_the_job_estimates_candidates_on_the_slot_log_and_stores_them(spark, config, db):
    tenant, slot = "evaljob", "hero"
    write_log(db, tenant, slot)
    results = evaluate.run(spark, config, tenant, slot, WINDOW, ["uniform", "always:a", "always:b"], bootstrap=50)
    by_name = {r.candidate: r.evaluation for r in results}
    n = 1200                                              # impressions with a propensity
    assert all(r.left_out == 50 and r.evaluation.events == n for r in results)
    # IPS by hand: w = π(a_i)/0.5; uniform: w = 1 → the observed CTR (flagged clicks are no reward)
    assert by_name["uniform"].estimates["ips"].value == pytest.approx(78 / n)
    assert by_name["always:a"].estimates["ips"].value == pytest.approx(2 * 50 / n)
    assert by_name["always:b"].estimates["ips"].value == pytest.approx(2 * 28 / n)
    assert by_name["always:a"].estimates["snips"].value == pytest.approx(50 / 600)
    assert by_name["always:a"].effective_sample_size == pytest.approx(600)
    stored = store.latest_evaluation(db, tenant, slot)
    assert {(r["candidate"], r["estimator"]) for r in stored} == {
        (c, e) for c in ("uniform", "always:a", "always:b") for e in ("ips", "snips", "dr")}
    row = next(r for r in stored if (r["candidate"], r["estimator"]) == ("always:a", "ips"))
    assert row["estimate"] == pytest.approx(100 / n) and row["low"] < row["estimate"] < row["high"]
    assert (row["events"], row["left_out"]) == (n, 50)


def test_an_unknown_candidate_is_refused_before_spark_starts():
    assert evaluate.main(["--tenant", "t", "--slot", "s", "--candidate", "greedy"]) == 2
