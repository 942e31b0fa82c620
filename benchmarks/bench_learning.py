#!/usr/bin/env python3
"""Learning benchmark: how fast each policy finds the best banner and what exploring costs.

Run from the repository root as ``.venv/bin/python benchmarks/bench_learning.py`` (``make bench-learning``).

1. Main runs: every policy on the same seeds of three scenarios (stationary, new-city cold start, drift;
   see simulator/scenario.py), in a process pool (``--jobs``, default 2 = the machine's cores).
2. Sensitivity runs (fewer seeds): where the 97 % aim is within reach (cities × base CTR), discounted vs
   plain Thompson sampling in an easier drift, and the refresh interval (batch) the simulation assumes.
3. Decision time per serve, ours (as the server serves: blocks of ``thompson_winners``; and one
   ``ThompsonSampler.select`` call per decision) vs MABWiser's predict, K = 10, 100, 1000, in this one
   process after the pool has finished.
4. Writes its section of docs/BENCHMARKS.md (the aims and their figures; benchmarks/report.py), the whole
   report to benchmarks/out/learning.md, and docs/learning_*.png, and prints the aims with their numbers.

Seeds 0…N−1 (``--seeds``, default 32) are reported; γ of discounted Thompson sampling was chosen on seeds
1000–1002, which are not. Everything is deterministic given the seeds except the timings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pickle
import platform
import sys
import textwrap
import time
import timeit
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats as scipy_stats

from bandits import ThompsonSampler, thompson_winners
from bandits.city_thompson import FIRST_BLOCK
from report import stamp, write_section
from simulator import COLD_START, DRIFT, STATIONARY, RunResult, Scenario, run
from simulator.policies import empirical_bayes_prior
from simulator.runner import NEW_CITY_BLOCK, SHARE_BLOCK

matplotlib.use("Agg")     # figures to files only (pyplot picks its backend at the first figure)

REPO = Path(__file__).resolve().parent.parent

DOCS = REPO / "docs"
FULL_REPORT = REPO / "benchmarks" / "out" / "learning.md"                 # git-ignored; every table of a run
RAW_RESULTS = REPO / "benchmarks" / "out" / "learning_results.pkl"      # git-ignored; for --report-only
CLEAR_MARGIN = 1.2          # "faster" counts as clear when the other takes ≥ 1.2× as long

# key → (simulator policy, parameters). Since the priors job landed, "with city priors" is the priors job's
# empirical-Bayes fit (simulator.policies.empirical_bayes_prior) on the live counts: at the product's cap
# (CITY_PRIOR_MAX_STRENGTH = 200) and at 1,000, the cap `make bench-pooling` found best for the stationary aim.
EB_1000 = partial(empirical_bayes_prior, max_strength=1000.0)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "oracle": ("oracle", {}),
    "uniform": ("uniform", {}),
    "epsilon-greedy": ("epsilon-greedy", {"epsilon": 0.1}),
    "ucb1": ("ucb1", {}),
    "thompson": ("thompson", {}),
    "thompson-priors": ("thompson-pooled", {"prior_function": empirical_bayes_prior}),
    "thompson-priors-1000": ("thompson-pooled", {"prior_function": EB_1000}),
    "thompson-discounted": ("thompson-discounted", {"gamma": 0.9999}),
    "thompson-discounted-priors": ("thompson-discounted-pooled", {}),
    "thompson-hierarchical": ("thompson-hierarchical", {}),
    "mabwiser-thompson": ("mabwiser-thompson", {}),
}
LABELS = {
    "oracle": "oracle (knows the true CTRs)",
    "uniform": "uniform random (A/B/n test)",
    "epsilon-greedy": "ε-greedy, ε = 0.1",
    "ucb1": "UCB1",
    "thompson": "our Thompson sampling per city",
    "thompson-priors": "ours, city priors (priors job, cap 200)",
    "thompson-priors-1000": "ours, city priors (priors job, cap 1,000)",
    "thompson-discounted": "ours, discounted (γ = 0.9999 per city decision)",
    "thompson-discounted-priors": "ours, discounted (γ = 0.99995 per slot decision) + city priors (cap 1,000)",
    "thompson-hierarchical": "candidate, not served: hierarchical (bench-pooling's best learner)",
    "mabwiser-thompson": "MABWiser Thompson sampling per city",
}
COLORS = {"oracle": "#000000", "uniform": "#9e9e9e", "epsilon-greedy": "#8c564b", "ucb1": "#9467bd",
          "thompson": "#1f77b4", "thompson-priors": "#2ca02c", "thompson-priors-1000": "#17becf",
          "thompson-discounted": "#ff7f0e", "thompson-discounted-priors": "#e377c2",
          "thompson-hierarchical": "#bcbd22", "mabwiser-thompson": "#d62728"}


def log(message: str) -> None:
    print(f"[bench-learning {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# jobs (run in worker processes)


def run_job(job: tuple[str, Scenario, int, list[str]]) -> list[RunResult]:
    tag, scenario, seed, keys = job
    results = []
    for key in keys:
        policy, params = VARIANTS[key]
        result = run(scenario, policy, seed, **params)
        result.policy = key             # results are grouped and labelled by the variant
        result.params = {"tag": tag, **{k: v for k, v in params.items() if k != "prior_function"}}
        results.append(result)
    return results


def reach_configs(horizon: int) -> list[tuple[int, float, int]]:
    """(cities, base CTR, impressions) of the "where is 97 % within reach" runs."""
    return [(c, ctr, horizon) for c in (1, 5, 20) for ctr in (0.03, 0.10)] + [(20, 0.03, 5 * horizon)]


def reach_name(cities: int, ctr: float, impressions: int) -> str:
    return f"cities={cities} ctr={ctr:g} impressions={impressions}"


def sensitivity_jobs(seeds: list[int], horizon: int) -> list[tuple[str, Scenario, int, list[str]]]:
    jobs = []
    for cities, ctr, impressions in reach_configs(horizon):
        scenario = STATIONARY.with_(name=reach_name(cities, ctr, impressions), n_cities=cities, base_ctr=ctr,
                                    horizon=impressions)
        jobs += [("reach", scenario, s, ["thompson", "thompson-priors-1000"]) for s in seeds]
    easy_drift = DRIFT.with_(name="drift, 5 cities, CTR 10 %", n_cities=5, base_ctr=0.10, horizon=horizon,
                             drift_at=horizon // 2)
    jobs += [("easy-drift", easy_drift, s, ["thompson", "thompson-discounted"]) for s in seeds]
    for batch in (1, 10, 100, 1000):
        scenario = STATIONARY.with_(name=f"refresh every {batch}", n_cities=1, horizon=20_000, batch_size=batch)
        jobs += [("refresh", scenario, s, ["thompson"]) for s in seeds]
    return jobs


# --------------------------------------------------------------------------------------------------
# decision time


def decision_times(ks: tuple[int, ...] = (10, 100, 1000), repeats: int = 25) -> dict[int, dict[str, float]]:
    """Seconds per decision on the same posteriors: ours as the server serves (a block of FIRST_BLOCK
    ``thompson_winners`` per location and snapshot, each serve takes the next: block time / FIRST_BLOCK),
    ours with one ``ThompsonSampler.select`` per decision, and MABWiser's ``predict``.

    Each arm has seen 200 impressions with clicks ~ Binomial(200, 3 %); MABWiser is fitted on exactly those
    decisions and rewards, ours gets Beta(1 + clicks, 1 + impressions − clicks). The two are timed in turn,
    ``repeats`` rounds of ~20 ms each; the best round is reported (the least disturbed by other load on a
    shared machine) with the median beside it.
    """
    from mabwiser.mab import MAB, LearningPolicy

    out: dict[int, dict[str, float]] = {}
    for k in ks:
        rng = np.random.default_rng(k)
        impressions = np.full(k, 200)
        clicks = rng.binomial(200, 0.03, size=k)
        alpha, beta = 1.0 + clicks, 1.0 + impressions - clicks
        sampler = ThompsonSampler(np.random.default_rng(1))
        mab = MAB(list(range(k)), LearningPolicy.ThompsonSampling(), seed=1)
        decisions = np.repeat(np.arange(k), 200)
        rewards = np.concatenate([np.r_[np.ones(c), np.zeros(200 - c)] for c in clicks])
        mab.fit(decisions=decisions, rewards=rewards)
        # reference: the same K draws with scalar parameters, i.e. without numpy's per-call checks of arrays
        scalar_rng = np.random.default_rng(2)
        block_rng = np.random.default_rng(3)
        calls = {"ours": partial(sampler.select, alpha, beta), "mabwiser": mab.predict,
                 "ours_block": partial(thompson_winners, alpha, beta, block_rng, FIRST_BLOCK),
                 "numpy_scalar": partial(scalar_rng.beta, 7.0, 195.0, size=k)}
        timings: dict[str, list[float]] = {name: [] for name in calls}
        numbers = {}
        for name, call in calls.items():
            number, _ = timeit.Timer(call).autorange()                     # ≥ 0.2 s
            numbers[name] = max(number // 10, 1)
        for _ in range(repeats):
            for name, call in calls.items():
                timings[name].append(timeit.timeit(call, number=numbers[name]) / numbers[name])
        timings["ours_block"] = [v / FIRST_BLOCK for v in timings["ours_block"]]      # per decision
        out[k] = {f"{name}_best": min(v) for name, v in timings.items()}
        out[k].update({f"{name}_median": float(np.median(v)) for name, v in timings.items()})
    return out


# --------------------------------------------------------------------------------------------------
# statistics


def by_policy(results: list[RunResult]) -> dict[str, list[RunResult]]:
    grouped: dict[str, list[RunResult]] = {}
    for r in sorted(results, key=lambda r: r.seed):
        grouped.setdefault(r.policy, []).append(r)
    return grouped


def mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():,.0f} ± {values.std(ddof=1) if values.size > 1 else 0:,.0f}"


def pct_range(values) -> str:
    values = 100 * np.asarray(values, dtype=float)
    return f"{values.mean():.1f} % ({values.min():.1f}–{values.max():.1f})"


def reach(values: list[int | None]) -> str:
    """Median impressions to a share over seeds (a seed that never reached it counts as ∞)."""
    reached = [v for v in values if v is not None]
    if not reached:
        return f"not reached (0/{len(values)})"
    median = np.median([v if v is not None else np.inf for v in values])
    shown = "> horizon" if np.isinf(median) else f"{median:,.0f}"
    return f"{shown} ({len(reached)}/{len(values)})"


def paired_ci(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of a − b over paired seeds and its 95 % t-interval."""
    d = np.asarray(a) - np.asarray(b)
    if d.size < 2:
        return float(d.mean()), float("-inf"), float("inf")
    half = scipy_stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


