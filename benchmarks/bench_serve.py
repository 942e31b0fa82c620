#!/usr/bin/env python3
"""Serving benchmark: GET /v1/serve/<tenant>/<slot> beside GET /v1/ping on one gunicorn.

Run from the repository root as ``.venv/bin/python benchmarks/bench_serve.py`` (``make bench-serve``).

What it does, in order:

1. Makes sure the load generator is there: vegeta (``go install`` of a pinned version from the Go
   module proxy; ``apt-get install golang-go`` first if there is no Go at all).
2. Creates the schema in a dedicated keyspace (``flask --app wsgi init-db``, default ``bb_bench``).
3. Starts ``gunicorn -c gunicorn.conf.py wsgi:app`` on its own port (default 8099) and waits for
   ``/v1/ping``; seeds a tenant, a slot and six banners through the management API and waits until
   ``/v1/serve`` answers 200.
4. Measures, for ``/v1/ping`` and for ``/v1/serve`` (cycling through a few cities):
   - the peak: closed loop, a fixed number of connections each sending back-to-back (after a warm-up);
   - the latency at a constant open-loop rate of half the serve peak (same rate for both endpoints).
5. Waits for asynchronous writes, stops gunicorn with SIGTERM (workers flush pending writes on exit),
   and checks that the ``impression_id`` of every 200 response to ``/v1/serve`` is in the keyspace's
   ``impressions`` table.
6. Prints a Markdown block for docs/BENCHMARKS.md and writes it to benchmarks/out/serve.md.

Why vegeta: Debian (bookworm) has wrk but no wrk2, and wrk cannot hold a constant rate. vegeta does
both a constant-rate open loop (it adds workers when responses are slow, so a slow server does not
slow the senders down) and a closed loop (``-rate=0`` with a fixed number of workers), and it records
every response body, from which the impression ids are read. Latencies are computed here, exactly,
from vegeta's per-request results (vegeta's own report estimates quantiles with a t-digest).

The exit status is 1 when an impression id is missing from Cassandra (or no serve request succeeded).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"
VENV_BIN = Path(sys.executable).parent

VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"

TENANT = "bench"
SLOT = "hero"
BANNERS = [f"b{i}" for i in range(1, 7)]
CITIES = ["Mumbai", "Delhi", "Bengaluru", "Chennai", "Kolkata", "Pune"]


# --------------------------------------------------------------------------------------------------
# small helpers


def log(message: str) -> None:
    print(f"[bench-serve {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO,
        capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command, fail loudly (with its output) when it fails."""
    result = subprocess.run(cmd, env=env, cwd=cwd, text=True,
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
# the load generator


def go_binary() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go:
        return go
    log("no Go toolchain: apt-get install -y golang-go")
    run(["apt-get", "update", "-qq"])
    run(["apt-get", "install", "-y", "-qq", "golang-go"])
    go = shutil.which("go")
    if not go:
        raise RuntimeError("could not install Go (needed to build vegeta)")
    return go


def module_version(binary: Path, go: str) -> str | None:
    """The module version a Go binary was built from (`go version -m`), or None."""
    if not binary.exists():
        return None
    result = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "mod" and parts[1] == VEGETA_MODULE:
            return parts[2]
    return None


def ensure_vegeta() -> tuple[Path, str]:
    """Return (path, description) of vegeta VEGETA_VERSION, installing it with `go install` if needed."""
    go = go_binary()
    gopath = run([go, "env", "GOPATH"], capture=True).stdout.strip() or str(Path.home() / "go")
    binary = Path(gopath) / "bin" / "vegeta"
    if module_version(binary, go) != VEGETA_VERSION:
        log(f"installing vegeta {VEGETA_VERSION} (go install {VEGETA_MODULE}@{VEGETA_VERSION}) ...")
        run([go, "install", f"{VEGETA_MODULE}@{VEGETA_VERSION}"], cwd=Path(tempfile.gettempdir()))
    if module_version(binary, go) != VEGETA_VERSION:
        raise RuntimeError(f"vegeta {VEGETA_VERSION} not found at {binary} after go install")
    go_version = run([go, "env", "GOVERSION"], capture=True).stdout.strip()
    return binary, f"vegeta {VEGETA_VERSION} (built with {go_version})"


@dataclass
class Load:
    """One vegeta attack: closed loop when rate == 0 (then `connections` workers), else open loop."""
    name: str
    targets: list[str]
    duration_s: float
    rate: int = 0
    connections: int = 0
    keep_bodies: bool = False

    def describe(self) -> str:
        if self.rate:
            return f"open loop, {self.rate} req/s"
        return f"closed loop, {self.connections} connections"


def attack(vegeta: Path, load: Load, work_dir: Path) -> Path:
    """Run one attack; return the path of vegeta's binary results file."""
    targets_file = work_dir / f"{load.name}.targets"
    targets_file.write_text("".join(f"GET {url}\n" for url in load.targets))
    results_file = work_dir / f"{load.name}.bin"
    cmd = [str(vegeta), "attack", f"-targets={targets_file}", f"-output={results_file}",
           f"-duration={load.duration_s}s", "-timeout=10s", "-redirects=-1",
           f"-max-body={-1 if load.keep_bodies else 0}"]
    if load.rate:
        cmd += [f"-rate={load.rate}/1s"]  # workers grow as needed: a true open loop
    else:
        cmd += ["-rate=0", f"-workers={load.connections}", f"-max-workers={load.connections}"]
    run(cmd)
    return results_file


def decode(vegeta: Path, results_file: Path) -> Iterator[dict]:
    """Yield vegeta's per-request results (code, timestamp, latency in ns, error, base64 body)."""
    with subprocess.Popen([str(vegeta), "encode", "--to", "json", str(results_file)],
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                yield json.loads(line)
    if proc.returncode != 0:
        raise RuntimeError(f"vegeta encode failed on {results_file}")


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


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine, all cores (first line of /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


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
    script's waited-for children, i.e. vegeta) and everything else on the machine."""

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
# results


@dataclass
class PhaseResult:
    endpoint: str
    load: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_200: int
    errors: Counter = field(default_factory=Counter)
    cpu: CpuUse | None = None


@dataclass
class ImpressionLedger:
    """Impression ids of the 200 responses to /v1/serve, and what else came back."""
    ids: set[str] = field(default_factory=set)
    ok_responses: int = 0
    ok_without_id: int = 0
    non_200: int = 0
    first_ts: float = float("inf")
    last_ts: float = float("-inf")

    def add_response(self, status: int, body: bytes, when: float) -> None:
        self.first_ts, self.last_ts = min(self.first_ts, when), max(self.last_ts, when)
        if status != 200:
            self.non_200 += 1
            return
        self.ok_responses += 1
        try:
            impression_id = json.loads(body)["impression_id"]
            self.ids.add(str(uuid.UUID(str(impression_id))))
        except (ValueError, KeyError, TypeError):
            self.ok_without_id += 1


def summarize(vegeta: Path, load: Load, endpoint: str, results_file: Path,
              ledger: ImpressionLedger | None) -> PhaseResult:
    latencies: list[float] = []
    codes: Counter = Counter()
    errors: Counter = Counter()
    start, end = float("inf"), float("-inf")
    for result in decode(vegeta, results_file):
        began = dt.datetime.fromisoformat(result["timestamp"]).timestamp()
        latency_s = result["latency"] / 1e9
        start, end = min(start, began), max(end, began + latency_s)
        latencies.append(latency_s * 1000)
        codes[result["code"]] += 1
        if result["error"]:
            errors[result["error"].rpartition('": ')[2][:160]] += 1  # drop vegeta's 'Get "<url>": ' 
        if ledger is not None:
            ledger.add_response(result["code"], base64.b64decode(result["body"] or ""), began)
    latencies.sort()
    span = end - start if latencies else 0.0
    return PhaseResult(endpoint=endpoint, load=load.describe(), requests=len(latencies),
                       rps=len(latencies) / span if span > 0 else 0.0,
                       p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                       non_200=sum(n for code, n in codes.items() if code != 200), errors=errors)


def print_phase(result: PhaseResult) -> None:
    log(f"  {result.endpoint} [{result.load}]: {result.requests} requests, {result.rps:.0f} req/s, "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, non-200 {result.non_200}")
    if result.cpu:
        log(f"    CPU cores used: gunicorn / Cassandra / vegeta / other = {result.cpu.describe()}")
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
                             "wsgi:app"], cwd=REPO, env=env, capture_output=True, text=True)
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    return settings


def gunicorn_command() -> list[str]:
    """gunicorn with the project's config; without a control socket when gunicorn has one (>= 25.1),
    so that the bench instance neither takes over nor removes a developer's $HOME/.gunicorn/gunicorn.ctl."""
    cmd = [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py"]
    help_text = subprocess.run(cmd[:1] + ["--help"], capture_output=True, text=True).stdout
    if "--no-control-socket" in help_text:
        cmd.append("--no-control-socket")
    return cmd + ["wsgi:app"]


def start_gunicorn(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log_file = log_path.open("w")
    proc = subprocess.Popen(gunicorn_command(),
                            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)  # Ctrl-C of the bench does not reach it: finally does
    log_file.close()
    return proc


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


def worker_count(master_pid: int) -> int:
    """Number of live child processes of the gunicorn master."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            count += 1
    return count


def wait_for(what: str, check, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
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


# --------------------------------------------------------------------------------------------------
# the impression log check


@dataclass
class ImpressionCheck:
    ok_responses: int
    ok_without_id: int
    non_200: int
    found: int
    missing: int
    days: list[dt.date]
    missing_sample: list[str]


def timeuuid_day(value: str) -> dt.date:
    seconds = (uuid.UUID(value).time - 0x01B21DD213814000) / 1e7
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).date()


def check_impressions(ledger: ImpressionLedger, args: argparse.Namespace) -> ImpressionCheck:
    """Read the impressions partitions of the run's UTC days and compare with the ids served."""
    from cassandra.cluster import Cluster  # the app's own driver, from the venv
    from cassandra.query import SimpleStatement

    days = {timeuuid_day(i) for i in ledger.ids}
    if ledger.ids or ledger.non_200:
        first = dt.datetime.fromtimestamp(ledger.first_ts, dt.timezone.utc).date()
        last = dt.datetime.fromtimestamp(ledger.last_ts, dt.timezone.utc).date()
        days |= {first + dt.timedelta(days=n) for n in range((last - first).days + 1)}
    stored: set[str] = set()
    cluster = Cluster(args.cassandra_hosts.split(","), port=args.cassandra_port)
    try:
        session = cluster.connect()
        query = SimpleStatement(f"SELECT impression_id FROM {args.keyspace}.impressions "
                                "WHERE tenant_id=%s AND slot_id=%s AND day=%s", fetch_size=5000)
        for day in sorted(days):
            stored |= {str(row.impression_id) for row in session.execute(query, (TENANT, SLOT, day))}
    finally:
        cluster.shutdown()
    missing = ledger.ids - stored
    return ImpressionCheck(ok_responses=ledger.ok_responses, ok_without_id=ledger.ok_without_id,
                           non_200=ledger.non_200, found=len(ledger.ids & stored), missing=len(missing),
                           days=sorted(days), missing_sample=sorted(missing)[:5])


def cassandra_version(args: argparse.Namespace) -> str:
    from cassandra.cluster import Cluster
    cluster = Cluster(args.cassandra_hosts.split(","), port=args.cassandra_port)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    except Exception:  # only for the report
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
    return ["", f"**Warning:** other processes on the machine used up to {other:.2f} cores during a "
                "phase (last CPU figure): these figures understate what the server can do; rerun on a "
                "quiet machine."]


def render_markdown(phases: list[PhaseResult], check: ImpressionCheck, context: dict[str, str],
                    args: argparse.Namespace) -> str:
    verdict = "OK" if check.missing == 0 and check.ok_without_id == 0 and check.ok_responses else "FAILED"
    lines = [
        f"### Serving benchmark ({context['date']})",
        "",
        f"- Machine: {context['nproc']} CPUs ({context['cpu']}), {context['memory']}; Cassandra "
        f"{context['cassandra']}, gunicorn and the load generator all on this one machine (loopback), "
        f"nothing pinned; load average before the run {context['loadavg']}.",
        f"- Server: gunicorn {context['gunicorn_version']}, {context['workers']} workers "
        f"(worker_class {context['worker_class']}, threads {context['threads']}), Python "
        f"{platform.python_version()}, keyspace `{args.keyspace}`, 1 tenant / 1 slot / "
        f"{len(BANNERS)} banners, `location` cycling over {len(CITIES)} cities.",
        f"- Load: {context['tool']}. Peak = closed loop, {args.connections} connections, "
        f"{args.warmup:g} s warm-up then {args.duration:g} s; then open loop at half the serve peak "
        f"({context['rate']} req/s) for {args.duration:g} s. Latency = time from sending the request "
        "to the end of the response, exact percentiles over every request of the phase. CPU = average "
        "cores busy during the phase: gunicorn (master + workers) / Cassandra / vegeta / anything else.",
        "- Command: `make bench-serve` (`.venv/bin/python benchmarks/bench_serve.py`).",
        "",
        "| Endpoint | Load | Requests | req/s | p50 (ms) | p99 (ms) | non-200 | CPU (cores) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in phases:
        cpu = p.cpu.describe() if p.cpu else "-"
        lines.append(f"| `{p.endpoint}` | {p.load} | {p.requests} | {p.rps:.0f} | {p.p50_ms:.1f} | "
                     f"{p.p99_ms:.1f} | {p.non_200} | {cpu} |")
    lines += [
        *busy_machine_warning(phases),
        "",
        f"Impression log check ({verdict}; after the load stopped, +{args.settle:g} s, gunicorn stopped "
        f"with SIGTERM; table `{args.keyspace}.impressions`, "
        f"day(s) {', '.join(d.isoformat() for d in check.days) or '-'}): "
        f"200 responses to /v1/serve (warm-up included): {check.ok_responses}; impression ids found: "
        f"{check.found}; missing: {check.missing}; 200 without an impression_id: {check.ok_without_id}; "
        f"non-200 responses: {check.non_200}.",
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
    return parser.parse_args()


def measure(vegeta: Path, load: Load, endpoint: str, work_dir: Path,
            ledger: ImpressionLedger | None, server: subprocess.Popen, cassandra: int | None) -> PhaseResult:
    log(f"{load.name}: {endpoint}, {load.describe()}, {load.duration_s:g} s ...")
    meter = CpuMeter(server.pid, cassandra)
    before = meter.sample()
    results_file = attack(vegeta, load, work_dir)
    cpu = meter.use(before, meter.sample())
    result = summarize(vegeta, load, endpoint, results_file, ledger)
    result.cpu = cpu
    print_phase(result)
    if server.poll() is not None:
        raise RuntimeError(f"gunicorn (pid {server.pid}) exited with {server.returncode} during "
                           f"{load.name}: stopped by something else? The figures are void.")
    return result


def run_phases(vegeta: Path, base: str, args: argparse.Namespace, work_dir: Path,
               ledger: ImpressionLedger, server: subprocess.Popen) -> tuple[list[PhaseResult], int]:
    """Peak (closed loop) for ping and serve, then both at half the serve peak (open loop)."""
    endpoints = {
        "ping": ("GET /v1/ping", [f"{base}/v1/ping"], None),
        "serve": (f"GET /v1/serve/{TENANT}/{SLOT}?location=<city>", serve_urls(base), ledger),
    }
    cassandra = None  # the local Cassandra JVM, for the CPU figures (None when it is elsewhere)
    if args.cassandra_hosts.split(",")[0].strip() in ("127.0.0.1", "localhost", "::1"):
        cassandra = listening_pid(args.cassandra_port)
    peaks: dict[str, PhaseResult] = {}
    for key, (endpoint, urls, phase_ledger) in endpoints.items():
        keep = phase_ledger is not None
        warmup = Load(f"{key}-warmup", urls, args.warmup, connections=args.connections, keep_bodies=keep)
        measure(vegeta, warmup, endpoint, work_dir, phase_ledger, server, cassandra)
        peak = Load(f"{key}-peak", urls, args.duration, connections=args.connections, keep_bodies=keep)
        peaks[key] = measure(vegeta, peak, endpoint, work_dir, phase_ledger, server, cassandra)
        time.sleep(args.pause)
    if peaks["serve"].non_200 > peaks["serve"].requests // 100:
        raise RuntimeError(f"{peaks['serve'].non_200} of {peaks['serve'].requests} serve requests at "
                           "peak were not 200: no meaningful peak to halve")
    rate = max(1, round(peaks["serve"].rps / 2))
    fixed: list[PhaseResult] = []
    for key, (endpoint, urls, phase_ledger) in endpoints.items():
        load = Load(f"{key}-rate", urls, args.duration, rate=rate, keep_bodies=phase_ledger is not None)
        fixed.append(measure(vegeta, load, endpoint, work_dir, phase_ledger, server, cassandra))
        time.sleep(args.pause)
    return [peaks["ping"], peaks["serve"], *fixed], rate


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


def main() -> int:
    args = parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for needed in ("wsgi.py", "gunicorn.conf.py"):
        if not (REPO / needed).exists():
            raise SystemExit(f"{REPO / needed} does not exist: nothing to benchmark yet")
    if port_in_use(args.port):
        raise SystemExit(f"port {args.port} is already in use; pick another with --port")

    loadavg = " / ".join(Path("/proc/loadavg").read_text().split()[:3]) + " (1 / 5 / 15 min)"
    vegeta, tool = ensure_vegeta()
    log(f"load generator: {tool}")
    env = app_environment(args)
    base = f"http://127.0.0.1:{args.port}"

    log(f"creating the schema in keyspace {args.keyspace} (flask --app wsgi init-db) ...")
    run([str(VENV_BIN / "flask"), "--app", "wsgi", "init-db"], env=env)
    settings = gunicorn_settings(env)

    ledger = ImpressionLedger()
    gunicorn_log = OUT_DIR / "gunicorn-serve.log"
    log(f"starting gunicorn on {base} (log: {gunicorn_log.relative_to(REPO)}) ...")
    proc = start_gunicorn(env, gunicorn_log)
    try:
        wait_for("GET /v1/ping", lambda: http("GET", f"{base}/v1/ping")[0] == 200, 60, proc)
        log("seeding tenant, slot and banners through the management API ...")
        seed(base, env["ADMIN_API_TOKEN"])
        wait_until_serving(base, ledger, 30, proc)
        workers = worker_count(proc.pid)
        log(f"serving: gunicorn master pid {proc.pid}, {workers} workers "
            f"({settings.get('worker_class', '?')}, threads {settings.get('threads', '?')})")
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
            phases, rate = run_phases(vegeta, base, args, Path(tmp), ledger, proc)
        log(f"load stopped; waiting {args.settle:g} s for asynchronous writes ...")
        time.sleep(args.settle)
    except BaseException:
        tail = gunicorn_log.read_text(errors="replace").splitlines()[-30:] if gunicorn_log.exists() else []
        if tail:
            print("--- last lines of the gunicorn log ---\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        log("stopping gunicorn (SIGTERM) ...")
        stop_gunicorn(proc)
    log(f"gunicorn exited with {proc.returncode}")

    log(f"checking {len(ledger.ids)} impression ids in {args.keyspace}.impressions ...")
    check = check_impressions(ledger, args)
    log(f"200 responses {check.ok_responses}, ids found {check.found}, missing {check.missing}, "
        f"200 without id {check.ok_without_id}, non-200 {check.non_200}")
    if check.missing_sample:
        log(f"  e.g. missing: {', '.join(check.missing_sample)}")

    context = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"), "loadavg": loadavg,
        "nproc": str(os.cpu_count()), "cpu": cpu_model(), "memory": f"{memory_gib():.0f} GiB RAM",
        "cassandra": cassandra_version(args), "gunicorn_version": package_version("gunicorn"),
        "workers": str(workers), "worker_class": settings.get("worker_class", "?"),
        "threads": settings.get("threads", "?"), "tool": tool, "rate": str(rate),
    }
    markdown = render_markdown(phases, check, context, args)
    (OUT_DIR / "serve.md").write_text(markdown)
    print("\n" + markdown, flush=True)
    log(f"written to {(OUT_DIR / 'serve.md').relative_to(REPO)}")
    ok = check.missing == 0 and check.ok_without_id == 0 and check.ok_responses > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
