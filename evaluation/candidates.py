"""Candidate policies to evaluate offline, by name, and their action probabilities on a logged slot.

A candidate maps a slot's log (a pandas DataFrame, one row per impression in serve order, with at least the
columns ``served_at`` (UTC) and ``location``) and the slot's banners (``arms``, the column order) to
π(· | x_i), shape (n, K). Names (``candidate(name, arms)``):

- ``uniform``                  each banner 1/K (the A/B split);
- ``always:<banner>``          one banner for everyone;
- ``thompson``                 per-city Thompson sampling as the server runs it (Beta(1, 1) priors, cumulative
                               counts): the logging policy, for the on-policy check;
- ``thompson:prior=<s>``       … with an empirical-Bayes slot-wide prior of strength s per banner
                               (Beta(μ_b s, (1 − μ_b) s), μ_b the banner's pooled rate so far);
- ``thompson:half-life=<h>``   … learning from counts decayed with a half-life of h hours;
- ``policy:<name>``            any policy of bandits.registry.POLICIES (e.g. the contextual policy when it is
                               registered), replayed the same way.

Replay: the log is cut into refresh periods (``refresh_seconds``, one hour by default); at the start of each,
the candidate's policy is built by the server's own code (``policy_class(name).from_statistics``) from the
counts the log holds before that moment — the counts the candidate would have learned from, had it seen the same
clicks — and π(· | x) is its P(best) for each logged context (``explain``, a Monte Carlo of ``draws`` joint
draws per context and period: the same probability the server's blocks of draws realize). The candidate learns
from the logged banners and clicks, not from its own: the usual replay approximation of a learning policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bandits.policy import Context, SlotStatistics
from bandits.registry import POLICIES, policy_class
from bandits.thompson import BetaPrior
from eventlog.counting import SLOT_WIDE

REFRESH_SECONDS = 3600
DRAWS = 2000


class UnknownCandidate(ValueError):
    """A candidate name that is not one of the module doc's forms."""


class Candidate(Protocol):
    name: str

    def probabilities(self, log: pd.DataFrame, rng: np.random.Generator) -> NDArray[np.float64]:
        ...


@dataclass(frozen=True)
class Uniform:
    name: str
    arms: tuple[str, ...]

    def probabilities(self, log: pd.DataFrame, rng: np.random.Generator) -> NDArray[np.float64]:
        return np.full((len(log), len(self.arms)), 1.0 / len(self.arms))


@dataclass(frozen=True)
class Always:
    name: str
    arms: tuple[str, ...]
    banner: str

    def probabilities(self, log: pd.DataFrame, rng: np.random.Generator) -> NDArray[np.float64]:
        out = np.zeros((len(log), len(self.arms)))
        out[:, self.arms.index(self.banner)] = 1.0
        return out