# --------------------------------------------------------------------------------------------------
# figures


def caption(scenario: Scenario, seeds: list[int]) -> str:
    return textwrap.fill(f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)}). {scenario.describe()}. Policy "
                         f"parameters: ε = 0.1; city priors: the priors job's fit, strength ≤ 200 or 1,000; γ = 0.9999 "
                         f"per city decision, 0.99995 per slot decision with priors.", 150)


def plot_regret(ax, grouped: dict[str, list[RunResult]], policies: list[str], new_city: bool = False) -> None:
    for policy in policies:
        runs = grouped[policy]
        if new_city:
            n = min(len(r.new_city["cumulative_regret"]) for r in runs)
            x = runs[0].new_city["checkpoints"][:n]
            y = np.array([r.new_city["cumulative_regret"][:n] for r in runs])
        else:
            x, y = runs[0].checkpoints, np.array([r.cumulative_regret for r in runs])
        ax.plot(x, y.mean(axis=0), color=COLORS[policy], label=LABELS[policy], lw=1.6)
        ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=COLORS[policy], alpha=0.15, lw=0)
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.grid(alpha=0.3)


def finish(fig, path: Path, text: str) -> None:
    fig.text(0.01, 0.005, text, fontsize=7, va="bottom", ha="left", family="monospace")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_stationary(grouped, scenario, seeds, policies, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 6.2))
    fig.subplots_adjust(bottom=0.2, top=0.93)
    plot_regret(ax, grouped, policies)
    ax.set_xlabel("impressions")
    ax.set_title("Stationary: cumulative regret (line: mean over seeds, band: min–max)")
    ax.legend(fontsize=8, loc="upper left")
    path = out / "learning_stationary.png"
    finish(fig, path, caption(scenario, seeds))
    return path


