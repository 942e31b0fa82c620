"""Import past impressions and clicks from CSV into the event log, so priors can start from them.

    python -m spark_jobs.import_history history.csv [--dry-run] [--rejects rejects.csv]

The CSV (UTF-8, comma-separated, one record per line, a header line first):

    time,tenant,slot,banner,location,customer_id,referrer_id,clicked
    2026-10-01T09:30:00+05:30,demo,home-hero,summer-sale,Mumbai,c1842,newsletter,1

    time          ISO 8601; with an offset or Z, or without one (then UTC)
    tenant, slot, banner   IDs as in the management API (letters, digits, '_', '-', '.'; up to 64)
    location      city name, normalized like serving does (trimmed, case-folded); empty = no location
    customer_id, referrer_id   optional free text (up to MAX_PARAM_LENGTH characters)
    clicked       1/0, true/false or yes/no

Optional columns may follow, named in the header, for off-policy evaluation (spark_jobs/evaluate.py):

    propensity    the old system's probability of showing this banner to this visitor, in (0, 1]; a row
                  outside is rejected; empty = unknown (the row is imported, and left out of evaluations)
    <name>        any other column (a lower-case name: letters, digits, '_'; at most 8 of them) is a context
                  feature of the impression (e.g. device, segment), kept in ``policy_state`` as
                  {"context": {name: value}} and used by the evaluation's reward model

Each good row becomes one ``impression_log`` row (``posterior_scope`` and ``prior_source`` = 'import'; alpha
and beta stay empty, and so does the propensity unless the file has one) and, when clicked, one ``click_log``
row (``clicked_at`` = time, as the log has no click time; ``valid``: a clicked row is taken as a click the
old system counted, so export only those). Rejected rows are reported with their line
number and reason, and the good ones are imported (``--dry-run`` only validates). The exit status is 0 when
every row was imported, 1 when some were rejected, 2 when the file cannot be used at all.

Re-importing a file is harmless: an impression's ID is a timeuuid of its time and of a hash of its line's
text and of the number of identical lines before it, so the same rows are overwritten.

The serving counters (``banner_counts``) are not touched: imported history reaches serving through the
priors (spark_jobs/city_priors.py adds a city's imported events to its prior, capped), never twice. Run
``make priors`` after an import.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from eventlog.counting import IMPORT_SCOPE
from spark_jobs.session import build_session, progress, write_table
from spark_jobs.timeuuids import event_bucket, event_shard, timeuuid
from webapp.web import config as config_module
from webapp.web import validation
from webapp.web.errors import InvalidInput

HEADER = ("time", "tenant", "slot", "banner", "location", "customer_id", "referrer_id", "clicked")
CLICKED = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
MAX_FUTURE = dt.timedelta(days=1)
MAX_REPORTED = 50           # rejected rows printed; --rejects writes them all
PROPENSITY = "propensity"
MAX_CONTEXT_COLUMNS = 8
CONTEXT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

PARSED_SCHEMA = T.StructType([
    T.StructField("line_number", T.LongType(), False),
    T.StructField("text", T.StringType(), False),
    T.StructField("occurrence", T.LongType(), False),
    T.StructField("error", T.StringType(), True),
    T.StructField("time", T.TimestampType(), True),
    T.StructField("tenant_id", T.StringType(), True),
    T.StructField("slot_id", T.StringType(), True),
    T.StructField("banner_id", T.StringType(), True),
    T.StructField("location", T.StringType(), True),
    T.StructField("customer_id", T.StringType(), True),
    T.StructField("referrer_id", T.StringType(), True),
    T.StructField("clicked", T.BooleanType(), True),
    T.StructField("propensity", T.DoubleType(), True),
    T.StructField("policy_state", T.StringType(), True),      # {"context": {...}} of the optional columns
])


class UnusableFile(Exception):
    """The file as a whole cannot be imported (missing, empty, wrong header)."""


@dataclass(frozen=True)
class HistoryRow:
    time: dt.datetime           # UTC
    tenant_id: str
    slot_id: str
    banner_id: str
    location: str
    customer_id: str
    referrer_id: str
    clicked: bool
    propensity: float | None = None
    context: dict[str, str] | None = None


def _fields(text: str) -> list[str]:
    return next(csv.reader([text]), [])


def check_header(text: str) -> tuple[str, ...]:
    """The optional columns after the required ones (module doc); UnusableFile for a header it cannot use."""
    found = tuple(field.strip().lower() for field in _fields(text.lstrip("\ufeff")))
    if found[:len(HEADER)] != HEADER:
        raise UnusableFile(f"line 1: expected the header {','.join(HEADER)}, found {text[:200]!r}")
    extras = found[len(HEADER):]
    context = [name for name in extras if name != PROPENSITY]
    if len(set(extras)) != len(extras) or len(context) > MAX_CONTEXT_COLUMNS \
            or not all(CONTEXT_NAME.match(name) for name in context):
        raise UnusableFile(f"line 1: optional columns must be 'propensity' and at most {MAX_CONTEXT_COLUMNS} "
                           f"distinct lower-case context names, found {','.join(extras)[:200]!r}")
    return extras


def parse_time(value: str, now: dt.datetime) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"time {value[:40]!r} is not ISO 8601 (e.g. 2026-10-01T09:30:00Z)") from None
    parsed = parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(
        dt.UTC)
    if parsed > now + MAX_FUTURE:
        raise InvalidInput(f"time {value[:40]!r} is in the future")
    return parsed


def parse_propensity(value: str) -> float | None:
    """The optional propensity: empty = unknown, else a number in (0, 1]."""
    if not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number <= 1:         # NaN fails too
        raise InvalidInput(f"propensity must be a probability in (0, 1], found {value[:20]!r}")
    return number


def parse_row(text: str, max_param_length: int, now: dt.datetime, extras: tuple[str, ...] = ()) -> HistoryRow:
    """One data line → a HistoryRow; raises InvalidInput saying what is wrong. ``extras``: the optional
    columns of the header (check_header)."""
    fields = _fields(text)
    columns = HEADER + extras
    if len(fields) != len(columns):
        raise InvalidInput(f"expected {len(columns)} fields ({','.join(columns)}), found {len(fields)}")
    when, tenant, slot, banner, location, customer_id, referrer_id, clicked = fields[:len(HEADER)]
    optional = dict(zip(extras, fields[len(HEADER):]))
    propensity = parse_propensity(optional.pop(PROPENSITY, ""))
    context = {name: validation.text_param(value, name, max_param_length) for name, value in optional.items()}
    clicked_value = CLICKED.get(clicked.strip().lower())
    if clicked_value is None:
        raise InvalidInput(f"clicked must be 1/0, true/false or yes/no, found {clicked[:20]!r}")
    return HistoryRow(
        time=parse_time(when, now),
        tenant_id=validation.identifier(tenant.strip(), "tenant"),
        slot_id=validation.identifier(slot.strip(), "slot"),
        banner_id=validation.identifier(banner.strip(), "banner"),
        location=validation.normalize_location(location, max_param_length),
        customer_id=validation.text_param(customer_id, "customer_id", max_param_length),
        referrer_id=validation.text_param(referrer_id, "referrer_id", max_param_length),
        clicked=clicked_value,
        propensity=propensity,
        context=context or None,
    )


def parse_partition(rows: Iterable[Any], max_param_length: int, now: dt.datetime,
                    extras: tuple[str, ...] = ()) -> Iterator[tuple]:
    """(line_number, text, occurrence) rows → PARSED_SCHEMA tuples, good or with an error."""
    for line_number, text, occurrence in rows:
        try:
            row = parse_row(text, max_param_length, now, extras)
        except InvalidInput as exc:
            yield (line_number, text, occurrence, exc.message) + (None,) * 10
        else:
            state = json.dumps({"context": row.context}, separators=(",", ":")) if row.context else None
            yield (line_number, text, occurrence, None, row.time, row.tenant_id, row.slot_id, row.banner_id,
                   row.location, row.customer_id, row.referrer_id, row.clicked, row.propensity, state)


# -- extract --------------------------------------------------------------------------------------------------

def read_lines(spark: SparkSession, path: str) -> DataFrame:
    """The file's lines with their 1-based line numbers: columns line_number, text."""
    numbered = spark.sparkContext.textFile(path).zipWithIndex().map(lambda pair: (pair[1] + 1, pair[0]))
    schema = T.StructType([T.StructField("line_number", T.LongType(), False),
                           T.StructField("text", T.StringType(), False)])
    return spark.createDataFrame(numbered, schema)


