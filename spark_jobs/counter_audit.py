"""Counter audit: compare the serving counters with the event log, and add back what they miss.

    python -m spark_jobs.counter_audit [--tenant T]… [--repair [--settle 5]] [--show 20]

The event log (``impression_log``, ``click_log``) is the truth; ``banner_counts``, ``filtered_click_reasons``,
``traffic_counts`` and ``referrer_counts`` are views of it that each serving process keeps
(webapp/storage/events.py). They can fall behind the log — by what a process killed with SIGKILL had not
flushed, or by a counter batch whose write timed out (its outcome unknown, so it is not retried) — and are
never meant to run ahead of it.

Extract   both event tables and the four counter tables, whole (``--tenant`` filters in Spark).
Transform pure DataFrame → DataFrame functions with the event writer's rules, eventlog/counting.py (tested on
          small inputs, and against ``eventlog.counting.counter_rows``):
          ``expected_banner_counts``  per (tenant, slot, location, banner) and the slot-wide row (location ''):
                                      impressions, valid clicks, filtered clicks;
          ``expected_reasons``        filtered clicks per (tenant, slot, reason);
          ``expected_traffic``        impressions and valid clicks per (tenant, slot, day, location, quarter
                                      hour, banner); a click counts in its impression's quarter hour (the time
                                      inside its timeuuid);
          ``expected_referrers``      impressions and valid clicks per (tenant, slot, UTC day, referrer,
                                      banner), each under its own referrer_id;
          ``expected_lift``           impressions, valid clicks and Σ holdout share (millionths) per (tenant,
                                      slot, location and slot-wide, UTC day, quarter hour, group, visitor shard)
                                      (lift_counts, rule 8; a click in its impression's cell, none without the
                                      impression row);
          ``differences``             the rows where counters and log disagree, with ``missing_<column>`` =
                                      log − counters (negative: the counter is ahead of the log).
          Imported history (``posterior_scope = 'import'``) and its clicks are in no counter, by design.
Load      ``--repair`` adds the missing counts (positive differences only) with the event writer's own COUNTER
          batches, slot by slot, and only to a *quiet* slot: one whose banner_counts still read as the audit
          read them, and again after ``--settle`` seconds (longer than the writers' COUNTER_FLUSH_SECONDS).
          Counts still in flight in a live process would otherwise be added twice. A slot taking traffic is
          skipped and named; stop its servers (``make stop``) or rerun when it is quiet. (A server whose
          counter batches keep failing holds its counts longer than that: stop the servers first then.) A batch
          whose outcome is unknown (a timeout) is not retried, like the writer's: the next audit shows what is
          still missing.
          Counters ahead of the log are reported and left alone: subtracting could erase learning whose log
          rows were removed on purpose.

Every slot with a differing row is checked the same way when only auditing: a slot that took traffic during
the audit may miss the events in flight, so it is named and not judged. The counters are read before the log,
and an event is counted only once its row is written, so a counter ahead of the log is never in flight.

Exit status: 0 when the counters agree with the log (or all they missed was added); 1 when a counter is ahead
of the log or a quiet slot still misses counts; 2 on bad arguments; 3 when only slots that took traffic during
the audit miss counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from cassandra import OperationTimedOut, WriteTimeout
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from eventlog import counting
from eventlog.counting import BUCKET_SECONDS, IMPORT_SCOPE, INVALID_REASON, SLOT_WIDE
from spark_jobs.session import build_session, progress, read_table, stop_session
from spark_jobs.timeuuids import timeuuid_time
from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import config as config_module

SLOT_KEY = ["tenant_id", "slot_id"]
EVENT_KEY = ["tenant_id", "slot_id", "impression_id"]       # unique: the partition follows from the ID
EVENT_PARTITION_KEY = ["tenant_id", "slot_id", "bucket", "shard"]
BANNER_COUNTS_KEY = ["tenant_id", "slot_id", "location", "banner_id"]
BANNER_COUNTS_COLUMNS = ["impressions", "clicks", "filtered_clicks"]
REASONS_KEY = ["tenant_id", "slot_id", "reason"]
REASONS_COLUMNS = ["clicks"]
TRAFFIC_KEY = ["tenant_id", "slot_id", "day", "location", "bucket", "banner_id"]
TRAFFIC_COLUMNS = ["impressions", "clicks"]
CONTEXT_KEY = ["tenant_id", "slot_id", "cell", "banner_id"]
CONTEXT_COLUMNS = ["impressions", "clicks"]
REFERRERS_KEY = ["tenant_id", "slot_id", "day", "referrer_id", "banner_id"]
REFERRERS_COLUMNS = ["impressions", "clicks"]
LIFT_KEY = ["tenant_id", "slot_id", "location", "day", "bucket", "serving_group", "shard"]
LIFT_COLUMNS = ["impressions", "clicks", "holdout_share_micros"]
WRITE_CHUNK = 100                 # counter updates per batch: well under Cassandra's batch size limits


@dataclass(frozen=True)
class Table:
    """One counter table: its key and counter columns."""

    name: str
    key: list[str]
    columns: list[str]


BANNER_COUNTS = Table("banner_counts", BANNER_COUNTS_KEY, BANNER_COUNTS_COLUMNS)
REASONS = Table("filtered_click_reasons", REASONS_KEY, REASONS_COLUMNS)
TRAFFIC = Table("traffic_counts", TRAFFIC_KEY, TRAFFIC_COLUMNS)
CONTEXT = Table("context_counts", CONTEXT_KEY, CONTEXT_COLUMNS)
REFERRERS = Table("referrer_counts", REFERRERS_KEY, REFERRERS_COLUMNS)
LIFT = Table("lift_counts", LIFT_KEY, LIFT_COLUMNS)
TABLES = (BANNER_COUNTS, REASONS, TRAFFIC, CONTEXT, REFERRERS, LIFT)
TIMESTAMP_KEYED = (TRAFFIC, LIFT)        # tables with a timestamp ``bucket`` in their key


# -- extract --------------------------------------------------------------------------------------------------

def _tenants(frame: DataFrame, tenants: list[str] | None) -> DataFrame:
    return frame.where(F.col("tenant_id").isin(tenants)) if tenants else frame


def extract(spark: SparkSession, keyspace: str, tenants: list[str] | None = None
            ) -> tuple[DataFrame, DataFrame, dict[str, DataFrame]]:
    """The whole log (impressions, clicks) and the counter tables, with the columns the audit needs."""
    impressions = read_table(spark, keyspace, "impression_log", EVENT_PARTITION_KEY + [
        "impression_id", "served_at", "location", "banner_id", "posterior_scope", "context_cell", "referrer_id",
        "customer_id", "serving_group", "holdout_share"])
    clicks = read_table(spark, keyspace, "click_log", EVENT_PARTITION_KEY + ["impression_id",
        "clicked_at", "location", "banner_id", "valid", "invalid_reason", "referrer_id"])
    counters = {table.name: _tenants(read_table(spark, keyspace, table.name, table.key + table.columns), tenants)
                for table in TABLES}
    return _tenants(impressions, tenants), _tenants(clicks, tenants), counters


# -- transform ------------------------------------------------------------------------------------------------

def quarter_hour(at: Column) -> Column:
    """The UTC start of the quarter hour of ``at`` (eventlog.counting.traffic_bucket)."""
    seconds = F.unix_seconds(at)
    return F.timestamp_seconds(seconds - F.pmod(seconds, F.lit(BUCKET_SECONDS)))


def live_events(impressions: DataFrame, clicks: DataFrame) -> tuple[DataFrame, DataFrame]:
    """What the counters count: impressions that are not imported history, and clicks of them.

    Returns (impressions: tenant_id, slot_id, location, banner_id, bucket, cell, referrer_id;
             clicks: tenant_id, slot_id, location, banner_id, bucket, valid, reason, cell, referrer_id).
    A click whose impression row is missing still counts (the writer counts a click when its LWT applies); its
    context cell is its impression's (eventlog.counting rule 6), null without the impression row.
    """
    location = F.coalesce(F.col("location"), F.lit(SLOT_WIDE)).alias("location")
    referrer = F.coalesce(F.col("referrer_id"), F.lit("")).alias("referrer_id")
    imported = impressions.where(F.col("posterior_scope") == IMPORT_SCOPE).select(*EVENT_KEY)
    live_impressions = (impressions.where(F.col("posterior_scope").isNull()
                                          | (F.col("posterior_scope") != IMPORT_SCOPE))
                        .select("tenant_id", "slot_id", location, "banner_id",
                                quarter_hour(F.col("served_at")).alias("bucket"),
                                F.col("context_cell").alias("cell"), referrer))
    cells = impressions.where(F.col("context_cell").isNotNull()).select(*EVENT_KEY, F.col("context_cell").alias("cell"))
    live_clicks = (clicks.join(imported, EVENT_KEY, "left_anti").join(cells, EVENT_KEY, "left")
                   .select("tenant_id", "slot_id", location, "banner_id", "cell",
                           quarter_hour(timeuuid_time(F.col("impression_id"), F.col("clicked_at"))).alias("bucket"),
                           F.coalesce(F.col("valid"), F.lit(True)).alias("valid"),
                           F.coalesce(F.col("invalid_reason"), F.lit(INVALID_REASON)).alias("reason"), referrer))
    return live_impressions, live_clicks


def _with_slot_wide(events: DataFrame) -> DataFrame:
    """Each event once under each of its ``eventlog.counting.counted_locations``: its location and the
    slot-wide row ('' only once)."""
    return (events.withColumn("location", F.explode(F.array_distinct(F.array(F.col("location"),
                                                                             F.lit(SLOT_WIDE))))))


def expected_banner_counts(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """banner_counts as the log says: tenant_id, slot_id, location, banner_id, impressions, clicks,
    filtered_clicks (longs)."""
    shown = impressions.select(*BANNER_COUNTS_KEY, F.lit(1).alias("i"), F.lit(0).alias("c"), F.lit(0).alias("f"))
    clicked = clicks.select(*BANNER_COUNTS_KEY, F.lit(0).alias("i"), F.col("valid").cast("int").alias("c"),
                            (~F.col("valid")).cast("int").alias("f"))
    return (_with_slot_wide(shown.unionByName(clicked)).groupBy(*BANNER_COUNTS_KEY)
            .agg(*(F.sum(short).cast("long").alias(name)
                   for short, name in zip(("i", "c", "f"), BANNER_COUNTS_COLUMNS))))


def expected_reasons(clicks: DataFrame) -> DataFrame:
    """filtered_click_reasons as the log says: tenant_id, slot_id, reason, clicks."""
    return (clicks.where(~F.col("valid")).groupBy(*REASONS_KEY)
            .agg(F.count(F.lit(1)).cast("long").alias("clicks")))


def expected_traffic(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """traffic_counts as the log says: tenant_id, slot_id, day, location, bucket, banner_id, impressions,
    clicks. Filtered clicks are not in it."""
    shown = impressions.select("tenant_id", "slot_id", "location", "banner_id", "bucket",
                               F.lit(1).alias("i"), F.lit(0).alias("c"))
    clicked = clicks.where(F.col("valid")).select("tenant_id", "slot_id", "location", "banner_id", "bucket",
                                                  F.lit(0).alias("i"), F.lit(1).alias("c"))
    return (_with_slot_wide(shown.unionByName(clicked))
            .withColumn("day", F.to_date("bucket"))
            .groupBy(*TRAFFIC_KEY)
            .agg(F.sum("i").cast("long").alias("impressions"), F.sum("c").cast("long").alias("clicks")))


def expected_context(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """context_counts as the log says: tenant_id, slot_id, cell, banner_id, impressions, clicks (impressions
    with a context cell, and their valid clicks)."""
    shown = impressions.where(F.col("cell").isNotNull()).select(*CONTEXT_KEY, F.lit(1).alias("i"),
                                                                 F.lit(0).alias("c"))
    clicked = (clicks.where(F.col("cell").isNotNull() & F.col("valid"))
               .select(*CONTEXT_KEY, F.lit(0).alias("i"), F.lit(1).alias("c")))
    return (shown.unionByName(clicked).groupBy(*CONTEXT_KEY)
            .agg(F.sum("i").cast("long").alias("impressions"), F.sum("c").cast("long").alias("clicks")))


def expected_referrers(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """referrer_counts as the log says (eventlog.counting rule 7): tenant_id, slot_id, day (UTC, of the
    impression), referrer_id, banner_id, impressions, valid clicks; no slot-wide copy."""
    shown = impressions.select("tenant_id", "slot_id", "referrer_id", "banner_id", "bucket",
                               F.lit(1).alias("i"), F.lit(0).alias("c"))
    clicked = clicks.where(F.col("valid")).select("tenant_id", "slot_id", "referrer_id", "banner_id", "bucket",
                                                  F.lit(0).alias("i"), F.lit(1).alias("c"))
    return (shown.unionByName(clicked).withColumn("day", F.to_date("bucket"))
            .groupBy(*REFERRERS_KEY)
            .agg(F.sum("i").cast("long").alias("impressions"), F.sum("c").cast("long").alias("clicks")))


def lift_shard(customer_id: Column, impression_id: Column) -> Column:
    """eventlog.counting.lift_shard: CRC-32 of the customer_id, or of the impression ID's text without one."""
    key = F.when(F.coalesce(customer_id, F.lit("")) == "", impression_id.cast("string")).otherwise(customer_id)
    return F.pmod(F.crc32(key.cast("binary")), F.lit(counting.LIFT_SHARDS)).cast("int")