def figure_cold_start(grouped, scenario, seeds, policies, out: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
    fig.subplots_adjust(bottom=0.2, top=0.9, wspace=0.25)
    plot_regret(left, grouped, policies)
    left.axvline(scenario.new_city_at, color="k", ls=":", lw=1)
    left.set_xlabel("impressions of the slot (dotted: the new city appears)")
    left.set_title("whole slot")
    plot_regret(right, grouped, policies, new_city=True)
    right.set_xlabel("impressions of the new city")
    right.set_title("the new city only")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle("New-city cold start: cumulative regret (mean over seeds, band: min–max)")
    path = out / "learning_cold_start.png"
    finish(fig, path, caption(scenario, seeds))
    return path


def figure_drift(grouped, scenario, seeds, policies, share_policies, out: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
    fig.subplots_adjust(bottom=0.2, top=0.9, wspace=0.25)
    plot_regret(left, grouped, policies)
    left.axvline(scenario.drift_at, color="k", ls=":", lw=1)
    left.set_xlabel("impressions (dotted: the drift)")
    left.set_title("cumulative regret")
    left.legend(fontsize=7, loc="upper left")
    for policy in share_policies:
        shares = np.array([r.drift["new_best_share"] for r in grouped[policy]])
        x = scenario.drift_at + SHARE_BLOCK * np.arange(1, shares.shape[1] + 1)
        right.plot(x, shares.mean(axis=0), color=COLORS[policy], label=LABELS[policy], lw=1.6)
        right.fill_between(x, shares.min(axis=0), shares.max(axis=0), color=COLORS[policy], alpha=0.15, lw=0)
    right.axhline(0.9, color="k", ls="--", lw=1)
    right.set_ylim(0, 1.3)                  # room above the curves for the legend
    right.set_yticks(np.linspace(0, 1, 6))
    right.set_xlabel(f"impressions (blocks of {SHARE_BLOCK:,} after the drift)")
    right.set_ylabel("share of traffic on the new best banner")
    right.set_title("traffic on the banner the drift made best (dashed: 90 %)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle("Drift: plain vs discounted Thompson sampling and the baselines (mean over seeds, band: min–max)")
    path = out / "learning_drift.png"
    finish(fig, path, caption(scenario, seeds))
    return path


def figure_decision_time(times: dict[int, dict[str, float]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.6))
    fig.subplots_adjust(bottom=0.2)
    ks = sorted(times)
    for name, label, color in (("ours_block", f"ours as served: thompson_winners, blocks of {FIRST_BLOCK}",
                                COLORS["thompson-priors"]),
                               ("ours", "ours: one ThompsonSampler.select per decision", COLORS["thompson"]),
                               ("mabwiser", "MABWiser: MAB.predict", COLORS["mabwiser-thompson"])):
        ax.plot(ks, [1e6 * times[k][f"{name}_best"] for k in ks], "o-", color=color, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("banners K")
    ax.set_ylabel("µs per decision (best of 25 rounds)")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_title("Decision time per serve")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    path = out / "learning_decision_time.png"
    finish(fig, path, f"One process, Beta posteriors of 200 impressions per arm; python {platform.python_version()}, "
                      f"numpy {np.__version__}, {platform.machine()}, {os.cpu_count()} cores.")
    return path


# --------------------------------------------------------------------------------------------------
# report


def scenario_table(grouped: dict[str, list[RunResult]], policies: list[str]) -> list[str]:
    rows = ["| policy | regret (mean ± sd) | clicks, % of the oracle's (mean, min–max) | expected clicks, % of "
            "oracle | impressions until 50 % on the best | until 90 % on the best | s per run |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for policy in policies:
        runs = grouped[policy]
        rows.append(f"| {LABELS[policy]} | {mean_sd([r.regret for r in runs])} | "
                    f"{pct_range([r.clicks_vs_oracle for r in runs])} | "
                    f"{100 * np.mean([r.expected_vs_oracle for r in runs]):.1f} % | "
                    f"{reach([r.to_share[0.5] for r in runs])} | {reach([r.to_share[0.9] for r in runs])} | "
                    f"{np.mean([r.seconds for r in runs]):.1f} |")
    return rows


def write_report(ctx: dict[str, Any]) -> str:
    seeds = ctx["seeds"]
    main = ctx["main"]
    policies = ctx["policies"]
    st, cs, dr = (by_policy(main[s.name]) for s in ctx["scenarios"])
    aims = ctx["aims"]
    lines = [
        "## Learning",
        "",
        f"Produced by `make bench-learning` (`benchmarks/bench_learning.py --seeds {len(seeds)}`) on "
        f"{ctx['finished']:%Y-%m-%d %H:%M} UTC in {ctx['wall'] / 60:.1f} min wall time: {os.cpu_count()} cores, "
        f"load average {ctx['load_before']:.1f} before and {ctx['load_after']:.1f} after (the machine was "
        f"shared with other work, so timings are pessimistic; the learning numbers do not depend on timing). "
        f"python {platform.python_version()}, numpy {np.__version__}, mabwiser {ctx['versions']['mabwiser']}, "
        f"gymnasium {ctx['versions']['gymnasium']}.",
        "",
        "**Method.** The simulator (`simulator/`) is a Gymnasium environment of one banner slot: K banners, cities "
        "whose true CTRs are drawn around slot-level rates (`logit p_cb = μ_b + δ_cb`), Zipf arrival mix, "
        "hour-of-day modulation in the tenant's zone (Asia/Kolkata), optional drift, new city and click delay. "
        "Each seed draws its own problem and visitor stream, and every policy meets the same visitors and the "
        "same click coins (common random numbers). Policies keep one bandit per city, like the server's "
        "per-location counters, and serve each refresh interval of **100 impressions** from one posterior "
        "snapshot (the server refreshes its posterior cache once a second, ~100 serves at 100 serves/s per "
        "process; the refresh-interval check below shows the effect). Our Thompson policies call the server's "
        "own `bandits` code (`beta_posterior`, `thompson_winners` — a block of draws per city and "
        "snapshot, as the server serves a location —, `DiscountedThompsonSampling`). The candidate row is "
        "`simulator.policies.HierarchicalThompson`, the best learner `make bench-pooling` found for the stationary "
        "aim; the server does not run it, and it is here to show what it would cost at a cold start and a drift. "
        "*Regret* is expected clicks lost against the oracle that knows every city's true CTRs; *clicks, % of "
        "the oracle's* are realized clicks on the same coins. *Impressions until x % on the best*: the stream "
        f"is cut in blocks of {SHARE_BLOCK:,} impressions and the first block in which ≥ x % of visitors got "
        "their city's best banner ends there (median over seeds; in brackets how many seeds got there at all).",
        "",
        "### Aims",
        "",
        "| aim | result | met? |",
        "|---|---|---|",
        *[f"| {a['aim']} | {a['result']} | **{a['met']}** |" for a in aims],
        "",
        *ctx["aim_notes"],
        "",
        "### Stationary",
        "",
        f"![stationary]({ctx['figures']['stationary'].name})",
        "",
        f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} seeds). {ctx['scenarios'][0].describe()}.",
        "",
        *scenario_table(st, policies),
        "",
        "### New-city cold start",
        "",
        f"![cold start]({ctx['figures']['cold-start'].name})",
        "",
        f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} seeds). {ctx['scenarios'][1].describe()}. The new city's "
        f"true CTRs follow the same model as the others'.",
        "",
        f"In the new city (its own impressions; share blocks of {NEW_CITY_BLOCK}):",
        "",
        "| policy | new-city impressions | regret there | clicks there, % of the oracle's | its impressions "
        "until 50 % on its best | until 90 % |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {LABELS[p]} | {np.mean([r.new_city['impressions'] for r in cs[p]]):,.0f} | "
          f"{mean_sd([r.new_city['regret'] for r in cs[p]])} | "
          f"{pct_range([r.new_city['clicks'] / max(r.new_city['oracle_clicks'], 1) for r in cs[p]])} | "
          f"{reach([r.new_city['to_share'][0.5] for r in cs[p]])} | "
          f"{reach([r.new_city['to_share'][0.9] for r in cs[p]])} |" for p in policies],
        "",
        "Whole slot:",
        "",
        *scenario_table(cs, policies),
        "",
        "### Drift",
        "",
        f"![drift]({ctx['figures']['drift'].name})",
        "",
        f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} seeds). {ctx['scenarios'][2].describe()}. At the drift "
        "the banner that was worst slot-wide becomes best by +30 % CTR (its city deviations stay), the old best "
        "takes the old worst's rate.",
        "",
        "| policy | regret after the drift | impressions after the drift until 50 % on the new best banner | "
        "until 90 % |",
        "|---|---:|---:|---:|",
        *[f"| {LABELS[p]} | {mean_sd([r.drift['regret'] for r in dr[p]])} | "
          f"{reach([r.drift['to_share'][0.5] for r in dr[p]])} | {reach([r.drift['to_share'][0.9] for r in dr[p]])} |"
          for p in policies],
        "",
        "Whole run:",
        "",
        *scenario_table(dr, policies),
        "",
        "### Decision time per serve",
        "",
        f"![decision time]({ctx['figures']['decision-time'].name})",
        "",
        "One process, after the simulations had finished; each arm's posterior from 200 impressions. Best of 25 "
        "rounds of ~20 ms (median in brackets), µs per decision.",
        "",
        f"| K | ours as the server serves (`thompson_winners`, blocks of {FIRST_BLOCK}) | ours, one "
        "`ThompsonSampler.select` per decision | MABWiser `MAB.predict` | MABWiser / ours as served | "
        "reference: K draws `Generator.beta(7, 195, size=K)` |",
        "|---:|---:|---:|---:|---:|---:|",
        *[f"| {k} | {1e6 * t['ours_block_best']:.2f} ({1e6 * t['ours_block_median']:.2f}) | "
          f"{1e6 * t['ours_best']:.1f} ({1e6 * t['ours_median']:.1f}) | "
          f"{1e6 * t['mabwiser_best']:.1f} ({1e6 * t['mabwiser_median']:.1f}) | "
          f"{t['mabwiser_best'] / t['ours_block_best']:,.0f}× | {1e6 * t['numpy_scalar_best']:.1f} |"
          for k, t in sorted(ctx["times"].items())],
        "",
        "Since the block-sampling change on main (40ce749) the server takes each decision from a block of "
        "precomputed independent draws per location and snapshot, so its per-decision cost is the block's time "
        f"divided by its size ({FIRST_BLOCK}; blocks grow while a location is busy). One `select` call per "
        "decision is shown for comparison: the reference column draws the same number of Beta variates with "
        "scalar parameters, so the difference to `select` at small K is numpy's fixed per-call cost of "
        "`Generator.beta` with array parameters (broadcasting and a positivity check of each array), not the "
        "sampling. MABWiser makes one scalar `beta` call per arm from a dict, so its time grows with K.",
        "",
        "### Sensitivity (fewer seeds)",
        "",
        *ctx["sensitivity"],
    ]
    return "\n".join(lines) + "\n"