# -- transform ------------------------------------------------------------------------------------------------

def parse_lines(lines: DataFrame, max_param_length: int, now: dt.datetime, extras: tuple[str, ...] = ()
                ) -> DataFrame:
    """Data lines (after the header, blank ones skipped) parsed and validated: PARSED_SCHEMA columns.

    ``occurrence`` numbers identical lines (1, 2, …) in file order; ``error`` is null for a good row.
    """
    data = lines.where((F.col("line_number") > 1) & (F.trim("text") != ""))
    data = data.withColumn("occurrence", F.row_number().over(
        Window.partitionBy("text").orderBy("line_number")).cast("long"))
    parsed = data.select("line_number", "text", "occurrence").rdd.mapPartitions(
        lambda rows: parse_partition(rows, max_param_length, now, extras))
    return lines.sparkSession.createDataFrame(parsed, PARSED_SCHEMA)


def rejected_rows(parsed: DataFrame) -> DataFrame:
    """Columns line_number, error, text of the rows that failed validation."""
    return parsed.where(F.col("error").isNotNull()).select("line_number", "error", "text")


def event_rows(parsed: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The good rows as rows of the ``impression_log`` and ``click_log`` tables, each in the partition of
    its impression's timeuuid (eventlog.partitions, as Spark expressions)."""
    good = (parsed.where(F.col("error").isNull())
            .withColumn("impression_id", timeuuid(F.col("time"), F.xxhash64("text", "occurrence")))
            .withColumns({"bucket": event_bucket(F.col("impression_id")),
                          "shard": event_shard(F.col("impression_id"))}))
    impressions = good.select(
        "tenant_id", "slot_id", "bucket", "shard", "impression_id", F.col("time").alias("served_at"), "banner_id",
        "location", "customer_id", "referrer_id", F.lit(IMPORT_SCOPE).alias("posterior_scope"),
        F.lit(IMPORT_SCOPE).alias("prior_source"), "propensity", "policy_state")
    clicks = good.where("clicked").select(
        "tenant_id", "slot_id", "bucket", "shard", "impression_id", F.col("time").alias("clicked_at"), "banner_id",
        "location", "customer_id", "referrer_id", F.lit(True).alias("valid"))
    return impressions, clicks


# -- the job --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportResult:
    impressions: int
    clicks: int
    rejected: list[tuple[int, str, str]]      # (line number, reason, text), in line order
    rejected_count: int


def run(spark: SparkSession, config: dict[str, Any], path: str, dry_run: bool = False,
        keep_rejected: int | None = MAX_REPORTED) -> ImportResult:
    """Validate and import one CSV file. The caller owns ``spark``. Raises UnusableFile."""
    started = time.monotonic()
    keyspace = config["CASSANDRA_KEYSPACE"]
    try:
        lines = read_lines(spark, path)
        first = lines.where(F.col("line_number") == 1).select("text").first()
    except Exception as exc:
        if "does not exist" in str(exc):
            raise UnusableFile(f"{path} does not exist") from None
        raise
    if first is None:
        raise UnusableFile(f"{path} is empty")
    extras = check_header(first["text"])
    progress(f"import: validating {path}" + (f" (optional columns: {', '.join(extras)})" if extras else ""))
    parsed = parse_lines(lines, int(config["MAX_PARAM_LENGTH"]), dt.datetime.now(dt.UTC), extras).cache()
    impressions, clicks = event_rows(parsed)
    counts = parsed.agg(F.count(F.when(F.col("error").isNull(), 1)),
                        F.count(F.when(F.col("error").isNull() & F.col("clicked"), 1)),
                        F.count(F.when(F.col("error").isNotNull(), 1))).first()
    n_impressions, n_clicks, n_rejected = int(counts[0]), int(counts[1]), int(counts[2])
    rejects = rejected_rows(parsed).orderBy("line_number")
    if keep_rejected is not None:
        rejects = rejects.limit(keep_rejected)
    rejected = [(int(r["line_number"]), r["error"], r["text"]) for r in rejects.collect()]
    progress(f"import: {n_impressions:,} good rows ({n_clicks:,} clicked), {n_rejected:,} rejected "
             f"({time.monotonic() - started:.1f}s)")
    if not dry_run and n_impressions:
        progress(f"import: writing impressions and clicks into keyspace {keyspace}")
        write_table(impressions, keyspace, "impression_log")
        write_table(clicks, keyspace, "click_log")
        progress(f"import: wrote {n_impressions:,} impressions and {n_clicks:,} clicks in "
                 f"{time.monotonic() - started:.1f}s; run `make priors` to use them")
    parsed.unpersist()
    return ImportResult(0 if dry_run else n_impressions, 0 if dry_run else n_clicks, rejected, n_rejected)


def report_rejected(result: ImportResult, rejects_path: str | None) -> None:
    for line_number, reason, text in result.rejected[:MAX_REPORTED]:
        print(f"line {line_number}: {reason}: {text[:120]}", file=sys.stderr)
    if result.rejected_count > MAX_REPORTED:
        print(f"… and {result.rejected_count - MAX_REPORTED:,} more rejected rows"
              + (f" (all in {rejects_path})" if rejects_path else " (--rejects FILE lists them all)"),
              file=sys.stderr)
    if rejects_path:
        with open(rejects_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "reason", "text"])
            writer.writerows(result.rejected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.import_history",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("csv", help="the history file (a local path, or any URI Spark can read)")
    parser.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    parser.add_argument("--rejects", help="write every rejected row (line, reason, text) to this CSV file")
    parser.add_argument("--keyspace", help="Cassandra keyspace (default CASSANDRA_KEYSPACE)")
    args = parser.parse_args(argv)
    config = config_module.load()
    if args.keyspace:
        config["CASSANDRA_KEYSPACE"] = args.keyspace
    spark = build_session(config, "banner-bandit history import")
    try:
        result = run(spark, config, args.csv, args.dry_run, keep_rejected=None if args.rejects else MAX_REPORTED)
    except UnusableFile as exc:
        print(f"import_history: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    report_rejected(result, args.rejects)
    return 1 if result.rejected_count else 0


if __name__ == "__main__":
    sys.exit(main())
