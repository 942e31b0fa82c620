#!/usr/bin/env python3
"""Do the off-policy estimates and the holdout's lift agree with the simulator's truth?

Per seed, in the simulator (simulator/env.py, common random numbers):

1. *Logging*: the server's per-city Thompson sampling (bandits/city_thompson.py, rebuilt from the counts at
   every step = one cache refresh) serves the stream, with a 10 % holdout served uniformly (per impression);
   the log records each impression's city, banner, click and propensity (P(best) of the served banner, or
   1/K in the holdout).
2. *Truth*: each candidate serves the same visitors online (same seed) from scratch; its true click rate is the
   mean expected click probability of what it served.
3. *Estimates*: evaluation/offline.py on the log (IPS, SNIPS, DR with bootstrap 95 % intervals, candidates
   replayed with the log's refresh period), and evaluation/lift.py on the log's two groups.

Reported per candidate and estimator: mean estimate and mean truth over seeds, their relative difference
(aim: within ±10 %), interval coverage (share of seeds whose truth lies in the interval; aim ≈ 95 %), mean
ESS, and the logged impressions a ±10% interval would need (estimators.required_ess at the true CTR, divided by
the ESS per logged impression measured here). And the holdout's lift against the true lift of that seed (true
rates of each group's served banners).
``make bench-evaluation`` (EVAL_ARGS='--seeds 20 --horizon 100000').
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from bandits.policy import Context
from bandits.registry import policy_class
from evaluation import candidates, estimators, lift, offline
from report import stamp, write_section
from simulator.env import BannerSlotEnv
from simulator.scenario import STATIONARY

CANDIDATES = ["uniform", "always:b0", "always:b2", "thompson", "thompson:prior=200", "thompson:half-life=6"]
ESTIMATORS = ("ips", "snips", "dr")
HOLDOUT_SHARE = 0.1


def online(env: BannerSlotEnv, seed: int, name: str | None, arms: tuple[str, ...], holdout_share: float = 0.0,
           record: bool = False) -> tuple[float, pd.DataFrame | None, np.ndarray]:
    """Serve the seed's stream with candidate ``name`` (None: the server's Thompson sampling), learning from its
    own clicks at every step. Returns its true click rate, the log (``record``) and per visitor the expected
    click probability of the served banner."""
    s = env.scenario
    env.reset(seed=seed)
    rng = np.random.default_rng([seed, 7])
    k = len(arms)
    cand = candidates.candidate(name or "thompson", arms)
    step_seconds = s.batch_size / s.impressions_per_hour * 3600
    if isinstance(cand, candidates.Replay):
        cand = replace(cand, refresh_seconds=step_seconds)
    counts: dict[str, np.ndarray] = {}
    decay = 2.0 ** (-step_seconds / 3600 / cand.half_life_hours) if getattr(cand, "half_life_hours", None) else 1.0
    frames, expected_all = [], []
    for step in range(s.horizon // s.batch_size):
        t0 = step * s.batch_size
        cities = env.city[t0:t0 + s.batch_size]
        locations = np.array([f"city{c}" for c in cities])
        if isinstance(cand, candidates.Replay):
            policy = policy_class(cand.policy).from_statistics(arms, cand._statistics(counts), max_draws=cand.draws)
            probabilities = np.empty((s.batch_size, k))
            for location in np.unique(locations):
                probabilities[locations == location] = [e.p_best for e in policy.explain(
                    Context(location=location), rng, cand.draws)]
        else:
            probabilities = cand.probabilities(pd.DataFrame(index=range(s.batch_size)), rng)
        held = rng.random(s.batch_size) < holdout_share
        probabilities[held] = 1.0 / k
        actions = np.array([rng.choice(k, p=p / p.sum()) for p in probabilities])
        _, _, _, _, info = env.step(actions)
        expected_all.append(info["expected_clicks"])
        clicks = info["clicks"]
        for table in counts.values():
            table *= decay
        for location, a, c in zip(locations, actions, clicks):
            for where in (location, ""):
                table = counts.setdefault(where, np.zeros((k, 2)))
                table[a, 0] += 1
                table[a, 1] += c
        if record:
            frames.append(pd.DataFrame({
                "served_at": s.start + pd.to_timedelta(np.arange(t0, t0 + s.batch_size) / s.impressions_per_hour,
                                                       unit="h"),
                "location": locations, "banner_id": [arms[a] for a in actions], "clicked": clicks.astype(int),
                "propensity": probabilities[np.arange(s.batch_size), actions],
                "serving_group": np.where(held, lift.HOLDOUT, lift.POLICY),
                "holdout_share": holdout_share}))
    expected = np.concatenate(expected_all)
    return float(expected.mean()), pd.concat(frames, ignore_index=True) if record else None, expected


def one_seed(seed: int, horizon: int, bootstrap: int) -> dict:
    scenario = replace(STATIONARY, name="evaluation", n_banners=5, n_cities=8, horizon=horizon, batch_size=500)
    env = BannerSlotEnv(scenario)
    arms = tuple(f"b{i}" for i in range(scenario.n_banners))
    _, log, expected = online(env, seed, None, arms, HOLDOUT_SHARE, record=True)
    truth = {name: online(env, seed, name, arms)[0] for name in CANDIDATES}
    step_seconds = scenario.batch_size / scenario.impressions_per_hour * 3600
    results = offline.evaluate_log(log, CANDIDATES, bootstrap=bootstrap, seed=seed, arms=arms,
                                   refresh_seconds=step_seconds)
    held = (log["serving_group"] == lift.HOLDOUT).to_numpy()
    report = lift.lift_report(lift.units_of(zip([""] * len(log), log["serving_group"], [HOLDOUT_SHARE] * len(log),
                                               log["clicked"].astype(bool))))
    true_lift = expected[~held].mean() / expected[held].mean() - 1
    return {"truth": truth, "results": {r.candidate: r.evaluation for r in results},
            "lift": report["lift"], "true_lift": float(true_lift), "srm": report["sample_ratio"]["mismatch"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=100_000, help="impressions per seed")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.monotonic()
    runs = []
    for i, seed in enumerate(seeds):
        runs.append(one_seed(seed, args.horizon, args.bootstrap))
        print(f"[bench-evaluation] seed {seed} done ({i + 1}/{len(seeds)}, {time.monotonic() - started:.0f}s)",
              file=sys.stderr, flush=True)
    lines = ["| candidate | true CTR (mean) | estimator | estimate (mean) | difference | coverage | mean ESS "
             "| log for ±10% |", "|---|---|---|---|---|---|---|---|"]
    worst = 0.0
    for name in CANDIDATES:
        truth = np.array([r["truth"][name] for r in runs])
        for estimator in ESTIMATORS:
            values = np.array([r["results"][name].estimates[estimator].value for r in runs])
            covered = np.mean([r["results"][name].estimates[estimator].low <= r["truth"][name]
                               <= r["results"][name].estimates[estimator].high for r in runs])
            ess = np.mean([r["results"][name].effective_sample_size for r in runs])
            difference = values.mean() / truth.mean() - 1
            worst = max(worst, abs(difference))
            # impressions of such a log for a ±10% interval: the ESS it needs over the ESS per logged impression
            needed = estimators.required_ess(truth.mean()) * args.horizon / ess
            lines.append(f"| `{name}` | {truth.mean():.4%} | {estimator.upper()} | {values.mean():.4%} | "
                         f"{difference:+.1%} | {covered:.0%} | {ess:,.0f} | {needed:,.0f} |")
    lifts = np.array([r["lift"]["estimate"] for r in runs])
    true_lifts = np.array([r["true_lift"] for r in runs])
    lift_covered = np.mean([r["lift"]["low"] <= r["true_lift"] <= r["lift"]["high"] for r in runs])
    srm_flags = sum(r["srm"] for r in runs)
    on_policy = np.mean([r["results"]["thompson"].estimates[e].low <= r["results"]["thompson"].observed_ctr
                         <= r["results"]["thompson"].estimates[e].high for r in runs for e in ESTIMATORS])
    table = "\n".join(lines)
    summary = (f"Holdout ({HOLDOUT_SHARE:.0%}, uniform): estimated lift {lifts.mean():+.1%} (mean over seeds) "
               f"against a true lift of {true_lifts.mean():+.1%}; the 95 % interval covered the seed's true lift "
               f"in {lift_covered:.0%} of seeds; sample-ratio mismatch flagged in {srm_flags} of {len(runs)} "
               f"seeds. On-policy check: the intervals of `thompson` (the logging policy, replayed) covered the log's "
               f"observed CTR in {on_policy:.0%} of (seed, estimator) pairs. Largest |difference| of a mean "
               f"estimate from the mean truth: {worst:.1%}.")
    print(table + "\n\n" + summary)
    if not args.no_write:
        command = (f"make bench-evaluation EVAL_ARGS='--seeds {args.seeds} --horizon {args.horizon} "
                   f"--bootstrap {args.bootstrap}'")
        write_section("evaluation", f"{stamp(command)} Seeds {seeds[0]}–{seeds[-1]}; {args.horizon:,} impressions "
                      "a seed, 5 banners, 8 cities, a refresh every 500 impressions; "
                      f"{time.monotonic() - started:.0f} s.\n\n{table}\n\n{summary}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
