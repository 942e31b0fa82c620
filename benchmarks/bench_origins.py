#!/usr/bin/env python3
"""Does a cross-origin clicker still move a tenant's winner? The issue-24 attack, through the real service.

Run from the repository root as ``.venv/bin/python benchmarks/bench_origins.py`` (``make bench-origins``).

In a keyspace of its own (``bb_bench_origins``, dropped first and at the end), one app in this process (the
Flask test client: the real views, click filter and Cassandra; no background threads, the posterior cache
re-read every ``--refresh`` requests as a server's is about once a second). Each scenario is a fresh tenant
with one slot of three banners; human visitors come from the shop's page (``Origin: https://shop.example``),
each from an address and user agent of its own, and click banner b with its true CTR through ``click_url``.

The attacker is a page on ``https://evil.example`` that the visitors' browsers also run: every ``--every``-th
visitor's browser loops ``fetch(serve)`` (at most 20 times) until it is shown the worst banner, then posts its
token (the issue's reproduction). Where serves from its origin are refused, it harvests tokens from its own
server instead (one address, no Origin) and has the visitors' browsers follow them (a link with
``Referrer-Policy: no-referrer``: no Origin, no Referer). Each scenario reports the winner by the stats API's
P(best) and the share of counted clicks that were the attacker's. The click filter's timing and rate rules
are lifted (min delay 0: the attacker's 0.7 s wait passes them anyway; every click comes from a different
visitor's address) so that what is measured is the origin and mismatch rules.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from keyspaces import drop_keyspace  # this folder
from report import stamp, write_section
from webapp import create_app
from webapp.serving import runtime

KEYSPACE = "bb_bench_origins"
TOKEN = "bench-origins-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SHOP, EVIL = "https://shop.example", "https://evil.example"
TRUE_CTR = {"spring-sale": 0.05, "new-arrivals": 0.035, "blue-promo": 0.02}
WORST, BEST = "blue-promo", "spring-sale"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0 Safari/537.36"
FILTER = {"min_delay_seconds": 0, "max_clicks_per_customer": 0, "max_clicks_per_ip": 0}

# name, allowed origins, mismatch rules on, how the attacker gets its tokens
SCENARIOS = [
    ("no attacker (reference)", [], False, None),
    ("attacker, no allowed origins (before)", [], False, "browser"),
    ("attacker, allowed origins set", [SHOP], False, "browser"),
    ("harvesting attacker, allowed origins + mismatch rules", [SHOP], True, "harvest"),
    ("harvesting attacker, allowed origins, mismatch rules off", [SHOP], False, "harvest"),
]


def create_schema(attempts: int = 10) -> None:
    """As ``make schema`` does, in the bench's keyspace; again when a busy Cassandra times the DDL out."""
    for attempt in range(1, attempts + 1):
        done = subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "init-db"],
                              cwd=Path(__file__).resolve().parent.parent,
                              env={**os.environ, "CASSANDRA_KEYSPACE": KEYSPACE})
        if done.returncode == 0:
            return
        print(f"init-db failed (attempt {attempt} of {attempts})", flush=True)
        time.sleep(10)
    raise SystemExit("could not create the schema")


def visitor(i: int) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and WSGI environ of the i-th human visitor's browser (its own address and browser version)."""
    return ({"User-Agent": BROWSER.format(v=120 + i % 37)},
            {"REMOTE_ADDR": f"10.{i % 250}.{i // 250 % 250}.{1 + i // 62500}"})


