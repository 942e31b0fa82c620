#!/usr/bin/env python3
"""Serving benchmark: GET /v1/serve/<tenant>/<slot> beside GET /v1/ping on one gunicorn.

Run from the repository root as ``.venv/bin/python benchmarks/bench_serve.py`` (``make bench-serve``);
``--help`` lists the knobs (durations, connections, workers, port, keyspace).

What it does, in order:

1. Makes sure the load generators are there: wrk (``apt-get install wrk``) for the closed loops, and
   benchmarks/openloop.c (built here with the system's C compiler) for the open loops.
2. Creates the schema in a dedicated keyspace (``flask --app wsgi init-db``, default ``bb_bench``), dropped
   first when its name starts with ``bb_bench`` (each run starts from an empty one).
3. Starts ``gunicorn -c gunicorn.conf.py wsgi:app`` on its own port (default 8099) and waits for
   ``/v1/ping``; seeds a tenant, a slot and six banners through the management API and waits until
   ``/v1/serve`` answers 200.
4. Measures, for ``/v1/ping`` and for ``/v1/serve`` (cycling through a few cities), in ``--rounds`` rounds
   (default 3) of ping-then-serve, and reports each round and the medians:
   - the peak: closed loop, a fixed number of connections each sending back-to-back (after a warm-up);
   - the latency at a constant open-loop rate of half the median serve peak (same rate for both);
   - the control: ping at half the median *ping* peak, open loop (what the trivial endpoint does at half
     its own peak, on this machine).
5. Waits for asynchronous writes, stops gunicorn with SIGTERM (workers flush pending writes on exit),
   and checks that the ``impression_id`` of every 200 response to ``/v1/serve`` (warm-ups included)
   is in the keyspace's ``impression_log`` table.
6. Prints a Markdown block and writes it to its section of docs/BENCHMARKS.md (benchmarks/report.py) and to
   benchmarks/out/serve.md.

The load generators, and why two: the load generator shares the machine's two cores with gunicorn and
Cassandra, so it must be cheap. wrk (C, Debian package) is: little CPU per request, although
gunicorn's sync workers close every connection. But wrk has no rate control, and Debian has no wrk2, so
the constant-rate phases use openloop (benchmarks/openloop.c, one thread, epoll, a connection per request):
each request is due at start + i / rate whatever became of the earlier ones, and its latency counts from
that due time, so a stall of the server (or of the generator) is in the figure rather than hidden by sending
later (coordinated omission). It replaced vegeta (Go), which took a large share of the two cores at these rates
(measured then; see the git history of docs/BENCHMARKS.md). The impression ids come from wrk's Lua ``response()`` hook
(benchmarks/wrk_phase.lua: one file per wrk thread) and from the response bodies openloop records.
Latency percentiles: wrk's own (exact to the microsecond), and computed here, exactly, from openloop's
per-request results.

With ``--context also`` (or ``only``: these phases alone; ``make bench-serve-context``) the same gunicorn also
serves a contextual slot (policy ``contextual``, all six context features) and the Thompson slot in alternating
rounds of closed-loop peaks, both with the same varied requests (cities, referrers, segments, User-Agents of
phones, tablets and desktops), and writes the comparison to its own section (``serve-context``).

The exit status is 1 when an impression id is missing from Cassandra (or no serve request succeeded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from keyspaces import PREFIX, drop_keyspace  # this folder (the script's own)
from report import write_section  # this folder

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"
VENV_BIN = Path(sys.executable).parent

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_phase.lua"
OPENLOOP_SOURCE = Path(__file__).resolve().parent / "openloop.c"
OPENLOOP_BINARY = OUT_DIR / "openloop"

TENANT = "bench"
SLOT = "hero"
BANNERS = [f"b{i}" for i in range(1, 7)]
CITIES = ["Mumbai", "Delhi", "Bengaluru", "Chennai", "Kolkata", "Pune"]
# The contextual comparison (--context): a second slot of the same banners that learns from every feature,
# and the visitors both slots get.
CONTEXT_SLOT = "hero-ctx"
CONTEXT_FEATURES = ["location", "referrer", "hour", "weekday", "device", "segment"]
REFERRERS = ["newsletter", "search", "social", "partner"]
SEGMENTS = ["new", "returning", "vip"]
USER_AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36",
]


# --------------------------------------------------------------------------------------------------
# small helpers


def log(message: str) -> None:
    print(f"[bench-serve {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO,
        capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command, fail loudly (with its output) when it fails."""
    result = subprocess.run(cmd, env=env, cwd=cwd, text=True, check=False,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.STDOUT if capture else None)
    if result.returncode != 0:
        output = f":\n{result.stdout}" if capture and result.stdout else ""
        raise RuntimeError(f"command failed ({result.returncode}): {' '.join(cmd)}{output}")
    return result


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil(n * pct / 100), at least 1
    return sorted_values[int(rank) - 1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(method: str, url: str, *, token: str | None = None, payload: dict | None = None,
         timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP request with the standard library; returns (status, body); status 0 = no answer."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


# --------------------------------------------------------------------------------------------------
# the load generators


def ensure_openloop() -> tuple[Path, str]:
    """Return (path, description) of openloop, built from benchmarks/openloop.c when missing or older than its
    source; installs Debian's gcc when there is no C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        log("installing a C compiler (apt-get install -y gcc) ...")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "gcc", "libc6-dev"])
        compiler = shutil.which("cc") or shutil.which("gcc")
        if not compiler:
            raise RuntimeError("could not install a C compiler to build benchmarks/openloop.c")
    if not OPENLOOP_BINARY.exists() or OPENLOOP_BINARY.stat().st_mtime < OPENLOOP_SOURCE.stat().st_mtime:
        log(f"building {OPENLOOP_BINARY.relative_to(REPO)} from {OPENLOOP_SOURCE.relative_to(REPO)} ...")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        run([compiler, "-O2", "-Wall", "-o", str(OPENLOOP_BINARY), str(OPENLOOP_SOURCE)])
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    return OPENLOOP_BINARY, f"openloop (benchmarks/openloop.c, {version.splitlines()[0] if version else compiler})"


def ensure_wrk() -> tuple[Path, str]:
    """Return (path, description) of wrk, installing Debian's package if needed."""
    if not shutil.which("wrk"):
        log("installing wrk (apt-get install -y wrk) ...")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "wrk"])
    wrk = shutil.which("wrk")
    if not wrk:
        raise RuntimeError("could not install wrk")
    banner = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout
    version = banner.split()[1] if len(banner.split()) > 1 else "?"  # "wrk debian/4.1.0-3+b2 [epoll] ..."
    return Path(wrk), f"wrk {version}"


