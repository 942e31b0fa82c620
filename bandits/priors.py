"""Empirical-Bayes Beta priors for a banner's click-through rate in a city, from other cities' data.

Model (beta-binomial): in city i the banner has a CTR θ_i ~ Beta(μ·s, (1 − μ)·s), and shows c_i clicks in
n_i impressions, c_i ~ Binomial(n_i, θ_i). μ is the slot-wide rate and s (= α + β, "pseudo-impressions") says
how alike cities are: the larger s, the less θ varies between cities.

Fit, per (tenant, slot, banner):

    μ  = (C + ½) / (N + 1)                       # pooled rate over every impression of the slot (Jeffreys
                                                 # Beta(½, ½) posterior mean: never 0 or 1, so α, β > 0)
    p̄  = Σ c_i / Σ n_i,   S = Σ n_i (c_i/n_i − p̄)²  # over the m cities with n_i > 0, weighted by impressions
    ρ  = (S / (p̄(1 − p̄)) − (m − 1)) / (N_c − Σ n_i² / N_c − (m − 1))     # intra-city correlation 1/(s + 1)
    s  = 1/ρ − 1                                 # method of moments (Kleinman, "Proportions with extraneous
                                                 # variance", JASA 68(341), 1973), from E[S] =
                                                 # p(1 − p)[(1 − ρ)(m − 1) + ρ(N_c − Σn_i²/N_c)]

then the strength is bounded: s ≤ N (a prior never claims more impressions than the data it came from) and
``min_strength ≤ s ≤ max_strength`` (the cap: live data overrides a wrong prior after a few hundred
impressions). When the spread cannot be estimated (fewer than two cities, no clicks at all, one impression per
city) or shows no excess variance (ρ ≤ 0: cities look alike), s is the cap.

The slot-wide prior is Beta(μ·s, (1 − μ)·s): what a city with no data of its own should believe.

A city's prior adds its own *history* (events the serving counters do not hold, i.e. imported ones) to the
slot-wide prior, which is the empirical-Bayes posterior, and then scales it down to the cap if needed:

    α_i = μ·s + h_c,   β_i = (1 − μ)·s + h_n − h_c,   and if α_i + β_i > cap: (α_i, β_i) *= cap / (α_i + β_i)

so its mean (μ·s + h_c)/(s + h_n) stays near the city's own rate when h_n ≫ s and near μ when h_n ≪ s.
Serving adds the city's live counts to it (see webapp/learning/posteriors.py); live events are *not* added here, or
they would be counted twice. The Spark job (spark_jobs/city_priors.py) computes the same formulas with
DataFrame expressions; tests check that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandits.thompson import BetaPrior


@dataclass(frozen=True)
class PriorSettings:
    """Bounds on a fitted prior's strength α + β, in pseudo-impressions.

    max_strength : the cap. After that many live impressions the city's own data weighs as much as the prior.
    min_strength : the floor (2 = as strong as Beta(1, 1)), for slots whose cities disagree wildly.
    """

    max_strength: float = 200.0
    min_strength: float = 2.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.max_strength) or not np.isfinite(self.min_strength):
            raise ValueError("prior strengths must be finite numbers")
        if self.min_strength <= 0:
            raise ValueError(f"min_strength must be > 0, got {self.min_strength!r}")
        if self.max_strength < self.min_strength:
            raise ValueError(f"max_strength ({self.max_strength!r}) must be ≥ min_strength "
                             f"({self.min_strength!r})")


@dataclass(frozen=True)
class PopulationFit:
    """The fitted distribution of one banner's CTR across the cities of a slot."""

    mean: float                 # μ, the smoothed slot-wide rate
    strength: float             # s = α + β after the bounds
    rho: float | None           # raw method-of-moments ρ (None: not identifiable from the data)
    cities: int                 # m, cities with at least one impression
    impressions: int            # N, all impressions of the slot (cities and no-location traffic)
    clicks: int                 # C

    @property
    def alpha(self) -> float:
        return self.mean * self.strength

    @property
    def beta(self) -> float:
        return (1.0 - self.mean) * self.strength

    def prior(self) -> BetaPrior:
        return BetaPrior(self.alpha, self.beta, "slot")


