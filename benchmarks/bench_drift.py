#!/usr/bin/env python3
"""After a drift, which Thompson sampling regains 90 % of the traffic on the new best banner first?

Runs, on the same seeds, plain and discounted Thompson sampling per city, each without and with city priors
pooled from the other cities, in the drift scenario (and, for the price of forgetting, in the stationary
one), and prints per policy: impressions after the drift until 50 % and 90 % of the traffic is on the banner
the drift made best (per seed), regret after the drift, and the share of the oracle's expected clicks in
both scenarios. ``make bench-drift`` (32 seeds; SEEDS=N for another count).
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from multiprocessing import Pool

import numpy as np

from report import stamp, write_section
from simulator import DRIFT, STATIONARY, run
from simulator.policies import empirical_bayes_prior, slot_wide_prior

EB_1000 = partial(empirical_bayes_prior, max_strength=1000.0)
LOO_200 = partial(slot_wide_prior, max_strength=200.0)
POLICIES = {   # label → (policy, params)
    "plain, per city": ("thompson", {}),
    "discounted (γ = 0.9999 per city decision), per city": ("thompson-discounted", {}),
    "plain, leave-one-out pooling (cap 200)": ("thompson-pooled", {}),
    "discounted (γ = 0.99995 per slot decision), leave-one-out pooling (cap 200)":
        ("thompson-discounted-pooled", {"prior_function": LOO_200}),
    "plain, empirical-Bayes priors (cap 1000)": ("thompson-pooled", {"prior_function": EB_1000}),
    "discounted (γ = 0.99995 per slot decision), empirical-Bayes priors (cap 1000)":
        ("thompson-discounted-pooled", {}),
}
PAIRS = [  # (discounted, plain) with the same prior
    ("discounted (γ = 0.9999 per city decision), per city", "plain, per city"),
    ("discounted (γ = 0.99995 per slot decision), leave-one-out pooling (cap 200)",
     "plain, leave-one-out pooling (cap 200)"),
    ("discounted (γ = 0.99995 per slot decision), empirical-Bayes priors (cap 1000)",
     "plain, empirical-Bayes priors (cap 1000)"),
]
SCENARIOS = {"drift": DRIFT, "stationary": STATIONARY}


def job(args: tuple[str, str, int]) -> tuple[str, str, int, dict]:
    scenario, label, seed = args
    policy, params = POLICIES[label]
    result = run(SCENARIOS[scenario], policy, seed, **params)
    row = {"share": result.expected_clicks / result.oracle_expected_clicks, "regret": result.regret}
    if result.drift:
        row.update(t50=result.drift["to_share"][0.5], t90=result.drift["to_share"][0.9],
                   regret_after=result.drift["regret"])
    return scenario, label, seed, row


def reach(values: list[int | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return f"not reached (0/{len(values)})"
    return f"{int(np.median(got)):,} ({len(got)}/{len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=32)
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    print(f"drift scenario: {DRIFT.describe()}\nstationary scenario: {STATIONARY.describe()}\n"
          f"seeds: {seeds[0]}…{seeds[-1]}", flush=True)
    jobs = [(sc, label, seed) for sc in SCENARIOS for seed in seeds for label in POLICIES]
    rows: dict[tuple[str, str], dict[int, dict]] = {}
    with Pool(os.cpu_count() or 1) as pool:
        for done, (scenario, label, seed, row) in enumerate(pool.imap_unordered(job, jobs), 1):
            rows.setdefault((scenario, label), {})[seed] = row
            extra = f", 90 % after {row['t90']}" if "t90" in row else ""
            print(f"  [{done}/{len(jobs)}] {scenario}, seed {seed}: {label}: "
                  f"{100 * row['share']:.1f}% of the oracle{extra}", flush=True)

    table = ["| policy | drift: until 50 % on the new best (median, seeds reached) | until 90 % | "
             "90 % per seed (thousands; – = not reached) | regret after the drift | drift: % of oracle | "
             "stationary: % of oracle |", "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for label in POLICIES:
        drift = [rows[("drift", label)][s] for s in seeds]
        still = [rows[("stationary", label)][s] for s in seeds]
        per_seed = " ".join("–" if r["t90"] is None else f"{r['t90'] // 1000}" for r in drift)
        table.append(f"| {label} | {reach([r['t50'] for r in drift])} | {reach([r['t90'] for r in drift])} | "
              f"{per_seed} | "
              f"{np.mean([r['regret_after'] for r in drift]):,.0f} | "
              f"{100 * np.mean([r['share'] for r in drift]):.1f} | {100 * np.mean([r['share'] for r in still]):.1f} |")

    print("\n" + "\n".join(table))
    write_section("drift", f"{stamp(f'make bench-drift SEEDS={args.seeds}')} Seeds {seeds[0]}–{seeds[-1]}.\n\n"
                  + "\n".join(table))
    horizon_after = DRIFT.horizon - DRIFT.drift_at
    print("\nDiscounted vs plain with the same prior, 90 % on the new best banner (a seed that never gets there "
          f"counts as {horizon_after:,}, the rest of the horizon):")
    for discounted, plain in PAIRS:
        d = [rows[("drift", discounted)][s]["t90"] for s in seeds]
        p = [rows[("drift", plain)][s]["t90"] for s in seeds]
        d_full = np.array([horizon_after if v is None else v for v in d])
        p_full = np.array([horizon_after if v is None else v for v in p])
        faster = int(np.sum(d_full < p_full))
        print(f"- {discounted} vs {plain}: discounted first in {faster}/{len(seeds)} seeds, "
              f"median {int(np.median(d_full)):,} vs {int(np.median(p_full)):,} impressions")


if __name__ == "__main__":
    main()
