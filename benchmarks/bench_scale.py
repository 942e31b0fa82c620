#!/usr/bin/env python3
"""Scale benchmark: what 10, 1,000 and 10,000 stored slots cost when only a few are served.

Run from the repository root as ``.venv/bin/python benchmarks/bench_scale.py`` (``make bench-scale``);
``--help`` lists the knobs (``--slots 10,1000``, ``--cassandra-hosts``, ``--cassandra-pid-files`` …).

For each number of slots, in a keyspace of its own (``bb_bench_scale_<slots>``, dropped first and at the
end unless ``--keep``):

1. Creates the schema (``flask --app wsgi init-db``) and loads the configuration straight into Cassandra with
   concurrent prepared statements (tenants of ``--slots-per-tenant`` slots, ``--banners`` banners each), and
   ``banner_counts`` rows for ``--cities`` cities plus the slot-wide row of every banner (the statement of
   ``webapp.storage.store.COUNTER_UPDATE``), so that anything that reads every slot has real work, as in
   production. Through the management API this would take far longer (a lightweight transaction per row).
2. Starts ``gunicorn -c gunicorn.conf.py wsgi:app`` (``--workers``, own port) and waits until a slot serves.
3. Measures:
   - idle: ``--idle`` seconds without a request: CPU (user + system, /proc/<pid>/stat) of Cassandra (every pid
     of ``--cassandra-pid-files``) and of the gunicorn workers, and Cassandra's reads of the bench keyspace
     per second (single-partition reads + range scans coordinated, from the virtual tables
     ``system_views.coordinator_read_latency`` / ``coordinator_scan_latency`` of every node);
   - load: wrk, closed loop, ``--connections`` connections, cycling through ``--working-set`` slot paths (one
     city each, cities in turn): requests/s, p99, reads/s, CPU;
   - worker memory (RSS): after the load on the working set, and again after every slot was served once;
   - click → serve: a fresh slot (two banners, instant-click filter) made through the management API; once
     every worker serves it, ``--clicks`` clicks on banner a through ``POST /v1/click``; then serves until
     every worker's posterior alpha of a shows all of them: the time from the last click's answer to the first
     such serve, per worker (and from the slot's creation to a 200 in every worker);
   - rows per partition (first scale only): wrk on one slot for ``--partition-load`` seconds, then the rows
     of every partition of the event tables counted from the data (``SELECT DISTINCT`` of the partition key,
     ``count(*)`` per partition), and the largest partition projected to an hour and a day at 2,500 serves/s.
4. Prints the figures beside the aims, writes them to benchmarks/out/scale.json and a Markdown section
   (``write_section("scale", …)``) into docs/BENCHMARKS.md (``--no-docs``: only benchmarks/out/scale.md).

Everything (Cassandra, gunicorn, wrk) shares this machine's cores: on a busy machine the CPU and throughput
figures are noisy, and the ring's three nodes on one machine give a functional figure, not a capacity one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import glob
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench_serve import (  # this folder
    VENV_BIN,
    Load,
    cassandra_version,
    child_pids,
    ensure_wrk,
    http,
    machine_busy_seconds,
    port_in_use,
    print_log_tail,
    process_cpu_seconds,
    run,
    run_wrk,
    start_gunicorn,
    stop_gunicorn,
    wait_for,
)
from eventlog.partitions import BUCKET_SECONDS, MAX_PARTITION_ROWS
from keyspaces import PREFIX, drop_keyspace  # this folder
from report import stamp, write_section  # this folder

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"

CITIES = ["Mumbai", "Delhi", "Bengaluru", "Chennai", "Kolkata", "Pune", "Hyderabad", "Ahmedabad", "Jaipur",
          "Lucknow", "Surat", "Kanpur", "Nagpur", "Indore", "Bhopal", "Patna", "Vadodara", "Goa", "Agra",
          "Nashik", "Ranchi", "Guwahati", "Kochi", "Mysuru"]
INSTANT_CLICKS = {"min_delay_seconds": 0, "max_clicks_per_customer": 0, "max_clicks_per_ip": 0}
PEAK_RATE = 2500                 # serves/s on one slot: the partition bound's design point
AIM_IDLE_CORES = 0.05
AIM_THROUGHPUT_SHARE = 0.95


def log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


def tenant_of(index: int, per_tenant: int) -> str:
    return f"t{index // per_tenant:05d}"


def slot_of(index: int) -> str:
    return f"s{index:05d}"


def serve_path(index: int, per_tenant: int, city: str) -> str:
    return (f"/v1/serve/{tenant_of(index, per_tenant)}/{slot_of(index)}"
            f"?location={urllib.parse.quote(city)}")


# --------------------------------------------------------------------------------------------------
# Cassandra: loading, reads, partitions


def connect(args: argparse.Namespace, keyspace: str):
    """The app's own Database (prepared statements, the configured consistency) on the bench keyspace."""
    from webapp.storage.database import Database
    from webapp.web.config import load

    return Database(load({"CASSANDRA_KEYSPACE": keyspace, "CASSANDRA_HOSTS": args.cassandra_hosts,
                          "CASSANDRA_PORT": args.cassandra_port}))


class Progress:
    """A progress line every ``every`` seconds while rows are written."""

    def __init__(self, what: str, total: int, every: float = 10.0) -> None:
        self.what, self.total, self.every = what, total, every
        self.started = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every or done == self.total:
            self.last = now
            rate = done / max(now - self.started, 1e-9)
            log(f"  {self.what}: {done:,} / {self.total:,} ({rate:,.0f}/s)")


def write_concurrently(db, statements_and_params, total: int, what: str, concurrency: int) -> None:
    """Execute everything with ``concurrency`` requests in flight, a progress line now and then. A write that
    timed out (a busy machine) is sent again, up to three times: for these synthetic rows a counter batch
    applied twice is harmless."""
    from cassandra.concurrent import execute_concurrent

    progress = Progress(what, total)
    done = 0
    chunk: list = []

    def flush() -> None:
        nonlocal done
        pending = list(chunk)
        for attempt in range(4):
            results = execute_concurrent(db.session(), pending, concurrency=concurrency, raise_on_first_error=False)
            failed = [(item, r.result_or_exc) for item, r in zip(pending, results, strict=True) if not r.success]
            if not failed:
                break
            if attempt == 3:
                raise RuntimeError(f"{what}: {len(failed)} writes failed, e.g. {failed[0][1]!r}")
            log(f"  {what}: {len(failed)} writes failed ({type(failed[0][1]).__name__}); sending them again")
            pending = [item for item, _ in failed]
            time.sleep(2.0 * (attempt + 1))
        done += len(chunk)
        chunk.clear()
        progress(done)

    for item in statements_and_params:
        chunk.append(item)
        if len(chunk) >= 500:
            flush()
    if chunk:
        flush()


