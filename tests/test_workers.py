"""Several gunicorn workers share what they learn through Cassandra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests

from tests.helpers import ADMIN_TOKEN, COUNTS, free_port, recent
from webapp import create_app
from webapp.storage import store

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 3
pytestmark = pytest.mark.slow


@pytest.fixture
def server(keyspace):
    port = free_port()
    env = {**os.environ, "CASSANDRA_KEYSPACE": keyspace, "ADMIN_API_TOKEN": ADMIN_TOKEN, "PORT": str(port),
           "WEB_CONCURRENCY": str(WORKERS), "SECRET_KEY": "workers-test"}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{base}/v1/ping", timeout=5)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield base, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def serve(base: str, tenant: str) -> tuple[int, str, dict]:
    response = requests.get(f"{base}/v1/serve/{tenant}/hero?location=Goa", timeout=5,
                            headers={"Connection": "close", **COUNTS})
    return response.status_code, response.headers.get("X-Banner-Bandit-Worker", ""), response.json()


def test_a_click_through_one_worker_reaches_every_worker(server, keyspace):
    base, process = server
    tenant = f"w{os.getpid()}{int(time.time())}"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    requests.put(f"{base}/v1/admin/tenants/{tenant}", json={"name": "W"}, headers=auth).raise_for_status()
    requests.put(f"{base}/v1/admin/tenants/{tenant}/slots/hero", json={"name": "H"}, headers=auth
                 ).raise_for_status()
    requests.put(f"{base}/v1/admin/tenants/{tenant}/slots/hero/banners/only", headers=auth, json={
        "image_url": "https://cdn.example.com/o.png", "target_url": "https://shop.example.com/"}).raise_for_status()

    ok_serves = 0
    workers: set[str] = set()
    first_token = None
    deadline = time.monotonic() + 30
    while len(workers) < WORKERS:          # every worker has picked up the new slot
        assert time.monotonic() < deadline, f"only workers {workers} answered"
        status, worker, body = serve(base, tenant)
        if status == 200:
            ok_serves += 1
            workers.add(worker)
            first_token = first_token or body["token"]
        else:
            time.sleep(0.1)
    time.sleep(1.5)                        # let every worker's impressions reach the counters

    clicked = requests.post(f"{base}/v1/click", json={"token": first_token}, timeout=5)
    assert clicked.json() == {"status": "recorded"}
    clicked_at = time.monotonic()

    # One click: every worker's posterior for the banner must gain exactly one alpha.
    seen_after: dict[str, float] = {}
    alphas: dict[str, set[float]] = defaultdict(set)
    while len(seen_after) < WORKERS and time.monotonic() - clicked_at < 10:
        status, worker, body = serve(base, tenant)
        assert status == 200
        ok_serves += 1
        alpha = body["posterior"]["alpha"]
        alphas[worker].add(alpha)
        if alpha == 2.0 and worker not in seen_after:
            seen_after[worker] = time.monotonic() - clicked_at
    print(f"click visible in each worker after: {seen_after}")
    assert set(seen_after) == workers, f"workers that saw the click: {seen_after}, alphas seen: {dict(alphas)}"
    assert max(seen_after.values()) < 5.0
    assert all(a <= 2.0 for values in alphas.values() for a in values)   # counted once, not once per worker

    metrics = requests.get(f"{base}/metrics", timeout=5).text     # summed over every worker
    assert f'banner_bandit_serves_total{{status="200"}} {float(ok_serves)}' in metrics
    assert 'banner_bandit_clicks_total{outcome="recorded"} 1.0' in metrics

    process.send_signal(signal.SIGTERM)    # workers flush what they aggregated on the way out
    process.wait(timeout=30)
    app = create_app({"CASSANDRA_KEYSPACE": keyspace})
    db = app.extensions["cassandra"]
    try:
        counts = store.slot_counts(db, tenant, "hero", "")
        assert [(r["banner_id"], r["impressions"], r["clicks"]) for r in counts] == [("only", ok_serves, 1)]
        assert store.count_events(db, "impressions", tenant, "hero", *recent()) == ok_serves
    finally:
        db.shutdown()