def run(app, seed: int, scenario: tuple, visitors: int, every: int, refresh: int) -> dict:
    name, origins, mismatch, attack = scenario
    client = app.test_client()
    rng = np.random.default_rng(seed)
    tenant = f"t{seed}s{[s[0] for s in SCENARIOS].index(name)}"
    body = {"name": tenant, "click_filter": {**FILTER, "flag_ua_mismatch": mismatch, "flag_ip_mismatch": mismatch},
            "allowed_origins": origins}
    assert client.put(f"/v1/admin/tenants/{tenant}", json=body, headers=ADMIN).status_code in (200, 201)
    assert client.put(f"/v1/admin/tenants/{tenant}/slots/hero", json={"name": "Hero"},
                      headers=ADMIN).status_code in (200, 201)
    for banner in TRUE_CTR:
        fields = {"image_url": f"https://cdn.example/{banner}.png", "target_url": f"{SHOP}/{banner}"}
        assert client.put(f"/v1/admin/tenants/{tenant}/slots/hero/banners/{banner}", headers=ADMIN,
                          json=fields).status_code in (200, 201)
    sync = runtime.get(app).sync
    with app.app_context():
        sync()
    serve = f"/v1/serve/{tenant}/hero"
    requests_since_sync = 0
    attacker_clicks = refused = human_clicks = 0

    def tick(n: int = 1) -> None:
        nonlocal requests_since_sync
        requests_since_sync += n
        if requests_since_sync >= refresh:
            with app.app_context():
                sync()
            requests_since_sync = 0

    for i in range(visitors):
        headers, environ = visitor(i)
        shown = client.get(serve, headers={**headers, "Origin": SHOP}, environ_base=environ).get_json()
        tick()
        if rng.random() < TRUE_CTR[shown["banner"]["id"]]:
            client.get(urlsplit(shown["click_url"]).path, headers={**headers, "Referer": f"{SHOP}/"},
                       environ_base=environ)
            human_clicks += 1
            tick()
        if attack is None or i % every:
            continue
        for _ in range(20):        # the attacker's loop in this visitor's browser (or on its own server)
            if attack == "browser":
                answer = client.get(serve, headers={**headers, "Origin": EVIL}, environ_base=environ)
            else:
                answer = client.get(serve, headers={"User-Agent": "python-requests/2.32"},
                                    environ_base={"REMOTE_ADDR": "198.51.100.66"})
            tick()
            if answer.status_code == 403:
                refused += 1
                break
            shown = answer.get_json()
            if shown["banner"]["id"] == WORST:
                if attack == "browser":
                    client.post("/v1/click", json={"token": shown["token"]}, headers={**headers, "Origin": EVIL},
                                environ_base=environ)
                else:
                    client.get(urlsplit(shown["click_url"]).path, headers=headers, environ_base=environ)
                attacker_clicks += 1
                tick()
                break
    with app.app_context():
        sync()
    stats = client.get(f"/v1/admin/tenants/{tenant}/slots/hero/stats", headers=ADMIN).get_json()
    p_best = {b["id"]: b["p_best"] for b in stats["banners"]}
    counted = {b["id"]: b["clicks"] for b in stats["banners"]}
    return {"winner": max(p_best, key=p_best.get), "p_best_worst": p_best[WORST], "p_best_best": p_best[BEST],
            "attacker_clicks": attacker_clicks, "refused": refused, "human_clicks": human_clicks,
            "counted": sum(counted.values()), "filtered": stats["filtered_clicks_by_reason"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=1500, help="human visitors per scenario and seed")
    parser.add_argument("--every", type=int, default=8, help="the attacker acts in every N-th visitor's browser")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--refresh", type=int, default=50, help="requests between posterior cache refreshes")
    args = parser.parse_args()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-origins-metrics-"))
    config = {"CASSANDRA_KEYSPACE": KEYSPACE, "SECRET_KEY": "bench-origins", "ADMIN_API_TOKEN": TOKEN,
              "BACKGROUND_THREADS": False, "RATELIMIT_ENABLED": False, "RANDOM_SEED": 24,
              "SPOOL_DIR": tempfile.mkdtemp(prefix="bench-origins-spool-")}
    print(f"true CTRs {TRUE_CTR}; {args.visitors} visitors per run, attacker in every {args.every}th; "
          f"seeds 1..{args.seeds}", flush=True)
    drop_keyspace(KEYSPACE)
    create_schema()
    app = create_app(config)
    rows = []
    try:
        for scenario in SCENARIOS:
            for seed in range(1, args.seeds + 1):
                started = time.perf_counter()
                result = run(app, seed, scenario, args.visitors, args.every, args.refresh)
                rows.append((scenario[0], result))
                print(f"  {scenario[0]}, seed {seed}: winner {result['winner']}, P(best) {WORST} "
                      f"{result['p_best_worst']:.3f}, {BEST} {result['p_best_best']:.3f}; attacker clicks "
                      f"{result['attacker_clicks']}, serves refused {result['refused']}, human clicks "
                      f"{result['human_clicks']}, counted {result['counted']}, filtered {result['filtered']} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        with app.app_context():
            runtime.get(app).shutdown()
        drop_keyspace(KEYSPACE)
    table = [f"| scenario | seeds won by {BEST} (true best) | seeds won by {WORST} (attacker's) "
             f"| P(best) of {WORST} (mean) | attacker's clicks (mean) | of them counted (mean) "
             "| filtered by reason (sum) |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, *_ in SCENARIOS:
        results = [r for n, r in rows if n == name]
        reasons: dict[str, int] = {}
        for r in results:
            for reason, count in r["filtered"].items():
                reasons[reason] = reasons.get(reason, 0) + count
        counted_attack = [max(0, r["counted"] - r["human_clicks"]) for r in results]
        table.append(f"| {name} | {sum(r['winner'] == BEST for r in results)} / {len(results)} "
                     f"| {sum(r['winner'] == WORST for r in results)} / {len(results)} "
                     f"| {np.mean([r['p_best_worst'] for r in results]):.3f} "
                     f"| {np.mean([r['attacker_clicks'] for r in results]):.0f} "
                     f"| {np.mean(counted_attack):.0f} "
                     f"| {', '.join(f'{k} {v}' for k, v in sorted(reasons.items())) or '–'} |")
    print("\n" + "\n".join(table))
    write_section("origins", f"{stamp('make bench-origins')} {args.visitors:,} human visitors per run, the "
                  f"attacker in every {args.every}th visitor's browser, seeds 1–{args.seeds}.\n\n"
                  + "\n".join(table))


if __name__ == "__main__":
    main()