def reach_results(results: list[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    runs: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        if r.params["tag"] == "reach":
            runs.setdefault((r.scenario, r.policy), []).append(r)
    return runs


def sensitivity_section(results: list[RunResult], seeds: list[int], horizon: int) -> list[str]:
    by_tag: dict[str, list[RunResult]] = {}
    for r in results:
        by_tag.setdefault(r.params["tag"], []).append(r)
    lines = [f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} seeds) each.", "",
             f"**Where is 97 % of the oracle within reach?** Stationary scenario, {horizon:,} impressions, "
             "K = 10, other parameters as above; clicks as % of the oracle's, mean (min–max):", "",
             "| cities | base CTR | impressions | our Thompson sampling per city | with city priors (priors job, "
             "cap 1,000) |",
             "|---:|---:|---:|---:|---:|"]
    reach_runs = reach_results(results)
    for cities, ctr, impressions in reach_configs(horizon):
        name = reach_name(cities, ctr, impressions)
        cells = [pct_range([r.clicks_vs_oracle for r in reach_runs[(name, p)]])
                 for p in ("thompson", "thompson-priors-1000")]
        lines.append(f"| {cities} | {ctr:.0%} | {impressions:,} | {cells[0]} | {cells[1]} |")
    easy = by_policy(by_tag.get("easy-drift", []))
    if easy:
        scenario_line = "drift at half the horizon, 5 cities, base CTR 10 %"
        lines += ["", f"**An easier drift** ({scenario_line}, {horizon:,} impressions):", "",
                  "| policy | regret after the drift | until 50 % on the new best | until 90 % |",
                  "|---|---:|---:|---:|"]
        for p in ("thompson", "thompson-discounted"):
            lines.append(f"| {LABELS[p]} | {mean_sd([r.drift['regret'] for r in easy[p]])} | "
                         f"{reach([r.drift['to_share'][0.5] for r in easy[p]])} | "
                         f"{reach([r.drift['to_share'][0.9] for r in easy[p]])} |")
    refresh: dict[str, list[RunResult]] = {}
    for r in by_tag.get("refresh", []):
        refresh.setdefault(r.scenario, []).append(r)
    if refresh:
        lines += ["", "**Refresh interval.** One city, K = 10, 20,000 impressions, our Thompson sampling; the "
                  "posterior is refreshed every n impressions (n = 1: after every impression):", "",
                  "| refresh every | regret (mean ± sd) | clicks, % of the oracle's |", "|---:|---:|---:|"]
        for batch in (1, 10, 100, 1000):
            runs = refresh[f"refresh every {batch}"]
            lines.append(f"| {batch} | {mean_sd([r.regret for r in runs])} | "
                         f"{pct_range([r.clicks_vs_oracle for r in runs])} |")
    return lines


