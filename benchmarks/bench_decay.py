#!/usr/bin/env python3
"""What a decaying slot costs the serving cache: ``cache.refresh()`` with and without a decay half-life.

Run from the repository root as ``.venv/bin/python benchmarks/bench_decay.py`` (``make bench-decay``).

In a keyspace of its own (``bb_bench_decay``, dropped first and at the end), one slot of 6 banners gets
``--days`` days (default 8) of quarter-hour traffic_counts rows for 6 cities and the slot-wide row: 96 × 7 × 6
rows a day, what a slot with traffic in every city every quarter hour has. Then, in this process (no
background threads), the posterior cache is refreshed without decay and with a 24 h half-life: the first
refresh after decay is turned on (it reads the whole horizon), then ``--rounds`` refreshes, timed in wall
and CPU time; the median is printed.
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

from keyspaces import drop_keyspace  # this folder
from report import stamp, write_section
from webapp import create_app
from webapp.management import services
from webapp.serving import runtime
from webapp.storage import store
from webapp.storage.events import traffic_bucket

KEYSPACE = "bb_bench_decay"
LOCATIONS = ["", "mumbai", "delhi", "pune", "chennai", "kolkata", "goa"]
BANNERS = [f"b{i}" for i in range(6)]


def create_schema() -> None:
    """As ``make schema`` does, in the bench's keyspace (before the app starts, so its first refresh works)."""
    subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "init-db"], check=True,
                   cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "CASSANDRA_KEYSPACE": KEYSPACE})


def write_traffic(db, days: int) -> int:
    now = dt.datetime.now(dt.UTC)
    deltas = {}
    for quarter in range(days * 96):
        bucket = traffic_bucket(now - dt.timedelta(minutes=15 * quarter))
        for location in LOCATIONS:
            for banner in BANNERS:
                deltas[("d", "s", location, bucket, banner)] = [100, 3]
    for batch in store.traffic_batches(db, deltas).values():
        db.session().execute(batch, timeout=120)
    return len(deltas)


def timed_refreshes(cache, rounds: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``rounds`` refreshes."""
    wall, cpu = [], []
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        cache.refresh()
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-decay-metrics-"))
    config = {"CASSANDRA_KEYSPACE": KEYSPACE, "SECRET_KEY": "bench-decay", "BACKGROUND_THREADS": False,
              "SPOOL_DIR": tempfile.mkdtemp(prefix="bench-decay-spool-")}
    drop_keyspace(KEYSPACE)
    create_schema()
    app = create_app(config)
    with app.app_context():
        db = runtime.get(app).db
        try:
            services.put_tenant(db, "d", "D", "UTC", "UTC")
            services.put_slot(db, "d", "s", "S")
            for banner in BANNERS:
                services.put_banner(db, "d", "s", banner, image_url="https://cdn.example.com/b.png",
                                    target_url="https://shop.example.com/", alt="b", active=True)
            print(f"writing {args.days} days of quarter-hour traffic ...", flush=True)
            rows = write_traffic(db, args.days)
            cache = runtime.get(app).cache
            cache.slot("d", "s")            # held from its first serve: refresh() re-reads held slots only
            cache.refresh()
            plain = timed_refreshes(cache, args.rounds)
            services.put_slot(db, "d", "s", "S", decay_half_life_hours=24.0)
            w, c = time.perf_counter(), time.process_time()
            cache.refresh()
            first = ((time.perf_counter() - w) * 1e3, (time.process_time() - c) * 1e3)
            decayed = timed_refreshes(cache, args.rounds)
        finally:
            runtime.get(app).shutdown()          # stops the background thread before its tables go
            db.session().execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
    block = "\n".join([
        f"One slot, {rows:,} traffic_counts rows ({args.days} days × 96 quarter hours × {len(LOCATIONS)} "
        f"locations × {len(BANNERS)} banners), load average {os.getloadavg()[0]:.2f}:", "",
        "| cache.refresh() | wall (ms) | CPU (ms) |\n| --- | ---: | ---: |",
        f"| no decay, median of {args.rounds} | {plain[0]:.1f} | {plain[1]:.1f} |",
        f"| half-life 24 h, first refresh (reads the horizon) | {first[0]:.1f} | {first[1]:.1f} |",
        f"| half-life 24 h, median of the next {args.rounds} | {decayed[0]:.1f} | {decayed[1]:.1f} |"])
    print("\n" + block)
    write_section("decay", f"{stamp('make bench-decay')}\n\n{block}")


if __name__ == "__main__":
    main()
