"""Off-policy evaluation of candidate policies on a slot's logged traffic.

    python -m spark_jobs.evaluate --tenant T --slot S [--days 7 | --since 2026-11-01 [--until 2026-12-01]]
        [--candidate uniform --candidate thompson:half-life=24 …] [--bootstrap 200] [--dry-run]

Extract   the slot's impressions and clicks of the window (UTC days, ``until`` exclusive) through the Spark
          Cassandra connector: a direct join on the (tenant, slot, bucket, shard) partitions of the window's
          buckets (eventlog/partitions.py), never a scan.
Transform ``events`` (pure DataFrame → DataFrame, tested): one row per impression with its propensity,
          context and ``clicked`` (a valid click; flagged ones are not rewards). The slot's events are then
          collected to the driver and evaluated there by the pure code of evaluation/ (candidates replayed with
          the server's policy code, IPS / SNIPS / DR with bootstrap intervals, ESS, guard rails): one slot's
          window must fit in the driver's memory (~100 bytes an impression: 10 M impressions ≈ 1 GB).
Load      one row per (candidate, estimator) in ``evaluation_results`` (cql/013), keyed by the run's time;
          the dashboard's evaluation page shows the latest run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from evaluation import candidates as candidates_module
from evaluation import offline
from eventlog import partitions
from eventlog.counting import SLOT_WIDE
from spark_jobs.city_priors import EVENT_KEY, EVENT_PARTITION_KEY, Window
from spark_jobs.session import build_session, progress, read_table
from webapp.web import config as config_module

CONTEXT_COLUMNS = ("referrer_id",)      # besides the location: features of the DR reward model


def extract(spark: SparkSession, keyspace: str, tenant: str, slot: str, window: Window
            ) -> tuple[DataFrame, DataFrame]:
    """The slot's impression and click rows of the window: only its partitions are read (a direct join)."""
    start = dt.datetime.combine(window.since, dt.time(), dt.UTC)
    end = dt.datetime.combine(window.until, dt.time(), dt.UTC) - dt.timedelta(microseconds=1)
    keys = spark.createDataFrame([(tenant, slot, p.bucket, p.shard) for p in partitions.partitions(start, end)],
                                 "tenant_id string, slot_id string, bucket timestamp, shard int")
    impressions = read_table(spark, keyspace, "impression_log", EVENT_PARTITION_KEY + [
        "impression_id", "served_at", "location", "banner_id", "customer_id", "referrer_id", "propensity",
        "serving_group", "holdout_share", "policy", "policy_state"])
    clicks = read_table(spark, keyspace, "click_log", EVENT_PARTITION_KEY + ["impression_id", "valid"])
    return keys.join(impressions, EVENT_PARTITION_KEY), keys.join(clicks, EVENT_PARTITION_KEY)


