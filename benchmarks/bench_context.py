#!/usr/bin/env python3
"""Contextual Thompson sampling against per-city Thompson sampling and MABWiser's LinTS and LinUCB.

On the same seeds of two scenarios (simulator/context.py: context matters; only the city matters), each
policy serves HORIZON impressions to visitors with six context features and learns in blocks of BLOCK
impressions — the server's refresh, and MABWiser's batch ``partial_fit`` (its per-step updates are too slow
for 200k impressions), the same for every policy. Regret = Σ (oracle's CTR − chosen banner's CTR) over the
visitors, the oracle knowing every true CTR. Then the decision time per serve at K = 10 and six features:
ours (``ContextualThompson.choose``) vs MABWiser's ``predict`` on one context, one process.
``make bench-context`` (32 seeds × 200k; SEEDS, HORIZON for less); writes its section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import queue
import time
from multiprocessing import Pool

import numpy as np
from sklearn.preprocessing import OneHotEncoder

from bandits.contextual import FEATURES, ContextualThompson, cell_key
from bandits.policy import Context, SlotStatistics
from report import stamp, write_section
from simulator.context import CITY_ONLY, CONTEXT_MATTERS, LEVELS, ContextWorld

SCENARIOS = {"context": CONTEXT_MATTERS, "city": CITY_ONLY}
PEERS = {"MABWiser LinTS (α = 1)": ("LinTS", 1.0), "MABWiser LinTS (α = 0.1)": ("LinTS", 0.1),
         "MABWiser LinUCB (α = 1)": ("LinUCB", 1.0), "MABWiser LinUCB (α = 0.1)": ("LinUCB", 0.1)}
OURS, FIXED = "contextual Thompson (ours)", "contextual Thompson, one λ for every feature (before)"
POLICIES = ("uniform", "per-city Thompson (today)", OURS, *PEERS, "context oracle")


def until(hhmm: str) -> dt.datetime:
    """Today's (UTC) time HH:MM."""
    hour, minute = (int(v) for v in hhmm.split(":"))
    return dt.datetime.now(dt.UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)


def context_of(names: tuple[str, ...]) -> Context:
    level = dict(zip(FEATURES, names))
    return Context(location=level["location"], referrer_id=level["referrer"], hour=int(level["hour"]),
                   weekday=int(level["weekday"]), device=level["device"], segment=level["segment"])


def encoder() -> OneHotEncoder:
    """The one-hot features every linear peer gets: all levels of the six features."""
    return OneHotEncoder(categories=[list(LEVELS[f]) for f in FEATURES], sparse_output=False,
                         handle_unknown="ignore").fit([[LEVELS[f][0] for f in FEATURES]])


