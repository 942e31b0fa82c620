"""City priors: empirical-Bayes Beta priors per (tenant, slot, location, banner) from the event log.

    python -m spark_jobs.city_priors [--days 90 | --since 2026-08-01 [--until 2026-11-01]] [--tenant T]…

Extract   impressions and clicks of the window (UTC days, ``until`` exclusive) through the Spark Cassandra
          connector: the (tenant, slot, bucket, shard) partitions of the window's buckets of the configured
          slots (eventlog/partitions.py; ``--scan``: whole tables);
          a click counts when its impression is in the window and the click filter did not flag it.
Transform pure DataFrame → DataFrame functions (tested on small inputs):
          ``city_counts``      per (tenant, slot, location, banner): impressions, clicks, and the part of them
                               that is imported history (``posterior_scope = 'import'``), which the serving
                               counters do not hold;
          ``slot_statistics``  per (tenant, slot, banner): μ, the cities' spread ρ and the bounded strength s;
          ``prior_rows``       the rows of the ``priors`` table: the slot-wide prior (location '') and one
                               shrunk, capped prior per city seen in the window.
          The formulas are those of bandits/priors.py (documented there), written as column
          expressions; tests check that both give the same numbers.
Load      upsert the rows, then delete the rows of the same (tenant, slot) that this run no longer produces
          (a city that left the window falls back to the slot-wide prior). Slots without events in the
          window keep their priors. Serving re-reads the table at its next cache refresh (~1 s).

What serving does with the rows (webapp/learning/posteriors.py): a city's posterior is its prior plus the city's live
counters, so a city prior holds the slot-wide prior plus the city's *imported* history only; live events are
already in the counters and would be counted twice. A city with no row (never seen) uses the slot-wide row,
and unknown locations use the slot-wide posterior: slot-wide live counters plus the slot-wide row. There the
row's data overlaps the counters by at most ``s ≤ CITY_PRIOR_MAX_STRENGTH`` pseudo-impressions with the same
mean: a bounded, mean-preserving over-confidence that fades as live traffic grows (see docs/learning.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from bandits import PriorSettings
from eventlog import partitions
from eventlog.counting import IMPORT_SCOPE, SLOT_WIDE
from spark_jobs.session import build_session, progress, read_table, write_table
from webapp.web import config as config_module

SLOT_KEY = ["tenant_id", "slot_id"]
BANNER_KEY = ["tenant_id", "slot_id", "banner_id"]
PRIOR_KEY = ["tenant_id", "slot_id", "location", "banner_id"]
PRIOR_COLUMNS = PRIOR_KEY + ["alpha", "beta", "source", "computed_at"]


@dataclass(frozen=True)
class Window:
    """UTC days ``since ≤ day < until``: the event log buckets read are those of these days."""

    since: dt.date
    until: dt.date

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise ValueError(f"empty window: since {self.since} must be before until {self.until}")

    @classmethod
    def last_days(cls, days: int, today: dt.date | None = None) -> Window:
        if days < 1:
            raise ValueError(f"the window needs at least one day, got {days}")
        until = (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=1)
        return cls(until - dt.timedelta(days=days), until)

    def __str__(self) -> str:
        return f"{self.since.isoformat()}..{(self.until - dt.timedelta(days=1)).isoformat()}"


@dataclass(frozen=True)
class Summary:
    impressions: int
    clicks: int
    history_impressions: int
    slots: int
    banners: int
    locations: int
    priors_written: int
    priors_deleted: int


# -- extract --------------------------------------------------------------------------------------------------

EVENT_PARTITION_KEY = ["tenant_id", "slot_id", "bucket", "shard"]
EVENT_KEY = ["tenant_id", "slot_id", "impression_id"]      # an impression ID is unique: its partition follows
# Direct joins cost one query per partition, and a quiet slot has 8 × 288 (mostly empty) partitions a day:
# beyond this many (e.g. 90 days of ~25 slots) reading the whole log is the cheaper plan.
MAX_JOIN_PARTITIONS = 5_000_000


def _window_start(window: Window) -> dt.datetime:
    return dt.datetime.combine(window.since, dt.time(), dt.UTC)


def _window_end(window: Window) -> dt.datetime:
    return dt.datetime.combine(window.until, dt.time(), dt.UTC)


def _in_window(frame: DataFrame, window: Window, tenants: list[str] | None) -> DataFrame:
    frame = frame.where((F.col("bucket") >= F.lit(_window_start(window)))
                        & (F.col("bucket") < F.lit(_window_end(window))))
    if tenants:
        frame = frame.where(F.col("tenant_id").isin(tenants))
    return frame


def window_partitions(spark: SparkSession, keyspace: str, window: Window,
                      tenants: list[str] | None = None) -> DataFrame | None:
    """The event-log partitions of the window: every configured (tenant, slot) × every (bucket, shard) of
    its days (eventlog.partitions), so the join below stays on the whole partition key.

    The slots and the (bucket, shard) pairs (8 × 288 a day) are collected on the driver, and crossed in
    Spark (a keys DataFrame read from Cassandra would carry its filter into the direct join, which the
    connector refuses). None when there are more than MAX_JOIN_PARTITIONS: a scan is then cheaper than
    one query per partition.
    """
    slots = read_table(spark, keyspace, "slots", SLOT_KEY)
    if tenants:
        slots = slots.where(F.col("tenant_id").isin(tenants))
    slot_rows = [(row["tenant_id"], row["slot_id"]) for row in slots.collect()]
    end = _window_end(window) - dt.timedelta(microseconds=1)
    pairs = [(p.bucket, p.shard) for p in partitions.partitions(_window_start(window), end)]
    if len(slot_rows) * len(pairs) > MAX_JOIN_PARTITIONS:
        return None
    slot_keys = spark.createDataFrame(slot_rows, "tenant_id string, slot_id string")
    return slot_keys.crossJoin(spark.createDataFrame(pairs, "bucket timestamp, shard int"))


def extract(spark: SparkSession, keyspace: str, window: Window, tenants: list[str] | None = None,
            scan: bool = False) -> tuple[DataFrame, DataFrame]:
    """The window's impressions and clicks, with only the columns the priors need.

    By default only the window's partitions of the configured slots are read (a direct join on the
    partition key: the cost follows the window, not the whole log). ``scan`` reads both tables whole and
    filters instead: cheaper when the window covers most of the log, and it also sees slots that are not
    (or no longer) configured.
    """
    if not scan:
        # Keys first: a Cassandra DataFrame created before the session's first Cassandra query can make the
        # connector's direct join fail ("Couldn't find none#0"); window_partitions runs that query.
        keys = window_partitions(spark, keyspace, window, tenants)
        if keys is None:
            progress(f"city_priors: more than {MAX_JOIN_PARTITIONS:,} event partitions in the window: "
                     "scanning the log instead")
            scan = True
    impressions = read_table(spark, keyspace, "impression_log", EVENT_PARTITION_KEY + [
        "impression_id", "location", "banner_id", "posterior_scope"])
    clicks = read_table(spark, keyspace, "click_log", EVENT_PARTITION_KEY + ["impression_id", "valid"])
    if scan:
        impressions, clicks = _in_window(impressions, window, tenants), _in_window(clicks, window, tenants)
    else:
        impressions, clicks = keys.join(impressions, EVENT_PARTITION_KEY), keys.join(clicks, EVENT_PARTITION_KEY)
    return configured_banners_only(impressions, configured_banners(spark, keyspace, tenants)), clicks


def configured_banners(spark: SparkSession, keyspace: str, tenants: list[str] | None) -> DataFrame:
    """(tenant_id, slot_id, banner_id) of every configured banner, collected on the driver (configuration
    is small) so that joining the log with it is a broadcast, never a query per event."""
    banners = read_table(spark, keyspace, "banners", BANNER_KEY)
    if tenants:
        banners = banners.where(F.col("tenant_id").isin(tenants))
    rows = [(r["tenant_id"], r["slot_id"], r["banner_id"]) for r in banners.collect()]
    return spark.createDataFrame(rows, "tenant_id string, slot_id string, banner_id string")


def configured_banners_only(impressions: DataFrame, banners: DataFrame) -> DataFrame:
    """The impressions of banners that still exist: a deleted banner's events stay in the log, but get no
    prior (its clicks then join no impression in city_counts)."""
    return impressions.join(F.broadcast(banners), BANNER_KEY, "left_semi")


# -- transform ------------------------------------------------------------------------------------------------

def city_counts(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """Counts per (tenant, slot, location, banner); location '' is traffic without a location.

    Columns: tenant_id, slot_id, location, banner_id, impressions, clicks, history_impressions,
    history_clicks (longs). A click counts once, for its impression (clicks are keyed by the impression),
    unless the click filter flagged it (``valid = false``; null, in rows from before the filter, is valid).
    """
    clicked = (clicks.where(F.coalesce(F.col("valid"), F.lit(True)))
               .select(*EVENT_KEY).dropDuplicates()
               .withColumn("clicked", F.lit(1)))
    events = (impressions.join(clicked, EVENT_KEY, "left")
              .select("tenant_id", "slot_id", F.coalesce("location", F.lit(SLOT_WIDE)).alias("location"),
                      "banner_id",
                      F.coalesce("clicked", F.lit(0)).alias("clicked"),
                      F.coalesce((F.col("posterior_scope") == IMPORT_SCOPE).cast("int"), F.lit(0))
                      .alias("imported")))
    return events.groupBy(*PRIOR_KEY).agg(
        F.count(F.lit(1)).alias("impressions"),
        F.sum("clicked").cast("long").alias("clicks"),
        F.sum("imported").cast("long").alias("history_impressions"),
        F.sum(F.col("clicked") * F.col("imported")).cast("long").alias("history_clicks"),
    )


def slot_statistics(counts: DataFrame, settings: PriorSettings) -> DataFrame:
    """Per (tenant, slot, banner): the population fit of bandits.priors.fit_population.

    Columns: tenant_id, slot_id, banner_id, slot_impressions, slot_clicks, cities, rho (null when not
    identifiable), mean (μ), strength (s, bounded).
    """
    n = F.col("impressions").cast("double")
    c = F.col("clicks").cast("double")
    cities = counts.where((F.col("location") != SLOT_WIDE) & (F.col("impressions") > 0))
    totals = counts.groupBy(*BANNER_KEY).agg(F.sum("impressions").alias("slot_impressions"),
                                             F.sum("clicks").alias("slot_clicks"))
    pooled = cities.groupBy(*BANNER_KEY).agg(
        F.count(F.lit(1)).alias("cities"),
        F.sum("impressions").cast("double").alias("city_impressions"),      # integer sums: exact
        F.sum("clicks").cast("double").alias("city_clicks"),
        F.sum(F.col("impressions") * F.col("impressions")).cast("double").alias("sum_n_squared"),
    ).withColumn("p_bar", F.col("city_clicks") / F.col("city_impressions"))
    # S = Σ n_i (r_i − p̄)², like the numpy code (deviations from p̄, not Σc²/n − Np̄²), summed in location
    # order: a floating-point sum in shuffle order could differ in the last bit between two runs.
    terms = (cities.join(pooled.select(*BANNER_KEY, "p_bar"), BANNER_KEY)
             .groupBy(*BANNER_KEY)
             .agg(F.array_sort(F.collect_list(F.struct(
                 "location", (n * (c / n - F.col("p_bar")) ** 2).alias("term")))).alias("terms")))
    spread = terms.select(*BANNER_KEY, F.aggregate("terms", F.lit(0.0), lambda total, x: total + x["term"])
                          .alias("weighted_squares"))
    m = F.col("cities").cast("double")
    variance = F.col("p_bar") * (1 - F.col("p_bar"))
    denominator = (F.col("city_impressions") - F.col("sum_n_squared") / F.col("city_impressions")
                   - (m - 1))
    rho = F.when((m >= 2) & (variance > 0) & (denominator > 0),
                 (F.col("weighted_squares") / variance - (m - 1)) / denominator)
    raw_strength = (F.when(F.col("rho").isNull() | (F.col("rho") <= 0), F.lit(float("inf")))
                    .when(F.col("rho") >= 1, F.lit(0.0))
                    .otherwise(1 / F.col("rho") - 1))
    strength = F.greatest(F.lit(settings.min_strength),
                          F.least(F.col("raw_strength"), F.col("slot_impressions").cast("double"),
                                  F.lit(settings.max_strength)))
    return (totals.join(pooled, BANNER_KEY, "left").join(spread, BANNER_KEY, "left")
            .fillna({"cities": 0})
            .withColumn("rho", rho)
            .withColumn("raw_strength", raw_strength)
            .select(*BANNER_KEY, "slot_impressions", "slot_clicks", "cities", "rho",
                    ((F.col("slot_clicks") + 0.5) / (F.col("slot_impressions") + 1)).alias("mean"),
                    strength.alias("strength")))


def _fmt(number: Column, decimals: int = 1) -> Column:
    return F.format_number(number, decimals)


def prior_rows(counts: DataFrame, statistics: DataFrame, settings: PriorSettings, window: Window,
               computed_at: dt.datetime) -> DataFrame:
    """Rows for the ``priors`` table: the slot-wide prior of each banner and one prior per city seen.

    Columns: tenant_id, slot_id, location, banner_id, alpha, beta, source, computed_at.
    """
    slot_alpha = F.col("mean") * F.col("strength")
    slot_beta = (1 - F.col("mean")) * F.col("strength")
    rho_text = F.coalesce(F.format_number("rho", 5), F.lit("n/a"))
    slot = statistics.select(
        *SLOT_KEY, F.lit(SLOT_WIDE).alias("location"), "banner_id",
        slot_alpha.alias("alpha"), slot_beta.alias("beta"),
        F.concat(F.lit(f"city_priors {window}: slot-wide, "), F.col("slot_impressions").cast("string"),
                 F.lit(" impressions, "), F.col("slot_clicks").cast("string"), F.lit(" clicks, "),
                 F.col("cities").cast("string"), F.lit(" cities, rho "), rho_text,
                 F.lit(", strength "), _fmt(F.col("strength"))).alias("source"))
    h_n = F.col("history_impressions").cast("double")
    h_c = F.col("history_clicks").cast("double")
    scale = F.least(F.lit(1.0), F.lit(settings.max_strength) / (F.col("strength") + h_n))
    cities = (counts.where(F.col("location") != SLOT_WIDE)
              .join(statistics.select(*BANNER_KEY, "mean", "strength"), BANNER_KEY)
              .select(*PRIOR_KEY,
                      ((slot_alpha + h_c) * scale).alias("alpha"),
                      ((slot_beta + h_n - h_c) * scale).alias("beta"),
                      F.concat(F.lit(f"city_priors {window}: slot-wide strength "), _fmt(F.col("strength")),
                               F.lit(" + history "), F.col("history_impressions").cast("string"),
                               F.lit(" impressions, "), F.col("history_clicks").cast("string"),
                               F.lit(" clicks, x"), F.format_number(scale, 4), F.lit(" (live in window "),
                               (F.col("impressions") - F.col("history_impressions")).cast("string"),
                               F.lit(" impressions, in counters)")).alias("source")))
    return (slot.unionByName(cities)
            .withColumn("computed_at", F.lit(computed_at).cast("timestamp"))
            .select(*PRIOR_COLUMNS))


# -- load -----------------------------------------------------------------------------------------------------

def stale_priors(existing: DataFrame, fresh: DataFrame) -> DataFrame:
    """Existing prior keys of the (tenant, slot) pairs in ``fresh`` that ``fresh`` no longer has."""
    touched = fresh.select(*SLOT_KEY).distinct()
    return (existing.select(*PRIOR_KEY).join(touched, SLOT_KEY, "left_semi")
            .join(fresh.select(*PRIOR_KEY), PRIOR_KEY, "left_anti"))


def load(spark: SparkSession, config: dict[str, Any], keyspace: str, rows: DataFrame) -> tuple[int, int]:
    """Upsert ``rows`` into ``priors``, then delete stale rows of the same slots, then name each of those slots
    in the change feed (cql/007_slot_changes.cql) so the workers holding it re-read its priors. Returns
    (written, deleted)."""
    started = time.monotonic()
    rows = rows.cache()
    written = rows.count()
    progress(f"city priors: fitted {written:,} priors ({time.monotonic() - started:.1f}s); writing them")
    write_table(rows, keyspace, "priors")
    touched = rows.select(*SLOT_KEY).distinct()
    existing = touched.join(read_table(spark, keyspace, "priors", PRIOR_KEY), SLOT_KEY)   # direct join
    stale = [tuple(r) for r in stale_priors(existing, rows).collect()]
    slots = [tuple(r) for r in touched.collect()]          # one row a slot: at most the slots stored
    rows.unpersist()
    if not slots:
        return written, len(stale)
    from webapp.storage import store
    from webapp.storage.database import Database

    db = Database(config | {"CASSANDRA_KEYSPACE": keyspace})
    try:
        if stale:
            statement = db.prepare("DELETE FROM {ks}.priors WHERE tenant_id = ? AND slot_id = ? "
                                   "AND location = ? AND banner_id = ?")
            session = db.session()
            for future in [session.execute_async(statement, key) for key in stale]:
                future.result()
        store.note_changes(db, ((tenant_id, slot_id, "priors") for tenant_id, slot_id in slots))
    finally:
        db.shutdown()
    return written, len(stale)


# -- the job --------------------------------------------------------------------------------------------------

def settings_from(config: dict[str, Any]) -> PriorSettings:
    return PriorSettings(max_strength=float(config["CITY_PRIOR_MAX_STRENGTH"]),
                         min_strength=float(config["CITY_PRIOR_MIN_STRENGTH"]))


def run(spark: SparkSession, config: dict[str, Any], window: Window, tenants: list[str] | None = None,
        dry_run: bool = False, scan: bool = False) -> Summary:
    """Extract, transform and load once, with progress lines. The caller owns ``spark``."""
    keyspace = config["CASSANDRA_KEYSPACE"]
    settings = settings_from(config)
    started = time.monotonic()
    scope = f"tenants {', '.join(tenants)}" if tenants else "all tenants"
    progress(f"city priors: reading impressions and clicks of {window} ({scope}) from keyspace {keyspace}; "
             f"strength {settings.min_strength:g}..{settings.max_strength:g} pseudo-impressions")
    impressions, clicks = extract(spark, keyspace, window, tenants, scan)
    counts = city_counts(impressions, clicks).cache()
    totals = counts.agg(F.sum("impressions"), F.sum("clicks"), F.sum("history_impressions"),
                        F.countDistinct(*SLOT_KEY), F.countDistinct(*BANNER_KEY),
                        F.countDistinct(F.when(F.col("location") != SLOT_WIDE, F.col("location")))).first()
    n_impressions, n_clicks, n_history = (int(totals[i] or 0) for i in range(3))
    progress(f"city priors: {n_impressions:,} impressions ({n_history:,} imported), {n_clicks:,} clicks; "
             f"{totals[3]} slots, {totals[4]} slot banners, {totals[5]} locations "
             f"({time.monotonic() - started:.1f}s)")
    statistics = slot_statistics(counts, settings)
    rows = prior_rows(counts, statistics, settings, window, dt.datetime.now(dt.UTC))
    if dry_run:
        rows.orderBy(*PRIOR_KEY).show(50, truncate=False)
        written = deleted = 0
    else:
        written, deleted = load(spark, config, keyspace, rows)
    counts.unpersist()
    progress(f"city priors: {'would write' if dry_run else 'wrote'} {written:,} priors, deleted {deleted:,} "
             f"stale ones in {time.monotonic() - started:.1f}s")
    return Summary(n_impressions, n_clicks, n_history, int(totals[3]), int(totals[4]), int(totals[5]),
                   written, deleted)


def parse_args(argv: list[str] | None, config: dict[str, Any]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.city_priors", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=config["CITY_PRIOR_WINDOW_DAYS"],
                        help="window: the last N UTC days up to today (default CITY_PRIOR_WINDOW_DAYS=%(default)s)")
    parser.add_argument("--since", type=dt.date.fromisoformat, help="window start, a UTC day (YYYY-MM-DD)")
    parser.add_argument("--until", type=dt.date.fromisoformat,
                        help="window end, exclusive (default: tomorrow, so today is included)")
    parser.add_argument("--tenant", action="append", dest="tenants", help="only this tenant (repeatable)")
    parser.add_argument("--keyspace", help="Cassandra keyspace (default CASSANDRA_KEYSPACE)")
    parser.add_argument("--max-strength", type=float, help="cap (default CITY_PRIOR_MAX_STRENGTH)")
    parser.add_argument("--scan", action="store_true",
                        help="scan the event tables whole instead of reading the window's partitions of the "
                             "configured slots (faster when the window covers most of the log)")
    parser.add_argument("--dry-run", action="store_true", help="show the priors, write nothing")
    return parser.parse_args(argv)


def window_from(args: argparse.Namespace) -> Window:
    if args.since is None:
        window = Window.last_days(args.days)
        return window if args.until is None else Window(args.until - dt.timedelta(days=args.days), args.until)
    return Window(args.since, args.until or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1))


def main(argv: list[str] | None = None) -> int:
    config = config_module.load()
    args = parse_args(argv, config)
    if args.keyspace:
        config["CASSANDRA_KEYSPACE"] = args.keyspace
    if args.max_strength is not None:
        config["CITY_PRIOR_MAX_STRENGTH"] = args.max_strength
    try:
        window = window_from(args)
        settings_from(config)
    except ValueError as exc:
        print(f"city_priors: {exc}", file=sys.stderr)
        return 2
    spark = build_session(config, "banner-bandit city priors")
    try:
        run(spark, config, window, args.tenants, args.dry_run, args.scan)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