@dataclass
class Tools:
    wrk: Path
    openloop: Path
    description: str


def ensure_tools() -> Tools:
    wrk, wrk_text = ensure_wrk()
    openloop, openloop_text = ensure_openloop()
    return Tools(wrk=wrk, openloop=openloop,
                 description=f"{wrk_text} for the closed loops, {openloop_text} for the open loops")


@dataclass
class Load:
    """One phase of load: closed loop (wrk) with `connections` when rate == 0, else open loop (openloop)."""
    name: str
    urls: list[str]
    duration_s: float
    rate: int = 0
    connections: int = 0
    user_agents: list[str] = field(default_factory=list)    # one per URL (closed loop only); empty: wrk's

    def describe(self) -> str:
        if self.rate:
            return f"open loop, {self.rate} req/s"
        return f"closed loop, {self.connections} connections"


# --------------------------------------------------------------------------------------------------
# where the CPU goes (2 cores shared by Cassandra, gunicorn and the load generator)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def listening_pid(port: int) -> int | None:
    """The local process listening on a TCP port (from /proc/net/tcp{,6} and the processes' fds)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine, all cores (first line of /proc/stat); busy excludes
    idle, iowait and steal."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine, steal included."""
    busy, steal = machine_cpu_seconds()
    return busy + steal


@dataclass
class CpuSample:
    wall: float
    machine: float
    gunicorn: float
    cassandra: float
    loadgen: float


@dataclass
class CpuUse:
    """Average cores used during a phase, by group."""
    gunicorn: float
    cassandra: float | None
    loadgen: float
    other: float

    def describe(self) -> str:
        cassandra = "-" if self.cassandra is None else f"{self.cassandra:.2f}"
        return f"{self.gunicorn:.2f} / {cassandra} / {self.loadgen:.2f} / {self.other:.2f}"


class CpuMeter:
    """CPU seconds of gunicorn (master + workers), the local Cassandra, the load generator (this
    script's waited-for children: wrk or openloop) and everything else on the machine."""

    def __init__(self, gunicorn_master: int, cassandra: int | None) -> None:
        self.master = gunicorn_master
        self.cassandra = cassandra

    def sample(self) -> CpuSample:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return CpuSample(
            wall=time.monotonic(), machine=machine_busy_seconds(),
            gunicorn=sum(process_cpu_seconds(p) for p in [self.master, *child_pids(self.master)]),
            cassandra=process_cpu_seconds(self.cassandra) if self.cassandra else 0.0,
            loadgen=children.ru_utime + children.ru_stime)

    def use(self, before: CpuSample, after: CpuSample) -> CpuUse:
        wall = max(after.wall - before.wall, 1e-9)
        gunicorn = (after.gunicorn - before.gunicorn) / wall
        cassandra = (after.cassandra - before.cassandra) / wall
        loadgen = (after.loadgen - before.loadgen) / wall
        machine = (after.machine - before.machine) / wall
        return CpuUse(gunicorn=gunicorn, cassandra=cassandra if self.cassandra else None, loadgen=loadgen,
                      other=max(0.0, machine - gunicorn - cassandra - loadgen))


# --------------------------------------------------------------------------------------------------
# running a phase and what came back


@dataclass
class PhaseResult:
    endpoint: str
    load: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int  # responses other than 200, and requests that got no response at all
    errors: Counter = field(default_factory=Counter)
    cpu: CpuUse | None = None
    round: int = 0
    control: bool = False       # ping at half its own peak (not the serve rate)


@dataclass
class ImpressionLedger:
    """Impression ids of the 200 responses to /v1/serve, and what else came back."""
    ids: set[str] = field(default_factory=set)
    ok_responses: int = 0
    ok_without_id: int = 0
    failed: int = 0
    first_ts: float = float("inf")
    last_ts: float = float("-inf")

    def note_time(self, *when: float) -> None:
        self.first_ts, self.last_ts = min(self.first_ts, *when), max(self.last_ts, *when)

    def add_ok(self, impression_id: object) -> None:
        self.ok_responses += 1
        try:
            self.ids.add(str(uuid.UUID(str(impression_id))))
        except ValueError:
            self.ok_without_id += 1

    def add_response(self, status: int, body: bytes, when: float) -> None:
        self.note_time(when)
        if status != 200:
            self.failed += 1
            return
        try:
            impression_id = json.loads(body).get("impression_id")
        except (ValueError, AttributeError):
            impression_id = None
        self.add_ok(impression_id)