def unlogged(statement, rows) -> object:
    """One UNLOGGED batch of rows of one partition (a single mutation for Cassandra)."""
    from cassandra.query import BatchStatement, BatchType

    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for values in rows:
        batch.add(statement, values)
    return batch


def load_configuration(db, slots: int, args: argparse.Namespace) -> dict[str, float]:
    """Tenants, slots, banners and banner_counts rows for ``slots`` slots; returns seconds per part."""
    from cassandra.query import BatchStatement, BatchType

    from eventlog.counting import SLOT_WIDE
    from webapp.storage import store
    from webapp.web.validation import normalize_location

    now = dt.datetime.now(dt.UTC)
    per_tenant, banners = args.slots_per_tenant, args.banners
    tenants = -(-slots // per_tenant)
    timings: dict[str, float] = {}
    started = time.monotonic()
    tenant_insert = db.prepare("INSERT INTO {ks}.tenants (tenant_id, name, timezone, created_at, updated_at) "
                               "VALUES (?, ?, ?, ?, ?)")
    write_concurrently(db, ((tenant_insert, (tenant_of(t * per_tenant, per_tenant), f"Tenant {t}", "Asia/Kolkata",
                                             now, now)) for t in range(tenants)),
                       tenants, "tenants", args.load_concurrency)
    slot_insert = db.prepare("INSERT INTO {ks}.slots (tenant_id, slot_id, name, created_at, updated_at) "
                             "VALUES (?, ?, ?, ?, ?)")
    write_concurrently(db, ((unlogged(slot_insert, [(tenant_of(s, per_tenant), slot_of(s), f"Slot {s}", now, now)
                                                    for s in range(t * per_tenant, min(slots, (t + 1) * per_tenant))]),
                             None) for t in range(tenants)),
                       tenants, f"slots (a batch of {per_tenant} per tenant)", args.load_concurrency)
    banner_insert = db.prepare(
        "INSERT INTO {ks}.banners (tenant_id, slot_id, banner_id, image_url, target_url, alt, active, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    write_concurrently(db, ((unlogged(banner_insert, [(tenant_of(s, per_tenant), slot_of(s), f"b{b}",
                                                       f"https://cdn.example.com/{s}/{b}.png",
                                                       f"https://example.com/{s}/{b}", f"Banner {b}", True, now, now)
                                                      for b in range(banners)]), None) for s in range(slots)),
                       slots, f"banners (a batch of {banners} per slot)", args.load_concurrency)
    timings["configuration_s"] = time.monotonic() - started

    started = time.monotonic()
    counter = db.prepare(store.COUNTER_UPDATE)
    locations = [SLOT_WIDE, *(normalize_location(c, 200) for c in CITIES[:args.cities])]

    groups = [locations[i:i + args.batch_locations] for i in range(0, len(locations), args.batch_locations)]

    def batches():
        # COUNTER batches of one partition (a slot), ``--batch-locations`` locations each: few round trips,
        # each batch well under Cassandra's batch size warning.
        for s in range(slots):
            tenant, slot = tenant_of(s, per_tenant), slot_of(s)
            for group in groups:
                batch = BatchStatement(batch_type=BatchType.COUNTER)
                for location, b in ((location, b) for location in group for b in range(banners)):
                    impressions = 1000 + (s * 7 + b * 13) % 500
                    clicks = 10 + (s + b) % 40
                    batch.add(counter, (impressions * (args.cities if location == SLOT_WIDE else 1),
                                        clicks * (args.cities if location == SLOT_WIDE else 1), 0,
                                        tenant, slot, location, f"b{b}"))
                yield batch, None

    write_concurrently(db, batches(), slots * len(groups),
                       f"banner_counts batches (up to {args.batch_locations * banners} rows each)",
                       args.load_concurrency)
    timings["counters_s"] = time.monotonic() - started
    timings["banner_counts_rows"] = slots * len(locations) * banners
    return timings


class ReadMeter:
    """Reads of one keyspace coordinated by every node: single-partition reads and range scans, from the
    virtual tables (cumulative counts; the bench takes deltas). The virtual tables are node-local, so each
    host is asked in turn."""

    TABLES = ("coordinator_read_latency", "coordinator_scan_latency")

    def __init__(self, args: argparse.Namespace, keyspace: str) -> None:
        from cassandra.cluster import Cluster

        self.keyspace = keyspace
        self.cluster = Cluster(args.cassandra_hosts.split(","), port=args.cassandra_port)
        self.session = self.cluster.connect()
        self.statements = {t: self.session.prepare(f"SELECT count FROM system_views.{t} WHERE keyspace_name = ?")
                           for t in self.TABLES}

    def compactions(self) -> int:
        """Compactions running or queued on every node (system_views: the CompactionExecutor pool's active
        and pending tasks, and the sstable tasks in progress)."""
        busy = 0
        for host in self.cluster.metadata.all_hosts():
            if not host.is_up:
                continue
            try:
                for row in self.session.execute("SELECT name, active_tasks, pending_tasks FROM "
                                                "system_views.thread_pools", host=host):
                    if row.name == "CompactionExecutor":
                        busy += int(row.active_tasks or 0) + int(row.pending_tasks or 0)
                busy += len(self.session.execute("SELECT keyspace_name FROM system_views.sstable_tasks",
                                                 host=host).all())
            except Exception as exc:  # noqa: BLE001 - a ring node briefly marked down on a busy machine
                log(f"  {host.address}: compactions unreadable ({type(exc).__name__}); counted as busy")
                busy += 1
        return busy

    def wait_for_compactions(self, timeout: float, quiet: float = 5.0) -> tuple[float, bool]:
        """Wait until no compaction has run or been queued for ``quiet`` seconds (at most ``timeout``); returns
        (seconds waited, settled)."""
        started = time.monotonic()
        quiet_since = None
        while time.monotonic() - started < timeout:
            if self.compactions():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet:
                return time.monotonic() - started, True
            time.sleep(1.0)
        return time.monotonic() - started, False

    def counts(self) -> dict[str, int]:
        totals = dict.fromkeys(self.TABLES, 0)
        for host in self.cluster.metadata.all_hosts():
            if not host.is_up:
                continue
            for table, statement in self.statements.items():
                rows = self.session.execute(statement, (self.keyspace,), host=host)
                totals[table] += sum(int(r.count) for r in rows)
        return totals

    def close(self) -> None:
        self.cluster.shutdown()