def run(scenario: str, policy: str, seed: int, horizon: int, block: int) -> float:
    """Regret of ``policy`` over ``horizon`` impressions of seed ``seed``."""
    world = ContextWorld(SCENARIOS[scenario], seed)
    k = world.scenario.n_banners
    rng = np.random.default_rng(seed + 20_000)
    regret = 0.0
    counts: dict[str, dict[str, list[int]]] = {}
    city = np.zeros((len(LEVELS["location"]), k, 2))
    onehot = encoder() if policy in PEERS else None
    mab = None
    arms = tuple(str(b) for b in range(k))
    for _ in range(0, horizon, block):
        idx = world.levels(block)
        p = world.ctr(idx)
        if policy == "uniform":
            chosen = rng.integers(0, k, block)
        elif policy == "context oracle":
            chosen = p.argmax(axis=1)
        elif policy == "per-city Thompson (today)":
            a = 1 + city[idx[:, 0], :, 1]
            b = 1 + city[idx[:, 0], :, 0] - city[idx[:, 0], :, 1]
            chosen = rng.beta(a, b).argmax(axis=1)
        elif policy in (OURS, FIXED):
            # The server's refit from the (cell, banner) counts, then one fresh Thompson draw per visitor in
            # its cell: sample_arms, the same distribution as choose's blocks of draws within a snapshot.
            stats = SlotStatistics(context_features=FEATURES, max_levels=32, context_counts=counts)
            model = ContextualThompson(arms, stats, max_draws=4096, empirical_prior=policy == OURS)
            names = ContextWorld.names(idx)
            chosen = model.sample_arms(names, rng)
        else:
            x = onehot.transform(np.array(ContextWorld.names(idx), dtype=object))
            chosen = rng.integers(0, k, block) if mab is None else np.asarray(mab.predict(x), dtype=int)
        clicks = rng.random(block) < p[np.arange(block), chosen]
        regret += float((p.max(axis=1) - p[np.arange(block), chosen]).sum())
        if policy == "per-city Thompson (today)":
            np.add.at(city, (idx[:, 0], chosen, 0), 1)
            np.add.at(city, (idx[:, 0], chosen, 1), clicks)
        elif policy in (OURS, FIXED):
            for names, arm, click in zip(ContextWorld.names(idx), chosen.tolist(), clicks.tolist()):
                cell = counts.setdefault(cell_key(FEATURES, names), {})
                n_c = cell.setdefault(str(arm), [0, 0])
                n_c[0] += 1
                n_c[1] += int(click)
        elif policy in PEERS:
            from mabwiser.mab import MAB, LearningPolicy
            kind, alpha = PEERS[policy]
            if mab is None:
                learning = getattr(LearningPolicy, kind)(alpha=alpha)
                mab = MAB(list(range(k)), learning, seed=seed)
                mab.fit(chosen.tolist(), clicks.astype(int).tolist(), x)
            else:
                mab.partial_fit(chosen.tolist(), clicks.astype(int).tolist(), x)
    return regret


def job(args: tuple[str, str, int, int, int]) -> tuple[str, str, int, float, float]:
    scenario, policy, seed, horizon, block = args
    started = time.perf_counter()
    return scenario, policy, seed, run(scenario, policy, seed, horizon, block), time.perf_counter() - started


