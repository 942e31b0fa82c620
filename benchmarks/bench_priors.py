#!/usr/bin/env python3
"""City priors benchmark: the job's time on 1M and 10M events, and the regret a new city saves with priors.

Run from the repository root as ``.venv/bin/python benchmarks/bench_priors.py`` (``make bench-priors``).

1. Job time. Generates events with Spark (column expressions, written with the Cassandra connector) into
   two keyspaces of its own (schema applied first): ``bb_bench_priors_1m`` with 1M events and
   ``bb_bench_priors`` with 10M (the same first million). Then it runs ``python -m spark_jobs.city_priors``
   as a fresh process, exactly as ``make priors`` does (JVM start included), over a window that holds every
   event, on both keyspaces in turn, reading the window's partitions (the default) and with ``--scan``,
   ``--rounds`` times each (interleaved, so both sizes see similar load; the best run is compared), and reads
   the phase times from its progress lines. The shape of the data: 5 tenants × 4 slots × 6 banners, 100 cities with
   Zipf-like traffic and 10 % without a location, 30 days, half of it marked as imported history; CTRs
   between 1 % and 9 % that differ by city.
   With ``--reuse`` nothing is generated: the job is timed on what the keyspaces hold.
2. Regret (numpy only, bandits). For each seed: a population of 5 banners whose CTRs differ by city
   (θ ~ Beta(μκ, (1 − μ)κ)); a history of 40 cities × 5,000 uniformly rotated impressions; the slot-wide
   prior fitted from it with bandits.fit_population (the same formulas as the Spark job; a test
   checks that they agree); then a new city with CTRs drawn from the same population is served 2,000
   times by Thompson sampling starting from that prior, and from Beta(1, 1), on the same seeds (same
   city, same click draws). Cumulative regret = Σ_t (max_b θ_b − θ_served).

Prints a Markdown block and writes it to its section of docs/BENCHMARKS.md (benchmarks/report.py) and to
benchmarks/out/priors.md.
``--skip-job`` runs only the simulation. The job timings print the load average: other work on the machine
slows Spark down.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bandits import PriorSettings, beta_posterior, fit_population
from report import write_section

REPO = Path(__file__).resolve().parent.parent

OUT_DIR = REPO / "benchmarks" / "out"
TENANTS, SLOTS, BANNERS, CITIES, DAYS = 5, 4, 6, 100, 30


def say(message: str) -> None:
    print(f"[bench-priors] {message}", file=sys.stderr, flush=True)


# -- 1. job time ---------------------------------------------------------------------------------------------

def generate(spark, keyspace: str, start: int, end: int, now: dt.datetime) -> tuple[int, int, float]:
    """Write events with ids [start, end) into ``keyspace``. Returns (impressions, clicks, seconds)."""
    from pyspark.sql import functions as F

    from spark_jobs.session import write_table
    from spark_jobs.timeuuids import timeuuid

    def uniform(salt: int):
        return F.xxhash64("id", F.lit(salt)).bitwiseAND(F.lit((1 << 52) - 1)).cast("double") / float(1 << 52)

    started = time.monotonic()
    partitions = max(4, (end - start) // 250_000)
    ids = spark.range(start, end, numPartitions=partitions)
    city = F.least(F.lit(CITIES - 1), F.floor(F.exp(uniform(4) * float(np.log(CITIES + 1)))) - 1)
    no_location = uniform(5) < 0.10
    banner = F.floor(uniform(3) * BANNERS)
    tenant, slot = F.floor(uniform(1) * TENANTS), F.floor(uniform(2) * SLOTS)
    city_factor = 0.5 + F.xxhash64(tenant, slot, city, banner).bitwiseAND(F.lit((1 << 52) - 1)).cast(
        "double") / float(1 << 52)                                       # in [0.5, 1.5): cities differ
    ctr = (0.02 + 0.01 * banner) * F.when(no_location, F.lit(1.0)).otherwise(city_factor)
    served_at = F.timestamp_seconds(F.lit(int(now.timestamp())) - F.floor(uniform(7) * DAYS * 86400))
    events = ids.select(
        F.concat(F.lit("bench"), tenant.cast("string")).alias("tenant_id"),
        F.concat(F.lit("slot"), slot.cast("string")).alias("slot_id"),
        served_at.alias("served_at"),
        F.concat(F.lit("b"), banner.cast("string")).alias("banner_id"),
        F.when(no_location, F.lit("")).otherwise(F.concat(F.lit("city"), city.cast("string"))).alias("location"),
        (uniform(6) < ctr).alias("clicked"),
        F.when(uniform(8) < 0.5, F.lit("import")).otherwise(
            F.when(no_location, F.lit("slot")).otherwise(F.lit("location"))).alias("posterior_scope"),
        timeuuid(served_at, F.xxhash64("id", F.lit(99))).alias("impression_id"),
    ).withColumn("day", F.to_date("served_at")).sortWithinPartitions("tenant_id", "slot_id", "day")
    # Not cached: recomputing a row from its id is cheaper than keeping 10M rows in a small driver.
    impressions = events.select("tenant_id", "slot_id", "day", "impression_id", "served_at", "banner_id",
                                "location", F.lit("").alias("customer_id"), F.lit("").alias("referrer_id"),
                                "posterior_scope", F.col("posterior_scope").alias("prior_source"))
    clicks = events.where("clicked").select("tenant_id", "slot_id", "day", "impression_id",
                                            F.col("served_at").alias("clicked_at"), "banner_id", "location")
    say(f"writing impressions {start:,}..{end:,} ({partitions} Spark partitions)…")
    write_table(impressions, keyspace, "impressions")
    say(f"  impressions written after {time.monotonic() - started:.0f}s; writing their clicks…")
    write_table(clicks, keyspace, "clicks")
    n_clicks = clicks.count()
    seconds = time.monotonic() - started
    say(f"  {end - start:,} impressions and {n_clicks:,} clicks in {seconds:.0f}s "
        f"({(end - start) / seconds:,.0f} impressions/s)")
    return end - start, n_clicks, seconds


def run_job(keyspace: str, days: int, scan: bool) -> dict[str, float]:
    """``python -m spark_jobs.city_priors`` in a fresh process; wall time and its phase times."""
    command = [sys.executable, "-m", "spark_jobs.city_priors", "--keyspace", keyspace, "--days", str(days)]
    command += ["--scan"] if scan else []
    say("running " + " ".join(command[1:]))
    started = time.monotonic()
    process = subprocess.run(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    lines = [line for chunk in process.stderr.splitlines() for line in chunk.split("\r")
             if line.startswith("[spark]")]
    for line in lines:
        say("  " + line)
    if process.returncode != 0:
        sys.stderr.write(process.stderr[-4000:])
        raise SystemExit(f"city_priors failed with status {process.returncode}")
    phases = [float(m.group(1)) for line in lines for m in [re.search(r"\(?(\d+\.\d)s\)?$", line)] if m]
    text = "\n".join(lines)
    written = re.search(r"wrote ([\d,]+) priors", text)
    events = re.search(r"priors: ([\d,]+) impressions", text)
    return {"wall": wall, "counted": phases[0] if phases else float("nan"),
            "run": phases[-1] if phases else float("nan"),
            "priors": int(written.group(1).replace(",", "")) if written else 0,
            "impressions": int(events.group(1).replace(",", "")) if events else 0}


def prepare_keyspace(config: dict, keyspace: str, fresh: bool) -> None:
    from webapp.storage.database import Database

    db = Database(config | {"CASSANDRA_KEYSPACE": keyspace})
    try:
        if fresh:
            say(f"fresh keyspace {keyspace}")
            db.drop_keyspace()
        db.apply_schema()
        for tenant in range(TENANTS):              # configured slots: the job reads their partitions
            for slot in range(SLOTS):
                db.execute("INSERT INTO {ks}.slots (tenant_id, slot_id, name) VALUES (?, ?, ?)",
                           (f"bench{tenant}", f"slot{slot}", f"slot{slot}"))
    finally:
        db.shutdown()


def job_benchmark(keyspace: str, reuse: bool, rounds: int) -> list[str]:
    """Two keyspaces, 1M and 10M events (the first 1M identical); job runs interleaved, ``rounds`` each."""
    from spark_jobs.session import build_session
    from webapp.web import config as config_module

    config = config_module.load({"SPARK_DRIVER_MEMORY": "2g"})
    sizes = {f"{keyspace}_1m": 1_000_000, keyspace: 10_000_000}
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    generation = {}
    for name, size in sizes.items():
        prepare_keyspace(config, name, fresh=not reuse)
        if reuse:
            generation[name] = "reused"
            continue
        spark = build_session(config | {"CASSANDRA_KEYSPACE": name}, "banner-bandit bench generator")
        try:
            n, _, seconds = generate(spark, name, 0, size, now)
        finally:
            spark.stop()
        generation[name] = f"{seconds:.0f} s ({n / seconds:,.0f}/s)"
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(rounds):
        for mode in ("keys", "scan"):
            for name in sizes:
                say(f"round {round_ + 1}/{rounds}, {mode}, {name}; load average {os.getloadavg()[0]:.1f}")
                results.setdefault((name, mode), []).append(run_job(name, DAYS + 2, scan=mode == "scan"))
    lines = ["| events in the log | generated + written | read | `make priors` wall time (best / worst "
             f"of {rounds}) | of which extract + aggregate (best) | priors written |",
             "|---:|---|---|---:|---:|---:|"]
    best = {}
    for mode in ("keys", "scan"):
        for name in sizes:
            runs = results[(name, mode)]
            walls = sorted(r["wall"] for r in runs)
            best[(name, mode)] = walls[0]
            read = "window partitions (default)" if mode == "keys" else "`--scan`"
            lines.append(f"| {runs[0]['impressions']:,} | {generation[name]} | {read} | {walls[0]:.0f} s / "
                         f"{walls[-1]:.0f} s | {min(r['counted'] for r in runs):.0f} s | {runs[0]['priors']:,} |")
    lines.append("")
    small, large = list(sizes)
    for mode in ("keys", "scan"):
        a, b = best[(small, mode)], best[(large, mode)]
        fixed = (10 * a - b) / 9                                   # wall = fixed + per_event · n
        lines.append(f"- {'default' if mode == 'keys' else '`--scan`'}: 10× the events took {b / a:.1f}× the "
                     f"time (best runs); a line through both points: about {fixed:.0f} s fixed (JVM and "
                     f"session start, fitting, writing and cleaning the priors) plus {(b - a) / 9:.1f} s per "
                     f"million events.")
    return lines


# -- 2. regret of a new city ---------------------------------------------------------------------------------

def simulate(seeds: int, horizon: int, settings: PriorSettings, spread: float = 300.0,
             history_cities: int = 40, history_per_city: int = 5000,
             means=(0.020, 0.028, 0.035, 0.042, 0.050), outlier: bool = False) -> dict[str, np.ndarray]:
    """Cumulative regret curves, shape (seeds, horizon), of a new city with the fitted prior and with Beta(1,1).

    All seeds advance together (arrays of shape (seeds, K)); each step is ThompsonSampler.select's draw,
    one Beta sample per banner and the argmax, on the posterior of bandits.beta_posterior.
    ``outlier``: the new city is unlike the others, its CTRs are the slot-wide means in reverse order (the
    prior points at the worst banner), to show what the cap limits.
    """
    mu = np.asarray(means)
    k = mu.shape[0]
    rows = np.arange(seeds)
    a0 = np.empty((seeds, k))
    b0 = np.empty((seeds, k))
    theta = np.empty((seeds, k))
    strengths = np.empty((seeds, k))
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 1])
        # History: uniformly rotated banners in existing cities (the imported log).
        theta_hist = rng.beta(mu * spread, (1 - mu) * spread, size=(history_cities, k))
        shown = rng.multinomial(history_per_city, np.full(k, 1 / k), size=history_cities)   # (cities, K)
        clicked = rng.binomial(shown, theta_hist)
        for b in range(k):
            fit = fit_population(shown[:, b], clicked[:, b], int(shown[:, b].sum()), int(clicked[:, b].sum()),
                                 settings)
            a0[seed, b], b0[seed, b], strengths[seed, b] = fit.alpha, fit.beta, fit.strength
        theta[seed] = mu[::-1] if outlier else rng.beta(mu * spread, (1 - mu) * spread)   # the new city
    clicks_u = np.random.default_rng(3).random((seeds, horizon))            # click draws, shared
    best = theta.max(axis=1)
    regret = {"strength": strengths}
    for name, (alpha0, beta0) in (("priors", (a0, b0)), ("uniform", (np.ones_like(a0), np.ones_like(b0)))):
        draws = np.random.default_rng(2)                                   # same Thompson stream for both
        n, c = np.zeros((seeds, k)), np.zeros((seeds, k))
        lost = np.empty((seeds, horizon))
        for t in range(horizon):
            alpha, beta = beta_posterior(alpha0, beta0, n, c)
            arm = np.argmax(draws.beta(alpha, beta), axis=1)              # (seeds,)
            n[rows, arm] += 1
            c[rows, arm] += clicks_u[:, t] < theta[rows, arm]
            lost[:, t] = best - theta[rows, arm]
        regret[name] = np.cumsum(lost, axis=1)
    return regret


SCENARIOS = [  # (label, κ, cap, outlier)
    ("cities alike (κ = 300), default cap", 300.0, 200.0, False),
    ("cities alike (κ = 300)", 300.0, 100.0, False),
    ("cities alike (κ = 300)", 300.0, 300.0, False),
    ("cities alike (κ = 300)", 300.0, 1000.0, False),
    ("cities very alike (κ = 1000)", 1000.0, 200.0, False),
    ("cities differ (κ = 100)", 100.0, 200.0, False),
    ("outlier city: ranking reversed", 300.0, 100.0, True),
    ("outlier city: ranking reversed", 300.0, 200.0, True),
    ("outlier city: ranking reversed", 300.0, 1000.0, True),
]


def regret_benchmark(seeds: int, horizon: int) -> list[str]:
    lines = ["| scenario | cap | mean fitted strength | regret Beta(1,1) | regret with priors | change |",
             "|---|---:|---:|---:|---:|---:|"]
    curves = None
    for label, spread, cap, outlier in SCENARIOS:
        started = time.monotonic()
        result = simulate(seeds, horizon, PriorSettings(max_strength=cap), spread=spread, outlier=outlier)
        uniform, priors = result["uniform"][:, -1], result["priors"][:, -1]
        se = lambda x: x.std(ddof=1) / np.sqrt(x.shape[0])  # noqa: E731
        change = priors.mean() / uniform.mean() - 1
        lines.append(f"| {label} | {cap:g} | {result['strength'].mean():.0f} | {uniform.mean():.2f} ± "
                     f"{se(uniform):.2f} | {priors.mean():.2f} ± {se(priors):.2f} | {change:+.0%} |")
        say(f"simulated {label}, cap {cap:g}: {change:+.0%} regret ({time.monotonic() - started:.0f}s)")
        if curves is None:
            curves = result
    assert curves is not None
    lines.append("")
    checkpoints = [t for t in (100, 250, 500, 1000, 2000) if t <= horizon]
    lines.append("Default cap (200), κ = 300: mean cumulative regret after t impressions of the new city")
    lines.append("")
    lines.append("| t | " + " | ".join(str(t) for t in checkpoints) + " |")
    lines.append("|---|" + "---:|" * len(checkpoints))
    for name, label in (("uniform", "Beta(1,1)"), ("priors", "priors")):
        lines.append(f"| {label} | " + " | ".join(f"{curves[name][:, t - 1].mean():.2f}" for t in checkpoints)
                     + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keyspace", default="bb_bench_priors")
    parser.add_argument("--skip-job", action="store_true", help="only the regret simulation")
    parser.add_argument("--reuse", action="store_true", help="keep the events already in the keyspace")
    parser.add_argument("--rounds", type=int, default=2, help="job runs per size and read mode (best is kept)")
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=2000)
    args = parser.parse_args()
    load = os.getloadavg()
    block = [f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
             f"({os.cpu_count()} cores; load average {load[0]:.1f} at the start), "
             f"`.venv/bin/python benchmarks/bench_priors.py{' --skip-job' if args.skip_job else ''}`.", ""]
    if not args.skip_job:
        block += ["### Job time", ""] + job_benchmark(args.keyspace, args.reuse, args.rounds) + [""]
    block += [f"### Regret of a new city over its first {args.horizon:,} impressions ({args.seeds} seeds)",
              ""] + regret_benchmark(args.seeds, args.horizon)
    end_load = os.getloadavg()[0]
    block += ["", f"Load average at the end: {end_load:.1f}."]
    text = "\n".join(block) + "\n"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "priors.md").write_text(text)
    write_section("priors", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