def run_wrk(wrk: Path, load: Load, endpoint: str, work_dir: Path,
            ledger: ImpressionLedger | None) -> PhaseResult:
    """Closed loop with wrk; impression ids come from the Lua hook's per-thread files."""
    parts = [urllib.parse.urlsplit(url) for url in load.urls]
    origin = f"{parts[0].scheme}://{parts[0].netloc}"
    paths = [urllib.parse.urlunsplit(("", "", p.path, p.query, "")) for p in parts]
    if load.user_agents:
        paths = [f"{path}\t{agent}" for path, agent in zip(paths, load.user_agents, strict=True)]
    ids_dir = work_dir / load.name
    ids_dir.mkdir()
    threads = max(1, min(os.cpu_count() or 1, load.connections))
    started = time.time()
    output = run([str(wrk), f"-t{threads}", f"-c{load.connections}", f"-d{max(1, round(load.duration_s))}s",
                  "--timeout", "10s", "-s", str(WRK_SCRIPT), origin, "--", str(ids_dir),
                  "1" if ledger is not None else "0", *paths], capture=True).stdout
    ended = time.time()
    summary_lines = [line for line in output.splitlines() if line.startswith("BENCH_JSON ")]
    if not summary_lines:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    summary = json.loads(summary_lines[-1].removeprefix("BENCH_JSON "))
    errors = Counter({f"socket {kind}": n for kind, n in summary["errors"].items() if n})
    failed = summary["not_ok"] + sum(errors.values())
    if ledger is not None:
        ledger.note_time(started, ended)
        recorded = [line for f in sorted(ids_dir.glob("ids-*.txt")) for line in f.read_text().split()]
        for impression_id in recorded:
            ledger.add_ok(impression_id)  # "MISSING" (a 200 without an id) counts as such
        for _ in range(summary["ok"] - len(recorded)):
            ledger.add_ok(None)  # a 200 whose id did not reach the file
        ledger.failed += failed
    return PhaseResult(endpoint=endpoint, load=load.describe(), requests=summary["requests"],
                       rps=summary["requests"] / (summary["duration_us"] / 1e6),
                       p50_ms=summary["p50_us"] / 1000, p99_ms=summary["p99_us"] / 1000,
                       failed=failed, errors=errors)


def run_openloop(openloop: Path, load: Load, endpoint: str, work_dir: Path,
                 ledger: ImpressionLedger | None) -> PhaseResult:
    """Open loop at a constant rate with openloop; latency from each request's due time."""
    parts = [urllib.parse.urlsplit(url) for url in load.urls]
    targets_file = work_dir / f"{load.name}.targets"
    targets_file.write_text("".join(urllib.parse.urlunsplit(("", "", p.path, p.query, "")) + "\n" for p in parts))
    results_file = work_dir / f"{load.name}.tsv"
    source = []
    if parts[0].hostname == "127.0.0.1":
        # Each open-loop phase from loopback addresses of its own, used in turn. gunicorn closes every connection
        # first, so each one leaves a TIME_WAIT (60 s) on the server side of its address pair; at ~750 new
        # connections a second the 28,000 ephemeral ports of one address come round within 40 s, a new SYN lands
        # on an old pair, and the refused ones are retried after 1 s, 3 s: whole rounds of ping and serve
        # collapsed so (seen in earlier runs). Four addresses per phase leave room for phases four times as long.
        source = ["-s", ",".join(f"127.0.0.{next(_LOOPBACK_SOURCES)}" for _ in range(4))]
    run([str(openloop), "-a", parts[0].hostname or "127.0.0.1", "-p", str(parts[0].port or 80),
         "-r", str(load.rate), "-d", f"{load.duration_s:g}", "-t", str(targets_file), "-o", str(results_file),
         "-T", "10", *source])
    # Kept for a closer look (one line per request: due offset, latency, send lag, status, error, body).
    kept = OUT_DIR / "latencies" / f"{load.name}.tsv"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results_file, kept)
    return summarize_openloop(load, endpoint, results_file, ledger)


_LOOPBACK_SOURCES = itertools.cycle(range(2, 255))      # 127.0.0.2 … 127.0.0.254


def summarize_openloop(load: Load, endpoint: str, results_file: Path,
                       ledger: ImpressionLedger | None) -> PhaseResult:
    latencies: list[float] = []
    failed = 0
    errors: Counter = Counter()
    start_unix = 0.0
    first_due, last_done = float("inf"), float("-inf")
    with results_file.open(encoding="utf-8", errors="replace") as results:
        for line in results:
            if line.startswith("#"):        # "# start_unix_ns <n> rate <r>"
                start_unix = int(line.split()[2]) / 1e9
                continue
            due_ns, latency_ns, _lag_ns, status_text, error, body = line.rstrip("\n").split("\t", 5)
            due_s, latency_s, status = int(due_ns) / 1e9, int(latency_ns) / 1e9, int(status_text)
            first_due, last_done = min(first_due, due_s), max(last_done, due_s + latency_s)
            latencies.append(latency_s * 1000)
            failed += status != 200
            if error != "-":
                errors[error] += 1
            if ledger is not None:
                ledger.add_response(status, body.encode(), start_unix + due_s)
    latencies.sort()
    span = last_done - first_due if latencies else 0.0
    return PhaseResult(endpoint=endpoint, load=load.describe(), requests=len(latencies),
                       rps=len(latencies) / span if span > 0 else 0.0,
                       p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                       failed=failed, errors=errors)


def print_phase(result: PhaseResult) -> None:
    log(f"  {result.endpoint} [{result.load}]: {result.requests} requests, {result.rps:.0f} req/s, "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, non-200/failed {result.failed}")
    if result.cpu:
        log(f"    CPU cores used: gunicorn / Cassandra / load generator / other = {result.cpu.describe()}")
    for error, count in result.errors.most_common(3):
        log(f"    error x{count}: {error}")


# --------------------------------------------------------------------------------------------------
# the application under test


def app_environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CASSANDRA_HOSTS": args.cassandra_hosts,
        "CASSANDRA_PORT": str(args.cassandra_port),
        "CASSANDRA_KEYSPACE": args.keyspace,
        "ADMIN_API_TOKEN": secrets.token_urlsafe(24),
        "SECRET_KEY": secrets.token_urlsafe(24),
        "PORT": str(args.port),
        # All load comes from one client address: keep the per-client limiter in the path (its cost is
        # part of a serve) but far above what the load generator sends.
        "RATELIMIT_SERVE": "100000000/minute",
        "RATELIMIT_CLICK": "100000000/minute",
    })
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    return env