def partition_rows(db, tables: list[str], hot: tuple[str, str]) -> list[dict]:
    """Rows per partition of each event table, counted from the data; ``hot`` = (tenant, slot) of the load."""
    from cassandra.query import SimpleStatement

    session = db.session()
    results = []
    for table in tables:
        columns = session.execute(
            "SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = %s "
            "AND table_name = %s", (db.keyspace, table)).all()
        keys = sorted((c for c in columns if c["kind"] == "partition_key"), key=lambda c: c["position"])
        if not keys:
            log(f"  table {table}: not in the keyspace, skipped")
            continue
        names = [c["column_name"] for c in keys]
        distinct = SimpleStatement(f"SELECT DISTINCT {', '.join(names)} FROM {db.keyspace}.{table}", fetch_size=1000)
        partitions = [tuple(r[n] for n in names) for r in session.execute(distinct, timeout=120)]
        count = session.prepare(f"SELECT count(*) AS n FROM {db.keyspace}.{table} WHERE "
                                + " AND ".join(f"{n} = ?" for n in names))
        sizes: dict[tuple, int] = {}
        for start in range(0, len(partitions), 16):     # 16 in flight; a long timeout for a large partition
            batch = partitions[start:start + 16]
            futures = [session.execute_async(count, p, timeout=600) for p in batch]
            sizes.update((p, future.result().one()["n"]) for p, future in zip(batch, futures, strict=True))
        hot_parts = {p: n for p, n in sizes.items()
                     if "tenant_id" in names and "slot_id" in names
                     and (p[names.index("tenant_id")], p[names.index("slot_id")]) == hot}
        hot_sizes = list(hot_parts.values())
        by_bucket: dict[int, list[int]] = {}
        if "bucket" in names:
            for p, n in hot_parts.items():
                bucket = p[names.index("bucket")]
                epoch = int(bucket.replace(tzinfo=dt.UTC).timestamp()) if isinstance(bucket, dt.datetime) else bucket
                by_bucket.setdefault(epoch, []).append(n)
        results.append({
            "table": table, "partition_key": [f"{c['column_name']} {c['type']}" for c in keys],
            "partitions": len(sizes), "rows": sum(sizes.values()), "max_rows": max(sizes.values(), default=0),
            "hot_partitions": len(hot_sizes), "hot_rows": sum(hot_sizes), "hot_max_rows": max(hot_sizes, default=0),
            "hot_by_bucket": {str(b): sorted(v, reverse=True) for b, v in sorted(by_bucket.items())}})
        log(f"  {table}: {results[-1]['partitions']} partitions, {results[-1]['rows']:,} rows, largest "
            f"{results[-1]['max_rows']:,}; the loaded slot: {len(hot_sizes)} partition(s), largest "
            f"{results[-1]['hot_max_rows']:,}")
    return results


# --------------------------------------------------------------------------------------------------
# processes: CPU and memory


def cassandra_pids(pattern: str) -> list[int]:
    pids = []
    for path in sorted(glob.glob(str(REPO / pattern) if not os.path.isabs(pattern) else pattern)):
        try:
            pid = int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}").exists():
            pids.append(pid)
    return pids


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Window:
    """CPU cores and Cassandra reads over one measured window."""
    seconds: float
    cassandra_cores: float
    worker_cores: float
    master_cores: float
    machine_cores: float
    reads_per_s: float
    scans_per_s: float
    compaction_wait_s: float | None = None      # waited before the window for Cassandra's compactions to end
    compactions_settled: bool | None = None


class Meter:
    def __init__(self, master: int, cassandra: list[int], reads: ReadMeter) -> None:
        self.master, self.cassandra, self.reads = master, cassandra, reads

    def sample(self) -> dict:
        workers = child_pids(self.master)
        return {"wall": time.monotonic(), "machine": machine_busy_seconds(),
                "cassandra": sum(process_cpu_seconds(p) for p in self.cassandra),
                "workers": sum(process_cpu_seconds(p) for p in workers), "worker_pids": set(workers),
                "master": process_cpu_seconds(self.master), "reads": self.reads.counts()}

    def window(self, before: dict, after: dict) -> Window:
        wall = max(after["wall"] - before["wall"], 1e-9)
        if before["worker_pids"] != after["worker_pids"]:
            log("  warning: the set of gunicorn workers changed during the window (a worker restarted)")
        reads = {t: after["reads"][t] - before["reads"][t] for t in after["reads"]}
        return Window(seconds=wall, cassandra_cores=(after["cassandra"] - before["cassandra"]) / wall,
                      worker_cores=(after["workers"] - before["workers"]) / wall,
                      master_cores=(after["master"] - before["master"]) / wall,
                      machine_cores=(after["machine"] - before["machine"]) / wall,
                      reads_per_s=reads["coordinator_read_latency"] / wall,
                      scans_per_s=reads["coordinator_scan_latency"] / wall)


# --------------------------------------------------------------------------------------------------
# HTTP helpers


