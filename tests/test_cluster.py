"""The service, the priors job and the counter audit on a three-node ring (replication factor 3, LOCAL_QUORUM)
and a Spark standalone cluster (scripts/cluster.sh).

The ring runs beside the project's single node, on 127.0.0.1-3:9142; the `ring` fixture starts it or reuses it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests
from cassandra import InvalidRequest, OperationTimedOut

from spark_jobs import city_priors, counter_audit
from spark_jobs.session import stop_session
from tests.helpers import ADMIN_TOKEN, INSTANT_CLICKS, free_port, gen_slot, make_config, simulate_history
from tests.spark_support import job_config, local_spark
from webapp import create_app
from webapp.storage import store
from webapp.storage.database import Database

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = str(ROOT / "scripts" / "cluster.sh")
SPARK_MASTER_LOG = ROOT / ".spark" / "cluster" / "master.log"
VICTIM = 3                      # the node killed under load (127.0.0.3)
logging.getLogger("cassandra").setLevel(logging.ERROR)     # a node is killed on purpose


@pytest.fixture(scope="module")
def ring_keyspace(ring):
    """A keyspace of this module's own on the ring (replication factor 3, from the ring's settings)."""
    name = f"bb_ring_{uuid.uuid4().hex[:10]}"
    db = Database(job_config(**ring, CASSANDRA_KEYSPACE=name))
    for attempt in range(3):        # idempotent; on a loaded 2-core machine a schema change can time out
        try:
            db.apply_schema()
            break
        except (OperationTimedOut, InvalidRequest):     # InvalidRequest: the keyspace not yet on every node
            if attempt == 2:
                raise
            db.session().cluster.control_connection.wait_for_schema_agreement(wait_time=60)
    yield name
    db.drop_keyspace()
    db.shutdown()


def logged_events(db: Database, tenant: str, slot: str, since: dt.datetime) -> tuple[list[str], list[str]]:
    """The impression ids of the slot's impression rows and of its click rows since ``since``, one entry per row
    (a repeated id would be an event logged twice). The only place this module reads the event log."""
    now = dt.datetime.now(dt.UTC)
    impressions = [str(i) for i in store.logged_ids(db, "impressions", tenant, slot, since, now)]
    clicks = [str(i) for i in store.logged_ids(db, "clicks", tenant, slot, since, now)]
    return impressions, clicks


def read_priors(db: Database, tenant: str, slot: str) -> dict[tuple[str, str], tuple[float, float]]:
    rows = db.execute("SELECT location, banner_id, alpha, beta FROM {ks}.priors WHERE tenant_id = ? AND slot_id = ?",
                      (tenant, slot))
    return {(r["location"], r["banner_id"]): (r["alpha"], r["beta"]) for r in rows}


def submit(ring: dict, keyspace: str, job: str, *args: str) -> subprocess.CompletedProcess:
    """``scripts/cluster.sh submit``: spark-submit of a job to the standalone cluster, against the ring."""
    env = {**os.environ, **ring, "CASSANDRA_KEYSPACE": keyspace}
    return subprocess.run([CLUSTER, "submit", job, *args], env=env, capture_output=True, text=True, timeout=900)


def registered_apps(name: str) -> int:
    """How many times the Spark master registered an application called ``name``."""
    text = SPARK_MASTER_LOG.read_text() if SPARK_MASTER_LOG.exists() else ""
    return text.count(f"Registering app {name}")


def test_the_spark_cluster_writes_the_same_priors_as_local_spark(ring, ring_keyspace, spark_cluster, tmp_path):
    app = create_app(make_config(ring_keyspace, **ring, SPOOL_DIR=str(tmp_path / "spool")))
    db = app.extensions["cassandra"]
    try:
        tenant, slot = gen_slot(app.test_client(), ["a", "b", "c"])
        now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        for seed, (location, ctr) in enumerate([("mumbai", {"a": 0.12, "b": 0.04, "c": 0.02}),
                                                ("delhi", {"a": 0.03, "b": 0.10, "c": 0.02}),
                                                ("", {"a": 0.05, "b": 0.05, "c": 0.05})]):
            simulate_history(app, tenant, slot, ctr, hours=4, serves_per_hour=150, seed=seed, now=now,
                             location=location)
        today = dt.datetime.now(dt.UTC).date()
        window = city_priors.Window(today - dt.timedelta(days=2), today + dt.timedelta(days=1))

        spark = local_spark(**ring, CASSANDRA_KEYSPACE=ring_keyspace)
        try:
            local = city_priors.run(spark, job_config(**ring, CASSANDRA_KEYSPACE=ring_keyspace), window, [tenant])
        finally:
            stop_session(spark)
        local_priors = read_priors(db, tenant, slot)
        assert local.impressions == 3 * 4 * 150 and len(local_priors) == local.priors_written
        assert {(location, banner) for location in ("", "mumbai", "delhi") for banner in "abc"} <= set(local_priors)
        db.execute("DELETE FROM {ks}.priors WHERE tenant_id = ? AND slot_id = ?", (tenant, slot))
        assert read_priors(db, tenant, slot) == {}

        apps_before = registered_apps("banner-bandit city priors")
        job = submit(ring, ring_keyspace, "city_priors", "--tenant", tenant,
                     "--since", window.since.isoformat(), "--until", window.until.isoformat())
        assert job.returncode == 0, job.stderr[-3000:]
        assert registered_apps("banner-bandit city priors") == apps_before + 1     # it ran on the cluster
        cluster_priors = read_priors(db, tenant, slot)
        print(f"\n{len(cluster_priors)} priors from the cluster, {len(local_priors)} from local[2]; largest relative "
              f"difference {max_relative_difference(local_priors, cluster_priors):.3g}")
        assert set(cluster_priors) == set(local_priors)
        for key, (alpha, beta) in local_priors.items():
            assert cluster_priors[key] == (pytest.approx(alpha, rel=1e-9), pytest.approx(beta, rel=1e-9)), key

        # The counter audit through spark-submit too: the counters the app flushed agree with the log.
        audit = submit(ring, ring_keyspace, "counter_audit", "--tenant", tenant)
        assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-3000:]
        assert registered_apps("banner-bandit counter audit") >= 1
    finally:
        app.extensions["runtime"].shutdown()
        db.shutdown()


def max_relative_difference(a: dict, b: dict) -> float:
    return max((abs(x - y) / abs(x) for key in a.keys() & b.keys() for x, y in zip(a[key], b[key], strict=True)
                if x), default=0.0)


class Load:
    """Two threads of visitors: serve, and click one serve in four; tallies every answer's status."""

    def __init__(self, base: str, tenant: str) -> None:
        self.base, self.tenant = base, tenant
        self.served: set[str] = set()          # impression ids answered 200
        self.clicked: set[str] = set()         # impression ids whose click was answered "recorded"
        self.statuses: Counter[int] = Counter()   # every answer's status code, serves and clicks
        self.failures = 0                      # no answer at all (connection error, timeout)
        self.server_error_answers: list[str] = []     # what each 5xx answer said
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(2)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def _request(self, method: str, url: str, **kwargs) -> requests.Response | None:
        try:
            response = requests.request(method, url, timeout=30, **kwargs)
        except requests.RequestException:
            with self._lock:
                self.failures += 1
            return None
        with self._lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.server_error_answers.append(f"{method} {url.split('?')[0]}: {response.text[:300]}")
        return response

    def _run(self, seed: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            r = self._request("GET", f"{self.base}/v1/serve/{self.tenant}/hero?location=City{n % 3}")
            if r is None or r.status_code != 200:
                time.sleep(0.05)
                continue
            body = r.json()
            with self._lock:
                self.served.add(body["impression_id"])
            if (n + seed) % 4 == 0:
                c = self._request("POST", f"{self.base}/v1/click", json={"token": body["token"]})
                if c is not None and c.status_code == 200 and c.json()["status"] == "recorded":
                    with self._lock:
                        self.clicked.add(body["impression_id"])

            time.sleep(0.005)


def node_up_in_ring(node: int) -> bool:
    status = subprocess.run([CLUSTER, "status"], capture_output=True, text=True, check=False).stdout
    return any(line.startswith("UN") and f"127.0.0.{node} " in line for line in status.splitlines())


@pytest.mark.slow
def test_a_node_killed_under_load_loses_nothing_acknowledged_and_counts_nothing_twice(ring, ring_keyspace, tmp_path):
    started_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    admin = create_app(make_config(ring_keyspace, **ring))
    db = admin.extensions["cassandra"]
    port = free_port()
    env = {**os.environ, **ring, "CASSANDRA_KEYSPACE": ring_keyspace, "ADMIN_API_TOKEN": ADMIN_TOKEN,
           "PORT": str(port), "WEB_CONCURRENCY": "2", "SECRET_KEY": "ring-test",
           "SPOOL_DIR": str(tmp_path / "spool"), "REPLAY_SECONDS": "1"}
    server_log = tmp_path / "gunicorn.log"
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=server_log.open("wb"))
    base = f"http://127.0.0.1:{port}"
    tenant = f"ring{uuid.uuid4().hex[:8]}"
    try:
        _wait(lambda: requests.get(f"{base}/v1/ping", timeout=2).ok, 120, "gunicorn start")
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        requests.put(f"{base}/v1/admin/tenants/{tenant}", json={"name": "R", "click_filter": INSTANT_CLICKS},
                     headers=auth).raise_for_status()
        requests.put(f"{base}/v1/admin/tenants/{tenant}/slots/hero", json={"name": "H"}, headers=auth
                     ).raise_for_status()
        for banner in ("a", "b", "c"):
            requests.put(f"{base}/v1/admin/tenants/{tenant}/slots/hero/banners/{banner}", headers=auth, json={
                "image_url": "https://cdn.example.com/x.png", "target_url": "https://shop.example.com/"}
            ).raise_for_status()
        probes: set[str] = set()

        def slot_visible() -> bool:
            r = requests.get(f"{base}/v1/serve/{tenant}/hero", timeout=5)
            if r.status_code == 200:
                probes.add(r.json()["impression_id"])
            return r.status_code == 200

        _wait(slot_visible, 60, "slot visible to the workers")

        with Load(base, tenant) as load:
            time.sleep(5)
            before_kill = len(load.served)
            subprocess.run([CLUSTER, "node", str(VICTIM), "kill"], check=True)      # --- a node crashes
            killed = time.monotonic()
            time.sleep(10)
            restart = time.monotonic()
            subprocess.run([CLUSTER, "node", str(VICTIM), "start"], check=True)     # --- and comes back
            _wait(lambda: node_up_in_ring(VICTIM), 300, f"node {VICTIM} up and normal")
            back = time.monotonic()
            # The restarted node must take part in schema changes again (the keyspace is dropped at the end).
            assert db.session().cluster.control_connection.wait_for_schema_agreement(wait_time=120)
            while_down = len(load.served) - before_kill
            time.sleep(5)                                   # load on the whole ring again

        print(f"\nnode {VICTIM} down {restart - killed:.0f}s, restarted and normal after {back - restart:.0f}s; "
              f"served {len(load.served)} ({while_down} while it was down or starting), "
              f"clicks logged {len(load.clicked)}; answers {dict(load.statuses)}, "
              f"{load.failures} requests without an answer")
        assert load.server_errors == 0, (dict(load.statuses), load.server_error_answers,
                                         _tracebacks(server_log.read_text(errors="replace")))
        assert while_down > 50, "serving goes on with a node down"
        assert len(load.clicked) > 20, "clicks are recorded throughout"

        acknowledged = load.served | probes
        replay_started = time.monotonic()
        _wait(lambda: set(logged_events(db, tenant, "hero", started_at)[0]) >= acknowledged
              and set(logged_events(db, tenant, "hero", started_at)[1]) >= load.clicked, 120, "replay")
        print(f"every acknowledged event in the log {time.monotonic() - replay_started:.1f}s after the load ended")
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

        impressions, clicks = logged_events(db, tenant, "hero", started_at)
        assert len(impressions) == len(set(impressions)) and len(clicks) == len(set(clicks))   # once each
        assert acknowledged <= set(impressions) and load.clicked <= set(clicks)
        # Beyond those, only requests that got no answer (a serve written but not acknowledged).
        assert len(set(impressions) - acknowledged) + len(set(clicks) - load.clicked) <= load.failures

        config = job_config(**ring, CASSANDRA_KEYSPACE=ring_keyspace)
        spark = local_spark(**ring, CASSANDRA_KEYSPACE=ring_keyspace)
        try:
            audit = counter_audit.run(spark, config, [tenant], repair_slots=True, settle=1.0)
            again = counter_audit.run(spark, config, [tenant])
        finally:
            stop_session(spark)
        print(f"counter audit: {counter_audit.describe(audit, 5)}")
        assert not audit.ahead(), counter_audit.describe(audit, 20)       # nothing counted twice
        assert again.consistent, counter_audit.describe(again, 20)
        counted = store.slot_counts(db, tenant, "hero", "")
        assert sum(r["impressions"] for r in counted) == len(impressions)
        assert sum(r["clicks"] for r in counted) == len(clicks)     # the click filter passes them all here
    finally:
        if server.poll() is None:
            server.kill()
        subprocess.run([CLUSTER, "node", str(VICTIM), "start"], check=False)     # whatever happened above
        db.shutdown()


def _tracebacks(log: str) -> list[str]:
    """The last line of each traceback in a server's log, with the line that preceded it."""
    lines = log.splitlines()
    return [f"{lines[i - 1]} … {lines[j]}" for i, line in enumerate(lines) if line.startswith("Traceback")
            for j in [next((k for k in range(i + 1, len(lines)) if not lines[k].startswith((" ", "\t"))), i)]]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)
