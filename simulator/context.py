"""Visitors with context, for the contextual benchmark (benchmarks/bench_context.py).

Each visitor has a city, a referrer, an hour and weekday (local), a device and a segment, drawn independently
(cities and referrers Zipf-skewed, hours by a daily cycle). Banner b's click probability for a visitor is

    logit p_b(x) = μ_b + δ_{city,b} + Σ_f γ_{f, level_f(x), b}

with μ_b ~ N(logit(base_ctr), banner_spread²), δ ~ N(0, city_spread²) and, for each context feature f and each
of its levels, γ ~ N(0, strength_f²): the *interactions* whose strength decides whether context matters. Two
presets: CONTEXT_MATTERS (referrer, device and segment each move banners by 0.8 on the logit scale, hour by
0.3) and CITY_ONLY (no interaction: only the city matters). Pure numpy; seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from bandits.contextual import FEATURES

CITIES = ("mumbai", "delhi", "bengaluru", "pune", "chennai")
LEVELS = {
    "location": CITIES,
    "referrer": ("newsletter", "search", "social", "partner"),
    "hour": tuple(str(h) for h in range(24)),
    "weekday": tuple(str(d) for d in range(7)),
    "device": ("mobile", "tablet", "desktop"),
    "segment": ("new", "returning", "vip"),
}


@dataclass(frozen=True)
class ContextScenario:
    name: str
    n_banners: int = 10
    base_ctr: float = 0.03
    banner_spread: float = 0.3
    city_spread: float = 0.4
    strength: dict[str, float] = field(default_factory=dict)   # feature → interaction sd (logit); 0 = none

    def __post_init__(self) -> None:
        if self.n_banners < 2:
            raise ValueError("n_banners must be ≥ 2")
        if not 0 < self.base_ctr < 0.5:
            raise ValueError("base_ctr must be in (0, 0.5)")
        unknown = set(self.strength) - set(FEATURES) - {"location"}
        if unknown or any(v < 0 for v in self.strength.values()):
            raise ValueError(f"strength: unknown features {unknown} or negative values")

    def describe(self) -> str:
        moved = ", ".join(f"{f} {s:g}" for f, s in self.strength.items() if s) or "none"
        return (f"{self.name}: K = {self.n_banners}, base CTR {self.base_ctr:.0%}, city spread {self.city_spread:g}, "
                f"interactions (logit sd) {moved}")


CONTEXT_MATTERS = ContextScenario("context matters", strength={"referrer": 0.8, "device": 0.8, "segment": 0.8,
                                                               "hour": 0.3})
CITY_ONLY = ContextScenario("only the city matters", city_spread=0.6)


class ContextWorld:
    """One seed's true CTRs and visitor stream. ``levels(n)`` → (n, 6) level indices in FEATURES order;
    ``ctr(idx)`` → (n, K) true click probabilities."""

    def __init__(self, scenario: ContextScenario, seed: int) -> None:
        self.scenario = scenario
        rng = np.random.default_rng(seed)
        k = scenario.n_banners
        logit = np.log(scenario.base_ctr / (1 - scenario.base_ctr))
        self.mu = rng.normal(logit, scenario.banner_spread, k)
        self.effects = []
        for feature in FEATURES:
            sd = scenario.city_spread if feature == "location" else scenario.strength.get(feature, 0.0)
            self.effects.append(rng.normal(0.0, sd, (len(LEVELS[feature]), k)) if sd else
                                np.zeros((len(LEVELS[feature]), k)))
        self.weights = []
        for feature in FEATURES:
            n = len(LEVELS[feature])
            if feature in ("location", "referrer"):
                w = 1.0 / np.arange(1, n + 1)                               # Zipf
            elif feature == "hour":
                w = 1.0 + 0.8 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)   # evening peak
            else:
                w = np.ones(n)
            self.weights.append(w / w.sum())
        self.rng = np.random.default_rng(seed + 10_000)

    def levels(self, n: int) -> NDArray[np.int64]:
        return np.stack([self.rng.choice(len(w), size=n, p=w) for w in self.weights], axis=1)

    def ctr(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        z = self.mu[None, :] + sum(effect[idx[:, j]] for j, effect in enumerate(self.effects))
        return 1.0 / (1.0 + np.exp(-z))

    @staticmethod
    def names(idx: NDArray[np.int64]) -> list[tuple[str, ...]]:
        return [tuple(LEVELS[f][i] for f, i in zip(FEATURES, row)) for row in idx]