@dataclass(frozen=True)
class Replay:
    """A policy of bandits.registry replayed on the log (module doc)."""

    name: str
    arms: tuple[str, ...]
    policy: str = "thompson"
    prior_strength: float | None = None
    half_life_hours: float | None = None
    refresh_seconds: float = REFRESH_SECONDS
    draws: int = DRAWS

    def probabilities(self, log: pd.DataFrame, rng: np.random.Generator,
                      weights: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """π(· | x_i), shape (n, K). ``weights`` (shape (n,), default 1 each): how many times each row counts
        in what the candidate learns, e.g. a bootstrap resample's multiplicities (0: the row is not in it)."""
        k = len(self.arms)
        out = np.empty((len(log), k))
        if len(log) == 0:
            return out
        index = {arm: i for i, arm in enumerate(self.arms)}
        served = pd.to_datetime(log["served_at"], utc=True)
        seconds = ((served - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()
        periods = np.floor(seconds / self.refresh_seconds).astype(np.int64)
        codes, names = pd.factorize(log["location"].fillna(SLOT_WIDE).astype(str), sort=True)
        names = [str(name) for name in names]
        if SLOT_WIDE not in names:
            names.append(SLOT_WIDE)
        wide = names.index(SLOT_WIDE)
        arms = log["banner_id"].map(index).to_numpy(dtype=np.float64)       # NaN: a banner not in ``arms``
        valid = ~np.isnan(arms)
        cells = np.where(valid, codes * k + np.nan_to_num(arms).astype(np.int64), 0)   # (location, banner)
        counted = np.ones(len(log)) if weights is None else np.asarray(weights, dtype=np.float64)
        counted = np.where(valid, counted, 0.0)
        clicked = counted * log["clicked"].to_numpy(dtype=np.float64)
        counts = np.zeros((len(names), k, 2))               # location → (K, 2) impressions, clicks
        decay = 2.0 ** (-self.refresh_seconds / 3600 / self.half_life_hours) if self.half_life_hours else 1.0
        cls = policy_class(self.policy)
        order = np.argsort(periods, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(periods[order]) != 0])
        previous = None
        for start, end in zip(starts, np.r_[starts[1:], len(order)]):
            rows = order[start:end]
            period = periods[rows[0]]
            if previous is not None and decay != 1.0:
                counts *= decay ** (period - previous)
            policy = cls.from_statistics(self.arms, self._statistics(names, counts), max_draws=self.draws)
            here_codes = codes[rows]
            for code in np.unique(here_codes):
                context = Context(location=names[code])
                out[rows[here_codes == code]] = [e.p_best for e in policy.explain(context, rng, self.draws)]
            # learn from this period's events: at their location and slot-wide (once for slot-wide rows)
            size = len(names) * k
            shown = np.bincount(cells[rows], weights=counted[rows], minlength=size).reshape(len(names), k)
            clicks = np.bincount(cells[rows], weights=clicked[rows], minlength=size).reshape(len(names), k)
            shown[wide], clicks[wide] = shown.sum(axis=0), clicks.sum(axis=0)
            counts[:, :, 0] += shown
            counts[:, :, 1] += clicks
            previous = period
        return out

    def _statistics(self, names: Sequence[str], counts: NDArray[np.float64]) -> SlotStatistics:
        """The counts (shape (L, K, 2): impressions, clicks per location ``names[l]`` and banner) as the
        server's SlotStatistics, with the empirical-Bayes prior of ``prior_strength``."""
        table = {name: {arm: (float(c[i, 0]), float(c[i, 1])) for i, arm in enumerate(self.arms) if c[i, 0] > 0}
                 for name, c in zip(names, counts)}
        table = {loc: v for loc, v in table.items() if v}
        priors: dict[str, dict[str, BetaPrior]] = {}
        if self.prior_strength:
            wide = counts[list(names).index(SLOT_WIDE)]
            s = self.prior_strength
            means = (wide[:, 1] + 0.5) / (wide[:, 0] + 1.0)           # Jeffreys: bandits.priors.pooled_rate
            priors[SLOT_WIDE] = {arm: BetaPrior(float(m * s), float((1 - m) * s), "slot")
                                 for arm, m in zip(self.arms, means)}
        return SlotStatistics(counts=table, priors=priors)

    def statistics(self, counts: dict[str, NDArray[np.float64]]) -> SlotStatistics:
        """SlotStatistics from counts per location (location → (K, 2) impressions, clicks), for a caller that
        runs the candidate online (benchmarks/bench_evaluation.py)."""
        names = list(counts) if SLOT_WIDE in counts else [*counts, SLOT_WIDE]
        table = np.zeros((len(names), len(self.arms), 2))
        for row, name in enumerate(names):
            if name in counts:
                table[row] = counts[name]
        return self._statistics(names, table)


_PARAMETER = re.compile(r"^thompson:(prior|half-life)=([0-9]+(?:\.[0-9]+)?)$")


def candidate(name: str, arms: Sequence[str]) -> Candidate:
    """The candidate called ``name`` for a slot's ``arms`` (module doc); UnknownCandidate otherwise."""
    arms = tuple(arms)
    if not arms:
        raise UnknownCandidate("the slot has no banner to evaluate")
    if name == "uniform":
        return Uniform(name, arms)
    if name.startswith("always:"):
        banner = name.partition(":")[2]
        if banner not in arms:
            raise UnknownCandidate(f"candidate {name!r}: no banner {banner!r} in this slot")
        return Always(name, arms, banner)
    if name == "thompson":
        return Replay(name, arms)
    match = _PARAMETER.match(name)
    if match:
        value = float(match[2])
        if not 0 < value <= 1e6:
            raise UnknownCandidate(f"candidate {name!r}: the value must be > 0")
        if match[1] == "prior":
            return Replay(name, arms, prior_strength=value)
        return Replay(name, arms, half_life_hours=value)
    if name.startswith("policy:") and name.partition(":")[2] in POLICIES:
        return Replay(name, arms, policy=name.partition(":")[2])
    raise UnknownCandidate(f"unknown candidate {name!r}; known: uniform, always:<banner>, thompson, "
                           "thompson:prior=<strength>, thompson:half-life=<hours>, "
                           f"policy:<{'|'.join(sorted(POLICIES))}>")


def check(name: str) -> None:
    """Refuse a name that no slot could have (UnknownCandidate), before reading any log; whether the banner of
    ``always:<banner>`` exists is known only with the slot's banners."""
    banner = name.partition(":")[2] if name.startswith("always:") else ""
    candidate(name, (banner,) if banner else ("_",))


def default_candidates(arms: Sequence[str]) -> list[str]:
    """What the job evaluates when it is not told: the A/B split, each banner alone, the serving policy, a
    stronger prior, a one-day decay, and every other registered policy."""
    names = ["uniform", *(f"always:{arm}" for arm in arms), "thompson", "thompson:prior=200",
             "thompson:half-life=24"]
    return names + [f"policy:{name}" for name in sorted(POLICIES) if name != "thompson"]