def evaluate_aims(main: dict[str, list[RunResult]], times, scenarios, sensitivity: list[RunResult],
                  horizon: int) -> tuple[list[dict], list[str]]:
    st = by_policy(main[scenarios[0].name])
    dr = by_policy(main[scenarios[2].name])
    aims = []
    first = scenarios[0]
    # the aim names "our Thompson sampling": per city, and with the city priors of the priors job
    ours = {key: [r.clicks_vs_oracle for r in st[key]] for key in ("thompson", "thompson-priors",
                                                                    "thompson-priors-1000")}
    best = max(ours, key=lambda key: np.mean(ours[key]))
    aims.append({"aim": f"stationary, {first.horizon:,} impressions, {first.n_banners} banners, {first.n_cities} "
                        f"cities: our Thompson sampling earns ≥ 97 % of the oracle's clicks",
                 "result": "; ".join(f"{LABELS[key].removeprefix('ours, ')} {100 * np.mean(v):.1f} % (seeds "
                                     f"{100 * min(v):.1f}–{100 * max(v):.1f} %)" for key, v in ours.items())
                           + ". Not counted, since the server does not run it: the "
                           + LABELS["thompson-hierarchical"].removeprefix("candidate, not served: ")
                           + f" {100 * np.mean([r.clicks_vs_oracle for r in st['thompson-hierarchical']]):.1f} %",
                 "met": "met" if np.mean(ours[best]) >= 0.97 else "not met"})
    mean, low, high = paired_ci([r.regret for r in st["thompson"]], [r.regret for r in st["mabwiser-thompson"]])
    aims.append({"aim": "its regret is no worse than MABWiser's beyond noise",
                 "result": f"ours − MABWiser = {mean:+,.0f} expected clicks (95 % CI {low:+,.0f} … {high:+,.0f}, "
                           f"paired over {len(st['thompson'])} seeds; MABWiser's regret "
                           f"{np.mean([r.regret for r in st['mabwiser-thompson']]):,.0f})",
                 "met": "met" if low <= 0 else "not met"})
    inf = float("inf")

    def drift_pair(discounted: str, plain: str) -> tuple[int, int, str]:
        """(seeds where discounted got to 90 % first, seeds, text) for two policies with the same prior."""
        d90, p90 = ([r.drift["to_share"][0.9] for r in dr[key]] for key in (discounted, plain))
        d50, p50 = ([r.drift["to_share"][0.5] for r in dr[key]] for key in (discounted, plain))
        faster = sum((d if d is not None else inf) < (p if p is not None else inf) for d, p in zip(d90, p90))
        return faster, len(d90), (f"90 %: discounted {reach(d90)}, plain {reach(p90)}; discounted first in "
                                  f"{faster}/{len(d90)} seeds (50 %: discounted {reach(d50)}, plain {reach(p50)})")

    with_priors = drift_pair("thompson-discounted-priors", "thompson-priors-1000")
    per_city = drift_pair("thompson-discounted", "thompson")
    # plain sampling with the product's default cap forgets a wrong prior sooner than with cap 1,000: shown too
    default_cap = drift_pair("thompson-discounted-priors", "thompson-priors")
    aims.append({"aim": "after a drift, discounted Thompson sampling regains 90 % of the traffic on the new best "
                        "banner in fewer impressions than the plain one",
                 "result": f"with city priors (cap 1,000; discounted: γ = 0.99995 per slot decision): "
                           f"{with_priors[2]}. Against plain sampling with the product's cap 200: discounted "
                           f"first in {default_cap[0]}/{default_cap[1]} seeds (plain: 90 % at "
                           f"{reach([r.drift['to_share'][0.9] for r in dr['thompson-priors']])}). Per city, without "
                           f"priors (γ = 0.9999 per city decision): {per_city[2]}.",
                 "met": {(True, True): "met", (True, False): "met with city priors (not per city)",
                         (False, True): "met per city (not with city priors)", (False, False): "not met"}[
                     (with_priors[0] > with_priors[1] / 2, per_city[0] > per_city[1] / 2)]})
    # "below" must hold for the best and the median round, by more than CLEAR_MARGIN, to count as clearly met
    below = {k: t["ours_block_best"] < t["mabwiser_best"] and t["ours_block_median"] < t["mabwiser_median"]
             for k, t in times.items()}
    clear = {k: t["mabwiser_best"] / t["ours_block_best"] >= CLEAR_MARGIN for k, t in times.items()}
    unclear = [k for k in sorted(times) if below[k] and not clear[k]]
    verdict = "met" if all(clear.values()) else (
        f"met, but at K = {', '.join(map(str, unclear))} by less than {CLEAR_MARGIN - 1:.0%} (a tie on a shared "
        f"machine)" if all(below.values()) else "not met")
    aims.append({"aim": "our per-decision time is below MABWiser's",
                 "result": "as served (blocks): " + ", ".join(
                     f"K = {k}: {1e6 * t['ours_block_best']:.2f} vs {1e6 * t['mabwiser_best']:.1f} µs"
                     for k, t in sorted(times.items())) + "; with one `select` call per decision: " + ", ".join(
                     f"K = {k}: {1e6 * t['ours_best']:.1f} µs ({t['mabwiser_best'] / t['ours_best']:.2f}×)"
                     for k, t in sorted(times.items())),
                 "met": verdict})
    notes = []
    if aims[0]["met"] != "met":
        reach_runs = reach_results(sensitivity)
        one = reach_runs[(reach_name(1, 0.03, horizon), "thompson")]
        longer = reach_runs[(reach_name(20, 0.03, 5 * horizon), "thompson")]
        notes.append(
            f"Why the 97 % aim is missed: the oracle knows every city's own best banner, and at a 3 % CTR "
            f"{horizon:,} impressions are about {0.03 * horizon:,.0f} clicks for 20 × 10 city-banner pairs, so "
            f"per-city Thompson sampling is still exploring in the smaller cities (Zipf mix: the smallest city "
            f"gets ~1.4 % of the traffic). The same policy earns "
            f"{100 * np.mean([r.clicks_vs_oracle for r in one]):.1f} % of the oracle's clicks with one city and "
            f"{100 * np.mean([r.clicks_vs_oracle for r in longer]):.1f} % with 20 cities over "
            f"{5 * horizon:,} impressions (sensitivity table below); pooling cities (city priors) is what "
            f"closes most of the gap at this traffic.")
    if not aims[2]["met"].startswith("met"):
        notes.append(
            "Drift: 90 % of the whole slot's traffic on one banner needs every city, the small ones included, to "
            "have re-learned. Short of that bar, compare plain and discounted sampling by the 50 % column, the "
            "share curves and the regret after the drift below, and in the easier drift (5 cities, 10 % CTR) of "
            "the sensitivity section.")
    return aims, notes


