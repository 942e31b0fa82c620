"""Keep serving through a Cassandra outage and lose no acknowledged event, count none twice.

A Cassandra node of its own (the project's scripts/cassandra.sh, second instance on other ports, sharing
the downloaded jars) is stopped in the middle of a load of serves and clicks against gunicorn, a worker is
killed with SIGKILL while it holds spooled events, the node is started again, and the event log must then
hold exactly the impressions that were answered 200 and the clicks that were answered "recorded". The
counters, which may fall short by what the killed worker had not flushed, are then audited against the log
and repaired (spark_jobs/counter_audit.py), after which they agree with it.
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
from pathlib import Path

import pytest
import requests

from spark_jobs import counter_audit
from spark_jobs.session import stop_session
from tests.helpers import ADMIN_TOKEN, free_port
from tests.spark_support import job_config, local_spark
from webapp import create_app
from webapp.storage import store

ROOT = Path(__file__).resolve().parent.parent
NODE_PORT = 9044
pytestmark = [pytest.mark.slow, pytest.mark.spark]   # and cassandra, by its fixture
logging.getLogger("cassandra").setLevel(logging.ERROR)     # the node is down on purpose

NODE_ENV = {
    "CASSANDRA_HOME": str(ROOT / ".cassandra-outage"),
    "CASSANDRA_LIB": str(ROOT / ".cassandra" / "lib"),
    "CASSANDRA_PORT": str(NODE_PORT),
    "CASSANDRA_STORAGE_PORT": "7002",
    "CASSANDRA_JMX_PORT": "7300",
    "CASSANDRA_HEAP": "768M",
}


def node(command: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "cassandra.sh"), command], check=True,
                   env={**os.environ, **NODE_ENV})


@pytest.fixture(scope="module")
def outage_node(cassandra):
    """The second node (started after the main one, which fetched the jars)."""
    node("start")
    yield
    node("stop")


class Load:
    """Two threads of visitors: serve, and click one serve in four; remembers what was acknowledged."""

    def __init__(self, base: str, tenant: str) -> None:
        self.base, self.tenant = base, tenant
        self.served: set[str] = set()          # impression ids answered 200
        self.clicked: set[str] = set()         # impression ids whose click was answered "recorded"
        self.stale_answers = 0
        self.errors = 0
        self.workers: set[str] = set()
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
            thread.join(timeout=30)

    def _run(self, seed: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                r = requests.get(f"{self.base}/v1/serve/{self.tenant}/hero?location=City{n % 3}", timeout=15)
            except requests.RequestException:
                self.errors += 1
                continue
            if r.status_code != 200:
                self.errors += 1
                time.sleep(0.05)
                continue
            body = r.json()
            with self._lock:
                self.served.add(body["impression_id"])
                self.workers.add(r.headers["X-Banner-Bandit-Worker"])
                self.stale_answers += "X-Banner-Bandit-Stale" in r.headers
            if (n + seed) % 4 == 0:
                try:
                    c = requests.post(f"{self.base}/v1/click", json={"token": body["token"]}, timeout=15)
                except requests.RequestException:
                    self.errors += 1
                    continue
                if c.status_code == 200 and c.json()["status"] == "recorded":
                    with self._lock:
                        self.clicked.add(body["impression_id"])
            time.sleep(0.002)


def test_outage_and_sigkill_lose_nothing_acknowledged_and_count_nothing_twice(outage_node, tmp_path):
    keyspace = f"bb_outage_{uuid.uuid4().hex[:10]}"
    admin = create_app({"CASSANDRA_PORT": NODE_PORT, "CASSANDRA_KEYSPACE": keyspace})
    db = admin.extensions["cassandra"]
    db.apply_schema()
    port = free_port()
    env = {**os.environ, "CASSANDRA_PORT": str(NODE_PORT), "CASSANDRA_KEYSPACE": keyspace,
           "ADMIN_API_TOKEN": ADMIN_TOKEN, "PORT": str(port), "WEB_CONCURRENCY": "2",
           "SECRET_KEY": "outage-test", "SPOOL_DIR": str(tmp_path / "spool"), "REPLAY_SECONDS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    tenant = "outage"
    try:
        _wait(lambda: requests.get(f"{base}/v1/ping", timeout=1).ok, 30, "gunicorn start")
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        requests.put(f"{base}/v1/admin/tenants/{tenant}", json={"name": "O"}, headers=auth).raise_for_status()
        requests.put(f"{base}/v1/admin/tenants/{tenant}/slots/hero", json={"name": "H"}, headers=auth
                     ).raise_for_status()
        for banner in ("a", "b", "c"):
            requests.put(f"{base}/v1/admin/tenants/{tenant}/slots/hero/banners/{banner}", headers=auth, json={
                "image_url": "https://cdn.example.com/x.png", "target_url": "https://shop.example.com/"}
            ).raise_for_status()
        probes: set[str] = set()          # impressions answered 200 to the readiness probe

        def slot_visible() -> bool:
            r = requests.get(f"{base}/v1/serve/{tenant}/hero", timeout=5)
            if r.status_code == 200:
                probes.add(r.json()["impression_id"])
            return r.status_code == 200

        _wait(slot_visible, 30, "slot visible to the workers")

        with Load(base, tenant) as load:
            time.sleep(3)
            before_outage = len(load.served)
            node("stop")                                   # --- Cassandra goes away
            outage_started = time.monotonic()
            time.sleep(4)
            victim = sorted(load.workers)[0]
            os.kill(int(victim), signal.SIGKILL)           # a worker dies holding spooled events
            time.sleep(3)
            during_outage = len(load.served) - before_outage
            node("start")                                  # --- Cassandra is back
            outage_seconds = time.monotonic() - outage_started
            time.sleep(3)

        print(f"\nouted for {outage_seconds:.1f}s; served {len(load.served)} (during outage {during_outage}), "
              f"clicks recorded {len(load.clicked)}, stale answers {load.stale_answers}, "
              f"failed requests {load.errors}, killed worker {victim}")
        assert during_outage > 50, "serving must go on while Cassandra is down"
        assert load.stale_answers > 0, "answers from old posteriors must say so"

        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)      # the test runs for minutes

        def logged() -> tuple[set[str], set[str]]:
            until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
            impressions = {str(i) for i in store.logged_ids(db, "impressions", tenant, "hero", since, until)}
            clicks = {str(i) for i in store.logged_ids(db, "clicks", tenant, "hero", since, until)}
            return impressions, clicks

        _wait(lambda: logged()[0] >= load.served and logged()[1] >= load.clicked, 90, "replay")
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        impressions, clicks = logged()
        acknowledged = load.served | probes
        assert acknowledged <= impressions       # every acknowledged impression is in the log
        # Beyond those, only serves the killed worker had spooled but never answered (a failed request).
        unanswered = impressions - acknowledged
        assert len(unanswered) <= load.errors, (len(unanswered), load.errors)
        assert load.clicked <= clicks            # every recorded click (the key makes each one count once)
        assert len(clicks - load.clicked) + len(unanswered) <= load.errors
        counted = store.slot_counts(db, tenant, "hero", "")
        counted_impressions = sum(r["impressions"] for r in counted)
        counted_clicks = sum(r["clicks"] for r in counted)
        print(f"log: {len(impressions)} impressions ({len(unanswered)} spooled but never answered), "
              f"{len(clicks)} clicks; "
              f"counters: {counted_impressions} impressions, {counted_clicks} clicks")
        assert counted_impressions <= len(impressions) and counted_clicks <= len(clicks)   # never twice

        config = job_config(CASSANDRA_PORT=NODE_PORT, CASSANDRA_KEYSPACE=keyspace)
        spark = local_spark(CASSANDRA_PORT=NODE_PORT, CASSANDRA_KEYSPACE=keyspace)
        try:
            audit = counter_audit.run(spark, config, [tenant], repair_slots=True, settle=1.0)
            again = counter_audit.run(spark, config, [tenant])
        finally:
            stop_session(spark)
        short = audit.reports[counter_audit.BANNER_COUNTS.name]
        print(f"counter audit: {len(short.rows)} banner_counts rows short of the log by "
              f"{short.missing('impressions')} impressions, {short.missing('clicks')} clicks and "
              f"{short.missing('filtered_clicks')} filtered clicks; "
              f"repaired {len(audit.repaired_slots)} slot; then {'agree' if again.consistent else 'DIFFER'}")
        assert not audit.ahead()
        assert audit.repaired_slots == audit.repairable_slots() and not audit.busy_slots    # the server is stopped
        assert again.consistent, counter_audit.describe(again, 20)
        repaired = store.slot_counts(db, tenant, "hero", "")
        assert sum(r["impressions"] for r in repaired) == len(impressions)       # no impression is imported
    finally:
        if server.poll() is None:
            server.kill()
        try:
            db.drop_keyspace()
        finally:
            db.shutdown()


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
        time.sleep(0.5)
