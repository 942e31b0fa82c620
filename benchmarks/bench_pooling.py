#!/usr/bin/env python3
"""Which city prior helps Thompson sampling most in the stationary scenario (the 97 % aim)?

Runs, on the same seeds, our Thompson sampling per city with Beta(1, 1), with the simulator's leave-one-out
slot-wide pooling (``thompson-pooled``), and with the priors job's empirical-Bayes fit
(``simulator.policies.empirical_bayes_prior``: bandits/priors.py on the live counts) at caps 200 (the
product's), 500, 1,000 and 5,000; the best learner found by hand (``thompson-hierarchical``, a candidate the
server does not run); beside them references that take the aim apart: the true population prior (read from the
simulator) with Thompson sampling and with no exploration (``posterior-mean``), the slot's true best banner to
everyone, and one Thompson sampler for the whole slot (``thompson-slot``). It prints the share of the oracle's
expected clicks (mean, its standard error over seeds, how many seeds reach 97 %), the regret, each row's
difference from the fit at cap 1,000 seed by seed (paired), and its clicks as a share of the slot oracle's (the
slot's best banner to everyone), seed by seed. Then the case where pooling the cities misleads: the same scenario
with the second-largest city's ranking reversed (``Scenario.reversed_city``), for per-city sampling, the fits at
caps 200, 500 and 1,000 and the candidate, with what each costs that city. ``make bench-pooling`` (32 seeds,
0…31, ~8 min; ``FIRST_SEED=32`` gives seeds the candidate was not chosen on).
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from multiprocessing import Pool

import numpy as np

from report import stamp, write_section
from simulator import STATIONARY, RunResult, Scenario, run
from simulator.env import BannerSlotEnv
from simulator.policies import empirical_bayes_prior

CAP_200 = "thompson + empirical-Bayes city priors (priors job, cap 200)"
CAP_500 = "thompson + empirical-Bayes city priors, cap 500"
CAP_1000 = "thompson + empirical-Bayes city priors, cap 1000"
HIERARCHICAL = ("candidate: hierarchical Thompson sampling (each banner's slot rate drawn from the other cities' "
                "counts, empirical-Bayes strength cap 1000, city draws pulled halfway to the mean)")
ORACLE_PRIOR = "thompson + the true population prior (oracle: a Beta matched to this seed's true city CTRs)"
SLOT_BEST = ("reference: the slot's best banner to every visitor (oracle of the slot: knows each banner's true "
             "slot-wide CTR, learns nothing per city)")
SLOT_THOMPSON = ("reference: one Thompson sampler for the whole slot (learns the slot's ranking from nothing, "
                 "tells no city apart)")
GREEDY_TRUE = ("reference: each city's posterior mean under the true population prior, no exploration (knows "
               "the slot, learns each city from its own data)")

POLICIES = {
    "thompson": ("thompson", {}),
    "thompson-pooled (leave-one-out pooling, cap 200)": ("thompson-pooled", {}),
    CAP_200: ("thompson-pooled", {"prior_function": empirical_bayes_prior}),
    CAP_500: ("thompson-pooled", {"prior_function": partial(empirical_bayes_prior, max_strength=500.0)}),
    CAP_1000: ("thompson-pooled", {"prior_function": partial(empirical_bayes_prior, max_strength=1000.0)}),
    "thompson + empirical-Bayes city priors, cap 5000":
        ("thompson-pooled", {"prior_function": partial(empirical_bayes_prior, max_strength=5000.0)}),
    HIERARCHICAL: ("thompson-hierarchical", {}),
    ORACLE_PRIOR: ("thompson-pooled", {}),
    SLOT_BEST: ("thompson-pooled", {}),
    SLOT_THOMPSON: ("thompson-slot", {}),
    GREEDY_TRUE: ("posterior-mean", {}),
}


# The case pooling can mislead: the second-largest city (~14 % of the traffic) likes what the slot dislikes.
OUTLIER = STATIONARY.with_(name="stationary, one city's ranking reversed", reversed_city=1)
OUTLIER_POLICIES = ["thompson", CAP_200, CAP_500, CAP_1000, HIERARCHICAL]


def _truth(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """This seed's true CTRs, shape (cities, banners), and its cities' shares of the traffic, shape (cities,):
    the same as the run's own environment draws."""
    env = BannerSlotEnv(STATIONARY)
    env.reset(seed=seed)
    return env.true_ctr[0], env.city_weights[0]