def expected_lift(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """lift_counts as the log says (eventlog.counting rule 8), from the extracted log (not ``live_events``: it
    needs each impression's customer, group and share): tenant_id, slot_id, location, day, bucket, serving_group,
    shard, impressions, clicks, holdout_share_micros. Rows from before cql/013 count as group 'policy', share 0."""
    live = impressions.where(F.col("posterior_scope").isNull() | (F.col("posterior_scope") != IMPORT_SCOPE))
    cells = live.select(
        *EVENT_KEY, F.coalesce(F.col("location"), F.lit(SLOT_WIDE)).alias("location"),
        F.coalesce(F.col("serving_group"), F.lit(counting.POLICY_GROUP)).alias("serving_group"),
        lift_shard(F.col("customer_id"), F.col("impression_id")).alias("shard"),
        quarter_hour(F.col("served_at")).alias("bucket"),
        F.round(F.coalesce(F.col("holdout_share"), F.lit(0.0)) * counting.SHARE_SCALE).cast("long").alias("m"))
    cell = ["tenant_id", "slot_id", "location", "bucket", "serving_group", "shard"]
    shown = cells.select(*cell, F.lit(1).alias("i"), F.lit(0).alias("c"), "m")
    clicked = (clicks.where(F.coalesce(F.col("valid"), F.lit(True)))
               .select(*EVENT_KEY, quarter_hour(timeuuid_time(F.col("impression_id"), F.col("clicked_at")))
                       .alias("click_bucket"))
               .join(cells.drop("bucket"), EVENT_KEY, "inner")
               .select("tenant_id", "slot_id", "location", F.col("click_bucket").alias("bucket"), "serving_group",
                       "shard", F.lit(0).alias("i"), F.lit(1).alias("c"), F.lit(0).cast("long").alias("m")))
    return (_with_slot_wide(shown.unionByName(clicked)).withColumn("day", F.to_date("bucket"))
            .groupBy(*LIFT_KEY)
            .agg(*(F.sum(short).cast("long").alias(name) for short, name in zip(("i", "c", "m"), LIFT_COLUMNS))))


def differences(expected: DataFrame, counted: DataFrame, table: Table) -> DataFrame:
    """Rows where the counters and the log disagree: the key, each column as ``log_<c>`` and ``counted_<c>``,
    and ``missing_<c>`` = log − counted (a row absent on one side counts as zeros there)."""
    log = expected.select(*table.key, *(F.col(c).alias(f"log_{c}") for c in table.columns))
    counted = counted.select(*table.key, *(F.col(c).alias(f"counted_{c}") for c in table.columns))
    joined = log.join(counted, table.key, "full_outer")
    for c in table.columns:
        joined = (joined.withColumn(f"log_{c}", F.coalesce(F.col(f"log_{c}"), F.lit(0)).cast("long"))
                  .withColumn(f"counted_{c}", F.coalesce(F.col(f"counted_{c}"), F.lit(0)).cast("long"))
                  .withColumn(f"missing_{c}", F.col(f"log_{c}") - F.col(f"counted_{c}")))
    disagree = F.lit(False)
    for c in table.columns:
        disagree = disagree | (F.col(f"missing_{c}") != 0)
    return joined.where(disagree)


# -- load -----------------------------------------------------------------------------------------------------

@dataclass
class TableReport:
    table: Table
    rows: list[dict[str, Any]]          # the differing rows, collected

    def missing(self, column: str) -> int:
        return sum(max(0, r[f"missing_{column}"]) for r in self.rows)

    def ahead(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if any(r[f"missing_{c}"] < 0 for c in self.table.columns)]


@dataclass
class Audit:
    """What one audit found: per table, the rows that differ; the banner_counts it read of each slot with such
    rows (the quiet check compares them with the table afterwards); and, once checked, which of those slots
    took traffic meanwhile (busy: their rows may differ by events in flight, so they are not judged)."""

    reports: dict[str, TableReport]
    counted_slots: dict[tuple[str, str], dict[tuple[str, str], tuple[int, ...]]]
    repaired_slots: list[tuple[str, str]] = field(default_factory=list)
    busy_slots: list[tuple[str, str]] = field(default_factory=list)
    unknown_batches: int = 0

    @property
    def consistent(self) -> bool:
        return not any(report.rows for report in self.reports.values())

    def differing_slots(self) -> list[tuple[str, str]]:
        """Slots with a row that differs from the log, either way."""
        return sorted({(r["tenant_id"], r["slot_id"]) for report in self.reports.values() for r in report.rows})

    def repairable_slots(self) -> list[tuple[str, str]]:
        """Slots with a row that misses counts the log has."""
        return sorted({(r["tenant_id"], r["slot_id"]) for report in self.reports.values() for r in report.rows
                       if any(r[f"missing_{c}"] > 0 for c in report.table.columns)})

    def ahead(self) -> bool:
        """A counter ahead of the log. Never in flight (the counters are read before the log, and an event is
        counted only once its row is written), so someone wrote it."""
        return any(report.ahead() for report in self.reports.values())


def _counter_values(row) -> tuple[int, ...]:
    """A banner_counts row's (impressions, clicks, filtered clicks); a counter never written reads as null."""
    return tuple(int(row[c] or 0) for c in BANNER_COUNTS_COLUMNS)


def slot_counters(db: Database, tenant_id: str, slot_id: str) -> dict[tuple[str, str], tuple[int, ...]]:
    """The slot's banner_counts now: (location, banner) → (impressions, clicks, filtered clicks)."""
    rows = db.execute("SELECT location, banner_id, impressions, clicks, filtered_clicks FROM {ks}.banner_counts "
                      "WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))
    return {(r["location"], r["banner_id"]): _counter_values(r) for r in rows}


def _without_zeros(counts: dict[tuple[str, str], tuple[int, ...]]) -> dict[tuple[str, str], tuple[int, ...]]:
    return {key: values for key, values in counts.items() if any(values)}


def quiet_slots(db: Database, audit: Audit, settle: float) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split the audit's differing slots into (quiet, busy), and keep the busy ones in ``audit.busy_slots``: a
    slot is quiet when its banner_counts read now, and again ``settle`` seconds later, are what the audit read."""
    slots = audit.differing_slots()
    first = {slot: _without_zeros(slot_counters(db, *slot)) for slot in slots}
    if slots and settle > 0:
        time.sleep(settle)
    quiet, busy = [], []
    for slot in slots:
        read = _without_zeros(audit.counted_slots.get(slot, {}))
        same = first[slot] == read and _without_zeros(slot_counters(db, *slot)) == read
        (quiet if same else busy).append(slot)
    audit.busy_slots = busy
    return quiet, busy


def repair_deltas(audit: Audit, slot: tuple[str, str]
                  ) -> tuple[dict[tuple, list[int]], dict[tuple, int], dict[tuple, list[int]], dict[tuple, list[int]]]:
    """The slot's missing counts as the event writer's delta maps (webapp.storage.store.counter_batches and
    traffic_batches): positive differences only."""
    deltas: dict[tuple, list[int]] = {}
    reasons: dict[tuple, int] = {}
    traffic: dict[tuple, list[int]] = {}
    referrers: dict[tuple, list[int]] = {}

    def add(report: TableReport):
        for row in report.rows:
            if (row["tenant_id"], row["slot_id"]) == slot:
                values = [max(0, row[f"missing_{c}"]) for c in report.table.columns]
                if any(values):
                    yield row, values

    for row, values in add(audit.reports[BANNER_COUNTS.name]):
        deltas[(row["tenant_id"], row["slot_id"], row["location"], row["banner_id"])] = values
    for row, values in add(audit.reports[REASONS.name]):
        reasons[(row["tenant_id"], row["slot_id"], row["reason"])] = values[0]
    for row, values in add(audit.reports[TRAFFIC.name]):
        bucket = dt.datetime.fromtimestamp(row["bucket_seconds"], dt.UTC)
        traffic[(row["tenant_id"], row["slot_id"], row["location"], bucket, row["banner_id"])] = values
    for row, values in add(audit.reports[REFERRERS.name]):
        referrers[(row["tenant_id"], row["slot_id"], row["day"], row["referrer_id"], row["banner_id"])] = values
    return deltas, reasons, traffic, referrers


def lift_deltas(audit: Audit, slot: tuple[str, str]) -> dict[tuple, list[int]]:
    """The slot's missing lift_counts as the event writer's delta map (webapp.storage.store.lift_batches)."""
    deltas = {}
    for row in audit.reports[LIFT.name].rows:
        values = [max(0, row[f"missing_{c}"]) for c in LIFT_COLUMNS]
        if (row["tenant_id"], row["slot_id"]) == slot and any(values):
            bucket = dt.datetime.fromtimestamp(row["bucket_seconds"], dt.UTC)
            deltas[(row["tenant_id"], row["slot_id"], row["location"], bucket, row["serving_group"],
                    row["shard"])] = values
    return deltas


def _chunks(items: dict, size: int = WRITE_CHUNK):
    keys = list(items)
    for start in range(0, len(keys), size):
        yield {key: items[key] for key in keys[start:start + size]}


def repair(db: Database, audit: Audit, settle: float) -> Audit:
    """Add the missing counts of the quiet slots (see the module doc). Returns ``audit`` with the repaired and
    busy slots and the number of batches whose outcome is unknown."""
    quiet, _ = quiet_slots(db, audit, settle)
    repairable = set(audit.repairable_slots())
    session = db.session()
    for slot in (slot for slot in quiet if slot in repairable):
        deltas, reasons, traffic, referrers = repair_deltas(audit, slot)
        batches = [batch for chunk in _chunks(deltas) for batch in store.counter_batches(db, chunk, {}).values()]
        batches += list(store.counter_batches(db, {}, reasons).values()) if reasons else []
        batches += [batch for chunk in _chunks(traffic) for batch in store.traffic_batches(db, chunk).values()]
        context = {(r["tenant_id"], r["slot_id"], r["cell"], r["banner_id"]):
                   [max(0, r["missing_impressions"]), max(0, r["missing_clicks"])]
                   for r in audit.reports[CONTEXT.name].rows
                   if (r["tenant_id"], r["slot_id"]) == slot and (r["missing_impressions"] > 0
                                                                  or r["missing_clicks"] > 0)}
        batches += [batch for chunk in _chunks(context) for batch in store.counter_batches(db, {}, {}, chunk).values()]
        batches += [batch for chunk in _chunks(referrers) for batch in store.referrer_batches(db, chunk).values()]
        lifted = lift_deltas(audit, slot)
        batches += [batch for chunk in _chunks(lifted) for batch in store.lift_batches(db, chunk).values()]
        for batch in batches:
            try:
                session.execute(batch)
            except (WriteTimeout, OperationTimedOut) as exc:     # outcome unknown: not retried (module doc)
                audit.unknown_batches += 1
                progress(f"counter audit: a repair batch of {slot[0]}/{slot[1]} timed out, not retried: {exc}")
        audit.repaired_slots.append(slot)
    if audit.repaired_slots:        # the workers holding a repaired slot re-read it (the change feed, cql/007)
        store.note_changes(db, ((tenant_id, slot_id, "counts") for tenant_id, slot_id in audit.repaired_slots))
    return audit


# -- the job --------------------------------------------------------------------------------------------------

def _collect(frame: DataFrame, table: Table) -> list[dict[str, Any]]:
    if table in TIMESTAMP_KEYED:  # not a timestamp: collect() would turn it into the machine's local wall time
        frame = (frame.withColumn("bucket_seconds", F.unix_seconds("bucket"))
                 .withColumn("bucket", F.date_format("bucket", "yyyy-MM-dd HH:mm'Z'")))    # the session is UTC
    return [row.asDict() for row in frame.orderBy(*table.key).toLocalIterator()]


def audit_log(spark: SparkSession, keyspace: str, tenants: list[str] | None = None) -> Audit:
    """Read the counters, then the log, once each, and compare them (nothing is written).

    The counters are read first, and kept: the log only grows, so an event that reaches it after the counters
    were read shows as missing, and its counter, flushed a moment later, makes its slot fail the quiet check.
    Read the other way round, a slot whose traffic stopped between the two reads could pass that check with
    counters ahead of the log.
    """
    impressions, clicks, counters = extract(spark, keyspace, tenants)
    counted = {name: frame.localCheckpoint(eager=True) for name, frame in counters.items()}
    # The log is read once and kept. With the derived frames cached instead, and the raw log read a second time
    # for lift_counts, a stage of the first comparison stalled in local[2] with a task never launched.
    impressions, clicks = impressions.localCheckpoint(eager=True), clicks.localCheckpoint(eager=True)
    live_impressions, live_clicks = live_events(impressions, clicks)
    expected = {BANNER_COUNTS.name: expected_banner_counts(live_impressions, live_clicks),
                REASONS.name: expected_reasons(live_clicks),
                TRAFFIC.name: expected_traffic(live_impressions, live_clicks),
                CONTEXT.name: expected_context(live_impressions, live_clicks),
                REFERRERS.name: expected_referrers(live_impressions, live_clicks),
                LIFT.name: expected_lift(impressions, clicks)}
    reports = {table.name: TableReport(table, _collect(differences(expected[table.name], counted[table.name],
                                                                   table), table))
               for table in TABLES}
    differing = {(r["tenant_id"], r["slot_id"]) for report in reports.values() for r in report.rows}
    counted_slots: dict[tuple[str, str], dict[tuple[str, str], tuple[int, ...]]] = defaultdict(dict)
    if differing:
        slots = counted[BANNER_COUNTS.name].join(
            spark.createDataFrame(sorted(differing), "tenant_id string, slot_id string"), SLOT_KEY, "left_semi")
        for row in slots.collect():
            counted_slots[(row["tenant_id"], row["slot_id"])][(row["location"], row["banner_id"])] = \
                _counter_values(row)
    return Audit(reports, dict(counted_slots))


def describe(audit: Audit, show: int) -> str:
    """The audit as text: one line per table, up to ``show`` differing rows of each, then the busy slots."""
    lines = []
    for report in audit.reports.values():
        table = report.table
        missing = ", ".join(f"{report.missing(c):,} {c}" for c in table.columns)
        lines.append(f"{table.name}: {len(report.rows):,} rows differ from the log; missing {missing}; "
                     f"{len(report.ahead()):,} rows ahead of the log")
        for row in report.rows[:show]:
            key = " ".join(str(row[k]) if row[k] != "" else "''" for k in table.key)
            values = ", ".join(f"{c} {row[f'counted_{c}']:,}/{row[f'log_{c}']:,}" for c in table.columns)
            lines.append(f"  {key}: counted/log {values}")
        if len(report.rows) > show:
            lines.append(f"  … and {len(report.rows) - show:,} more")
    for tenant_id, slot_id in audit.busy_slots:
        lines.append(f"{tenant_id}/{slot_id} took traffic during the audit: its rows may differ by events in flight, "
                     f"so they are not judged (nor repaired); rerun when it is quiet")
    return "\n".join(lines)


def run(spark: SparkSession, config: dict[str, Any], tenants: list[str] | None = None, repair_slots: bool = False,
        settle: float = 5.0, show: int = 20) -> Audit:
    """Audit, check which differing slots are quiet, print, and (``repair_slots``) repair them. The caller owns
    ``spark``."""
    keyspace = config["CASSANDRA_KEYSPACE"]
    started = time.monotonic()
    scope = f"tenants {', '.join(tenants)}" if tenants else "all tenants"
    progress(f"counter audit: reading the event log and the counters of {scope} from keyspace {keyspace}")
    audit = audit_log(spark, keyspace, tenants)
    progress(f"counter audit: compared in {time.monotonic() - started:.1f}s; "
             + ("the counters agree with the log" if audit.consistent else
                f"{sum(len(r.rows) for r in audit.reports.values()):,} rows of "
                f"{len(audit.differing_slots())} slots differ; checking for {settle:g}s which slots take traffic"))
    if not audit.consistent:
        db = Database(config)
        try:
            if repair_slots:
                repair(db, audit, settle)
            else:
                quiet_slots(db, audit, settle)
        finally:
            db.shutdown()
    print(describe(audit, show))
    if repair_slots:
        for tenant_id, slot_id in audit.repaired_slots:
            print(f"repaired {tenant_id}/{slot_id}")
        progress(f"counter audit: repaired {len(audit.repaired_slots)} slots, skipped {len(audit.busy_slots)} "
                 f"busy ones, {audit.unknown_batches} batches timed out, in {time.monotonic() - started:.1f}s")
    return audit


def exit_status(audit: Audit, repaired: bool) -> int:
    """0: the counters agree with the log, or all they missed was added; 1: a counter is ahead of the log, or
    a quiet slot still misses counts (not repaired, or a repair batch timed out); 3: only slots that took
    traffic during the audit miss counts, so nothing could be judged there."""
    if audit.consistent:
        return 0
    if repaired:
        unresolved = audit.unknown_batches > 0 or audit.ahead()
    else:
        unresolved = audit.ahead() or any(slot not in audit.busy_slots for slot in audit.differing_slots())
    if unresolved:
        return 1
    return 3 if audit.busy_slots else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.counter_audit",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--tenant", action="append", dest="tenants", help="only this tenant (repeatable)")
    parser.add_argument("--keyspace", help="Cassandra keyspace (default CASSANDRA_KEYSPACE)")
    parser.add_argument("--repair", action="store_true",
                        help="add the counts the counters miss, to slots that take no traffic meanwhile")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds a slot's counters must stay unchanged before its repair (default 5)")
    parser.add_argument("--show", type=int, default=20, help="differing rows printed per table (default 20)")
    args = parser.parse_args(argv)
    if args.settle < 0 or args.show < 0:
        parser.error("--settle and --show must be ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    config = config_module.load()
    args = parse_args(argv)
    if args.keyspace:
        config["CASSANDRA_KEYSPACE"] = args.keyspace
    spark = build_session(config, "banner-bandit counter audit")
    try:
        audit = run(spark, config, args.tenants, args.repair, args.settle, args.show)
    finally:
        stop_session(spark)
    return exit_status(audit, args.repair)


if __name__ == "__main__":
    sys.exit(main())
