"""Does a click bot poison the learning? Thompson sampling with and without the invalid-click filter.

Simulation (no services): the project's own ThompsonSampler/beta_posterior and clickfilter.classify.
Humans click banner b with its true CTR. A bot wants the worst banner to win: it requests serves until it
is shown that banner and clicks it, from one IP and a few customer IDs, 0.1–3 s after the impression,
with a browser user agent; it makes BOT_SHARE of all clicks. Posteriors are refreshed every REFRESH
impressions, as the server's cache refreshes about once a second.

    .venv/bin/python benchmarks/bench_bots.py            (make bench-bots)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bandits import ThompsonSampler, beta_posterior
from report import stamp, write_section  # this folder
from webapp.serving.click_filter import ClickFilterSettings, classify

TRUE_CTR = np.array([0.020, 0.030, 0.035, 0.040, 0.060])   # banner 0 is the worst, 4 the best
WORST, BEST = 0, 4
CONVERGED = 0.80        # "the best banner wins": it takes at least this share of the late traffic
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"


def run(seed: int, steps: int, bot_share: float, use_filter: bool, refresh: int) -> dict:
    rng = np.random.default_rng(seed)
    sampler = ThompsonSampler(np.random.default_rng(seed + 10_000))
    settings = ClickFilterSettings(enabled=use_filter)
    k = len(TRUE_CTR)
    n, c = np.zeros(k), np.zeros(k)                 # what the posteriors learn from
    alpha, beta = beta_posterior(np.ones(k), np.ones(k), n, c)
    clock = 0.0                                      # simulated seconds; 2 visitors a second
    bot_budget = 0.0
    share_bot = bot_share > 0
    ip_window: dict[tuple[str, int], int] = {}
    customer_window: dict[tuple[str, int], int] = {}
    human_picks = np.zeros(k)
    late_picks = np.zeros(k)
    bot_clicks = human_clicks = flagged = impressions = 0

    def click(user: str, ip: str, delay: float, agent: str, banner: int) -> None:
        nonlocal flagged
        bucket = int((clock + delay) // settings.window_seconds)
        ip_window[(ip, bucket)] = ip_window.get((ip, bucket), 0) + 1
        customer_window[(user, bucket)] = customer_window.get((user, bucket), 0) + 1
        reason = classify(settings, delay_seconds=delay, user_agent=agent,
                          customer_clicks=customer_window[(user, bucket)], ip_clicks=ip_window[(ip, bucket)])
        if reason is None:
            c[banner] += 1
        else:
            flagged += 1

    for step in range(steps):
        clock += 0.5
        arm = sampler.select(alpha, beta)
        n[arm] += 1
        impressions += 1
        human_picks[arm] += 1
        if step >= steps * 0.9:
            late_picks[arm] += 1
        if rng.random() < TRUE_CTR[arm]:
            human_clicks += 1
            click(f"human-{step}", f"10.{step % 250}.{step // 250 % 250}.1", rng.uniform(1.0, 20.0), BROWSER, arm)
            bot_budget += bot_share / (1 - bot_share)
        # the bot's visits: serve until it sees the worst banner
        while share_bot and bot_budget >= 1:
            for _ in range(50):
                bot_arm = sampler.select(alpha, beta)
                n[bot_arm] += 1
                impressions += 1
                if bot_arm == WORST:
                    click(f"bot-{rng.integers(5)}", "203.0.113.7", rng.uniform(0.1, 3.0), BROWSER, WORST)
                    bot_clicks += 1
                    break
            bot_budget -= 1
        if step % refresh == 0:
            alpha, beta = beta_posterior(np.ones(k), np.ones(k), n, c)
    return {"late_share_best": late_picks[BEST] / late_picks.sum(),
            "late_share_worst": late_picks[WORST] / late_picks.sum(),
            "winner": int(np.argmax(late_picks)), "bot_click_share": bot_clicks / max(1, bot_clicks + human_clicks),
            "flagged": flagged, "human_clicks": human_clicks, "bot_clicks": bot_clicks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60_000, help="human visitors per run")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bot-share", type=float, default=0.30)
    parser.add_argument("--refresh", type=int, default=100)
    args = parser.parse_args()
    print(f"true human CTRs {TRUE_CTR.tolist()} (worst = banner {WORST}, best = banner {BEST}); "
          f"{args.steps} human visitors; bot makes {args.bot_share:.0%} of clicks; posterior refresh every "
          f"{args.refresh} impressions; seeds 1..{args.seeds}", flush=True)
    print(f"click filter defaults: {ClickFilterSettings().to_dict()}", flush=True)
    rows = []
    scenarios = [("no bot (reference)", 0.0, True), ("bot, filter on", args.bot_share, True),
                 ("bot, filter off", args.bot_share, False)]
    for name, share, use_filter in scenarios:
        for seed in range(1, args.seeds + 1):
            started = time.perf_counter()
            result = run(seed, args.steps, share, use_filter, args.refresh)
            rows.append((name, seed, result))
            print(f"  {name}, seed={seed}: winner banner {result['winner']}, "
                  f"best banner's share of the last 10% {result['late_share_best']:.1%}, worst's "
                  f"{result['late_share_worst']:.1%}, bot clicks {result['bot_click_share']:.1%} of clicks, "
                  f"flagged {result['flagged']} ({time.perf_counter() - started:.1f}s)", flush=True)
    table = [f"| scenario | seeds where the best banner took ≥ {CONVERGED:.0%} of the last 10% "
             "| best banner's traffic share, last 10% (mean) "
             "| worst banner's share (mean) | bot share of all clicks (mean) | clicks flagged (mean) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, _, _ in scenarios:
        results = [r for n, _, r in rows if n == name]
        table.append(f"| {name} | {sum(r['late_share_best'] >= CONVERGED for r in results)} / {len(results)} "
              f"| {np.mean([r['late_share_best'] for r in results]):.1%} "
              f"| {np.mean([r['late_share_worst'] for r in results]):.1%} "
              f"| {np.mean([r['bot_click_share'] for r in results]):.1%} "
              f"| {np.mean([r['flagged'] for r in results]):.0f} |")
    print("\n" + "\n".join(table))
    write_section("bots", f"{stamp('make bench-bots')} {args.steps:,} human visitors, seeds 1–{args.seeds}.\n\n"
                  + "\n".join(table))


if __name__ == "__main__":
    main()