def true_population_prior(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every city's prior for banner b: the Beta with the mean and variance of b's true CTRs over this seed's
    cities (read from the environment, which a real service cannot do): the prior that fitting city priors
    from data (the priors job, the pooling) tries to estimate, as a reference for how far better fits can go."""
    true, _ = _truth(seed)
    mean, var = true.mean(axis=0), true.var(axis=0)
    strength = mean * (1 - mean) / var - 1
    alpha0 = np.broadcast_to(strength * mean, true.shape).copy()
    beta0 = np.broadcast_to(strength * (1 - mean), true.shape).copy()
    return alpha0, beta0


def slot_best_prior(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every city's prior for banner b: a Beta of strength 10^12 at b's true slot-wide CTR (its cities' true
    CTRs weighted by their share of the traffic). No count of a run moves it, so Thompson sampling with it
    serves the slot's best banner everywhere: the best a policy can do that does not tell cities apart."""
    true, weights = _truth(seed)
    slot_ctr = weights @ true                                     # (banners,)
    strength = 1e12
    alpha0 = np.broadcast_to(strength * slot_ctr, true.shape).copy()
    beta0 = np.broadcast_to(strength * (1 - slot_ctr), true.shape).copy()
    return alpha0, beta0


def _fixed(prior: tuple[np.ndarray, np.ndarray], impressions: np.ndarray, clicks: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    return prior


def standard_error(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")


def job(args: tuple[Scenario, str, int]) -> tuple[Scenario, str, int, RunResult]:
    scenario, label, seed = args
    policy, params = POLICIES[label]
    if label in (ORACLE_PRIOR, GREEDY_TRUE):
        params = {"prior_function": partial(_fixed, true_population_prior(seed))}
    elif label == SLOT_BEST:
        params = {"prior_function": partial(_fixed, slot_best_prior(seed))}
    return scenario, label, seed, run(scenario, policy, seed, **params)


def share(result: RunResult, city: int | None = None) -> float:
    """Expected clicks as % of the oracle's: the whole slot's, or one city's."""
    if city is None:
        return 100 * result.expected_clicks / result.oracle_expected_clicks
    return 100 * result.per_city["expected_clicks"][city] / result.per_city["oracle_expected_clicks"][city]


def stationary_table(results: dict[str, list[RunResult]]) -> list[str]:
    table = ["| Policy | % of oracle's clicks: mean ± standard error (min–max) | seeds ≥ 97 % | regret (mean) | "
          "− cap 1,000's %, paired: mean ± standard error | % of the slot oracle's clicks, paired: mean ± "
          "standard error (seeds ≥ 97 %) |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    baseline = np.array([share(r) for r in results[CAP_1000]])
    # The slot oracle serves the slot's best banner to everyone: the SLOT_BEST row's clicks, seed by seed.
    slot_oracle = np.array([r.expected_clicks for r in results[SLOT_BEST]])
    for label, runs in results.items():
        shares = np.array([share(r) for r in runs])
        diff = shares - baseline                       # the same seeds in the same order: paired
        paired = "" if label == CAP_1000 else f"{diff.mean():+.1f} ± {standard_error(diff):.1f}"
        of_slot = 100 * np.array([r.expected_clicks for r in runs]) / slot_oracle
        table.append(f"| {label} | {shares.mean():.1f} ± {standard_error(shares):.1f} ({shares.min():.1f}–"
              f"{shares.max():.1f}) | {np.count_nonzero(shares >= 97.0)}/{shares.size} | "
              f"{np.mean([r.regret for r in runs]):.0f} | {paired} | {of_slot.mean():.1f} ± "
              f"{standard_error(of_slot):.1f} ({np.count_nonzero(of_slot >= 97.0)}/{of_slot.size}) |")
    return table


def outlier_table(results: dict[str, list[RunResult]]) -> None:
    city = OUTLIER.reversed_city
    print(f"\n{OUTLIER.name}: {OUTLIER.describe()}")
    print(f"\n| Policy | whole slot: % of oracle's clicks | city {city}: its impressions | its regret (mean ± "
          f"standard error) | its regret − per-city Thompson sampling's, paired | its % of its oracle's clicks |"
          f"\n| --- | ---: | ---: | ---: | ---: | ---: |")
    alone = np.array([r.per_city["regret"][city] for r in results["thompson"]])
    for label, runs in results.items():
        shares = np.array([share(r) for r in runs])
        regret = np.array([r.per_city["regret"][city] for r in runs])
        diff = regret - alone
        paired = "" if label == "thompson" else f"{diff.mean():+.0f} ± {standard_error(diff):.0f}"
        print(f"| {label} | {shares.mean():.1f} ± {standard_error(shares):.1f} | "
              f"{np.mean([r.per_city['impressions'][city] for r in runs]):,.0f} | {regret.mean():.0f} ± "
              f"{standard_error(regret):.0f} | {paired} | {np.mean([share(r, city) for r in runs]):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=32, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds FIRST…FIRST+N−1 (the candidate was chosen on 0…31: 32 on are held out)")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"scenario: {STATIONARY}\nseeds: {seeds[0]}…{seeds[-1]}", flush=True)
    results = {scenario: {label: [] for label in labels} for scenario, labels in
               ((STATIONARY, POLICIES), (OUTLIER, OUTLIER_POLICIES))}
    jobs = [(scenario, label, seed) for scenario, by_label in results.items() for seed in seeds
            for label in by_label]
    with Pool(os.cpu_count() or 1) as pool:
        for done, (scenario, label, seed, result) in enumerate(pool.imap(job, jobs), 1):
            print(f"  [{done}/{len(jobs)}] {scenario.name}, seed {seed}: {label}: {share(result):.1f}% of the "
                  f"oracle, regret {result.regret:.0f}", flush=True)
            results[scenario][label].append(result)
    table = stationary_table(results[STATIONARY])
    print("\n" + "\n".join(table))
    command = f"make bench-pooling SEEDS={args.seeds} FIRST_SEED={args.first_seed}"
    write_section("pooling" if args.first_seed == 0 else "pooling-held-out",
                  f"{stamp(command)} Seeds {seeds[0]}–{seeds[-1]}.\n\n" + "\n".join(table))
    outlier_table(results[OUTLIER])


if __name__ == "__main__":
    main()