def gunicorn_settings(env: dict[str, str]) -> dict[str, str]:
    """Effective gunicorn settings (workers, worker_class, threads, ...) of gunicorn.conf.py."""
    result = subprocess.run([str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--print-config",
                             "wsgi:app"], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    return settings


def start_gunicorn(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log_file = log_path.open("w")
    proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)  # Ctrl-C of the bench does not reach it: finally does
    log_file.close()
    return proc


def print_log_tail(log_path: Path, lines: int = 30) -> None:
    """The last lines of a server log on stderr: what a failed run shows of why."""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:] if log_path.exists() else []
    if tail:
        print("--- last lines of the gunicorn log ---\n" + "\n".join(tail), file=sys.stderr)


def stop_gunicorn(proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGTERM (graceful: workers flush pending writes), wait; SIGKILL the group if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log(f"gunicorn did not stop within {timeout_s:.0f} s of SIGTERM: SIGKILL")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float,
             proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}) while waiting for {what}")
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def seed(base: str, token: str) -> None:
    admin = f"{base}/v1/admin/tenants/{TENANT}"
    calls: list[tuple[str, dict]] = [(admin, {"name": "Bench"}),
                                     (f"{admin}/slots/{SLOT}", {"name": "Hero"})]
    for banner in BANNERS:
        calls.append((f"{admin}/slots/{SLOT}/banners/{banner}", {
            "image_url": f"http://127.0.0.1/static/banners/{banner}.svg",
            "target_url": f"https://example.com/{banner}", "alt": f"Banner {banner}", "active": True}))
    for url, payload in calls:
        status, body = http("PUT", url, token=token, payload=payload)
        if status not in (200, 201, 204):
            raise RuntimeError(f"PUT {url} -> {status}: {body[:300]!r}")


def serve_urls(base: str) -> list[str]:
    return [f"{base}/v1/serve/{TENANT}/{SLOT}?location={urllib.parse.quote(city)}" for city in CITIES]


def seed_context(base: str, token: str) -> None:
    """The contextual slot: the same banners, policy ``contextual`` on every feature."""
    admin = f"{base}/v1/admin/tenants/{TENANT}/slots/{CONTEXT_SLOT}"
    calls: list[tuple[str, dict]] = [(admin, {"name": "Hero (contextual)", "policy": "contextual",
                                              "context": CONTEXT_FEATURES})]
    for banner in BANNERS:
        calls.append((f"{admin}/banners/{banner}", {
            "image_url": f"http://127.0.0.1/static/banners/{banner}.svg",
            "target_url": f"https://example.com/{banner}", "alt": f"Banner {banner}", "active": True}))
    for url, payload in calls:
        status, body = http("PUT", url, token=token, payload=payload)
        if status not in (200, 201, 204):
            raise RuntimeError(f"PUT {url} -> {status}: {body[:300]!r}")


def context_requests(base: str, slot: str) -> tuple[list[str], list[str]]:
    """(URLs, User-Agents) of the contextual comparison: every city × referrer × segment × User-Agent."""
    urls, agents = [], []
    for city, referrer, segment, agent in itertools.product(CITIES, REFERRERS, SEGMENTS, USER_AGENTS):
        query = urllib.parse.urlencode({"location": city, "referrer_id": referrer, "segment": segment})
        urls.append(f"{base}/v1/serve/{TENANT}/{slot}?{query}")
        agents.append(agent)
    return urls, agents


# --------------------------------------------------------------------------------------------------
# the impression log check


@dataclass
class ImpressionCheck:
    ok_responses: int
    ok_without_id: int
    failed: int
    found: int
    missing: int
    days: list[dt.date]
    missing_sample: list[str]


def timeuuid_day(value: str) -> dt.date:
    seconds = (uuid.UUID(value).time - 0x01B21DD213814000) / 1e7
    return dt.datetime.fromtimestamp(seconds, dt.UTC).date()


def check_impressions(ledger: ImpressionLedger, args: argparse.Namespace, slot: str = SLOT) -> ImpressionCheck:
    """Read the impression_log partitions of the run (its buckets, and those the served ids name) and compare
    with the ids served."""
    from cassandra.cluster import Cluster  # the app's own driver, from the venv
    from cassandra.query import SimpleStatement

    root = str(Path(__file__).resolve().parents[1])     # the repository: eventlog/ holds the partition rule
    if root not in sys.path:
        sys.path.append(root)
    from eventlog import partitions

    days = {timeuuid_day(i) for i in ledger.ids}
    keys = {partitions.partition_of(uuid.UUID(i)) for i in ledger.ids}
    if ledger.ids or ledger.failed:
        first = dt.datetime.fromtimestamp(ledger.first_ts, dt.UTC)
        last = dt.datetime.fromtimestamp(ledger.last_ts, dt.UTC)
        days |= {first.date() + dt.timedelta(days=n) for n in range((last.date() - first.date()).days + 1)}
        keys |= set(partitions.partitions(first, last))
    stored: set[str] = set()
    cluster = Cluster(args.cassandra_hosts.split(","), port=args.cassandra_port)
    try:
        session = cluster.connect()
        query = SimpleStatement(f"SELECT impression_id FROM {args.keyspace}.impression_log "
                                "WHERE tenant_id=%s AND slot_id=%s AND bucket=%s AND shard=%s", fetch_size=5000)
        for bucket, shard in sorted(keys):
            stored |= {str(row.impression_id) for row in session.execute(query, (TENANT, slot, bucket, shard))}
    finally:
        cluster.shutdown()
    missing = ledger.ids - stored
    return ImpressionCheck(ok_responses=ledger.ok_responses, ok_without_id=ledger.ok_without_id,
                           failed=ledger.failed, found=len(ledger.ids & stored), missing=len(missing),
                           days=sorted(days), missing_sample=sorted(missing)[:5])


