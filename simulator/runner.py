"""Run a policy through a scenario and measure it.

Seeds: the environment is reset with ``seed`` (problem instance and visitor stream); the policy's random
generator is seeded with ``(seed, crc32(policy name))``, so each policy has its own reproducible stream and
all policies of one seed face the same visitors (common random numbers, see :mod:`simulator.env`).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulator.env import BannerSlotEnv
from simulator.policies import POLICIES, Oracle
from simulator.scenario import Scenario

SHARE_BLOCK = 2000          # impressions per block when measuring the share of the best banner (slot-wide)
NEW_CITY_BLOCK = 200        # the same, counted in the new city's own impressions
TARGET_SHARE = 0.9
SHARES = (0.5, 0.9)         # thresholds reported (0.9 is the drift aim's; 0.5 shows progress short of it)
CURVE_POINTS = 200


def policy_rng(seed: int, policy: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(policy.encode())])


def make_policy(name: str, env: BannerSlotEnv, seed: int, **params: Any):
    """A fresh policy for ``env`` by name (``"oracle"`` or a key of :data:`simulator.policies.POLICIES`)."""
    if name == "oracle":
        return Oracle(env)
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: oracle, {', '.join(POLICIES)}")
    s = env.scenario
    return POLICIES[name](n_banners=s.n_banners, n_cities=s.n_cities, rng=policy_rng(seed, name), **params)


def impressions_to_share(optimal: NDArray[np.bool_], block: int, target: float = TARGET_SHARE) -> int | None:
    """Impressions until the best banner first takes ``target`` of the traffic of a block.

    ``optimal[i]`` says whether impression i (counted from the event: start, drift, new city) went to the
    best banner for its visitor. The stream is cut into consecutive blocks of ``block`` impressions; the
    answer is the end of the first block whose share is ≥ target, or None if no full block reaches it.
    """
    full = optimal.size // block
    if full == 0:
        return None
    shares = optimal[: full * block].reshape(full, block).mean(axis=1)
    hit = np.flatnonzero(shares >= target)
    return int((hit[0] + 1) * block) if hit.size else None


@dataclass
class RunResult:
    """What one (scenario, policy, seed) run produced. Curves are sampled at ``checkpoints``."""

    scenario: str
    policy: str
    seed: int
    params: dict[str, Any]
    horizon: int
    checkpoints: NDArray[np.int64]                 # impressions so far, shape (P,)
    cumulative_regret: NDArray[np.float64]         # shape (P,)
    regret: float                                  # Σ_t p_t(best) − p_t(served)
    expected_clicks: float                         # Σ_t p_t(served)
    oracle_expected_clicks: float                  # Σ_t p_t(best)
    clicks: int                                    # realized
    oracle_clicks: int                             # realized by the oracle on the same coins
    best_share: NDArray[np.float64]                # share of each visitor's best banner per SHARE_BLOCK
    to_share: dict[float, int | None]              # impressions from the start until that share (per block)
    drift: dict[str, Any] = field(default_factory=dict)
    new_city: dict[str, Any] = field(default_factory=dict)
    per_city: dict[str, NDArray[np.float64]] = field(default_factory=dict)   # impressions, regret, … (C,)
    seconds: float = 0.0

    @property
    def clicks_vs_oracle(self) -> float:
        return self.clicks / self.oracle_clicks if self.oracle_clicks else float("nan")

    @property
    def expected_vs_oracle(self) -> float:
        return self.expected_clicks / self.oracle_expected_clicks


def run(scenario: Scenario, policy: str, seed: int, **params: Any) -> RunResult:
    """Run ``policy`` (by name, with ``params``) through one episode of ``scenario`` seeded with ``seed``."""
    started = time.perf_counter()
    env = BannerSlotEnv(scenario)
    obs, _ = env.reset(seed=seed)
    agent = make_policy(policy, env, seed, **params)
    T = scenario.horizon
    regret = np.empty(T)
    expected = np.empty(T)
    optimal = np.empty(T)
    clicks = np.zeros(T, dtype=bool)
    oracle_clicks = np.zeros(T, dtype=bool)
    on_best = np.zeros(T, dtype=bool)
    truncated = False
    while not truncated:
        cities = obs["city"]
        banners = np.asarray(agent.select_actions(cities), dtype=np.int64)
        obs, _, _, truncated, info = env.step(banners)
        t0, n = info["t"], banners.size
        regret[t0:t0 + n] = info["regret"]
        expected[t0:t0 + n] = info["expected_clicks"]
        optimal[t0:t0 + n] = info["optimal_expected_clicks"]
        clicks[t0:t0 + n] = info["clicks"]
        oracle_clicks[t0:t0 + n] = info["optimal_clicks"]
        on_best[t0:t0 + n] = banners == info["optimal_banner"]
        agent.update_params(cities, banners, info["revealed_city"], info["revealed_banner"])

    cumulative = np.cumsum(regret)
    checkpoints = np.unique(np.linspace(0, T, CURVE_POINTS + 1).astype(np.int64)[1:])
    full = T // SHARE_BLOCK
    result = RunResult(
        scenario=scenario.name, policy=policy, seed=seed, params=params, horizon=T,
        checkpoints=checkpoints, cumulative_regret=cumulative[checkpoints - 1],
        regret=float(cumulative[-1]), expected_clicks=float(expected.sum()),
        oracle_expected_clicks=float(optimal.sum()), clicks=int(clicks.sum()),
        oracle_clicks=int(oracle_clicks.sum()),
        best_share=on_best[: full * SHARE_BLOCK].reshape(full, SHARE_BLOCK).mean(axis=1),
        to_share={x: impressions_to_share(on_best, SHARE_BLOCK, x) for x in SHARES},
        per_city={name: np.bincount(env.city, weights=values, minlength=scenario.n_cities)
                  for name, values in (("impressions", None), ("regret", regret), ("expected_clicks", expected),
                                       ("oracle_expected_clicks", optimal))},
    )
    if scenario.drift_at is not None:
        # the new best banner slot-wide (the drifted one), as the drift aim names it
        on_new = env.served[scenario.drift_at:] == env.new_best_banner
        blocks = on_new.size // SHARE_BLOCK
        result.drift = {
            "new_best_banner": env.new_best_banner,
            "new_best_share": on_new[: blocks * SHARE_BLOCK].reshape(blocks, SHARE_BLOCK).mean(axis=1),
            "to_share": {x: impressions_to_share(on_new, SHARE_BLOCK, x) for x in SHARES},
            "regret": float(cumulative[-1] - cumulative[scenario.drift_at - 1]),
        }
    if scenario.new_city_at is not None:
        new = np.flatnonzero((env.city == scenario.n_cities - 1) & (np.arange(T) >= scenario.new_city_at))
        new_regret = np.cumsum(regret[new])
        points = np.unique(np.linspace(0, new.size, CURVE_POINTS + 1).astype(np.int64)[1:])
        result.new_city = {
            "impressions": int(new.size),
            "checkpoints": points,
            "cumulative_regret": new_regret[points - 1] if new.size else np.zeros(0),
            "regret": float(new_regret[-1]) if new.size else 0.0,
            "expected_clicks": float(expected[new].sum()),
            "oracle_expected_clicks": float(optimal[new].sum()),
            "clicks": int(clicks[new].sum()),
            "oracle_clicks": int(oracle_clicks[new].sum()),
            "to_share": {x: impressions_to_share(on_best[new], NEW_CITY_BLOCK, x) for x in SHARES},
        }
    result.seconds = time.perf_counter() - started
    return result
