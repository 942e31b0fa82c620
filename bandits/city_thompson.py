"""Per-city Beta-Bernoulli Thompson sampling: the first :class:`bandits.policy.Policy`.

For arm (banner) b at location ℓ, with n impressions and c clicks counted there (time-decayed counts when
the slot decays) and the prior (α0, β0) of :func:`bandits.policy.prior_for` (location → slot-wide → Beta(1, 1)):

    θ_b ~ Beta(α0 + c, β0 + n − c),  serve argmax_b θ_b          (Thompson 1933; Chapelle & Li 2011)

A location the slot has no counts or priors for (or no location) uses the slot-wide posterior: slot-wide
counts with the slot-wide prior. Decisions come from blocks of precomputed independent joint draws
(:func:`bandits.thompson.thompson_winners`): each choice takes the next one, so every choice is still a
fresh draw from the current posterior, and a block's win frequencies are the propensities.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from bandits.policy import ArmExplanation, Choice, Context, SlotStatistics, prior_for
from bandits.thompson import BetaPrior, beta_posterior, thompson_winners, win_probabilities
from eventlog.counting import SLOT_WIDE

FIRST_BLOCK = 512       # draws precomputed for a (slot, location) at its first choice of a snapshot


@dataclass
class Posterior:
    """Posterior of the arms at one location; arrays have shape (K,). ``scope``: 'location' or 'slot'."""

    scope: str
    alpha: NDArray[np.float64]
    beta: NDArray[np.float64]
    priors: tuple[BetaPrior, ...]
    _states: tuple[tuple[dict, str], ...] = ()          # per arm: (logged state, its JSON)
    _choices: tuple[Choice, ...] = ()                   # per arm, for the current block
    _winners: list[int] | None = None
    _cursor: int = 0

    def __post_init__(self) -> None:
        states = []
        for a, b, prior in zip(self.alpha.tolist(), self.beta.tolist(), self.priors):
            state = {"scope": self.scope, "alpha": a, "beta": b, "prior": prior.source}
            states.append((state, json.dumps(state, separators=(",", ":"))))
        self._states = tuple(states)

    @property
    def prior_sources(self) -> tuple[str, ...]:
        return tuple(p.source for p in self.priors)

    def choose(self, rng: np.random.Generator, max_draws: int) -> Choice:
        """The next decision of the current block. Not thread-safe: the caller holds a lock."""
        if self._winners is None or self._cursor >= len(self._winners):
            # Blocks grow while a location is busy: a rarely served city costs FIRST_BLOCK draws per snapshot.
            size = min(max_draws, FIRST_BLOCK if self._winners is None else 2 * len(self._winners))
            winners = thompson_winners(self.alpha, self.beta, rng, size)
            propensities = (np.bincount(winners, minlength=len(self.alpha)) / size).tolist()
            self._choices = tuple(Choice(i, p, state, text)
                                  for i, (p, (state, text)) in enumerate(zip(propensities, self._states)))
            self._winners = winners.tolist()
            self._cursor = 0
        choice = self._choices[self._winners[self._cursor]]
        self._cursor += 1
        return choice


class CityThompson:
    """Per-city Beta-Bernoulli Thompson sampling over ``arms`` (see the module doc).

    Parameters
    ----------
    arms : sequence of str, length K ≥ 1
        The servable banners, in a fixed order (a choice's ``arm`` indexes it).
    statistics : SlotStatistics
    max_draws : int
        Largest block of precomputed draws per location and snapshot.
    """

    name: ClassVar[str] = "thompson"

    def __init__(self, arms: Sequence[str], statistics: SlotStatistics, *, max_draws: int = 4096) -> None:
        if max_draws < 1:
            raise ValueError(f"max_draws must be ≥ 1, got {max_draws!r}")
        self.arms = tuple(arms)
        self.statistics = statistics
        self.max_draws = max_draws
        self._posteriors: dict[str, Posterior] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_statistics(cls, arms: Sequence[str], statistics: SlotStatistics, *, max_draws: int = 4096
                        ) -> CityThompson:
        return cls(arms, statistics, max_draws=max_draws)

    def has_location(self, location: str) -> bool:
        return location != SLOT_WIDE and (location in self.statistics.counts or location in self.statistics.priors)

    def posterior(self, location: str) -> Posterior:
        """The posterior used at ``location`` (slot-wide when the location is unknown), built once."""
        key = location if self.has_location(location) else SLOT_WIDE
        found = self._posteriors.get(key)
        if found is None:
            with self._lock:
                found = self._posteriors.get(key)
                if found is None:
                    found = self._posteriors[key] = self._build(key)
        return found

    def _build(self, location: str) -> Posterior:
        counts = self.statistics.counts.get(location, {})
        priors = tuple(prior_for(self.statistics.priors, location, arm) for arm in self.arms)
        observed = np.array([counts.get(arm, (0, 0)) for arm in self.arms], dtype=np.float64)
        observed = observed.reshape(len(self.arms), 2)                      # (K, 2): impressions, clicks
        alpha, beta = beta_posterior([p.alpha for p in priors], [p.beta for p in priors],
                                     observed[:, 0], observed[:, 1])
        return Posterior("slot" if location == SLOT_WIDE else "location", alpha, beta, priors)

    def choose(self, context: Context, rng: np.random.Generator) -> Choice:
        """One Thompson decision at the context's location. Not thread-safe: the caller holds a lock."""
        if not self.arms:
            raise ValueError("cannot choose from zero arms")
        return self.posterior(context.location).choose(rng, self.max_draws)

    def explain(self, context: Context, rng: np.random.Generator, draws: int = 20_000) -> list[ArmExplanation]:
        """Each arm's posterior at the context's location and P(best) = P(θ_b = max_j θ_j), by Monte Carlo
        over ``draws`` joint draws (standard error ≤ 0.5/√draws)."""
        posterior = self.posterior(context.location)
        p_best = win_probabilities(posterior.alpha, posterior.beta, rng, draws)
        return [ArmExplanation(arm, float(a), float(b), prior, float(p))
                for arm, a, b, prior, p in zip(self.arms, posterior.alpha, posterior.beta, posterior.priors, p_best)]