def cassandra_version(args: argparse.Namespace) -> str:
    from cassandra.cluster import Cluster
    cluster = Cluster(args.cassandra_hosts.split(","), port=args.cassandra_port)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    except Exception:  # noqa: BLE001 - only for the report
        return "unknown"
    finally:
        cluster.shutdown()


# --------------------------------------------------------------------------------------------------
# the report


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def busy_machine_warning(phases: list[PhaseResult], threshold: float = 0.25) -> list[str]:
    """A warning line when other processes took a noticeable share of the 2 cores."""
    other = max((p.cpu.other for p in phases if p.cpu), default=0.0)
    if other < threshold:
        return []
    return ["", (f"**Warning:** other processes on the machine used up to {other:.2f} cores during a "
                 "phase (the last CPU number): these figures understate what the server can do; rerun "
                 "on a quiet machine.")]


def render_markdown(phases: list[PhaseResult], check: ImpressionCheck, context: dict[str, str],
                    args: argparse.Namespace) -> str:
    verdict = "OK" if check.missing == 0 and check.ok_without_id == 0 and check.ok_responses else "FAILED"
    control = ", each round followed by ping at half the median ping peak (control)" if args.control else ""
    lines = [
        f"### Serving benchmark ({context['date']})",
        "",
        (f"- Machine: {context['nproc']} CPUs ({context['cpu']}), {context['memory']}; Cassandra "
         f"{context['cassandra']}, gunicorn and the load generator all on this one machine (loopback), "
         f"nothing pinned; load average before the run {context['loadavg']}."),
        (f"- Server: gunicorn {context['gunicorn_version']}, {context['workers']} workers "
         f"(worker_class {context['worker_class']}, threads {context['threads']}), Python "
         f"{platform.python_version()}, keyspace `{args.keyspace}`, 1 tenant / 1 slot / "
         f"{len(BANNERS)} banners, `location` cycling over {len(CITIES)} cities."),
        (f"- Load: {context['tools']}. {args.rounds} round(s) of the peaks (closed loop, {args.connections} "
         f"connections, {args.warmup:g} s warm-up then {args.duration:g} s; ping, then serve), then "
         f"{args.rounds} round(s) of both at half the median serve peak ({context['rate']} req/s, open loop) "
         f"for {args.duration:g} s each{control}. "
         "Latency: closed loop, from sending the request to the end of the response; open loop, from the "
         "time the request was due (start + i / rate) to the end of the response. Exact percentiles over "
         "every request of the phase. CPU = average "
         "cores busy during the phase: gunicorn (master + workers) / Cassandra / load generator / "
         "anything else. Failed = responses other than 200 and requests without a response."),
        "- Command: `make bench-serve` (`.venv/bin/python benchmarks/bench_serve.py`).",
        "",
        "| Round | Endpoint | Load | Requests | req/s | p50 (ms) | p99 (ms) | Failed | CPU (cores) |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in phases:
        cpu = p.cpu.describe() if p.cpu else "-"
        load = f"{p.load} (control)" if p.control else p.load
        lines.append(f"| {p.round} | `{p.endpoint}` | {load} | {p.requests} | {p.rps:.0f} | {p.p50_ms:.1f} | "
                     f"{p.p99_ms:.1f} | {p.failed} | {cpu} |")
    lines += [
        "",
        *round_summary(phases),
        *busy_machine_warning(phases),
        "",
        (f"Impression log check ({verdict}; after the load stopped, +{args.settle:g} s, gunicorn stopped "
         f"with SIGTERM; table `{args.keyspace}.impression_log`, "
         f"day(s) {', '.join(d.isoformat() for d in check.days) or '-'}): "
         f"200 responses to /v1/serve (warm-up included): {check.ok_responses}; impression ids found: "
         f"{check.found}; missing: {check.missing}; 200 without an impression_id: {check.ok_without_id}; "
         f"responses other than 200 or failed: {check.failed}."),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--port", type=int, default=8099, help="gunicorn port for the bench")
    parser.add_argument("--workers", type=int, default=0,
                        help="WEB_CONCURRENCY for gunicorn (0 = leave it to gunicorn.conf.py)")
    parser.add_argument("--keyspace", default="bb_bench")
    parser.add_argument("--cassandra-hosts", default=os.environ.get("CASSANDRA_HOSTS", "127.0.0.1"))
    parser.add_argument("--cassandra-port", type=int, default=int(os.environ.get("CASSANDRA_PORT", "9042")))
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up before each peak")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait after the load before stopping gunicorn")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds of quiet between phases")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each pair of phases (medians reported)")
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="skip the control phases (ping at half its own peak)")
    parser.add_argument("--context", choices=("off", "also", "only"), default="off",
                        help="also (or only) compare a contextual slot's peak with the Thompson slot's, in "
                             "alternating rounds (section serve-context)")
    return parser.parse_args()


def measure(tools: Tools, load: Load, endpoint: str, work_dir: Path, ledger: ImpressionLedger | None,
            server: subprocess.Popen, cassandra: int | None, number: int = 0) -> PhaseResult:
    log(f"{load.name}: {endpoint}, {load.describe()}, {load.duration_s:g} s ...")
    meter = CpuMeter(server.pid, cassandra)
    before = meter.sample()
    if load.rate:
        result = run_openloop(tools.openloop, load, endpoint, work_dir, ledger)
    else:
        result = run_wrk(tools.wrk, load, endpoint, work_dir, ledger)
    result.cpu = meter.use(before, meter.sample())
    result.round = number
    print_phase(result)
    if server.poll() is not None:
        raise RuntimeError(f"gunicorn (pid {server.pid}) exited with {server.returncode} during "
                           f"{load.name}: stopped by something else? The figures are void.")
    return result


