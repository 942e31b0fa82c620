#!/usr/bin/env python3
"""CPU per request of /v1/serve and /v1/ping in one process, through Flask's test client (no HTTP server).

Run from the repository root as ``.venv/bin/python benchmarks/profile_serve.py`` (``make profile-serve``).
What `make bench-serve` cannot show: how much of a serve is the app's own work, without gunicorn, sockets and
the load generator. In a keyspace of its own (``bb_bench_profile``, dropped first and at the end), one slot
of 6 banners; the app runs with its background thread on (impressions are written, counters flushed, the
cache refreshed, as in a worker), so the process CPU time includes that work. After a warm-up, ``--rounds``
rounds of ``--requests`` requests per endpoint; the best round is printed (µs of process CPU per request).
``--profile`` adds cProfile's view: the functions whose own time differs most between serve and ping.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
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

REPO = Path(__file__).resolve().parent.parent

KEYSPACE = "bb_bench_profile"
SERVE = "/v1/serve/p/hero?location=Mumbai"
PING = "/v1/ping"


def cpu_per_request(client, path: str, requests: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            client.get(path)
        best = min(best, (time.process_time() - started) / requests * 1e6)
    return best


def own_times(client, path: str, requests: int) -> dict:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(requests):
        client.get(path)
    time.sleep(0.3)             # the background thread's share lands in this window too (as GIL waits)
    profile.disable()
    return pstats.Stats(profile).stats           # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="profile-serve-metrics-"))
    drop_keyspace(KEYSPACE)
    subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "init-db"], check=True,
                   cwd=REPO, env={**os.environ, "CASSANDRA_KEYSPACE": KEYSPACE})
    app = create_app({"CASSANDRA_KEYSPACE": KEYSPACE, "SECRET_KEY": "profile-serve",
                      "RATELIMIT_SERVE": "100000000/minute", "SPOOL_DIR": tempfile.mkdtemp(prefix="profile-spool-")})
    with app.app_context():
        db = runtime.get(app).db
        try:
            services.put_tenant(db, "p", "P", "UTC", "UTC")
            services.put_slot(db, "p", "hero", "Hero")
            for i in range(1, 7):
                services.put_banner(db, "p", "hero", f"b{i}", image_url=f"https://cdn.example.com/{i}.png",
                                    target_url="https://shop.example.com/", alt=f"B{i}", active=True)
            runtime.get(app).cache.refresh()
            client = app.test_client()
            assert client.get(SERVE).status_code == 200
            for _ in range(1000):
                client.get(SERVE)
                client.get(PING)
            serve = cpu_per_request(client, SERVE, args.requests, args.rounds)
            ping = cpu_per_request(client, PING, args.requests, args.rounds)
            line = (f"process CPU per request, best of {args.rounds} × {args.requests} (load average "
                    f"{os.getloadavg()[0]:.2f}): serve {serve:.0f} µs, ping {ping:.0f} µs, serve − ping "
                    f"{serve - ping:.0f} µs")
            print("\n" + line)
            write_section("profile-serve", f"{stamp('make profile-serve')}\n\n{line}.")
            if args.profile:
                served, pinged = own_times(client, SERVE, 3000), own_times(client, PING, 3000)
                rows = []
                for key, value in served.items():
                    other = pinged.get(key)
                    own = (value[2] - (other[2] if other else 0.0)) / 3000 * 1e6
                    rows.append((own, f"{key[0].split('site-packages/')[-1].replace(str(REPO) + '/', '')}:"
                                      f"{key[1]}({key[2]})"))
                print("\nown time, serve − ping, µs per request (profiled, so inflated):")
                for own, name in sorted(rows, reverse=True)[:25]:
                    print(f"{own:8.1f}  {name}")
        finally:
            runtime.get(app).shutdown()          # stops the background thread before its tables go
            db.session().execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)


if __name__ == "__main__":
    main()
