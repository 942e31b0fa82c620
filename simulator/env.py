"""A simulated banner slot as a Gymnasium environment.

One environment step is one posterior-refresh interval of the slot: ``Scenario.batch_size`` visitors
arrive (each from a city, at a local hour), the agent picks a banner for each of them (all from the same
posterior snapshot, as the server does between two refreshes of its cache), and the environment answers
with the clicks. With ``batch_size = 1`` it is the classic one-impression-per-step bandit.

Spaces (n = batch_size, C = cities, K = banners)::

    observation  {"city": MultiDiscrete([C] * n), "hour": MultiDiscrete([24] * n)}   # hour in the tenant's zone
    action       MultiDiscrete([K] * n)                                               # a banner per visitor
    reward       clicks that became known in this step (delayed clicks count when they arrive)

``info`` carries what a policy may learn from (``revealed_*``: impression index, city and banner of each
click that became known in this step) and what only the evaluation may see (true expected clicks, the
oracle's choice, regret). Everything random — the problem instance (true CTRs) and the visitor stream
(cities, hours, click coins, click delays) — is drawn in :meth:`BannerSlotEnv.reset` from its seed, so
two policies run on the same seed face the same visitors and the same coins (common random numbers): a
visitor who would click banner b with probability p clicks iff her coin u < p, whoever served b.

Regret is the pseudo-regret: for the visitor at t, ``p_t(best) − p_t(served)``, the oracle's expected
clicks minus the policy's (Lattimore & Szepesvári, *Bandit Algorithms*, 2020, ch. 4).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simulator.scenario import STATIONARY, Scenario


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


class BannerSlotEnv(gym.Env):
    """K banners, cities with their own true CTRs, hour-of-day modulation, optional drift, cold start and
    click delays. See :mod:`simulator.scenario` for the generative model and the parameters.

    Attributes (after :meth:`reset`)
    --------------------------------
    true_ctr : ndarray, shape (phases, C, K)
        Hour-free true CTR p_cb; phase 0 before the drift, 1 after (only one phase without drift).
    city_weights : ndarray, shape (phases, C)
        Arrival mix; phase 1 is after the new city appears (only one phase without a new city).
    city, hour, modulation : ndarray, shape (horizon,)
        The visitor stream: city index, local hour, m(hour).
    new_best_banner : int
        The best banner slot-wide after the drift (the one the drift promoted).
    served : ndarray, shape (horizon,)
        The banner served to each visitor so far (−1 for visitors still to come).
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario = STATIONARY) -> None:
        if not isinstance(scenario, Scenario):
            raise ValueError(f"scenario must be a simulator.Scenario, got {type(scenario).__name__}")
        self.scenario = scenario
        n, c, k = scenario.batch_size, scenario.n_cities, scenario.n_banners
        self.observation_space = spaces.Dict({"city": spaces.MultiDiscrete([c] * n),
                                              "hour": spaces.MultiDiscrete([24] * n)})
        self.action_space = spaces.MultiDiscrete([k] * n)
        self._t: int | None = None

    # -- episode ----------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, NDArray[np.int64]], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        self._draw_instance(rng)
        self._draw_stream(rng)
        self._t = 0
        self.served = np.full(self.scenario.horizon, -1, dtype=np.int64)
        self._pending_index = np.zeros(0, dtype=np.int64)        # clicked impressions not yet revealed
        self._pending_reveal = np.zeros(0, dtype=np.int64)       # index of the impression they arrive at
        return self._observation(), {"true_ctr": self.true_ctr, "city_weights": self.city_weights}

    def step(self, action) -> tuple[dict[str, NDArray[np.int64]], float, bool, bool, dict[str, Any]]:
        if self._t is None:
            raise RuntimeError("call reset() before step()")
        s = self.scenario
        t0 = self._t
        if t0 >= s.horizon:
            raise RuntimeError("the episode is over (truncated at the horizon): call reset()")
        t1 = t0 + s.batch_size
        banner = np.asarray(action)
        if banner.shape != (s.batch_size,) or not np.issubdtype(banner.dtype, np.integer) or (
                banner.min() < 0 or banner.max() >= s.n_banners):
            raise ValueError(f"action must be {s.batch_size} banner indices in [0, {s.n_banners}), "
                             f"got {action!r}")
        city = self.city[t0:t1]
        phase = self._ctr_phase[t0:t1]
        m = self.modulation[t0:t1]
        expected = np.minimum(self.true_ctr[phase, city, banner] * m, 1.0)     # p_t(served), shape (n,)
        optimal = self._optimal_expected[t0:t1]                                 # p_t(best), shape (n,)
        coins = self._coins[t0:t1]
        clicks = coins < expected
        self.served[t0:t1] = banner

        clicked = t0 + np.flatnonzero(clicks)
        reveal_at = clicked + self._delay[clicked]
        pending_index = np.concatenate([self._pending_index, clicked])
        pending_reveal = np.concatenate([self._pending_reveal, reveal_at])
        known = pending_reveal < t1                                            # happened before this refresh
        order = np.argsort(pending_reveal[known], kind="stable")
        revealed = pending_index[known][order]
        self._pending_index, self._pending_reveal = pending_index[~known], pending_reveal[~known]

        self._t = t1
        truncated = t1 >= s.horizon
        info = {
            "t": t0,
            "city": city,
            "banner": banner,
            "clicks": clicks,
            "expected_clicks": expected,
            "optimal_expected_clicks": optimal,
            "optimal_clicks": coins < optimal,
            "optimal_banner": self._optimal_banner[t0:t1],
            "regret": optimal - expected,
            "revealed_impressions": revealed,
            "revealed_city": self.city[revealed],
            "revealed_banner": self.served[revealed],
        }
        return self._observation(), float(revealed.size), False, truncated, info

    # -- what an oracle (and the evaluation) may see ------------------------------------------------------

    def optimal_banners(self) -> NDArray[np.int64]:
        """The best banner for each visitor of the current observation, shape (batch_size,)."""
        if self._t is None or self._t >= self.scenario.horizon:
            raise RuntimeError("no current observation: call reset()")
        return self._optimal_banner[self._t: self._t + self.scenario.batch_size]

    @property
    def t(self) -> int:
        """Index of the next impression."""
        return 0 if self._t is None else self._t

    # -- drawing ------------------------------------------------------------------------------------------

    def _draw_instance(self, rng: np.random.Generator) -> None:
        s = self.scenario
        mu = np.log(s.base_ctr / (1 - s.base_ctr)) + s.banner_spread * rng.standard_normal(s.n_banners)
        delta = s.city_spread * rng.standard_normal((s.n_cities, s.n_banners))        # shape (C, K)
        self.slot_logit = [mu]
        if s.drift_at is not None:
            best, worst = int(np.argmax(mu)), int(np.argmin(mu))
            after = mu.copy()
            after[worst], after[best] = mu[best] + s.drift_boost, mu[worst]
            self.slot_logit.append(after)
        phases = [_sigmoid(self._city_logits(slot) + delta) for slot in self.slot_logit]
        self.new_best_banner = int(np.argmax(self.slot_logit[-1]))     # after the drift (if any)
        self.true_ctr = np.stack(phases)                                               # (phases, C, K)

        weights = 1.0 / np.arange(1, s.n_cities + 1) ** s.arrival_zipf
        if s.new_city_at is None:
            self.city_weights = (weights / weights.sum())[None, :]
        else:
            before = weights.copy()
            before[-1] = 0.0
            before /= before.sum()
            after = before * (1 - s.new_city_share)
            after[-1] = s.new_city_share
            self.city_weights = np.stack([before, after])                              # (phases, C)

    def _city_logits(self, slot: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each city's logits before its deviations δ, shape (C, K): the slot's, but mirrored by rank in the
        scenario's reversed city."""
        logits = np.tile(slot, (self.scenario.n_cities, 1))
        if self.scenario.reversed_city is not None:
            order = np.argsort(slot)
            logits[self.scenario.reversed_city, order] = slot[order[::-1]]
        return logits

    def _draw_stream(self, rng: np.random.Generator) -> None:
        s = self.scenario
        T = s.horizon
        index = np.arange(T)
        arrival_phase = np.zeros(T, dtype=np.int64) if s.new_city_at is None else (index >= s.new_city_at)
        arrival_phase = arrival_phase.astype(np.int64)
        city = np.empty(T, dtype=np.int64)
        for phase in range(self.city_weights.shape[0]):
            where = np.flatnonzero(arrival_phase == phase)
            city[where] = rng.choice(s.n_cities, size=where.size, p=self.city_weights[phase])
        self.city = city
        self.arrival_phase = arrival_phase

        seconds = index * (3600.0 / s.impressions_per_hour)                            # since s.start
        self.hour = _local_hours(s.start, seconds, s.timezone)
        self.modulation = 1.0 + s.hour_amplitude * np.cos(2 * np.pi * (self.hour - s.peak_hour) / 24.0)

        self._ctr_phase = np.zeros(T, dtype=np.int64) if s.drift_at is None else (index >= s.drift_at)
        self._ctr_phase = self._ctr_phase.astype(np.int64)
        per_visitor = self.true_ctr[self._ctr_phase, city]                             # (T, K)
        self._optimal_banner = np.argmax(per_visitor, axis=1)
        self._optimal_expected = np.minimum(per_visitor.max(axis=1) * self.modulation, 1.0)
        self._coins = rng.random(T)
        if s.click_delay_seconds > 0:
            delay_seconds = rng.exponential(s.click_delay_seconds, T)
            self._delay = np.ceil(delay_seconds * s.impressions_per_hour / 3600.0).astype(np.int64)
        else:
            self._delay = np.zeros(T, dtype=np.int64)

    def _observation(self) -> dict[str, NDArray[np.int64]]:
        s = self.scenario
        t0 = min(self.t, s.horizon - s.batch_size)          # after the last step: the last batch again
        return {"city": self.city[t0: t0 + s.batch_size].copy(),
                "hour": self.hour[t0: t0 + s.batch_size].copy()}


def _local_hours(start: dt.datetime, seconds: NDArray[np.float64], timezone: str) -> NDArray[np.int64]:
    """Local hour of day in ``timezone`` of ``start + seconds``; shape of ``seconds``.

    The UTC offset is looked up once per UTC hour (zone offsets change on hour boundaries), so daylight
    saving time and half-hour zones such as IST (+05:30) come out right.
    """
    zone = ZoneInfo(timezone)
    start_utc = start.astimezone(dt.UTC)
    epoch = start_utc.timestamp() + seconds                                             # POSIX seconds
    utc_hour = np.floor(epoch / 3600.0).astype(np.int64)
    unique, inverse = np.unique(utc_hour, return_inverse=True)
    offsets = np.array([dt.datetime.fromtimestamp(h * 3600, tz=dt.UTC).astimezone(zone)
                        .utcoffset().total_seconds() for h in unique])
    local = epoch + offsets[inverse]
    return (np.floor(local / 3600.0).astype(np.int64)) % 24