def run_phases(tools: Tools, base: str, args: argparse.Namespace, work_dir: Path,
               ledger: ImpressionLedger, server: subprocess.Popen) -> tuple[list[PhaseResult], int]:
    """``args.rounds`` rounds of the peaks (closed loop: ping, then serve), then as many rounds of both at
    half the median serve peak (open loop). Rounds, not one long phase each: on a shared machine the speed
    drifts (Cassandra's compactions, neighbours), and ping and serve measured side by side, several times,
    show the drift instead of hiding it in one ratio."""
    endpoints = {
        "ping": ("GET /v1/ping", [f"{base}/v1/ping"], None),
        "serve": (f"GET /v1/serve/{TENANT}/{SLOT}?location=<city>", serve_urls(base), ledger),
    }
    cassandra = None  # the local Cassandra JVM, for the CPU figures (None when it is elsewhere)
    if args.cassandra_hosts.split(",")[0].strip() in ("127.0.0.1", "localhost", "::1"):
        cassandra = listening_pid(args.cassandra_port)
    phases: list[PhaseResult] = []
    for number in range(1, args.rounds + 1):
        for key, (endpoint, urls, phase_ledger) in endpoints.items():
            warmup = Load(f"{key}-warmup-{number}", urls, args.warmup, connections=args.connections)
            measure(tools, warmup, endpoint, work_dir, phase_ledger, server, cassandra)
            peak = Load(f"{key}-peak-{number}", urls, args.duration, connections=args.connections)
            phases.append(measure(tools, peak, endpoint, work_dir, phase_ledger, server, cassandra, number))
            time.sleep(args.pause)
    serve_peaks = [p for p in phases if p.endpoint.startswith("GET /v1/serve")]
    for peak in serve_peaks:
        if peak.failed > peak.requests // 100:
            raise RuntimeError(f"{peak.failed} of {peak.requests} serve requests at peak were not 200: no "
                               "meaningful peak to halve")
    rate = max(1, round(statistics.median(p.rps for p in serve_peaks) / 2))
    ping_rate = max(1, round(statistics.median(p.rps for p in phases if p.endpoint == "GET /v1/ping") / 2))
    for number in range(1, args.rounds + 1):
        for key, (endpoint, urls, phase_ledger) in endpoints.items():
            load = Load(f"{key}-rate-{number}", urls, args.duration, rate=rate)
            phases.append(measure(tools, load, endpoint, work_dir, phase_ledger, server, cassandra, number))
            time.sleep(args.pause)
        if args.control:
            endpoint, urls, _ = endpoints["ping"]
            load = Load(f"ping-control-{number}", urls, args.duration, rate=ping_rate)
            control = measure(tools, load, endpoint, work_dir, None, server, cassandra, number)
            control.control = True
            phases.append(control)
            time.sleep(args.pause)
    return phases, rate


THOMPSON_LABEL, CONTEXT_LABEL = "Thompson slot", "contextual slot"


def run_context_phases(tools: Tools, base: str, args: argparse.Namespace, work_dir: Path,
                       ledgers: dict[str, ImpressionLedger], server: subprocess.Popen) -> list[PhaseResult]:
    """``args.rounds`` rounds of closed-loop peaks of the Thompson slot and the contextual slot, the same
    requests to each, their order alternating from round to round (a drift of the machine then weighs on both)."""
    cassandra = None
    if args.cassandra_hosts.split(",")[0].strip() in ("127.0.0.1", "localhost", "::1"):
        cassandra = listening_pid(args.cassandra_port)
    slots = {THOMPSON_LABEL: SLOT, CONTEXT_LABEL: CONTEXT_SLOT}
    phases: list[PhaseResult] = []
    # A first, longer warm-up of both slots: each worker's first parse of each User-Agent family compiles
    # device-detector's rules (about a second of CPU each), a start-up cost that is not the slot's throughput.
    for label, slot in slots.items():
        urls, agents = context_requests(base, slot)
        key = "ctx" if label == CONTEXT_LABEL else "ts"
        first = Load(f"{key}-first-warmup", urls, 3 * args.warmup, connections=args.connections, user_agents=agents)
        measure(tools, first, label, work_dir, ledgers[label], server, cassandra)
    for number in range(1, args.rounds + 1):
        order = list(slots) if number % 2 else list(reversed(slots))
        for label in order:
            urls, agents = context_requests(base, slots[label])
            key = "ctx" if label == CONTEXT_LABEL else "ts"
            warmup = Load(f"{key}-warmup-{number}", urls, args.warmup, connections=args.connections,
                          user_agents=agents)
            measure(tools, warmup, label, work_dir, ledgers[label], server, cassandra)
            peak = Load(f"{key}-peak-{number}", urls, args.duration, connections=args.connections,
                        user_agents=agents)
            phases.append(measure(tools, peak, label, work_dir, ledgers[label], server, cassandra, number))
            time.sleep(args.pause)
    return phases