def events(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """One row per impression: served_at, location ('' for none), banner_id, customer_id, referrer_id,
    propensity (null when unknown), serving_group ('policy' when null: rows from before cql/013), holdout_share
    (0 when null), policy (the logging policy's name, null before cql/005), clicked (1
    when a click the filter did not flag exists; null ``valid`` is valid)."""
    clicked = (clicks.where(F.coalesce(F.col("valid"), F.lit(True)))
               .select(*EVENT_KEY).dropDuplicates().withColumn("clicked", F.lit(1)))
    return (impressions.join(clicked, EVENT_KEY, "left")
            .select("served_at", F.coalesce("location", F.lit(SLOT_WIDE)).alias("location"), "banner_id",
                    F.coalesce("customer_id", F.lit("")).alias("customer_id"),
                    F.coalesce("referrer_id", F.lit("")).alias("referrer_id"),
                    F.col("propensity").cast("double").alias("propensity"),
                    F.coalesce("serving_group", F.lit("policy")).alias("serving_group"),
                    F.coalesce("holdout_share", F.lit(0.0)).alias("holdout_share"), "policy",
                    F.coalesce("policy_state", F.lit("")).alias("policy_state"),
                    F.coalesce("clicked", F.lit(0)).alias("clicked")))


def with_context(log: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``log`` with one column per context feature found in ``policy_state`` ({"context": {...}}, written by
    import_history for a file's optional columns), and the names of the context columns to model."""
    def context(text: str) -> dict:
        try:
            found = json.loads(text).get("context") if text else None
        except (ValueError, AttributeError):
            return {}
        return found if isinstance(found, dict) else {}

    contexts = pd.DataFrame([context(t) for t in log["policy_state"]], index=log.index).astype("string")
    contexts = contexts.add_prefix("context_")
    return pd.concat([log, contexts], axis=1), CONTEXT_COLUMNS + tuple(contexts.columns)


def result_rows(tenant: str, slot: str, window: Window, run_at: dt.datetime,
                results: list[offline.CandidateResult]) -> list[dict[str, Any]]:
    """The rows of evaluation_results for one run."""
    rows = []
    for result in results:
        e = result.evaluation
        for estimator, estimate in e.estimates.items():
            rows.append({"tenant_id": tenant, "slot_id": slot, "run_at": run_at, "candidate": result.candidate,
                         "estimator": estimator, "estimate": estimate.value, "low": estimate.low,
                         "high": estimate.high, "effective_sample_size": e.effective_sample_size,
                         "events": e.events, "left_out": result.left_out, "zero_support": e.zero_support,
                         "observed_ctr": e.observed_ctr,
                         "since": dt.datetime.combine(window.since, dt.time(), dt.UTC),
                         "until": dt.datetime.combine(window.until, dt.time(), dt.UTC),
                         "flags": set(e.flags)})
    return rows


def load(config: dict[str, Any], keyspace: str, rows: list[dict[str, Any]]) -> None:
    """Insert the rows with the driver (a few dozen: no Spark write needed)."""
    from webapp.storage import store
    from webapp.storage.database import Database

    db = Database(config | {"CASSANDRA_KEYSPACE": keyspace})
    try:
        store.put_evaluation_results(db, rows)
    finally:
        db.shutdown()


def run(spark: SparkSession, config: dict[str, Any], tenant: str, slot: str, window: Window,
        names: list[str] | None = None, bootstrap: int = 200, dry_run: bool = False, seed: int = 0
        ) -> list[offline.CandidateResult]:
    """Extract, evaluate and load one slot, with progress lines. The caller owns ``spark``."""
    keyspace = config["CASSANDRA_KEYSPACE"]
    started = time.monotonic()
    progress(f"evaluate: reading {tenant}/{slot} impressions and clicks of {window} from keyspace {keyspace}")
    impressions, clicks = extract(spark, keyspace, tenant, slot, window)
    log: pd.DataFrame = events(impressions, clicks).toPandas()
    if log.empty:
        raise ValueError(f"no impression of {tenant}/{slot} in {window}")
    progress(f"evaluate: {len(log):,} impressions, {int(log['clicked'].sum()):,} clicks, "
             f"{int(log['propensity'].isna().sum()):,} without a propensity ({time.monotonic() - started:.1f}s); "
             f"evaluating {len(names) if names else 'the default'} candidates, {bootstrap} bootstrap resamples")
    log, context_columns = with_context(log)
    results = offline.evaluate_log(log, names, bootstrap=bootstrap, seed=seed, context_columns=context_columns)
    for result in results:
        e = result.evaluation
        parts = ", ".join(f"{k} {v.value:.4f} [{v.low:.4f}, {v.high:.4f}]" for k, v in e.estimates.items())
        flags = f" FLAGS: {', '.join(e.flags)}" if e.flags else ""
        progress(f"evaluate: {result.candidate:<24} {parts}; ESS {e.effective_sample_size:,.0f}{flags}")
    if not dry_run:
        load(config, keyspace, result_rows(tenant, slot, window, dt.datetime.now(dt.UTC), results))
    progress(f"evaluate: {'evaluated' if dry_run else 'stored'} {len(results)} candidates in "
             f"{time.monotonic() - started:.1f}s")
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--slot", required=True)
    parser.add_argument("--days", type=int, default=7, help="window: the last N UTC days up to today")
    parser.add_argument("--since", type=dt.date.fromisoformat, help="window start, a UTC day (YYYY-MM-DD)")
    parser.add_argument("--until", type=dt.date.fromisoformat, help="window end, exclusive (default: tomorrow)")
    parser.add_argument("--candidate", action="append", dest="candidates",
                        help="a candidate (repeatable; evaluation/candidates.py); default: the standard set")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--keyspace", help="Cassandra keyspace (default CASSANDRA_KEYSPACE)")
    parser.add_argument("--dry-run", action="store_true", help="print the estimates, store nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    config = config_module.load()
    args = parse_args(argv)
    if args.keyspace:
        config["CASSANDRA_KEYSPACE"] = args.keyspace
    try:
        if args.since is None:
            window = Window.last_days(args.days)
        else:
            window = Window(args.since, args.until or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1))
        for name in args.candidates or ():
            candidates_module.check(name)
        if args.bootstrap < 1:
            raise ValueError("--bootstrap must be ≥ 1")
    except ValueError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    spark = build_session(config, "banner-bandit evaluate")
    try:
        run(spark, config, args.tenant, args.slot, window, args.candidates, args.bootstrap, args.dry_run)
    except ValueError as exc:           # an unknown banner in always:<banner>, or an empty window
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
