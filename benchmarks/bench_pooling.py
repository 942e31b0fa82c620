#!/usr/bin/env python3
"""Which city prior helps Thompson sampling most in the stationary scenario (issue 5's 97 % aim)?

Runs, on the same seeds, our Thompson sampling per city with Beta(1, 1), with the simulator's leave-one-out
slot-wide pooling (``thompson-pooled``), and with the priors job's empirical-Bayes fit
(``simulator.policies.empirical_bayes_prior``: webapp/bandits/priors.py on the live counts); the best learner
found by hand (``thompson-hierarchical``, a candidate the server does not run); beside them references that take
the aim apart: the true population prior (read from the simulator) with Thompson sampling and with no
exploration (``posterior-mean``), the slot's true best banner to everyone, and one Thompson sampler for the whole
slot (``thompson-slot``). It prints the share of the oracle's expected clicks (mean, its standard error over
seeds, how many seeds reach 97 %) and the regret. ``make bench-pooling`` (32 seeds).
"""

from __future__ import annotations

import argparse
import os
from functools import partial
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator import STATIONARY, run  # noqa: E402
from simulator.env import BannerSlotEnv  # noqa: E402
from simulator.policies import empirical_bayes_prior  # noqa: E402

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
    "thompson + empirical-Bayes city priors (priors job, cap 200)":
        ("thompson-pooled", {"prior_function": empirical_bayes_prior}),
    "thompson + empirical-Bayes city priors, cap 1000":
        ("thompson-pooled", {"prior_function": partial(empirical_bayes_prior, max_strength=1000.0)}),
    "thompson + empirical-Bayes city priors, cap 5000":
        ("thompson-pooled", {"prior_function": partial(empirical_bayes_prior, max_strength=5000.0)}),
    HIERARCHICAL: ("thompson-hierarchical", {}),
    ORACLE_PRIOR: ("thompson-pooled", {}),
    SLOT_BEST: ("thompson-pooled", {}),
    SLOT_THOMPSON: ("thompson-slot", {}),
    GREEDY_TRUE: ("posterior-mean", {}),
}


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


def job(args: tuple[str, int]) -> tuple[str, int, float, float]:
    label, seed = args
    policy, params = POLICIES[label]
    if label in (ORACLE_PRIOR, GREEDY_TRUE):
        params = {"prior_function": partial(_fixed, true_population_prior(seed))}
    elif label == SLOT_BEST:
        params = {"prior_function": partial(_fixed, slot_best_prior(seed))}
    result = run(STATIONARY, policy, seed, **params)
    return label, seed, result.expected_clicks / result.oracle_expected_clicks, result.regret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=32)
    args = parser.parse_args()
    print(f"scenario: {STATIONARY}\nseeds: 0…{args.seeds - 1}", flush=True)
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in POLICIES}
    with Pool(os.cpu_count() or 1) as pool:
        for label, seed, share, regret in pool.imap(job, [(l, s) for s in range(args.seeds) for l in POLICIES]):
            print(f"  seed {seed}: {label}: {100 * share:.1f}% of the oracle, regret {regret:.0f}", flush=True)
            results[label].append((share, regret))
    print("\n| Policy | % of oracle's clicks: mean ± standard error (min–max) | seeds ≥ 97 % | regret (mean) |"
          "\n| --- | --- | ---: | ---: |")
    for label, rows in results.items():
        shares = np.array([r[0] for r in rows]) * 100
        error = shares.std(ddof=1) / np.sqrt(shares.size) if shares.size > 1 else float("nan")
        print(f"| {label} | {shares.mean():.1f} ± {error:.1f} ({shares.min():.1f}–{shares.max():.1f}) | "
              f"{np.count_nonzero(shares >= 97.0)}/{shares.size} | {np.mean([r[1] for r in rows]):.0f} |")


if __name__ == "__main__":
    main()