def _counts(impressions: ArrayLike, clicks: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n = np.asarray(impressions, dtype=np.float64)
    c = np.asarray(clicks, dtype=np.float64)
    if n.ndim != 1 or n.shape != c.shape:
        raise ValueError("impressions and clicks must be 1-D arrays of the same length")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(c))):
        raise ValueError("impressions and clicks must be finite")
    if np.any(n < 0) or np.any(c < 0):
        raise ValueError("impressions and clicks must be ≥ 0")
    if np.any(c > n):
        raise ValueError("clicks cannot exceed impressions")
    return n, c


def pooled_rate(impressions: float, clicks: float) -> float:
    """μ = (C + ½) / (N + 1): the Jeffreys posterior mean of the pooled rate, strictly inside (0, 1)."""
    if impressions < 0 or clicks < 0 or clicks > impressions:
        raise ValueError("need 0 ≤ clicks ≤ impressions")
    return (clicks + 0.5) / (impressions + 1.0)


def spread_rho(impressions: ArrayLike, clicks: ArrayLike) -> float | None:
    """Kleinman's impression-weighted method-of-moments estimate of ρ = 1/(s + 1) across cities.

    Parameters
    ----------
    impressions, clicks : array_like, shape (m,)
        Per-city counts; cities with no impressions are ignored.

    Returns
    -------
    float or None
        ρ̂ (may be ≤ 0 when cities vary less than binomial noise, or ≥ 1), or None when it cannot be
        estimated: fewer than two cities, p̄(1 − p̄) = 0, or a zero denominator.
    """
    n, c = _counts(impressions, clicks)
    keep = n > 0
    n, c = n[keep], c[keep]
    m = n.shape[0]
    if m < 2:
        return None
    total = n.sum()
    p_bar = c.sum() / total
    variance = p_bar * (1.0 - p_bar)
    denominator = total - np.sum(n * n) / total - (m - 1)
    if variance <= 0 or denominator <= 0:
        return None
    s_weighted = np.sum(n * (c / n - p_bar) ** 2)          # S = Σ n_i (r_i − p̄)²
    return float((s_weighted / variance - (m - 1)) / denominator)


def prior_strength(rho: float | None, total_impressions: float, settings: PriorSettings) -> float:
    """s = 1/ρ − 1, bounded: ≤ N, ≤ max_strength, ≥ min_strength; the cap when ρ is None or ≤ 0."""
    if rho is None or rho <= 0:
        raw = np.inf
    elif rho >= 1:
        raw = 0.0
    else:
        raw = 1.0 / rho - 1.0
    return float(max(settings.min_strength, min(raw, float(total_impressions), settings.max_strength)))


def fit_population(city_impressions: ArrayLike, city_clicks: ArrayLike, slot_impressions: int,
                   slot_clicks: int, settings: PriorSettings = PriorSettings()) -> PopulationFit:
    """Fit the slot-wide prior of one banner.

    Parameters
    ----------
    city_impressions, city_clicks : array_like, shape (m,)
        Per-city counts (the cities' spread).
    slot_impressions, slot_clicks : int
        All of the slot's counts, traffic without a location included (the center μ).
    """
    n, c = _counts(city_impressions, city_clicks)
    if slot_impressions < n.sum() or slot_clicks < c.sum():
        raise ValueError("slot-wide counts must include every city's counts")
    rho = spread_rho(n, c)
    return PopulationFit(
        mean=pooled_rate(slot_impressions, slot_clicks),
        strength=prior_strength(rho, slot_impressions, settings),
        rho=rho, cities=int(np.count_nonzero(n)), impressions=int(slot_impressions), clicks=int(slot_clicks),
    )


def city_priors(fit: PopulationFit, history_impressions: ArrayLike, history_clicks: ArrayLike,
                settings: PriorSettings = PriorSettings()) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Shrunk, capped priors of cities: the slot-wide prior plus each city's history, scaled to the cap.

    Parameters
    ----------
    fit : the banner's PopulationFit
    history_impressions, history_clicks : array_like, shape (m,)
        Each city's events that serving has not counted (imported history); 0 for live-only cities.

    Returns
    -------
    alpha, beta : ndarray, shape (m,)
        ``α = μs + h_c``, ``β = (1 − μ)s + h_n − h_c``, both multiplied by ``min(1, cap / (s + h_n))``.
    """
    n, c = _counts(history_impressions, history_clicks)
    alpha = fit.alpha + c
    beta = fit.beta + (n - c)
    scale = np.minimum(1.0, settings.max_strength / (fit.strength + n))
    return alpha * scale, beta * scale
