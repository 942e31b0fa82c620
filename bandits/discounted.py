"""Discounted Thompson sampling for non-stationary click-through rates.

Raj & Kalyani, "Taming non-stationary bandits: a Bayesian approach" (arXiv:1707.09727, 2017). At every
decision in a scope (a location's bandit), every banner's posterior forgets a fraction 1 − γ of what it
learned, pulling it back towards the prior; the banner served then adds its reward r ∈ {0, 1}:

    α_b ← γ α_b + (1 − γ) α0_b + r · [b served]
    β_b ← γ β_b + (1 − γ) β0_b + (1 − r) · [b served]                     # 0 < γ ≤ 1

Written with discounted counts ñ_b (impressions) and c̃_b (clicks) this is

    ñ_b ← γ ñ_b + [b served],   c̃_b ← γ c̃_b + r · [b served],   posterior Beta(α0 + c̃, β0 + ñ − c̃)

which is the plain posterior of :func:`bandits.beta_posterior` applied to discounted counts, so this
class computes it with that function and draws with :func:`bandits.thompson_winners`, as the server
does (one block of draws per scope and posterior snapshot, one draw per request). γ = 1 is plain
Thompson sampling; a banner's data is forgotten with a half-life of ln 2 / −ln γ decisions of its scope
(γ = 0.999: ≈ 693) and the posterior never holds more than 1 / (1 − γ) impressions' worth of evidence.

Clocks. With ``clock="scope"`` (the paper's) a location forgets per decision of its own, so a quiet city keeps
old evidence for a long time in wall-clock terms. With ``clock="slot"`` — a per-slot decay factor — every
location of the slot forgets per decision of the slot (at steady traffic, per unit of time): all of a slot's
evidence ages alike, which is what pooling cities into a prior needs after the whole slot changed.

Batches. The server refreshes posteriors in the background (about once a second), so all requests of one
refresh interval are served from the same posterior. :meth:`record_impressions` takes a whole interval at
once: a scope that served m requests is discounted by γ^m (exactly m steps of the recursion) and the
interval's own impressions and clicks are added at full weight (the recursion would weight the i-th of
them by γ^(m−i), a relative difference of at most 1 − γ^m, i.e. ≤ 1 % for m·(1 − γ) ≤ 0.01). A click
that arrives after its impression (:meth:`record_clicks`) is added at full weight when it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandits.thompson import beta_posterior, thompson_winners


@dataclass
class DiscountedThompsonSampling:
    """Discounted Thompson sampling over ``n_scopes`` independent Beta–Bernoulli bandits of ``n_arms`` arms.

    Parameters
    ----------
    n_arms : int
        Number of banners K (≥ 1).
    gamma : float
        Discount factor per decision of a scope, 0 < γ ≤ 1 (1 = plain Thompson sampling).
    prior_alpha, prior_beta : float or array_like, shape (K,) or (n_scopes, K)
        The prior Beta(α0, β0) that forgetting returns to; every value > 0 and finite.
    n_scopes : int
        Number of independent posteriors (e.g. one per location, ≥ 1).
    clock : {"scope", "slot"}
        Discount per decision of the scope (default), or every scope per decision of any scope.
    rng : numpy Generator, int seed, or None
        The sampler's random source.

    Attributes
    ----------
    impressions, clicks : ndarray, shape (n_scopes, K)
        Discounted counts ñ and c̃.
    """

    n_arms: int
    gamma: float = 0.999
    prior_alpha: float | ArrayLike = 1.0
    prior_beta: float | ArrayLike = 1.0
    n_scopes: int = 1
    rng: np.random.Generator | int | None = None
    clock: str = "scope"
    impressions: NDArray[np.float64] = field(init=False, repr=False)
    clicks: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("n_arms", "n_scopes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float, np.floating)):
            raise ValueError(f"gamma must be a number in (0, 1], got {self.gamma!r}")
        if not (np.isfinite(self.gamma) and 0.0 < self.gamma <= 1.0):
            raise ValueError(f"gamma must be in (0, 1] (1 = no discounting), got {self.gamma!r}")
        if self.clock not in ("scope", "slot"):
            raise ValueError(f"clock must be 'scope' or 'slot', got {self.clock!r}")
        shape = (self.n_scopes, self.n_arms)
        priors = []
        for name in ("prior_alpha", "prior_beta"):
            try:
                value = np.broadcast_to(np.asarray(getattr(self, name), dtype=np.float64), shape)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number or an array of shape (n_arms,) or "
                                 f"(n_scopes, n_arms) = {shape}, got {getattr(self, name)!r}") from None
            if not np.all(np.isfinite(value)) or np.any(value <= 0):
                raise ValueError(f"{name} must be positive and finite, got {getattr(self, name)!r}")
            priors.append(value.copy())
        self._alpha0, self._beta0 = priors
        self.rng = self.rng if isinstance(self.rng, np.random.Generator) else np.random.default_rng(self.rng)
        self.impressions = np.zeros(shape)
        self.clicks = np.zeros(shape)
        self._posterior: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def posterior(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """alpha, beta : ndarray, shape (n_scopes, K) — ``Beta(α0 + c̃, β0 + ñ − c̃)``."""
        if self._posterior is None:
            self._posterior = beta_posterior(self._alpha0, self._beta0, self.impressions, self.clicks)
        return self._posterior

    def select_actions(self, scopes: ArrayLike) -> NDArray[np.intp]:
        """One Thompson draw per request, all from the current posterior.

        Parameters
        ----------
        scopes : array_like of int, shape (n,)
            The scope (location index) of each request.

        Returns
        -------
        ndarray of int, shape (n,)
            The banner index served to each request.
        """
        return select_by_scope(*self.posterior(), self._scopes(scopes), self.rng)

    def record_impressions(self, scopes: ArrayLike, arms: ArrayLike,
                           clicks: ArrayLike | None = None) -> None:
        """Record one refresh interval of served requests (see the module note on batches).

        Parameters
        ----------
        scopes, arms : array_like of int, shape (m,)
            Scope and banner of each request served since the last call.
        clicks : array_like of {0, 1}, shape (m,), optional
            Clicks already known for those requests; later ones go to :meth:`record_clicks`.
        """
        s, a = self._scopes(scopes), self._arms(arms)
        if s.shape != a.shape:
            raise ValueError(f"scopes and arms must have the same length, got {s.shape} and {a.shape}")
        r = np.zeros(s.shape) if clicks is None else np.asarray(clicks)
        if r.shape != s.shape or np.any((r != 0) & (r != 1)):
            raise ValueError("clicks must be 0/1 values, one per request")
        if self.clock == "slot":
            decisions = np.full(self.n_scopes, s.size)                        # every scope ages by m
        else:
            decisions = np.bincount(s, minlength=self.n_scopes)               # m_s, shape (n_scopes,)
        decay = (self.gamma ** decisions)[:, None]                            # γ^m_s, shape (n_scopes, 1)
        self.impressions *= decay                                             # ñ ← γ^m ñ
        self.clicks *= decay                                                  # c̃ ← γ^m c̃
        np.add.at(self.impressions, (s, a), 1.0)
        np.add.at(self.clicks, (s[r == 1], a[r == 1]), 1.0)
        self._posterior = None

    def record_clicks(self, scopes: ArrayLike, arms: ArrayLike) -> None:
        """Add clicks that arrived after their impressions were recorded (scope and banner of each click)."""
        s, a = self._scopes(scopes), self._arms(arms)
        if s.shape != a.shape:
            raise ValueError(f"scopes and arms must have the same length, got {s.shape} and {a.shape}")
        np.add.at(self.clicks, (s, a), 1.0)
        self._posterior = None

    def _scopes(self, scopes: ArrayLike) -> NDArray[np.intp]:
        return _indices(scopes, self.n_scopes, "scopes")

    def _arms(self, arms: ArrayLike) -> NDArray[np.intp]:
        return _indices(arms, self.n_arms, "arms")


def _indices(values: ArrayLike, bound: int, name: str) -> NDArray[np.intp]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of indices")
    if array.size and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() >= bound):
        raise ValueError(f"{name} must be integers in [0, {bound}), got {values!r}")
    return array.astype(np.intp, copy=False)


def select_by_scope(alpha: NDArray[np.float64], beta: NDArray[np.float64], scopes: NDArray[np.intp],
                    rng: np.random.Generator) -> NDArray[np.intp]:
    """Thompson decisions for requests of several scopes served from one posterior snapshot.

    Parameters
    ----------
    alpha, beta : ndarray, shape (n_scopes, K)
    scopes : ndarray of int, shape (n,)

    Returns
    -------
    ndarray of int, shape (n,)
        For the requests of scope s (in order), the winners of a block of independent Thompson draws from
        ``Beta(alpha[s], beta[s])`` — :func:`thompson_winners`, as the server serves a location.
    """
    out = np.empty(scopes.shape, dtype=np.intp)
    for scope in np.unique(scopes):
        where = np.flatnonzero(scopes == scope)
        out[where] = thompson_winners(alpha[scope], beta[scope], rng, where.size)
    return out


def time_decay_weights(ages_hours: ArrayLike, half_life_hours: float) -> NDArray[np.float64]:
    """Weights 2^(−age / half-life) of evidence ``ages_hours`` old: the wall-clock form of the discount above
    (a slot serving at a steady rate of r requests per hour has γ = 2^(−1 / (r · half-life)) per request).
    Ages below zero (a bucket still filling) weigh 1."""
    if not half_life_hours > 0:
        raise ValueError("half_life_hours must be > 0")
    ages = np.maximum(np.asarray(ages_hours, dtype=np.float64), 0.0)
    return np.exp2(-ages / half_life_hours)