def jobs_signature(jobs) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """What identifies a run's jobs (to refuse a --report-only over results of other parameters)."""
    return [(tag, scenario.describe(), seed, tuple(policies)) for tag, scenario, seed, policies in jobs]


def summary(ctx: dict[str, Any]) -> str:
    """The section of docs/BENCHMARKS.md: the command, machine and date, the aims table, the notes on the aims."""
    aims, command = ctx["aims"], f"make bench-learning SEEDS={len(ctx['seeds'])}"
    return "\n".join([
        f"{stamp(command)} {ctx['wall'] / 60:.1f} min wall time; "
        f"numpy {np.__version__}, mabwiser {ctx['versions']['mabwiser']}, gymnasium {ctx['versions']['gymnasium']}.",
        "",
        "| aim | result | met? |",
        "|---|---|---|",
        *[f"| {a['aim']} | {a['result']} | **{a['met']}** |" for a in aims],
        "",
        *ctx["aim_notes"],
        "",
        "Every table of the run (stationary, new-city cold start, drift, decision time, sensitivity): "
        f"`{FULL_REPORT.relative_to(REPO)}`. Figures: "
        + ", ".join(f"[{name}]({path.name})" for name, path in ctx["figures"].items()) + ".",
    ]) + "\n"


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=32, help="seeds 0…N−1 of the main scenarios")
    parser.add_argument("--sensitivity-seeds", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=200_000, help="impressions per run (the aims: 200k)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--no-write", action="store_true", help="print, but do not write docs/")
    parser.add_argument("--report-only", action="store_true",
                        help=f"re-time decisions and rewrite the report from the last run's results "
                             f"({RAW_RESULTS.relative_to(REPO)}) instead of simulating again")
    args = parser.parse_args(argv)

    from importlib.metadata import version

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    seeds = list(range(args.seeds))
    half = args.horizon // 2
    scenarios = [STATIONARY.with_(horizon=args.horizon),
                 COLD_START.with_(horizon=args.horizon, new_city_at=half),
                 DRIFT.with_(horizon=args.horizon, drift_at=half)]
    policies = list(VARIANTS)
    # the main jobs (each with a slow MABWiser run) first, the short sensitivity jobs fill in at the end
    jobs = [(s.name, s, seed, policies) for seed in seeds for s in scenarios]
    jobs += sensitivity_jobs(list(range(args.sensitivity_seeds)), args.horizon)
    if args.report_only:
        with RAW_RESULTS.open("rb") as f:
            saved = pickle.load(f)
        if saved["jobs_signature"] != jobs_signature(jobs):
            raise SystemExit(f"{RAW_RESULTS} is from a run with other parameters; run without --report-only")
        main_results, sensitivity, simulated = saved["main"], saved["sensitivity"], saved["simulated"]
        load_before = saved["load_before"]
        log(f"results of the run of {saved['finished']:%Y-%m-%d %H:%M} UTC read from {RAW_RESULTS}")
    else:
        log(f"{len(jobs)} jobs ({len(seeds)} seeds × {len(scenarios)} scenarios × {len(policies)} policies, plus "
            f"sensitivity runs) on {args.jobs} processes; load average {load_before:.1f}")
        main_results: dict[str, list[RunResult]] = {s.name: [] for s in scenarios}
        sensitivity: list[RunResult] = []
        done = 0
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for job, results in zip(jobs, pool.map(run_job, jobs)):
                done += 1
                tag = job[0]
                (main_results.get(tag, sensitivity)).extend(results)
                if tag in main_results:
                    summary = ", ".join(f"{r.policy} {r.regret:,.0f}" for r in results)
                    log(f"[{done}/{len(jobs)}] {tag} seed {job[2]}: regret {summary}")
        simulated = time.monotonic() - started
        RAW_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RAW_RESULTS.open("wb") as f:
            pickle.dump({"jobs_signature": jobs_signature(jobs), "main": main_results, "sensitivity": sensitivity,
                         "simulated": simulated, "load_before": load_before,
                         "finished": dt.datetime.now(dt.UTC)}, f)
    log(f"simulations took {simulated / 60:.1f} min; timing decisions")
    times = decision_times()
    for k, t in sorted(times.items()):
        log(f"K = {k}: ours as served {1e6 * t['ours_block_best']:.2f} µs, one select {1e6 * t['ours_best']:.1f} µs, "
            f"MABWiser {1e6 * t['mabwiser_best']:.1f} µs per decision")

    grouped = [by_policy(main_results[s.name]) for s in scenarios]
    regret_policies = [p for p in policies if p != "oracle"]
    out = RAW_RESULTS.parent if args.no_write else DOCS          # --no-write leaves docs/ alone
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "stationary": figure_stationary(grouped[0], scenarios[0], seeds, regret_policies, out),
        "cold-start": figure_cold_start(grouped[1], scenarios[1], seeds, regret_policies, out),
        "drift": figure_drift(grouped[2], scenarios[2], seeds, regret_policies,
                              ["thompson", "thompson-discounted", "thompson-priors-1000",
                               "thompson-discounted-priors"], out),
        "decision-time": figure_decision_time(times, out),
    }
    aims, notes = evaluate_aims(main_results, times, scenarios, sensitivity, args.horizon)
    load_after = os.getloadavg()[0]
    # with --report-only: the simulations of the saved run plus this run's timing and plotting
    wall = (simulated if args.report_only else 0.0) + time.monotonic() - started
    ctx = {
        "seeds": seeds, "main": main_results, "policies": policies, "scenarios": scenarios, "aims": aims,
        "aim_notes": notes, "figures": figures, "times": times,
        "sensitivity": sensitivity_section(sensitivity, list(range(args.sensitivity_seeds)), args.horizon),
        "finished": dt.datetime.now(dt.UTC), "wall": wall, "load_before": load_before,
        "load_after": load_after,
        "versions": {"mabwiser": version("mabwiser"), "gymnasium": version("gymnasium")},
    }
    section = write_report(ctx)
    FULL_REPORT.parent.mkdir(parents=True, exist_ok=True)
    FULL_REPORT.write_text(section)
    if args.no_write:
        print(section)
    else:
        written = write_section("learning", summary(ctx))
        log(f"wrote {written.relative_to(REPO)}, {FULL_REPORT.relative_to(REPO)} and "
            f"{', '.join(p.name for p in figures.values())}")
    for aim in aims:
        log(f"aim {aim['met'].upper()}: {aim['aim']}: {aim['result']}")
    log(f"total {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
