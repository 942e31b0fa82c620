#!/usr/bin/env python3
"""CPU per impression written, in Cassandra and in the writing process, by batch size (``make bench-batch``).

Run from the repository root as ``.venv/bin/python benchmarks/bench_batch.py``. Writes impressions through the
server's own EventWriter (the spool, then UNLOGGED batches of one partition, as a gunicorn worker does) into a
keyspace of its own (``bb_bench_batch``, dropped first and at the end), for each ``--rows`` batch size in turn,
``--rounds`` times in a rotating order (the day's partition grows through the run; every size sees it small and
large). Each measurement queues ``--chunk`` impressions, sends them (``write_queued``), waits for every batch to
be acknowledged, and repeats until ``--impressions`` are written; the CPU seconds of the local Cassandra process
(found by its CQL port) and of this process are divided by the impressions. Needs the local Cassandra
(``make cassandra``); the Cassandra figure is void when other clients use that node meanwhile.

Why it exists: every mutation merges into the day's partition in the memtable, so the per-row cost falls with
the rows per batch; this measures by how much, to choose IMPRESSION_BATCH_ROWS and IMPRESSION_WRITE_SECONDS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_serve import listening_pid, process_cpu_seconds  # this folder
from keyspaces import drop_keyspace
from report import stamp, write_section
from webapp import create_app
from webapp.serving import runtime
from webapp.serving.views import timeuuid
from webapp.storage.events import Impression

REPO = Path(__file__).resolve().parent.parent

KEYSPACE = "bb_bench_batch"
CITIES = ["mumbai", "delhi", "pune", "chennai", "kolkata", "bengaluru"]


def write(rt, count: int, chunk: int) -> None:
    """Queue ``chunk`` impressions, send them, wait for every acknowledgement; until ``count`` are written."""
    events = rt.events
    for start in range(0, count, chunk):
        for i in range(min(chunk, count - start)):
            events.record_impression(Impression(
                tenant_id="bench", slot_id="hero", impression_id=timeuuid(),
                served_at=dt.datetime.now(dt.UTC), banner_id=f"b{i % 6 + 1}", location=CITIES[i % 6],
                customer_id=f"c{i}", referrer_id="", posterior_scope="location", alpha=3.0, beta=120.0,
                prior_source="slot", propensity=0.25))
        events.write_queued()
        with events._lock:                    # the writer's own condition: notified as batches are acknowledged
            while events._in_flight:
                events._idle.wait(1)
        events.flush()                        # the counters, as the background thread would
    rt.spool.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 64, 256, 1024], help="batch sizes")
    parser.add_argument("--impressions", type=int, default=30_000, help="impressions per measurement")
    parser.add_argument("--chunk", type=int, default=1024, help="impressions queued per send")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cassandra = listening_pid(int(os.environ.get("CASSANDRA_PORT", "9042")))
    if cassandra is None:
        raise SystemExit("no local Cassandra process listens on the CQL port: start it with `make cassandra`")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-batch-metrics-"))
    drop_keyspace(KEYSPACE)
    subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "init-db"], check=True,
                   cwd=REPO, env={**os.environ, "CASSANDRA_KEYSPACE": KEYSPACE}, capture_output=True)
    results: dict[int, list[tuple[float, float]]] = {rows: [] for rows in args.rows}
    print(f"{args.impressions} impressions per measurement, {args.chunk} queued per send, {args.rounds} rounds; "
          f"Cassandra pid {cassandra}", flush=True)
    for number in range(args.rounds):
        order = args.rows[number % len(args.rows):] + args.rows[:number % len(args.rows)]
        for rows in order:
            app = create_app({"CASSANDRA_KEYSPACE": KEYSPACE, "SECRET_KEY": "bench-batch",
                              "SPOOL_DIR": tempfile.mkdtemp(prefix="bench-batch-spool-"),
                              "BACKGROUND_THREADS": False, "IMPRESSION_BATCH_ROWS": rows})
            with app.app_context():
                rt = runtime.get(app)
                write(rt, min(args.chunk * 2, args.impressions), args.chunk)       # warm-up
                before = (process_cpu_seconds(cassandra), time.process_time(), time.monotonic())
                write(rt, args.impressions, args.chunk)
                after = (process_cpu_seconds(cassandra), time.process_time(), time.monotonic())
                rt.shutdown()
                rt.db.shutdown()              # one driver session per measurement, closed before the next
            per_cassandra = (after[0] - before[0]) / args.impressions * 1e6
            per_client = (after[1] - before[1]) / args.impressions * 1e6
            results[rows].append((per_cassandra, per_client))
            print(f"round {number + 1}, {rows:5d} rows per batch: Cassandra {per_cassandra:6.1f} µs, this process "
                  f"{per_client:6.1f} µs per impression ({after[2] - before[2]:.1f} s)", flush=True)
    drop_keyspace(KEYSPACE)
    table = ["| rows per batch | Cassandra CPU per impression, median (min–max) | writer's CPU per impression, "
             "median (min–max) |", "|---:|---:|---:|"]
    for rows in args.rows:
        cass = [r[0] for r in results[rows]]
        client = [r[1] for r in results[rows]]
        table.append(f"| {rows} | {statistics.median(cass):.0f} µs ({min(cass):.0f}–{max(cass):.0f}) | "
                     f"{statistics.median(client):.0f} µs ({min(client):.0f}–{max(client):.0f}) |")
    print("\n" + "\n".join(table))
    write_section("batch", f"{stamp('make bench-batch')} {args.impressions:,} impressions per measurement, "
                  f"{args.rounds} rounds.\n\n" + "\n".join(table))


if __name__ == "__main__":
    main()
