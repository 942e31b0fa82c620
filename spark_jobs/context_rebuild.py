"""Rebuild context_counts from the event log: bring each cell counter of a slot, a tenant or every tenant to
exactly what the log says (the log is the truth).

    python -m spark_jobs.context_rebuild [--tenant T]… [--slot T/S]… [--dry-run] [--settle 5] [--show 20]

``context_counts`` (cql/012) holds a contextual slot's sufficient statistics: impressions and valid clicks per
(context cell, banner), counted by the event writer by eventlog/counting.py rule 6. The counter audit
(spark_jobs/counter_audit.py) only ever *adds* what a counter misses; this job also takes away what a counter
holds beyond the log (a row over-counted or written by hand, counts of log rows deleted on purpose), so the
table ends equal to the log, cell by cell. It reuses the audit's reads, rules and quiet check:

Extract   ``banner_counts`` of the slots in scope, then their ``context_counts``, then the event log (in that
          order: see *Concurrent serving*); filtered in Spark (the log's partitions are per time bucket).
Transform the audit's ``live_events`` and ``expected_context`` (rule 6: impressions with a cell and their valid
          clicks; imported history and filtered clicks count nowhere), then ``differences``: per (tenant,
          slot, cell, banner) ``missing_<c>`` = log − counter, of either sign.
Load      Counters cannot be set, only incremented: each differing row gets ``missing_<c>`` added (negative:
          subtracted) with the event writer's COUNTER batches (``store.counter_batches``), slot by slot; then
          a change-feed row (``store.note_changes``, kind ``counts``) per rebuilt slot, so every worker holding
          it re-reads it and refits its model within CACHE_REFRESH_SECONDS. A cell the log does not have ends
          at 0/0 (a counter row cannot be deleted and then counted again safely; the model ignores empty rows).

Idempotent: a second run finds every row equal to the log and writes nothing.

Concurrent serving. Workers count an event only after its log row is written, and flush their counters every
COUNTER_FLUSH_SECONDS. The job reads the counters before the log, so counts still in a worker's memory show
as missing; adding them would count them twice when the worker flushes. So a slot is rebuilt only when it is
*quiet*: its banner_counts (which every flush of the slot changes, in the same batch as its context_counts)
read now, and again ``--settle`` seconds later, are what the job read before its context_counts. A slot that
took traffic is named and left alone (exit 3); rerun when it pauses, or stop its servers. As with the audit,
a server whose counter batches keep failing holds its counts longer than ``--settle``: stop the servers first.
A batch whose outcome is unknown (a timeout) is not retried: the next run shows what is still off.

Exit status: 0 the table equals the log (or was brought to it); 1 a batch timed out, or (``--dry-run``) a
quiet slot differs; 2 bad arguments; 3 only slots that took traffic differ.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from functools import reduce
from typing import Any

from cassandra import OperationTimedOut, WriteTimeout
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import counter_audit
from spark_jobs.counter_audit import BANNER_COUNTS, CONTEXT, SLOT_KEY, WRITE_CHUNK, Audit, TableReport
from spark_jobs.session import build_session, progress, stop_session
from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import config as config_module

Slot = tuple[str, str]


# -- extract --------------------------------------------------------------------------------------------------

def in_scope(tenants: list[str] | None, slots: list[Slot] | None) -> Column | None:
    """The rows of the named tenants and slots; None: every row."""
    terms = [F.col("tenant_id").isin(tenants)] if tenants else []
    terms += [(F.col("tenant_id") == tenant_id) & (F.col("slot_id") == slot_id) for tenant_id, slot_id in slots or ()]
    return reduce(lambda a, b: a | b, terms) if terms else None


def extract(spark: SparkSession, keyspace: str, tenants: list[str] | None = None, slots: list[Slot] | None = None
            ) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """(impressions, clicks, banner_counts, context_counts) of the scope, with the audit's columns; lazy."""
    named = sorted({*(tenants or ()), *(tenant_id for tenant_id, _ in slots or ())}) or None
    impressions, clicks, counters = counter_audit.extract(spark, keyspace, named)
    scope = in_scope(tenants, slots)
    frames = (impressions, clicks, counters[BANNER_COUNTS.name], counters[CONTEXT.name])
    return tuple(frame if scope is None else frame.where(scope) for frame in frames)    # type: ignore[return-value]


