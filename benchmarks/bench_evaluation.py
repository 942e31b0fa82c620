#!/usr/bin/env python3
"""Do the off-policy estimates and the holdout's lift agree with the simulator's truth?

Per seed, in the simulator (simulator/env.py, common random numbers):

1. *Logging*: the server's per-city Thompson sampling (bandits/city_thompson.py, rebuilt from the counts at
   every step = one cache refresh) serves the stream, with a 10 % holdout served uniformly (per impression);
   the log records each impression's city, banner, click and propensity (P(best) of the served banner, or
   1/K in the holdout).
2. *Truth*: each candidate serves the same visitors online (same seed) from scratch, learning from its own
   clicks. Its true click rate on the seed is its *expected* one: per run, mean_i Σ_a π_i(a) q(x_i, a) with
   π_i its probabilities and q the simulator's click probabilities (its serving draws averaged out), and for a
   candidate that learns, the mean of ``--truth-runs`` runs with different draws (its learning path averaged
   out). That is what the estimate targets: a replayed candidate's probabilities are already an expectation
   over its draws (evaluation/offline.py). One run's realized rate differs from it by the run's own luck; the
   table also says how often the interval covered that (run 0).
3. *Estimates*: evaluation/offline.py on the log (IPS, SNIPS, DR with bootstrap 95 % intervals, candidates
   replayed with the log's refresh period; a learning candidate's interval replays it on each of
   ``--relearn-bootstrap`` resamples), and evaluation/lift.py on the log's two groups.

Reported per candidate and estimator: mean estimate and mean truth over seeds, their relative difference
(aim: within ±10 %), interval coverage (share of seeds whose truth lies in the interval; aim ≈ 95 %), mean
ESS, and the logged impressions a ±10% interval would need (estimators.required_ess at the true CTR, divided by
the ESS per logged impression measured here). And the holdout's lift against the true lift of that seed (true
rates of each group's served banners).
``make bench-evaluation`` (EVAL_ARGS='--seeds 20 --horizon 100000 --truth-runs 10 --relearn-bootstrap 50').
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from functools import partial

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


def expected_rates(env: BannerSlotEnv, t0: int, t1: int) -> np.ndarray:
    """q(x_i, ·): every banner's true click probability for visitors t0..t1 − 1, shape (n, K) — what
    ``env.step`` reports as ``expected_clicks`` for the banner served, here for each banner."""
    s = env.scenario
    index = np.arange(t0, t1)
    phase = np.zeros(t1 - t0, dtype=np.int64) if s.drift_at is None else (index >= s.drift_at).astype(np.int64)
    return np.minimum(env.true_ctr[phase, env.city[t0:t1]] * env.modulation[t0:t1, None], 1.0)


def online(env: BannerSlotEnv, seed: int, name: str | None, arms: tuple[str, ...], holdout_share: float = 0.0,
           record: bool = False, policy_seed: Sequence[int] = (7,)) -> tuple[float, float, pd.DataFrame | None,
                                                                            np.ndarray]:
    """Serve the seed's visitors with candidate ``name`` (None: the server's Thompson sampling), learning from
    its own clicks at every step, its draws seeded by (seed, *policy_seed). Returns the run's expected click
    rate given its learning path, mean_i Σ_a π_i(a) q(x_i, a) (its own serving draws averaged out), its
    realized one, mean_i q(x_i, a_i), the log (``record``) and per visitor q(x_i, a_i)."""
    s = env.scenario
    env.reset(seed=seed)
    rng = np.random.default_rng([seed, *policy_seed])
    k, n = len(arms), s.batch_size
    cand = candidates.candidate(name or "thompson", arms)
    step_seconds = n / s.impressions_per_hour * 3600
    learns = isinstance(cand, candidates.Replay)
    if learns:
        cand = replace(cand, refresh_seconds=step_seconds)
    decay = 2.0 ** (-step_seconds / 3600 / cand.half_life_hours) if getattr(cand, "half_life_hours", None) else 1.0
    counts = np.zeros((s.n_cities + 1, k, 2))                  # city c (row C: slot-wide) → impressions, clicks
    names = [f"city{c}" for c in range(s.n_cities)]
    frames, expected_all, rates = [], [], []
    for step in range(s.horizon // n):
        t0 = step * n
        cities = env.city[t0:t0 + n]
        locations = np.array(names)[cities]
        if learns:
            policy = policy_class(cand.policy).from_statistics(
                arms, cand.statistics(dict(zip([*names, ""], counts))), max_draws=cand.draws)
            probabilities = np.empty((n, k))
            for c in np.unique(cities):
                probabilities[cities == c] = [e.p_best for e in policy.explain(
                    Context(location=names[c]), rng, cand.draws)]
        else:
            probabilities = cand.probabilities(pd.DataFrame(index=range(n)), rng)
        held = rng.random(n) < holdout_share
        probabilities[held] = 1.0 / k
        u = rng.random(n)
        actions = np.minimum((np.cumsum(probabilities, axis=1) < u[:, None]).sum(axis=1), k - 1)
        q = expected_rates(env, t0, t0 + n)
        _, _, _, _, info = env.step(actions)
        assert np.allclose(q[np.arange(n), actions], info["expected_clicks"])     # the simulator's own truth
        rates.append(np.sum(probabilities * q, axis=1))
        expected_all.append(info["expected_clicks"])
        clicks = info["clicks"]
        counts *= decay
        np.add.at(counts, (cities, actions, 0), 1.0)
        np.add.at(counts, (cities, actions, 1), clicks)
        counts[-1] = counts[:-1].sum(axis=0)                    # slot-wide: every city's counts
        if record:
            frames.append(pd.DataFrame({
                "served_at": s.start + pd.to_timedelta(np.arange(t0, t0 + n) / s.impressions_per_hour, unit="h"),
                "location": locations, "banner_id": [arms[a] for a in actions], "clicked": clicks.astype(int),
                "propensity": probabilities[np.arange(n), actions],
                "serving_group": np.where(held, lift.HOLDOUT, lift.POLICY),
                "holdout_share": holdout_share}))
    expected = np.concatenate(expected_all)
    return (float(np.concatenate(rates).mean()), float(expected.mean()),
            pd.concat(frames, ignore_index=True) if record else None, expected)


def one_seed(seed: int, horizon: int, bootstrap: int, truth_runs: int, relearn_bootstrap: int) -> dict:
    scenario = replace(STATIONARY, name="evaluation", n_banners=5, n_cities=8, horizon=horizon, batch_size=500)
    env = BannerSlotEnv(scenario)
    arms = tuple(f"b{i}" for i in range(scenario.n_banners))
    _, _, log, expected = online(env, seed, None, arms, HOLDOUT_SHARE, record=True)
    truth, one_run, spread = {}, {}, {}
    for name in CANDIDATES:
        # A fixed candidate's expected rate is exact in one run; a learning one's is averaged over runs with
        # their own draws (seeds apart from the log's), each run's own serving draws averaged out already.
        runs = truth_runs if isinstance(candidates.candidate(name, arms), candidates.Replay) else 1
        values = [online(env, seed, name, arms, policy_seed=(11, r))[:2] for r in range(runs)]
        truth[name] = float(np.mean([v[0] for v in values]))
        one_run[name] = values[0][1]
        spread[name] = float(np.std([v[1] for v in values], ddof=1)) if runs > 1 else 0.0
    step_seconds = scenario.batch_size / scenario.impressions_per_hour * 3600
    results = offline.evaluate_log(log, CANDIDATES, bootstrap=bootstrap, seed=seed, arms=arms,
                                   refresh_seconds=step_seconds, relearn_bootstrap=relearn_bootstrap)
    # the same estimates with the probabilities learned from the whole log held fixed in every resample: what
    # the learning candidates' intervals would cover without replaying them on each resample
    learning = [name for name in CANDIDATES if isinstance(candidates.candidate(name, arms), candidates.Replay)]
    held_fixed = offline.evaluate_log(log, learning, bootstrap=bootstrap, seed=seed, arms=arms,
                                      refresh_seconds=step_seconds, relearn_bootstrap=0)
    held = (log["serving_group"] == lift.HOLDOUT).to_numpy()
    report = lift.lift_report(lift.units_of(zip([""] * len(log), log["serving_group"], [HOLDOUT_SHARE] * len(log),
                                               log["clicked"].astype(bool))))
    true_lift = expected[~held].mean() / expected[held].mean() - 1
    return {"truth": truth, "one_run": one_run, "spread": spread,
            "results": {r.candidate: r.evaluation for r in results},
            "held_fixed": {r.candidate: r.evaluation for r in held_fixed},
            "lift": report["lift"], "true_lift": float(true_lift), "srm": report["sample_ratio"]["mismatch"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=100_000, help="impressions per seed")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--relearn-bootstrap", type=int, default=offline.RELEARN_BOOTSTRAP,
                        help="resamples of a learning candidate's interval, each a replay (default %(default)s)")
    parser.add_argument("--truth-runs", type=int, default=10,
                        help="online runs averaged into a learning candidate's true rate (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes (default %(default)s)")
    parser.add_argument("--stop-after", type=float, default=None,
                        help="seconds after which no further seed starts; the report says which seeds ran")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.truth_runs < 2 or args.relearn_bootstrap < 2:
        parser.error("--truth-runs and --relearn-bootstrap must be ≥ 2")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.monotonic()
    work = partial(one_seed, horizon=args.horizon, bootstrap=args.bootstrap, truth_runs=args.truth_runs,
                   relearn_bootstrap=args.relearn_bootstrap)
    by_seed = {}
    queue = list(seeds)
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        running = {pool.submit(work, seed): seed for seed in queue[:max(1, args.jobs)]}
        del queue[:max(1, args.jobs)]
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                seed = running.pop(future)
                by_seed[seed] = future.result()
                print(f"[bench-evaluation] seed {seed} done ({len(by_seed)}/{len(seeds)}, "
                      f"{time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
                if queue and (args.stop_after is None or time.monotonic() - started <= args.stop_after):
                    running[pool.submit(work, queue[0])] = queue.pop(0)     # no seed starts after the cap
    seeds = [seed for seed in seeds if seed in by_seed]
    runs = [by_seed[seed] for seed in seeds]
    lines = ["| candidate | true CTR (mean) | estimator | estimate (mean) | difference | coverage "
             "| coverage, π held fixed | coverage of one run | mean ESS | log for ±10% |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    worst = 0.0
    for name in CANDIDATES:
        truth = np.array([r["truth"][name] for r in runs])
        for estimator in ESTIMATORS:
            intervals = [r["results"][name].estimates[estimator] for r in runs]
            values = np.array([e.value for e in intervals])
            covered = np.mean([e.low <= r["truth"][name] <= e.high for e, r in zip(intervals, runs)])
            covered_one = np.mean([e.low <= r["one_run"][name] <= e.high for e, r in zip(intervals, runs)])
            covered_fixed = "—"
            if name in runs[0]["held_fixed"]:
                fixed = [r["held_fixed"][name].estimates[estimator] for r in runs]
                covered_fixed = f"{np.mean([e.low <= r['truth'][name] <= e.high for e, r in zip(fixed, runs)]):.0%}"
            ess = np.mean([r["results"][name].effective_sample_size for r in runs])
            difference = values.mean() / truth.mean() - 1
            worst = max(worst, abs(difference))
            # impressions of such a log for a ±10% interval: the ESS it needs over the ESS per logged impression
            needed = estimators.required_ess(truth.mean()) * args.horizon / ess
            lines.append(f"| `{name}` | {truth.mean():.4%} | {estimator.upper()} | {values.mean():.4%} | "
                         f"{difference:+.1%} | {covered:.0%} | {covered_fixed} | {covered_one:.0%} | {ess:,.0f} | "
                         f"{needed:,.0f} |")
    lifts = np.array([r["lift"]["estimate"] for r in runs])
    true_lifts = np.array([r["true_lift"] for r in runs])
    lift_covered = np.mean([r["lift"]["low"] <= r["true_lift"] <= r["lift"]["high"] for r in runs])
    srm_flags = sum(r["srm"] for r in runs)
    on_policy = np.mean([r["results"]["thompson"].estimates[e].low <= r["results"]["thompson"].observed_ctr
                         <= r["results"]["thompson"].estimates[e].high for r in runs for e in ESTIMATORS])
    learning = [name for name in CANDIDATES if runs[0]["spread"][name] > 0]
    spread = np.mean([r["spread"][name] / r["truth"][name] for r in runs for name in learning])
    half_width = np.mean([(r["results"][name].estimates[e].high - r["results"][name].estimates[e].low)
                          / 2 / r["truth"][name] for r in runs for name in learning for e in ESTIMATORS])
    table = "\n".join(lines)
    summary = (f"Holdout ({HOLDOUT_SHARE:.0%}, uniform): estimated lift {lifts.mean():+.1%} (mean over seeds) "
               f"against a true lift of {true_lifts.mean():+.1%}; the 95 % interval covered the seed's true lift "
               f"in {lift_covered:.0%} of seeds; sample-ratio mismatch flagged in {srm_flags} of {len(runs)} "
               f"seeds. On-policy check: the intervals of `thompson` (the logging policy, replayed) covered the log's "
               f"observed CTR in {on_policy:.0%} of (seed, estimator) pairs. Largest |difference| of a mean "
               f"estimate from the mean truth: {worst:.1%}. Learning candidates: one online run's rate differs "
               f"from their expected rate by {spread:.1%} (relative standard deviation over "
               f"{args.truth_runs} runs, mean over candidates and seeds); their intervals' half-width is "
               f"{half_width:.1%} of the truth on average.")
    print(table + "\n\n" + summary)
    ranges = []                                             # e.g. "seeds 0–13, 15 (15 seeds)"
    for seed in seeds:
        if ranges and seed == ranges[-1][1] + 1:
            ranges[-1][1] = seed
        else:
            ranges.append([seed, seed])
    seed_list = (f"Seeds {', '.join(f'{a}–{b}' if b > a else f'{a}' for a, b in ranges)} ({len(seeds)} seeds"
                 f"{' of ' + str(args.seeds) + ' asked, stopped at the time cap' if len(seeds) < args.seeds else ''})")
    if not args.no_write:
        command = (f"make bench-evaluation EVAL_ARGS='--seeds {args.seeds} --horizon {args.horizon} "
                   f"--bootstrap {args.bootstrap} --relearn-bootstrap {args.relearn_bootstrap} "
                   f"--truth-runs {args.truth_runs}{f' --jobs {args.jobs}' if args.jobs > 1 else ''}"
                   f"{f' --stop-after {args.stop_after:g}' if args.stop_after is not None else ''}'")
        write_section("evaluation", f"{stamp(command)} {seed_list}; {args.horizon:,} impressions "
                      "a seed, 5 banners, 8 cities, a refresh every 500 impressions; "
                      f"{time.monotonic() - started:.0f} s. True CTR: the candidate's expected online click rate "
                      f"on the seed's visitors (a learning candidate's: the mean of {args.truth_runs} online runs); "
                      "coverage: seeds whose interval holds it; π held fixed: the same for intervals that keep the "
                      "probabilities learned from the whole log in every resample (no replay per resample); "
                      "coverage of one run: seeds whose interval holds the realized rate of a single online run."
                      "\n\n"
                      f"{table}\n\n{summary}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