def render_context_markdown(phases: list[PhaseResult], checks: dict[str, ImpressionCheck],
                            context: dict[str, str], args: argparse.Namespace) -> str:
    """The serve-context section: each round's peaks, the ratio per round and its median, the log check."""
    by_round: dict[int, dict[str, PhaseResult]] = {}
    for p in phases:
        by_round.setdefault(p.round, {})[p.endpoint] = p
    ratios = {n: r[CONTEXT_LABEL].rps / r[THOMPSON_LABEL].rps for n, r in sorted(by_round.items())
              if CONTEXT_LABEL in r and THOMPSON_LABEL in r and r[THOMPSON_LABEL].rps}
    median = statistics.median(ratios.values()) if ratios else float("nan")
    requests = len(CITIES) * len(REFERRERS) * len(SEGMENTS) * len(USER_AGENTS)
    lines = [
        f"`make bench-serve-context` (`benchmarks/bench_serve.py --context {args.context}`), {context['date']}; "
        f"{context['nproc']} CPUs ({context['cpu']}), {context['memory']}, load average before the run "
        f"{context['loadavg']}; gunicorn {context['gunicorn_version']}, {context['workers']} workers "
        f"(worker_class {context['worker_class']}); Cassandra {context['cassandra']} on the same machine.",
        "",
        (f"Two slots of the same {len(BANNERS)} banners: `{SLOT}` (per-city Thompson sampling) and `{CONTEXT_SLOT}` "
         f"(contextual, features {', '.join(CONTEXT_FEATURES)}). Both get the same {requests} requests in "
         f"turn ({len(CITIES)} cities × {len(REFERRERS)} referrers × {len(SEGMENTS)} segments × "
         f"{len(USER_AGENTS)} User-Agents: iPhone, Android phone, iPad, Windows desktop). {args.rounds} round(s), "
         f"the order of the two slots alternating; each a closed loop of {args.connections} connections (wrk), "
         f"{args.warmup:g} s warm-up then {args.duration:g} s measured. CPU = cores busy: gunicorn / Cassandra / "
         "load generator / other."),
        "",
        "| round | slot | requests | req/s | p50 (ms) | p99 (ms) | failed | CPU (cores) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in phases:
        lines.append(f"| {p.round} | {p.endpoint} | {p.requests} | {p.rps:.0f} | {p.p50_ms:.1f} | {p.p99_ms:.1f} | "
                     f"{p.failed} | {p.cpu.describe() if p.cpu else '-'} |")
    each = ", ".join(f"{ratios[n]:.0%}" for n in sorted(ratios))
    lines += ["", f"- Contextual peak / Thompson peak, per round: {each}; **median {median:.0%}** "
                  f"(aim: at least 90%: {'met' if median >= 0.9 else 'not met'})."]
    for label, check in checks.items():
        lines.append(f"- Impression log, {label}: 200 responses {check.ok_responses}, ids found {check.found}, "
                     f"missing {check.missing}, 200 without an id {check.ok_without_id}.")
    if context.get("ua_parse"):
        lines.append(f"- What the contextual slot adds per *new* User-Agent string (device-detector, measured in this "
                     f"script's process after its rules were compiled): {context['ua_parse']}. A worker parses each "
                     "string once (LRU cache of 8,192): these requests reuse 4 strings, so the peaks above leave "
                     "that cost out.")
    lines += busy_machine_warning(phases)
    return "\n".join(lines) + "\n"


def user_agent_parse_cost(samples: int = 20) -> str:
    """Median and largest CPU time of device_class on User-Agent strings it has not seen (rules compiled first)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from webapp.serving.context import device_class

    for agent in USER_AGENTS:
        device_class(agent)                     # compiles the rules of each family
    costs = []
    for i in range(samples):
        agent = USER_AGENTS[i % len(USER_AGENTS)].replace("537.36", f"537.{40 + i}").replace("604.1", f"604.{i + 2}")
        started = time.process_time()
        device_class(agent)
        costs.append((time.process_time() - started) * 1e3)
    return (f"median {statistics.median(costs):.1f} ms, largest {max(costs):.1f} ms of CPU over {samples} "
            "strings")


def round_summary(phases: list[PhaseResult]) -> list[str]:
    """Per round: serve's peak as a share of ping's, and both p99s at the fixed rate; then the medians."""
    def pick(kind: str, open_loop: bool) -> dict[int, PhaseResult]:
        return {p.round: p for p in phases
                if p.endpoint.startswith(kind) and p.load.startswith("open") == open_loop and not p.control}

    ping_peak, serve_peak = pick("GET /v1/ping", False), pick("GET /v1/serve", False)
    ping_rate, serve_rate = pick("GET /v1/ping", True), pick("GET /v1/serve", True)
    shares = {n: serve_peak[n].rps / ping_peak[n].rps for n in serve_peak if n in ping_peak and ping_peak[n].rps}
    lines = []
    if shares:
        each = ", ".join(f"{shares[n]:.0%} ({serve_peak[n].rps:.0f} / {ping_peak[n].rps:.0f})" for n in sorted(shares))
        median = statistics.median(shares.values())
        lines.append(f"- Serve peak / ping peak, per round: {each}; **median {median:.0%}**.")
    if serve_rate:
        serve_p99 = [serve_rate[n].p99_ms for n in sorted(serve_rate)]
        ping_p99 = [ping_rate[n].p99_ms for n in sorted(ping_rate)]
        lines.append(f"- p99 at half the serve peak, per round: serve {', '.join(f'{v:.1f}' for v in serve_p99)} ms "
                     f"(**median {statistics.median(serve_p99):.1f} ms**); ping at the same rate "
                     f"{', '.join(f'{v:.1f}' for v in ping_p99)} ms (median {statistics.median(ping_p99):.1f} ms).")
    controls = [p for p in phases if p.control]
    if controls:
        control_p99 = [p.p99_ms for p in sorted(controls, key=lambda p: p.round)]
        lines.append(f"- Control, ping at half the median ping peak ({controls[0].load.removeprefix('open loop, ')}), "
                     f"p99 per round: {', '.join(f'{v:.1f}' for v in control_p99)} ms "
                     f"(median {statistics.median(control_p99):.1f} ms).")
    return lines


def wait_until_serving(base: str, ledger: ImpressionLedger, timeout_s: float,
                       proc: subprocess.Popen) -> None:
    """Poll /v1/serve until it answers 200 (config picked up); its 200s go into the ledger too."""
    url = serve_urls(base)[0]

    def serving() -> bool:
        status, body = http("GET", url)
        if status == 200:
            ledger.add_response(status, body, time.time())
        return status == 200

    wait_for("GET /v1/serve to answer 200", serving, timeout_s, proc)


@dataclass
class RunOutcome:
    phases: list[PhaseResult]
    rate: int
    workers: int
    ledger: ImpressionLedger
    context_phases: list[PhaseResult] = field(default_factory=list)
    context_ledger: ImpressionLedger = field(default_factory=ImpressionLedger)


def serve_under_load(args: argparse.Namespace, tools: Tools, env: dict[str, str]) -> RunOutcome:
    """Start gunicorn, seed, run every phase, let the writes land, and always stop gunicorn."""
    base = f"http://127.0.0.1:{args.port}"
    ledger = ImpressionLedger()
    gunicorn_log = OUT_DIR / "gunicorn-serve.log"
    log(f"starting gunicorn on {base} (log: {gunicorn_log.relative_to(REPO)}) ...")
    proc = start_gunicorn(env, gunicorn_log)
    try:
        wait_for("GET /v1/ping", lambda: http("GET", f"{base}/v1/ping")[0] == 200, 60, proc)
        log("seeding tenant, slot and banners through the management API ...")
        seed(base, env["ADMIN_API_TOKEN"])
        wait_until_serving(base, ledger, 30, proc)
        workers = len(child_pids(proc.pid))
        log(f"serving: gunicorn master pid {proc.pid}, {workers} workers")
        phases, rate, context_phases = [], 0, []
        context_ledger = ImpressionLedger()
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
            if args.context != "only":
                phases, rate = run_phases(tools, base, args, Path(tmp), ledger, proc)
            if args.context != "off":
                log(f"seeding the contextual slot {CONTEXT_SLOT} ...")
                seed_context(base, env["ADMIN_API_TOKEN"])
                url, agent = (v[0] for v in context_requests(base, CONTEXT_SLOT))

                def serving() -> bool:
                    status, body = http_agent(url, agent)
                    if status == 200:
                        context_ledger.add_response(status, body, time.time())
                    return status == 200

                wait_for(f"GET /v1/serve/{TENANT}/{CONTEXT_SLOT} to answer 200", serving, 30, proc)
                context_phases = run_context_phases(
                    tools, base, args, Path(tmp), {THOMPSON_LABEL: ledger, CONTEXT_LABEL: context_ledger}, proc)
        log(f"load stopped; waiting {args.settle:g} s for asynchronous writes ...")
        time.sleep(args.settle)
    except Exception:
        print_log_tail(gunicorn_log)
        raise
    finally:
        log("stopping gunicorn (SIGTERM) ...")
        stop_gunicorn(proc)
    log(f"gunicorn exited with {proc.returncode}")
    return RunOutcome(phases=phases, rate=rate, workers=workers, ledger=ledger, context_phases=context_phases,
                      context_ledger=context_ledger)


def http_agent(url: str, agent: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET with a User-Agent; (status, body), status 0 = no answer."""
    request = urllib.request.Request(url, headers={"User-Agent": agent})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def main() -> int:
    args = parse_args()
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C does, so that gunicorn is always stopped.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for needed in ("wsgi.py", "gunicorn.conf.py"):
        if not (REPO / needed).exists():
            raise SystemExit(f"{REPO / needed} does not exist: nothing to benchmark yet")
    if port_in_use(args.port):
        raise SystemExit(f"port {args.port} is already in use; pick another with --port")
    loadavg = " / ".join(Path("/proc/loadavg").read_text().split()[:3]) + " (1 / 5 / 15 min)"

    tools = ensure_tools()
    log(f"load generators: {tools.description}")
    env = app_environment(args)
    if args.keyspace.startswith(PREFIX):
        # A fresh keyspace per run: the impressions of earlier runs (one day partition per slot) would make
        # Cassandra compact ever larger partitions during the phases, and each run slower than the last.
        log(f"dropping keyspace {args.keyspace} (a fresh one per run; only bb_bench* keyspaces are dropped) ...")
        drop_keyspace(args.keyspace, args.cassandra_hosts, args.cassandra_port)
    log(f"creating the schema in keyspace {args.keyspace} (flask --app wsgi init-db) ...")
    run([str(VENV_BIN / "flask"), "--app", "wsgi", "init-db"], env=env)
    settings = gunicorn_settings(env)

    outcome = serve_under_load(args, tools, env)

    log(f"checking {len(outcome.ledger.ids)} impression ids in {args.keyspace}.impression_log ...")
    check = check_impressions(outcome.ledger, args)
    log(f"200 responses {check.ok_responses}, ids found {check.found}, missing {check.missing}, "
        f"200 without id {check.ok_without_id}, non-200/failed {check.failed}")
    if check.missing_sample:
        log(f"  e.g. missing: {', '.join(check.missing_sample)}")
    checks = {THOMPSON_LABEL: check}
    if args.context != "off":
        checks[CONTEXT_LABEL] = check_impressions(outcome.context_ledger, args, CONTEXT_SLOT)
        log(f"contextual slot: 200 responses {checks[CONTEXT_LABEL].ok_responses}, ids found "
            f"{checks[CONTEXT_LABEL].found}, missing {checks[CONTEXT_LABEL].missing}")

    context = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), "loadavg": loadavg,
        "nproc": str(os.cpu_count()), "cpu": cpu_model(), "memory": f"{memory_gib():.0f} GiB RAM",
        "cassandra": cassandra_version(args), "gunicorn_version": package_version("gunicorn"),
        "workers": str(outcome.workers), "worker_class": settings.get("worker_class", "?"),
        "threads": settings.get("threads", "?"), "tools": tools.description, "rate": str(outcome.rate),
    }
    if args.context != "only":
        markdown = render_markdown(outcome.phases, check, context, args)
        (OUT_DIR / "serve.md").write_text(markdown)
        print("\n" + markdown, flush=True)
        written = write_section("serve", markdown)
        log(f"written to {(OUT_DIR / 'serve.md').relative_to(REPO)} and {written.relative_to(REPO)}")
    if args.context != "off":
        context["ua_parse"] = user_agent_parse_cost()
        markdown = render_context_markdown(outcome.context_phases, checks, context, args)
        (OUT_DIR / "serve-context.md").write_text(markdown)
        print("\n" + markdown, flush=True)
        written = write_section("serve-context", markdown)
        log(f"written to {(OUT_DIR / 'serve-context.md').relative_to(REPO)} and {written.relative_to(REPO)}")
    ok = all(c.missing == 0 and c.ok_without_id == 0 and c.ok_responses > 0 for c in checks.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
