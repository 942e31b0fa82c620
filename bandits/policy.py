"""The policy interface: how the server chooses a banner for a request, what it logs, and how it explains.

A policy is built from the statistics the server reads for a slot (counters and priors), for the slot's
servable banners (its *arms*, in a fixed order), and then answers, for each request's context:

- ``choose(context, rng)`` → :class:`Choice`: the arm, its propensity P(arm | context) and the policy's
  state for that choice, a small JSON-able dict the impression row logs (``policy_state``) so that the
  choice can be evaluated offline later;
- ``explain(context, rng, draws)`` → one :class:`ArmExplanation` per arm: its posterior and P(best), for the
  stats API and the dashboard.

Implementations live beside this module (bandits/city_thompson.py is the first) and are registered by name in
:data:`bandits.registry.POLICIES`; a slot names its policy (``slots.policy``, null = ``DEFAULT_POLICY``).
Pure: no Flask, Cassandra or Spark here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from bandits.thompson import UNIFORM_PRIOR, BetaPrior
from eventlog.counting import SLOT_WIDE

Counts = Mapping[str, Mapping[str, tuple[float, float]]]      # location → banner → (impressions, clicks)
Priors = Mapping[str, Mapping[str, BetaPrior]]                # location → banner → prior
CellCounts = Mapping[str, Mapping[str, tuple[float, float]]]  # context cell → banner → (impressions, clicks)


class Context(NamedTuple):
    """What the policy knows about one request. ``location`` is normalized ('' = none); ``hour`` (0–23) and
    ``weekday`` (0 = Monday) are the serve time in the tenant's time zone (None = unknown); ``device`` is
    'mobile', 'tablet', 'desktop' or 'other' ('' = unknown); ``segment`` is the publisher's ('' = none).
    Per-city Thompson sampling reads only ``location``; the contextual policy reads the slot's features."""

    location: str = SLOT_WIDE
    customer_id: str = ""
    referrer_id: str = ""
    hour: int | None = None
    weekday: int | None = None
    device: str = ""
    segment: str = ""


class Choice(NamedTuple):
    """One decision. ``state`` is shared by every choice of the same arm from the same policy state: read
    it, never change it; ``state_json`` is ``json.dumps(state)``, made once per state, not per request."""

    arm: int                    # index into the policy's arms
    propensity: float           # P(this arm is chosen | context) under the policy's current state
    state: Mapping[str, Any]    # the policy's state for this choice (JSON-able), logged with the impression
    state_json: str


@dataclass(frozen=True)
class ArmExplanation:
    """Why an arm would (not) be chosen: its posterior Beta(alpha, beta) with its prior, and P(best)."""

    arm: str
    alpha: float
    beta: float
    prior: BetaPrior
    p_best: float               # P(this arm has the highest expected reward), among the policy's arms

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


@dataclass(frozen=True)
class SlotStatistics:
    """What the server has stored for one slot: counts (cumulative, or time-decayed when the slot decays)
    and priors, by location ('' = slot-wide) and banner; for a contextual slot, its context features
    (``slots.context``), the cap on levels per feature, and the cumulative counts per context cell and banner
    (``context_counts``, bandits/contextual.py)."""

    counts: Counts = field(default_factory=dict)
    priors: Priors = field(default_factory=dict)
    context_features: tuple[str, ...] = ()
    context_counts: CellCounts = field(default_factory=dict)
    max_levels: int = 16


def prior_for(priors: Priors, location: str, banner_id: str) -> BetaPrior:
    """The prior of ``banner_id`` at ``location``: the location's prior, else the slot-wide prior, else
    Beta(1, 1). (The slot-wide location '' takes the slot-wide prior.)"""
    if location != SLOT_WIDE:
        found = priors.get(location, {}).get(banner_id)
        if found is not None:
            return found
    return priors.get(SLOT_WIDE, {}).get(banner_id) or UNIFORM_PRIOR


@runtime_checkable
class Policy(Protocol):
    """A server-side policy for one slot's snapshot of statistics. ``choose`` is not required to be
    thread-safe: the server calls it under a lock, with its own seeded generator."""

    name: ClassVar[str]
    arms: tuple[str, ...]

    @classmethod
    def from_statistics(cls, arms: Sequence[str], statistics: SlotStatistics, *, max_draws: int) -> Policy:
        """The policy for ``arms`` given the stored statistics; ``max_draws`` bounds per-snapshot Monte Carlo."""
        ...

    def choose(self, context: Context, rng: np.random.Generator) -> Choice:
        ...

    def explain(self, context: Context, rng: np.random.Generator, draws: int) -> list[ArmExplanation]:
        ...
