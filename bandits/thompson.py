"""Thompson sampling over Beta posteriors of click-through rates.

Each banner b has a Beta(α0, β0) prior and an observed (impressions n_b, clicks c_b); its posterior is

    Beta(α0 + c_b, β0 + n_b − c_b)                                  # Beta–Bernoulli conjugacy

Thompson sampling draws θ_b ~ posterior for every banner and serves argmax_b θ_b (Thompson, 1933;
Chapelle & Li, "An Empirical Evaluation of Thompson Sampling", NIPS 2011). The probability that banner b
wins that draw, P(θ_b = max_j θ_j), is both its propensity (for offline evaluation) and the probability
that it is the best banner under the posterior; it is estimated by Monte Carlo over joint draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class BetaPrior:
    """A Beta(alpha, beta) prior on a click-through rate, with where it came from."""

    alpha: float = 1.0
    beta: float = 1.0
    source: str = "uniform"

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"BetaPrior.{name} must be a positive finite number, got {value!r}")


UNIFORM_PRIOR = BetaPrior(1.0, 1.0, "uniform")


def beta_posterior(
    prior_alpha: ArrayLike, prior_beta: ArrayLike, impressions: ArrayLike, clicks: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior Beta parameters, element-wise.

    Parameters
    ----------
    prior_alpha, prior_beta : array_like, shape (K,)
        Prior parameters, each > 0.
    impressions, clicks : array_like, shape (K,)
        Observed counts, 0 ≤ clicks ≤ impressions. (Everything is element-wise: any shapes that broadcast
        together work, e.g. (L, K) for L locations. Counts may be fractional, e.g. discounted counts.)

    Returns
    -------
    alpha, beta : ndarray, shape (K,) (the broadcast shape)
        ``alpha = α0 + clicks`` and ``beta = β0 + impressions − clicks``.
    """
    a0 = np.asarray(prior_alpha, dtype=np.float64)
    b0 = np.asarray(prior_beta, dtype=np.float64)
    n = np.asarray(impressions, dtype=np.float64)
    c = np.asarray(clicks, dtype=np.float64)
    if np.any(a0 <= 0) or np.any(b0 <= 0):
        raise ValueError("prior parameters must be > 0")
    if np.any(n < 0) or np.any(c < 0):
        raise ValueError("impressions and clicks must be ≥ 0")
    # Counters are written independently, so a click can be counted before its impression reaches the
    # same snapshot; clamp rather than fail (the gap closes at the next flush).
    n = np.maximum(n, c)
    return a0 + c, b0 + (n - c)


def thompson_winners(
    alpha: ArrayLike, beta: ArrayLike, rng: np.random.Generator, draws: int
) -> NDArray[np.intp]:
    """Winners of ``draws`` independent joint Thompson draws: row i is argmax_b θ_ib, θ_ib ~ Beta(α_b, β_b).

    Each entry is one Thompson sampling decision, exactly as :meth:`ThompsonSampler.select` would make it;
    drawing a block at once costs far less per decision than one call per request.

    Returns
    -------
    ndarray of int, shape (draws,)
    """
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.shape[0] == 0:
        raise ValueError("alpha and beta must be non-empty 1-D arrays of the same length")
    if draws < 1:
        raise ValueError("draws must be ≥ 1")
    return np.argmax(rng.beta(a, b, size=(draws, a.shape[0])), axis=1)   # shape (draws,)


def win_probabilities(
    alpha: ArrayLike, beta: ArrayLike, rng: np.random.Generator, draws: int = 4000
) -> NDArray[np.float64]:
    """Monte Carlo estimate of P(θ_b = max_j θ_j) for θ_j ~ Beta(alpha_j, beta_j) independently.

    Parameters
    ----------
    alpha, beta : array_like, shape (K,)
    rng : numpy Generator
    draws : int
        Number of joint draws; the standard error of each estimate is ≤ 0.5/√draws.

    Returns
    -------
    ndarray, shape (K,)
        Sums to 1.
    """
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("alpha and beta must be 1-D arrays of the same length")
    if draws < 1:
        raise ValueError("draws must be ≥ 1")
    k = a.shape[0]
    if k == 0:
        return np.zeros(0)
    if k == 1:
        return np.ones(1)
    samples = rng.beta(a, b, size=(draws, k))          # shape (draws, K)
    winners = np.argmax(samples, axis=1)
    return np.bincount(winners, minlength=k) / draws


class ThompsonSampler:
    """Selects an arm by one Thompson draw. Holds only its random generator.

    Parameters
    ----------
    rng : numpy Generator, int seed, or None (fresh OS entropy)
    """

    def __init__(self, rng: np.random.Generator | int | None = None) -> None:
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def select(self, alpha: NDArray[np.float64], beta: NDArray[np.float64]) -> int:
        """Index of argmax_b θ_b, θ_b ~ Beta(alpha_b, beta_b). alpha, beta: shape (K,), K ≥ 1."""
        if alpha.shape[0] == 0:
            raise ValueError("cannot select from zero arms")
        return int(np.argmax(self.rng.beta(alpha, beta)))

    def win_probabilities(
        self, alpha: NDArray[np.float64], beta: NDArray[np.float64], draws: int = 4000
    ) -> NDArray[np.float64]:
        """See :func:`win_probabilities`."""
        return win_probabilities(alpha, beta, self.rng, draws)