# -- transform ------------------------------------------------------------------------------------------------

def expected(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
    """context_counts as the log says (the audit's rule-6 transform): tenant_id, slot_id, cell, banner_id,
    impressions, clicks."""
    return counter_audit.expected_context(*counter_audit.live_events(impressions, clicks))


def corrections(log: DataFrame, counted: DataFrame) -> DataFrame:
    """The rows to change, with ``missing_impressions`` / ``missing_clicks`` = log − counted, either sign (a row
    absent on one side reads as zeros there)."""
    return counter_audit.differences(log, counted, CONTEXT)


# -- plan and load --------------------------------------------------------------------------------------------

def plan(spark: SparkSession, keyspace: str, tenants: list[str] | None = None, slots: list[Slot] | None = None
         ) -> Audit:
    """Read banner_counts, then context_counts, then the log, and compare (nothing is written). Returns an
    :class:`~spark_jobs.counter_audit.Audit` of the one table, with the banner_counts read of each differing
    slot for the quiet check."""
    impressions, clicks, banner_counts, context_counts = extract(spark, keyspace, tenants, slots)
    banner_counts = banner_counts.localCheckpoint(eager=True)       # first: see the module doc
    context_counts = context_counts.localCheckpoint(eager=True)
    # The log read once and kept, as the counter audit does: planned straight from the connector's scans, a
    # stage of the comparison stalled in local[2] with a task never launched.
    impressions, clicks = impressions.localCheckpoint(eager=True), clicks.localCheckpoint(eager=True)
    rows = [row.asDict() for row in corrections(expected(impressions, clicks), context_counts)
            .orderBy(*CONTEXT.key).collect()]        # only the differing rows
    counted_slots: dict[Slot, dict[tuple[str, str], tuple[int, ...]]] = defaultdict(dict)
    differing = sorted({(r["tenant_id"], r["slot_id"]) for r in rows})
    if differing:
        keys = spark.createDataFrame(differing, "tenant_id string, slot_id string")
        for row in banner_counts.join(keys, SLOT_KEY, "left_semi").collect():
            counted_slots[(row["tenant_id"], row["slot_id"])][(row["location"], row["banner_id"])] = \
                counter_audit._counter_values(row)
    return Audit({CONTEXT.name: TableReport(CONTEXT, rows)}, dict(counted_slots))


def slot_deltas(audit: Audit, slot: Slot) -> dict[tuple[str, str, str, str], list[int]]:
    """The slot's corrections as the event writer's context deltas: (tenant, slot, cell, banner) →
    [impressions, clicks] to add (negative: to take away)."""
    return {(r["tenant_id"], r["slot_id"], r["cell"], r["banner_id"]):
            [r["missing_impressions"], r["missing_clicks"]]
            for r in audit.reports[CONTEXT.name].rows if (r["tenant_id"], r["slot_id"]) == slot}


def apply(db: Database, audit: Audit, settle: float) -> Audit:
    """Bring the quiet differing slots to the log (see the module doc); ``audit.repaired_slots`` names them,
    ``audit.busy_slots`` the ones left alone, ``audit.unknown_batches`` counts batches that timed out."""
    quiet, _ = counter_audit.quiet_slots(db, audit, settle)
    session = db.session()
    for number, slot in enumerate(quiet, 1):
        deltas = slot_deltas(audit, slot)
        keys = list(deltas)
        for start in range(0, len(keys), WRITE_CHUNK):
            chunk = {key: deltas[key] for key in keys[start:start + WRITE_CHUNK]}
            for batch in store.counter_batches(db, {}, {}, chunk).values():
                try:
                    session.execute(batch)
                except (WriteTimeout, OperationTimedOut) as exc:    # outcome unknown: not retried
                    audit.unknown_batches += 1
                    progress(f"context rebuild: a batch of {slot[0]}/{slot[1]} timed out, not retried: {exc}")
        added = [sum(v[i] for v in deltas.values() if v[i] > 0) for i in (0, 1)]
        taken = [sum(-v[i] for v in deltas.values() if v[i] < 0) for i in (0, 1)]
        progress(f"context rebuild: {number}/{len(quiet)} {slot[0]}/{slot[1]}: {len(deltas):,} rows; "
                 f"impressions +{added[0]:,} −{taken[0]:,}, clicks +{added[1]:,} −{taken[1]:,}")
        audit.repaired_slots.append(slot)
    if audit.repaired_slots:        # the workers holding a rebuilt slot re-read it (the change feed, cql/007)
        store.note_changes(db, ((tenant_id, slot_id, "counts") for tenant_id, slot_id in audit.repaired_slots))
    return audit


# -- the job --------------------------------------------------------------------------------------------------

def run(spark: SparkSession, config: dict[str, Any], tenants: list[str] | None = None,
        slots: list[Slot] | None = None, write: bool = True, settle: float = 5.0, show: int = 20) -> Audit:
    """Plan, check which differing slots are quiet, print, and (``write``) rebuild them. The caller owns
    ``spark``."""
    keyspace = config["CASSANDRA_KEYSPACE"]
    started = time.monotonic()
    named = [*(tenants or ()), *(f"{t}/{s}" for t, s in slots or ())]
    progress(f"context rebuild: reading context_counts and the event log of {', '.join(named) or 'all tenants'} "
             f"from keyspace {keyspace}")
    audit = plan(spark, keyspace, tenants, slots)
    rows = audit.reports[CONTEXT.name].rows
    progress(f"context rebuild: compared in {time.monotonic() - started:.1f}s; "
             + ("context_counts equal the log" if audit.consistent else
                f"{len(rows):,} rows of {len(audit.differing_slots())} slots differ; checking for {settle:g}s "
                f"which slots take traffic"))
    if not audit.consistent:
        db = Database(config)
        try:
            if write:
                apply(db, audit, settle)
            else:
                counter_audit.quiet_slots(db, audit, settle)
        finally:
            db.shutdown()
    print(counter_audit.describe(audit, show))
    if write:
        for tenant_id, slot_id in audit.repaired_slots:
            print(f"rebuilt {tenant_id}/{slot_id}")
        progress(f"context rebuild: rebuilt {len(audit.repaired_slots)} slots, skipped {len(audit.busy_slots)} "
                 f"busy ones, {audit.unknown_batches} batches timed out, in {time.monotonic() - started:.1f}s")
    return audit


def exit_status(audit: Audit, written: bool) -> int:
    """0: equal to the log, or brought to it; 1: a batch timed out, or (not written) a quiet slot differs;
    3: only slots that took traffic differ."""
    if audit.consistent:
        return 0
    quiet_differ = any(slot not in audit.busy_slots for slot in audit.differing_slots())
    if audit.unknown_batches or (quiet_differ and not written):
        return 1
    return 3 if audit.busy_slots else 0


def parse_slot(text: str) -> Slot:
    tenant_id, _, slot_id = text.partition("/")
    if not tenant_id or not slot_id or "/" in slot_id:
        raise argparse.ArgumentTypeError(f"{text!r} is not TENANT/SLOT")
    return tenant_id, slot_id


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.context_rebuild",
                                     description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--tenant", action="append", dest="tenants", help="every slot of this tenant (repeatable)")
    parser.add_argument("--slot", action="append", dest="slots", type=parse_slot, metavar="TENANT/SLOT",
                        help="this slot (repeatable); with neither --tenant nor --slot: every tenant")
    parser.add_argument("--keyspace", help="Cassandra keyspace (default CASSANDRA_KEYSPACE)")
    parser.add_argument("--dry-run", action="store_true", help="print what differs; write nothing")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds a slot's counters must stay unchanged before it is rebuilt (default 5)")
    parser.add_argument("--show", type=int, default=20, help="differing rows printed (default 20)")
    args = parser.parse_args(argv)
    if args.settle < 0 or args.show < 0:
        parser.error("--settle and --show must be ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    config = config_module.load()
    args = parse_args(argv)
    if args.keyspace:
        config["CASSANDRA_KEYSPACE"] = args.keyspace
    spark = build_session(config, "banner-bandit context rebuild")
    try:
        audit = run(spark, config, args.tenants, args.slots, not args.dry_run, args.settle, args.show)
    finally:
        stop_session(spark)
    return exit_status(audit, not args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