def decision_times(seed: int = 0, serves: int = 20_000) -> dict[str, float]:
    """µs per decision at K = 10 and six features, after 200k impressions of learning (MABWiser: 50k; one
    process); and the refit's time after 50k and 200k."""
    world = ContextWorld(CONTEXT_MATTERS, seed)
    rng = np.random.default_rng(seed)
    arms = tuple(str(b) for b in range(world.scenario.n_banners))
    idx = world.levels(50_000)
    chosen = rng.integers(0, len(arms), len(idx))
    clicks = rng.random(len(idx)) < world.ctr(idx)[np.arange(len(idx)), chosen]
    counts: dict[str, dict[str, list[int]]] = {}
    names = ContextWorld.names(idx)
    for n, arm, click in zip(names, chosen.tolist(), clicks.tolist()):
        c = counts.setdefault(cell_key(FEATURES, n), {}).setdefault(str(arm), [0, 0])
        c[0] += 1
        c[1] += int(click)
    refits = {}
    for n in (50_000, 200_000):     # the counts of the first n impressions (a worker's refit, best of 3)
        if n > len(idx):
            more = world.levels(n - len(idx))
            more_arms = rng.integers(0, len(arms), len(more))
            more_clicks = rng.random(len(more)) < world.ctr(more)[np.arange(len(more)), more_arms]
            for levels, arm, click in zip(ContextWorld.names(more), more_arms.tolist(), more_clicks.tolist()):
                c = counts.setdefault(cell_key(FEATURES, levels), {}).setdefault(str(arm), [0, 0])
                c[0] += 1
                c[1] += int(click)
        statistics = SlotStatistics(context_features=FEATURES, max_levels=32, context_counts=counts)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            ContextualThompson.from_statistics(arms, statistics, max_draws=4096)
            times.append(time.perf_counter() - started)
        refits[f"ours: refit from the counts of {n // 1000}k impressions, {len(counts):,} cells "
               "(ms, once per refresh; best of 3)"] = min(times) * 1e3
    model = ContextualThompson.from_statistics(arms, SlotStatistics(
        context_features=FEATURES, max_levels=32, context_counts=counts), max_draws=4096)
    requests = [context_of(n) for n in ContextWorld.names(world.levels(serves))]
    started = time.perf_counter()
    for context in requests:
        model.choose(context, rng)
    first = (time.perf_counter() - started) / serves
    started = time.perf_counter()
    for context in requests:
        model.choose(context, rng)
    warm = (time.perf_counter() - started) / serves
    from mabwiser.mab import MAB, LearningPolicy
    onehot = encoder()
    x = onehot.transform(np.array(names, dtype=object))
    result = {**refits,
              "ours: choose, first pass (cells' first serves included)": first * 1e6,
              "ours: choose, cells already served this snapshot": warm * 1e6}
    probe = onehot.transform(np.array(ContextWorld.names(world.levels(500)), dtype=object))
    for kind in ("LinTS", "LinUCB"):
        mab = MAB(list(range(len(arms))), getattr(LearningPolicy, kind)(alpha=1.0), seed=seed)
        mab.fit(chosen.tolist(), clicks.astype(int).tolist(), x)
        started = time.perf_counter()
        for row in probe:
            mab.predict(row[None, :])
        result[f"MABWiser {kind}: predict, one context"] = (time.perf_counter() - started) / len(probe) * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=200_000)
    parser.add_argument("--block", type=int, default=2_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    parser.add_argument("--policies", default="", help="comma-separated subset of the policies (tuning runs)")
    parser.add_argument("--with-fixed", action="store_true", help=f"also run '{FIXED}'")
    parser.add_argument("--no-timing", action="store_true", help="skip the decision-time measurement")
    parser.add_argument("--deadline", default="", help="HH:MM (UTC): start no run after it; report whole seeds")
    parser.add_argument("--peer-alphas", default="1,0.1", help="α of the MABWiser peers to run (comma-separated)")
    args = parser.parse_args()
    if args.horizon % args.block:
        parser.error("--block must divide --horizon")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    print(f"seeds {seeds}; horizon {args.horizon:,}; blocks of {args.block:,}", flush=True)
    for scenario in SCENARIOS.values():
        print(scenario.describe(), flush=True)
    alphas = {float(a) for a in args.peer_alphas.split(",")}
    policies = [p for p in POLICIES if (not args.policies or p in args.policies.split(","))
                and (p not in PEERS or PEERS[p][1] in alphas)]
    if args.with_fixed:
        policies.insert(policies.index(OURS) + 1 if OURS in policies else 0, FIXED)
    print(f"policies: {', '.join(policies)}", flush=True)
    jobs = [(sc, policy, seed, args.horizon, args.block) for seed in seeds for sc in SCENARIOS for policy in policies]
    regret: dict[tuple[str, str], dict[int, float]] = {}
    finished: queue.SimpleQueue = queue.SimpleQueue()
    deadline = until(args.deadline) if args.deadline else None
    pool = Pool(args.jobs)
    try:
        for one in jobs:        # seed by seed: the seeds done when a deadline stops the run are whole
            pool.apply_async(job, (one,), callback=finished.put, error_callback=finished.put)
        for done in range(1, len(jobs) + 1):
            wait = None if deadline is None else max(0.0, (deadline - dt.datetime.now(dt.UTC)).total_seconds())
            try:
                result = finished.get(timeout=wait)
            except queue.Empty:
                print(f"deadline {args.deadline} UTC reached after {done - 1} of {len(jobs)} runs: stopping",
                      flush=True)
                break
            if isinstance(result, BaseException):
                raise result
            sc, policy, seed, value, seconds = result
            regret.setdefault((sc, policy), {})[seed] = value
            print(f"  [{done}/{len(jobs)}] {sc}, seed {seed}: {policy}: regret {value:,.0f} ({seconds:.0f}s)",
                  flush=True)
    finally:
        pool.terminate()
        pool.join()
    asked = len(seeds)
    seeds = [s for s in seeds if all(s in regret.get((sc, p), {}) for sc in SCENARIOS for p in policies)]
    if not seeds:
        raise SystemExit("no seed finished for every policy")
    print(f"seeds finished for every policy: {seeds}", flush=True)

    def mean_se(sc: str, policy: str) -> tuple[float, float]:
        values = np.array([regret[(sc, policy)][s] for s in seeds])
        return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0

    stopped = "" if len(seeds) == asked else \
        f" — of {asked} asked: the run stopped at its deadline ({args.deadline} UTC)"
    lines = [f"Seeds {', '.join(map(str, seeds))} ({len(seeds)}{stopped}), {args.horizon:,} impressions each, "
             "learning in blocks of "
             f"{args.block:,} for every policy (MABWiser: `partial_fit` per block). Regret: expected clicks lost "
             "to the context oracle (mean ± standard error over seeds).", "",
             "| policy | " + " | ".join(f"{SCENARIOS[sc].name}: regret" for sc in SCENARIOS) + " |",
             "| --- | " + " | ".join("---:" for _ in SCENARIOS) + " |"]
    for policy in policies:
        cells = []
        for sc in SCENARIOS:
            m, se = mean_se(sc, policy)
            cells.append(f"{m:,.0f} ± {se:,.0f}")
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    ours, today = OURS, "per-city Thompson (today)"
    lints = [p for p in policies if p.startswith("MABWiser LinTS")]
    lines += ["", "| aim | measured | reference | holds |", "| --- | ---: | ---: | --- |"]
    for sc, limit in (("context", 0.60), ("city", 1.15)):
        if ours not in policies or today not in policies:
            break
        ratio = mean_se(sc, ours)[0] / mean_se(sc, today)[0]
        peers = ", ".join(f"{p} {mean_se(sc, p)[0] / mean_se(sc, today)[0]:.0%}" for p in policies
                          if p.startswith("MABWiser"))
        lines.append(f"| {SCENARIOS[sc].name}: our regret ≤ {limit:.0%} of per-city Thompson's | {ratio:.0%} | "
                     f"per-city Thompson {mean_se(sc, today)[0]:,.0f}; the peers: {peers or '-'} | "
                     f"{'yes' if ratio <= limit else 'no'} |")
        if not lints:
            continue
        best = min(lints, key=lambda p: mean_se(sc, p)[0])
        diff = np.array([regret[(sc, ours)][s] - regret[(sc, best)][s] for s in seeds])
        noise = 2 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        lines.append(f"| {SCENARIOS[sc].name}: no worse than the best MABWiser LinTS beyond noise | "
                     f"ours − LinTS = {diff.mean():,.0f} (2 s.e. {noise:,.0f}) | {best} {mean_se(sc, best)[0]:,.0f} | "
                     f"{'yes' if diff.mean() <= noise else 'no'} |")
    print("\n" + "\n".join(lines), flush=True)
    timing: list[str] = []
    if not args.no_timing:
        print("\ndecision time (one process) ...", flush=True)
        timing = timings()
        print("\n".join(timing), flush=True)
    if not args.no_write:
        extra = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in
                         (("jobs", args.jobs), ("peer_alphas", args.peer_alphas), ("deadline", args.deadline))
                         if value and (name != "peer_alphas" or value != "1,0.1"))
        command = f"make bench-context SEEDS={args.seeds} HORIZON={args.horizon}" + \
            (f" CONTEXT_ARGS='{extra}'" if extra else "")
        write_section("context", f"{stamp(command)}\n\n" + "\n".join(lines + timing))
        print("wrote the context section of docs/BENCHMARKS.md", flush=True)


def timings() -> list[str]:
    times = decision_times()
    timing = ["", "Decision time at K = 10, six features (one process; ours after 200k impressions of learning, "
              "MABWiser after 50k: its fit is per impression):", "",
              "| what | time |", "| --- | ---: |"]
    for label, value in times.items():
        unit = "ms" if "(ms" in label else "µs"
        timing.append(f"| {label.replace(' (ms, ', ' (')} | {value:,.1f} {unit} |")
    return timing


if __name__ == "__main__":
    main()