def get_json(url: str, timeout: float = 10.0, token: str | None = None) -> tuple[int, dict, str]:
    """GET with a fresh connection (and the bearer ``token``, when given); (status, JSON body or {}, worker pid
    header)."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", urllib.parse.urlunsplit(("", "", parts.path, parts.query, "")),
                           headers={"Connection": "close", **({"Authorization": f"Bearer {token}"} if token else {})})
        response = connection.getresponse()
        body = response.read()
        worker = response.getheader("X-Banner-Bandit-Worker", "")
    except OSError:
        return 0, {}, ""
    finally:
        connection.close()
    try:
        return response.status, json.loads(body), worker
    except ValueError:
        return response.status, {}, worker


def cached_slots(base: str, metric: str) -> dict | None:
    """The serving cache's size from ``/metrics``; None when the server has no such metric (code before the
    working-set cache) or does not answer."""
    status, body = http("GET", f"{base}/metrics", timeout=10)
    return gauge_total(body.decode(errors="replace"), metric) if status == 200 else None


def gauge_total(exposition: str, metric: str) -> dict | None:
    """The samples of ``metric`` in a Prometheus text exposition and their sum (e.g. one sample per worker)."""
    samples, values = [], []
    for line in exposition.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if line.startswith("#") or name != metric:
            continue
        try:
            values.append(float(line.rsplit(None, 1)[1]))
            samples.append(line)
        except (IndexError, ValueError):
            continue
    return {"total": sum(values), "samples": samples} if values else None


BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


def post_click(base: str, token: str) -> tuple[int, dict]:
    """POST /v1/click as a browser would (the click filter flags the Python client's user agent as a bot)."""
    import http.client

    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", "/v1/click", body=json.dumps({"token": token}),
                           headers={"Content-Type": "application/json", "User-Agent": BROWSER,
                                    "Connection": "close"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, {}


def create_slot(base: str, admin_token: str, tenant: str, slot: str, banners: list[str]) -> None:
    """A tenant (instant-click filter), a slot and its banners through the management API."""
    admin = f"{base}/v1/admin/tenants/{tenant}"
    calls = [(admin, {"name": tenant, "click_filter": INSTANT_CLICKS}), (f"{admin}/slots/{slot}", {"name": slot})]
    for banner in banners:
        calls.append((f"{admin}/slots/{slot}/banners/{banner}", {
            "image_url": f"https://cdn.example.com/{banner}.png", "target_url": f"https://example.com/{banner}",
            "alt": banner, "active": True}))
    for url, payload in calls:
        status, body = http("PUT", url, token=admin_token, payload=payload)
        if status not in (200, 201, 204):
            raise RuntimeError(f"PUT {url} -> {status}: {body[:300]!r}")


def serve_every_slot(base: str, slots: int, per_tenant: int, threads: int = 8) -> tuple[int, float]:
    """One serve of every slot (cities in turn), from a few threads; returns (200 answers, seconds)."""
    started = time.monotonic()
    ok = 0
    progress = Progress("served once", slots)
    lock = threading.Lock()

    def one(index: int) -> None:
        nonlocal ok
        status, _, _ = get_json(base + serve_path(index, per_tenant, CITIES[index % len(CITIES)]))
        with lock:
            ok += status == 200

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for done, _ in enumerate(pool.map(one, range(slots)), start=1):
            if done % 1000 == 0 or done == slots:
                progress(done)
    return ok, time.monotonic() - started


@dataclass
class ClickResult:
    workers: int
    created_to_served_s: dict[str, float] = field(default_factory=dict)
    clicks: int = 0
    alpha_before: float = 0.0
    alpha_target: float = 0.0
    seen_after_s: dict[str, float] = field(default_factory=dict)
    not_seen: list[str] = field(default_factory=list)


def click_to_serve(base: str, token: str, workers: int, clicks: int, timeout_s: float, tag: str) -> ClickResult:
    """Fresh slot, two banners; click a ``clicks`` times; time until every worker serves a's new alpha. The serves
    carry the platform token: only such a caller (or the tenant's key) is shown the counts."""
    tenant, slot = f"clk{tag}", "fresh"
    create_slot(base, token, tenant, slot, ["a", "b"])
    created = time.monotonic()
    url = f"{base}/v1/serve/{tenant}/{slot}?location=Mumbai"
    result = ClickResult(workers=workers)
    tokens: list[str] = []
    alphas_a: list[float] = []
    deadline = created + timeout_s
    while (len(result.created_to_served_s) < workers or len(tokens) < clicks) and time.monotonic() < deadline:
        status, body, worker = get_json(url, token=token)
        if status != 200:
            time.sleep(0.02)
            continue
        result.created_to_served_s.setdefault(worker, time.monotonic() - created)
        if body["banner"]["id"] == "a" and len(tokens) < clicks:
            tokens.append(body["token"])
            alphas_a.append(float(body["posterior"]["alpha"]))
    if len(tokens) < clicks:
        raise RuntimeError(f"click timing: only {len(tokens)} serves of banner a within {timeout_s:g} s")
    result.clicks = clicks
    result.alpha_before = max(alphas_a)
    result.alpha_target = result.alpha_before + clicks
    for click_token in tokens:
        status, body = post_click(base, click_token)
        if status != 200 or body.get("status") != "recorded":
            raise RuntimeError(f"click -> {status}: {body}")
    clicked = time.monotonic()
    log(f"  {clicks} clicks on a recorded (alpha of a before: {result.alpha_before:g}); polling serves ...")
    seen_workers: set[str] = set(result.created_to_served_s)
    while time.monotonic() - clicked < timeout_s and len(result.seen_after_s) < workers:
        status, body, worker = get_json(url, token=token)
        if status != 200:
            time.sleep(0.02)
            continue
        seen_workers.add(worker)
        if body["banner"]["id"] == "a" and float(body["posterior"]["alpha"]) >= result.alpha_target:
            result.seen_after_s.setdefault(worker, time.monotonic() - clicked)
    result.not_seen = sorted(seen_workers - set(result.seen_after_s))
    return result


# --------------------------------------------------------------------------------------------------
# one scale


@dataclass
class ScaleResult:
    slots: int
    keyspace: str
    loading: dict[str, float]
    first_serve_s: float
    workers: int
    idle: Window | None = None
    floor: Window | None = None             # Cassandra with no app process at all: the reference
    idle_after_load: Window | None = None
    load: dict | None = None
    load_window: Window | None = None
    rss_after_load_mib: list[float] = field(default_factory=list)
    rss_after_all_mib: list[float] = field(default_factory=list)
    cached_after_load: dict | None = None
    cached_after_all: dict | None = None
    all_served: int = 0
    all_served_s: float = 0.0
    click: ClickResult | None = None
    partitions: dict | None = None


def app_environment(args: argparse.Namespace, keyspace: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CASSANDRA_HOSTS": args.cassandra_hosts, "CASSANDRA_PORT": str(args.cassandra_port),
        "CASSANDRA_KEYSPACE": keyspace, "ADMIN_API_TOKEN": secrets.token_urlsafe(24),
        "SECRET_KEY": secrets.token_urlsafe(24), "PORT": str(args.port), "WEB_CONCURRENCY": str(args.workers),
        # All load comes from one client address: the limiter stays in the path, far above the load.
        "RATELIMIT_SERVE": "100000000/minute", "RATELIMIT_CLICK": "100000000/minute",
    })
    return env


def wrk_load(wrk: Path, base: str, paths: list[str], seconds: float, connections: int, name: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        phase = run_wrk(wrk, Load(name, [base + p for p in paths], seconds, connections=connections),
                        "serve", Path(tmp), None)
    return {"requests": phase.requests, "rps": phase.rps, "p50_ms": phase.p50_ms, "p99_ms": phase.p99_ms,
            "failed": phase.failed, "errors": dict(phase.errors)}


def cassandra_alone(cassandra: list[int], reads: ReadMeter, args: argparse.Namespace, what: str) -> Window:
    """Cassandra's idle CPU with no app process running: the floor the app's idle cost adds to."""
    waited, settled = None, None
    if args.compaction_wait > 0:
        log(f"{what}: waiting (at most {args.compaction_wait:g} s) until Cassandra runs and queues no compaction ...")
        waited, settled = reads.wait_for_compactions(args.compaction_wait)
        log(f"  compactions {'done' if settled else 'still running'} after {waited:.0f} s")
    log(f"{what}: {args.settle:g} s to settle, then {args.idle:g} s with no app running ...")
    time.sleep(args.settle)

    def sample() -> tuple[float, float, float, dict]:
        return (time.monotonic(), machine_busy_seconds(), sum(process_cpu_seconds(p) for p in cassandra),
                reads.counts())

    before = sample()
    time.sleep(args.idle)
    after = sample()
    wall = max(after[0] - before[0], 1e-9)
    window = Window(seconds=wall, cassandra_cores=(after[2] - before[2]) / wall, worker_cores=0.0, master_cores=0.0,
                    machine_cores=(after[1] - before[1]) / wall,
                    reads_per_s=(after[3]["coordinator_read_latency"] - before[3]["coordinator_read_latency"]) / wall,
                    scans_per_s=(after[3]["coordinator_scan_latency"] - before[3]["coordinator_scan_latency"]) / wall,
                    compaction_wait_s=waited, compactions_settled=settled)
    log(f"  {what}: Cassandra {window.cassandra_cores:.3f} cores (machine busy {window.machine_cores:.2f} cores)")
    return window


def idle_window(meter: Meter, args: argparse.Namespace, what: str) -> Window:
    waited, settled = None, None
    if args.compaction_wait > 0:
        log(f"{what}: waiting (at most {args.compaction_wait:g} s) until Cassandra runs and queues no compaction ...")
        waited, settled = meter.reads.wait_for_compactions(args.compaction_wait)
        log(f"  compactions {'done' if settled else 'still running'} after {waited:.0f} s")
    log(f"{what}: {args.settle:g} s to settle, then {args.idle:g} s without a request ...")
    time.sleep(args.settle)
    before = meter.sample()
    time.sleep(args.idle)
    idle = meter.window(before, meter.sample())
    idle.compaction_wait_s, idle.compactions_settled = waited, settled
    log(f"  {what}: Cassandra {idle.cassandra_cores:.3f} cores, workers {idle.worker_cores:.3f} cores; "
        f"reads {idle.reads_per_s:.1f}/s, range scans {idle.scans_per_s:.2f}/s "
        f"(machine busy {idle.machine_cores:.2f} cores)")
    return idle


def measure_scale(slots: int, args: argparse.Namespace, wrk: Path, first: bool) -> ScaleResult:
    keyspace = f"{args.keyspace_prefix}_{slots}"
    log(f"=== {slots:,} slots, keyspace {keyspace} ===")
    log(f"dropping keyspace {keyspace} (only {PREFIX}* keyspaces are dropped) ...")
    drop_keyspace(keyspace, args.cassandra_hosts, args.cassandra_port)
    env = app_environment(args, keyspace)
    log("creating the schema (flask --app wsgi init-db) ...")
    for attempt in range(1, 4):         # idempotent; a busy shared node can time a DDL statement out
        try:
            run([str(VENV_BIN / "flask"), "--app", "wsgi", "init-db"], env=env)
            break
        except RuntimeError as exc:
            if attempt == 3:
                raise
            log(f"  init-db failed (attempt {attempt}), retrying: {str(exc).splitlines()[-1][:200]}")
            time.sleep(10)
    db = connect(args, keyspace)
    log(f"loading {slots:,} slots × {args.banners} banners, counters for {args.cities} cities + slot-wide ...")
    loading = load_configuration(db, slots, args)
    log(f"loaded: configuration {loading['configuration_s']:.1f} s, counters {loading['counters_s']:.1f} s")

    base = f"http://127.0.0.1:{args.port}"
    gunicorn_log = OUT_DIR / f"gunicorn-scale-{slots}.log"
    reads = ReadMeter(args, keyspace)
    cassandra = cassandra_pids(args.cassandra_pid_files)
    if not cassandra:
        log(f"  no live Cassandra pid in {args.cassandra_pid_files}: Cassandra's CPU is left out")
    floor = cassandra_alone(cassandra, reads, args, "Cassandra alone (no app yet)") if args.floor else None
    log(f"starting gunicorn ({args.workers} workers) on {base} (log: {gunicorn_log.relative_to(REPO)}) ...")
    proc = start_gunicorn(env, gunicorn_log)
    try:
        started = time.monotonic()
        wait_for("GET /v1/ping", lambda: http("GET", f"{base}/v1/ping")[0] == 200, 120, proc)
        first_path = base + serve_path(0, args.slots_per_tenant, CITIES[0])
        wait_for("a first 200 from /v1/serve", lambda: get_json(first_path)[0] == 200, args.start_timeout, proc)
        result = ScaleResult(slots=slots, keyspace=keyspace, loading=loading,
                             first_serve_s=time.monotonic() - started, workers=len(child_pids(proc.pid)),
                             floor=floor)
        log(f"serving after {result.first_serve_s:.1f} s; {result.workers} workers")
        meter = Meter(proc.pid, cassandra, reads)

        result.idle = idle_window(meter, args, "idle (one slot served so far)")

        working = min(args.working_set, slots)
        paths = [serve_path(i, args.slots_per_tenant, CITIES[i % args.cities]) for i in range(working)]
        log(f"load: wrk, {args.connections} connections, {working} slots, {args.warmup:g} s warm-up ...")
        wrk_load(wrk, base, paths, args.warmup, args.connections, "warmup")
        before = meter.sample()
        rounds = []
        for number in range(1, args.load_rounds + 1):
            log(f"load: round {number} of {args.load_rounds}, {args.duration:g} s ...")
            rounds.append(wrk_load(wrk, base, paths, args.duration, args.connections, f"load-{number}"))
            log(f"  {rounds[-1]['rps']:.0f} req/s, p99 {rounds[-1]['p99_ms']:.1f} ms")
        result.load_window = meter.window(before, meter.sample())
        # The median round: on a shared machine one round can meet a neighbour's burst.
        result.load = {"rps": statistics.median(r["rps"] for r in rounds),
                       "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
                       "failed": sum(r["failed"] for r in rounds), "rounds": rounds}
        log(f"  load: {result.load['rps']:.0f} req/s, p99 {result.load['p99_ms']:.1f} ms, non-200/failed "
            f"{result.load['failed']}; reads {result.load_window.reads_per_s:.1f}/s, scans "
            f"{result.load_window.scans_per_s:.2f}/s; CPU Cassandra {result.load_window.cassandra_cores:.2f}, "
            f"workers {result.load_window.worker_cores:.2f}")
        workers = child_pids(proc.pid)
        result.rss_after_load_mib = [rss_mib(p) for p in workers]
        result.cached_after_load = cached_slots(base, args.cached_slots_metric)
        log(f"  worker RSS after the load on {working} slots: "
            f"{', '.join(f'{m:.0f}' for m in result.rss_after_load_mib)} MiB; {args.cached_slots_metric}: "
            f"{result.cached_after_load['total'] if result.cached_after_load else 'not exported'}")

        if args.idle_after_load:
            result.idle_after_load = idle_window(meter, args, f"idle after the load ({working} slots served)")

        if slots > working:
            log(f"serving each of the {slots:,} slots once ...")
            result.all_served, result.all_served_s = serve_every_slot(base, slots, args.slots_per_tenant)
            time.sleep(args.settle)
            result.rss_after_all_mib = [rss_mib(p) for p in child_pids(proc.pid)]
            result.cached_after_all = cached_slots(base, args.cached_slots_metric)
            log(f"  {result.all_served:,} answered 200 in {result.all_served_s:.1f} s; worker RSS now "
                f"{', '.join(f'{m:.0f}' for m in result.rss_after_all_mib)} MiB")

        log(f"click → serve: a fresh slot, {args.clicks} clicks on banner a ...")
        try:
            result.click = click_to_serve(base, env["ADMIN_API_TOKEN"], result.workers, args.clicks,
                                          args.click_timeout, tag=str(slots))
        except RuntimeError as exc:     # the other figures of this scale still stand
            log(f"  click timing failed: {exc}")
            result.click = ClickResult(workers=result.workers, not_seen=["every worker"])
        log(f"  slot created → 200 in every worker: "
            f"{', '.join(f'{v:.2f}' for v in result.click.created_to_served_s.values())} s; last click → "
            f"a's new alpha served, per worker: "
            f"{', '.join(f'{v:.2f}' for v in result.click.seen_after_s.values()) or '-'} s"
            + (f"; never seen in {result.click.not_seen}" if result.click.not_seen else ""))

        if first and args.partition_load > 0:
            # A slot of its own, so that its partitions hold only this load's rows.
            hot = ("peak", "hot")
            create_slot(base, env["ADMIN_API_TOKEN"], *hot, [f"b{b}" for b in range(args.banners)])
            hot_paths = [f"/v1/serve/{hot[0]}/{hot[1]}?location={urllib.parse.quote(c)}"
                         for c in CITIES[:args.cities]]
            wait_for("the peak slot to serve", lambda: get_json(base + hot_paths[0])[0] == 200,
                     args.start_timeout, proc)
            seconds = args.partition_load
            full_bucket = None
            if args.partition_full_bucket:      # on until one whole bucket has been written under the load
                now = time.time()
                full_bucket = (int(now) // BUCKET_SECONDS + 1) * BUCKET_SECONDS
                seconds = max(seconds, full_bucket + BUCKET_SECONDS + 2 - now)
            log(f"rows per partition: wrk on one slot ({hot[0]}/{hot[1]}) for {seconds:.0f} s"
                + (f" (covering the whole bucket from {dt.datetime.fromtimestamp(full_bucket, dt.UTC):%H:%M:%S} UTC)"
                   if full_bucket else "") + " ...")
            peak = wrk_load(wrk, base, hot_paths, seconds, args.connections, "partition-load")
            log(f"  {peak['rps']:.0f} serves/s; waiting {args.settle:g} s for the writes, counting ...")
            time.sleep(args.settle)
            result.partitions = {"load": peak, "seconds": seconds, "full_bucket": full_bucket,
                                 "tables": partition_rows(db, args.event_tables.split(","), hot)}
    except Exception:
        print_log_tail(gunicorn_log)
        raise
    finally:
        log("stopping gunicorn (SIGTERM) ...")
        stop_gunicorn(proc)
        reads.close()
        db.shutdown()
    if not args.keep:
        log(f"dropping keyspace {keyspace} ...")
        drop_keyspace(keyspace, args.cassandra_hosts, args.cassandra_port)
    return result


# --------------------------------------------------------------------------------------------------
# the report


def projection(partitions: dict | None) -> list[dict]:
    """The loaded slot's largest partition per table, projected to an hour and a day at PEAK_RATE."""
    if not partitions:
        return []
    rate = partitions["load"]["rps"]
    rows = []
    for table in partitions["tables"]:
        if not table["hot_rows"] or not rate:
            continue
        # Rows a second into the largest partition, scaled from the load's rate to the peak's, if the
        # partition kept receiving them that long.
        per_s = table["hot_max_rows"] / partitions["seconds"] * PEAK_RATE / rate
        rows.append({"table": table["table"], "partition_key": ", ".join(table["partition_key"]),
                     "max_rows": table["hot_max_rows"], "partitions": table["hot_partitions"],
                     "per_bucket": (per_s * BUCKET_SECONDS
                                        if any(k.split()[0] == "bucket" for k in table["partition_key"]) else None),
                     "per_hour": per_s * 3600, "per_day": per_s * 86400})
    return rows


def compaction_note(r: ScaleResult) -> str:
    parts = []
    for what, window in (("before idle", r.idle), ("after the load", r.idle_after_load)):
        if window and window.compaction_wait_s is not None:
            parts.append(f"{what} {window.compaction_wait_s:.0f} s"
                         + ("" if window.compactions_settled else " (still compacting: not settled)"))
    return ", ".join(parts) or "-"


def measured_bucket(partitions: dict) -> list[str]:
    """The rows of each event table's partitions of the one bucket written whole under the load, as counted."""
    load, bucket = partitions["load"], partitions["full_bucket"]
    start = dt.datetime.fromtimestamp(bucket, dt.UTC)
    lines = [(f"Rows per partition, counted from the data: wrk on one slot for {partitions['seconds']:.0f} s at "
              f"{load['rps']:.0f} serves/s (the highest rate this machine reached, 16 connections), covering the whole "
              f"{BUCKET_SECONDS // 60}-minute bucket from {start:%H:%M} UTC; the rows of that bucket's partitions "
              f"(aim: at most {MAX_PARTITION_ROWS:,} rows at {PEAK_RATE:,} serves/s):"), "",
             "| Table | Partition key | Partitions in the bucket | Rows in the bucket | Largest partition (rows) "
             "| Largest at 2,500 serves/s (scaled) |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for table in partitions["tables"]:
        sizes = table.get("hot_by_bucket", {}).get(str(bucket), [])
        if not sizes:
            continue
        scaled = max(sizes) * PEAK_RATE / load["rps"] if load["rps"] else 0
        lines.append(f"| {table['table']} | {', '.join(table['partition_key'])} | {len(sizes)} | {sum(sizes):,} "
                     f"| {max(sizes):,} | {scaled:,.0f} |")
    lines += ["", "The bucket is in the partition key, so an hour at this rate is twelve such buckets, each with the "
              "same bound: no partition grows past one bucket's rows however long the load lasts."]
    return lines


def cached(metric: dict | None) -> str:
    return "-" if metric is None else f"{metric['total']:,.0f}"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(results: list[ScaleResult], args: argparse.Namespace, command: str, cassandra: str) -> str:
    hosts = args.cassandra_hosts.split(",")
    lines = [
        f"### Scale: {len(hosts)} node{'s' if len(hosts) > 1 else ''}, a working set of {args.working_set} slots",
        "",
        f"{stamp(command)}",
        "",
        (f"Cassandra {cassandra} on {len(hosts)} node(s) ({args.cassandra_hosts}, port {args.cassandra_port}"
         + ("; a ring on one machine: a functional figure, not a capacity one" if len(hosts) > 1 else "")
         + f"); gunicorn with {args.workers} workers; {args.slots_per_tenant} slots per tenant, {args.banners} "
         f"banners per slot, banner_counts for {args.cities} cities + slot-wide. Idle: {args.idle:g} s without a "
         f"request. Load: wrk, closed loop, {args.connections} connections, median of {args.load_rounds} rounds of "
         f"{args.duration:g} s on a working set of "
         f"the first {args.working_set} slots (all, when fewer), one city per slot. "
         "Reads: the bench keyspace's, from system_views. "
         + (f"Each idle window starts once Cassandra has run and queued no compaction for 5 s (system_views."
            f"thread_pools and sstable_tasks; waited at most {args.compaction_wait:g} s: "
            + "; ".join(f"{r.slots:,} slots {compaction_note(r)}" for r in results) + "). "
            if args.compaction_wait > 0 else "") +
         "Cached slots: "
         f"`{args.cached_slots_metric}`, summed. 'Machine busy' (all processes at idle) shows the noise."),
        "",
        "| Slots | Idle CPU Cassandra + workers (cores) | Cassandra alone, no app (cores) "
        "| Machine busy at idle (cores) "
        "| Idle reads/s | Idle after the load: cores, reads/s | Serve req/s | p99 (ms) | Reads/s under load "
        "| Worker RSS after load (MiB) | … after every slot served once | Cached slots after load / after all "
        "| Click → serve, per worker (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        idle = r.idle
        idle_cores = f"{idle.cassandra_cores + idle.worker_cores:.3f} ({idle.cassandra_cores:.3f} + " \
                     f"{idle.worker_cores:.3f})" if idle else "-"
        later = r.idle_after_load
        after = (f"{later.cassandra_cores + later.worker_cores:.3f}, "
                 f"{later.reads_per_s + later.scans_per_s:.1f}") if later else "-"
        click = ", ".join(f"{v:.2f}" for v in sorted(r.click.seen_after_s.values())) if r.click else "-"
        if r.click and r.click.not_seen:
            click += f" (never in {len(r.click.not_seen)} worker(s))"
        lines.append(
            f"| {r.slots:,} | {idle_cores} | {fmt(r.floor.cassandra_cores, 3) if r.floor else '-'} "
            f"| {fmt(idle.machine_cores) if idle else '-'} "
            f"| {fmt(idle.reads_per_s + idle.scans_per_s, 1) if idle else '-'} | {after} "
            f"| {fmt(r.load['rps'], 0) if r.load else '-'} | {fmt(r.load['p99_ms'], 1) if r.load else '-'} "
            f"| {fmt(r.load_window.reads_per_s + r.load_window.scans_per_s, 1) if r.load_window else '-'} "
            f"| {' / '.join(f'{m:.0f}' for m in r.rss_after_load_mib) or '-'} "
            f"| {' / '.join(f'{m:.0f}' for m in r.rss_after_all_mib) or '-'} "
            f"| {cached(r.cached_after_load)} / {cached(r.cached_after_all)} | {click} |")
    lines += ["", "Against the aims:", ""]
    lines += [f"- {line}" for line in verdicts(results)]
    failed = {r.slots: r.load["failed"] for r in results if r.load and r.load["failed"]}
    if failed:
        lines.append("- answers other than 200 (or none) under load: "
                     + ", ".join(f"{n:,} at {slots:,} slots" for slots, n in failed.items()) + ".")
    partitions = next((r.partitions for r in results if r.partitions), None)
    projected = projection(partitions)
    if partitions and partitions.get("full_bucket"):
        lines += ["", *measured_bucket(partitions)]
    elif projected:
        load = partitions["load"]
        lines += ["", (f"Rows per partition, counted from the data after {partitions['seconds']:g} s of wrk on one "
                       f"slot ({load['rps']:.0f} serves/s), projected to {PEAK_RATE:,} serves/s on that slot "
                       f"over one time bucket ({BUCKET_SECONDS // 60} min) where the key has one, else over an hour "
                       f"and a day (aim: at most {MAX_PARTITION_ROWS:,} rows):"), "",
                  "| Table | Partition key | Partitions of the slot | Largest (rows) | Projected per bucket "
                  "| Projected per hour | Projected per day |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {p['table']} | {p['partition_key']} | {p['partitions']} | {p['max_rows']:,} | "
                  + (f"{p['per_bucket']:,.0f} | – | – |" if p["per_bucket"] is not None
                     else f"– | {p['per_hour']:,.0f} | {p['per_day']:,.0f} |") for p in projected]
    return "\n".join(lines) + "\n"


def verdicts(results: list[ScaleResult]) -> list[str]:
    out = []
    by_slots = {r.slots: r for r in results}
    largest = max(results, key=lambda r: r.slots)
    if largest.idle:
        cores = largest.idle.cassandra_cores + largest.idle.worker_cores
        out.append(f"idle CPU at {largest.slots:,} slots: {cores:.3f} cores (aim ≤ {AIM_IDLE_CORES} at 10,000 "
                   f"slots): {'met' if cores <= AIM_IDLE_CORES else 'NOT met'}"
                   + ("" if largest.slots >= 10000 else " (10,000 slots not measured in this run)")
                   + (f"; Cassandra alone, with no app running, burned {largest.floor.cassandra_cores:.3f} cores just "
                      f"before, so the app's own idle cost (workers, and the reads they send) is about "
                      f"{cores - largest.floor.cassandra_cores:+.3f} cores"
                      if largest.floor else "; Cassandra's share includes whatever else uses the node") + ".")
    smallest = min(results, key=lambda r: r.slots)
    if smallest is not largest and smallest.load and largest.load and smallest.load["rps"]:
        share = largest.load["rps"] / smallest.load["rps"]
        out.append(f"serve throughput at {largest.slots:,} slots is {share:.0%} of {smallest.slots:,} slots' "
                   f"(aim ≥ {AIM_THROUGHPUT_SHARE:.0%}): {'met' if share >= AIM_THROUGHPUT_SHARE else 'NOT met'}.")
    grown = [r for r in results if r.rss_after_load_mib and r.rss_after_all_mib]
    if grown:
        parts = []
        for r in sorted(grown, key=lambda r: r.slots):
            load, every = statistics.mean(r.rss_after_load_mib), statistics.mean(r.rss_after_all_mib)
            parts.append(f"{r.slots:,} slots: {load:.0f} MiB after the working set, {every:.0f} MiB after every "
                         f"slot once")
        base = by_slots.get(min(by_slots))
        if base and base.rss_after_load_mib and largest.rss_after_load_mib:
            growth = statistics.mean(largest.rss_after_load_mib) - statistics.mean(base.rss_after_load_mib)
            parts.append(f"after the same working set, {largest.slots:,} slots cost {growth:+.0f} MiB per worker "
                         f"over {base.slots:,} (aim: about 0, memory follows the working set, not the total)")
        out.append("worker memory (mean per worker): " + "; ".join(parts) + ".")
    clicks = [v for r in results if r.click for v in r.click.seen_after_s.values()]
    if clicks:
        out.append(f"click → changed serve: at most {max(clicks):.2f} s over every worker and scale (aim: "
                   "within about 2 s).")
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--slots", default="10,1000,10000", help="comma-separated numbers of slots, in order")
    parser.add_argument("--slots-per-tenant", type=int, default=10)
    parser.add_argument("--banners", type=int, default=10, help="banners per slot")
    parser.add_argument("--cities", type=int, default=20, choices=range(1, len(CITIES) + 1), metavar="N",
                        help=f"cities with banner_counts rows (at most {len(CITIES)})")
    parser.add_argument("--port", type=int, default=8131, help="gunicorn port for the bench")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--keyspace-prefix", default=f"{PREFIX}_scale", help=f"keyspaces <prefix>_<slots>; "
                        f"must start with {PREFIX}")
    parser.add_argument("--cassandra-hosts", default=os.environ.get("CASSANDRA_HOSTS", "127.0.0.1"))
    parser.add_argument("--cassandra-port", type=int, default=int(os.environ.get("CASSANDRA_PORT", "9042")))
    parser.add_argument("--cassandra-pid-files", default=".cassandra/cassandra.pid",
                        help="glob of Cassandra pid files whose processes' CPU is summed (the ring: "
                             "'.cassandra-ring/node*/cassandra.pid')")
    parser.add_argument("--load-concurrency", type=int, default=16, help="requests in flight while loading")
    parser.add_argument("--batch-locations", type=int, default=7,
                        help="locations (of --banners rows each) per banner_counts batch while loading")
    parser.add_argument("--start-timeout", type=float, default=600, help="seconds to wait for a first serve")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of quiet before idle and counting")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the idle window")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the reference window of Cassandra alone (no app running) before each scale")
    parser.add_argument("--no-idle-after-load", dest="idle_after_load", action="store_false",
                        help="skip the second idle window, after the load (the working set held)")
    parser.add_argument("--working-set", type=int, default=100, help="slots the load cycles through")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each round of measured load")
    parser.add_argument("--load-rounds", type=int, default=3,
                        help="rounds of measured load (the median is reported)")
    parser.add_argument("--clicks", type=int, default=30, help="clicks on banner a in the click timing")
    parser.add_argument("--click-timeout", type=float, default=60.0, help="seconds to wait in the click timing")
    parser.add_argument("--partition-load", type=float, default=10.0,
                        help="seconds of load on one slot before counting rows per partition (0: skip)")
    parser.add_argument("--partition-full-bucket", action="store_true",
                        help="keep the partition load on until one whole time bucket has been written under it, "
                             "and report that bucket's partitions as measured")
    parser.add_argument("--compaction-wait", type=float, default=600.0,
                        help="before each idle window, wait at most this long for Cassandra's compactions to end "
                             "(0: do not wait)")
    parser.add_argument("--section", default="scale",
                        help="section of docs/BENCHMARKS.md to rewrite (the ring: scale-ring)")
    parser.add_argument("--event-tables", default="impression_log,click_log",
                        help="tables whose partitions are counted")
    parser.add_argument("--cached-slots-metric", default="banner_bandit_cached_slots",
                        help="Prometheus gauge of the slots a worker holds (reported when /metrics has it)")
    parser.add_argument("--keep", action="store_true", help="keep each scale's keyspace")
    parser.add_argument("--no-docs", action="store_true",
                        help="leave docs/BENCHMARKS.md alone (figures only in benchmarks/out/)")
    args = parser.parse_args()
    if not args.keyspace_prefix.startswith(PREFIX):
        parser.error(f"--keyspace-prefix must start with {PREFIX}")
    try:
        args.slot_counts = [int(s) for s in args.slots.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--slots: comma-separated integers, got {args.slots!r}")
    if not args.slot_counts or min(args.slot_counts) < 1:
        parser.error("--slots: at least one positive number")
    return args


def write_raw(results: list[ScaleResult], args: argparse.Namespace, command: str) -> None:
    raw = {"command": command, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "args": {k: v for k, v in vars(args).items() if k != "slot_counts"},
           "results": [asdict(r) for r in results],
           "partition_projection": projection(next((r.partitions for r in results if r.partitions), None))}
    (OUT_DIR / f"{args.section}.json").write_text(json.dumps(raw, indent=2, default=str))


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if port_in_use(args.port):
        raise SystemExit(f"port {args.port} is already in use; pick another with --port")
    wrk, wrk_text = ensure_wrk()
    log(f"load generator: {wrk_text}; Cassandra pids {cassandra_pids(args.cassandra_pid_files) or 'none found'}")
    command = "make bench-scale" + (f" SCALE_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else "")
    results: list[ScaleResult] = []
    for number, slots in enumerate(args.slot_counts):
        results.append(measure_scale(slots, args, wrk, first=number == 0))
        write_raw(results, args, command)       # after each scale: a long run stopped later keeps these
    markdown = render(results, args, command, cassandra_version(args))
    (OUT_DIR / f"{args.section}.md").write_text(markdown)
    print("\n" + markdown, flush=True)
    if args.no_docs:
        log(f"written to benchmarks/out/{args.section}.json and .md (--no-docs)")
    else:
        written = write_section(args.section, markdown)
        log(f"written to benchmarks/out/{args.section}.json and {written.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
