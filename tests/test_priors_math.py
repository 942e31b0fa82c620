"""Empirical-Bayes city priors (bandits/priors.py), without services."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import PriorSettings, city_priors, fit_population
from bandits.priors import pooled_rate, prior_strength, spread_rho


def beta_binomial_cities(rng: np.random.Generator, mean: float, strength: float, impressions: np.ndarray):
    theta = rng.beta(mean * strength, (1 - mean) * strength, size=impressions.shape[0])
    return rng.binomial(impressions, theta)


def test_rho_matches_a_hand_computation():
    n = np.array([100, 200, 300, 400])
    c = np.array([5, 20, 12, 40])
    # Written out independently: S through Σ c²/n − N p̄², the denominator term by term.
    total, clicks = 1000, 77
    p_bar = clicks / total
    s = (25 / 100 + 400 / 200 + 144 / 300 + 1600 / 400) - total * p_bar**2
    denominator = total - (100**2 + 200**2 + 300**2 + 400**2) / total - 3
    expected = (s / (p_bar * (1 - p_bar)) - 3) / denominator
    assert spread_rho(n, c) == pytest.approx(expected, rel=1e-12)
    assert expected > 0     # these cities differ more than binomial noise


def test_cities_without_impressions_are_ignored():
    assert spread_rho([100, 0, 300], [5, 0, 30]) == pytest.approx(spread_rho([100, 300], [5, 30]))


def test_method_of_moments_recovers_the_true_spread():
    rng = np.random.default_rng(11)
    estimates = []
    for _ in range(20):
        n = rng.integers(200, 5000, size=300)
        c = beta_binomial_cities(rng, mean=0.04, strength=300.0, impressions=n)
        estimates.append(1 / spread_rho(n, c) - 1)
    assert np.median(estimates) == pytest.approx(300.0, rel=0.15)


def test_identical_cities_get_the_cap():
    rng = np.random.default_rng(5)
    n = np.full(60, 2000)
    c = rng.binomial(n, 0.05)          # same θ everywhere: only binomial noise
    settings = PriorSettings(max_strength=150.0)
    fit = fit_population(n, c, int(n.sum()), int(c.sum()), settings)
    assert abs(fit.rho) < 1 / 151
    assert fit.strength == 150.0


@pytest.mark.parametrize("n,c", [
    ([500], [20]),                     # one city
    ([100, 200], [0, 0]),              # no clicks: p̄(1 − p̄) = 0
    ([1, 1, 1, 1], [0, 1, 0, 1]),      # one impression per city: spread not identifiable
    ([], []),
])
def test_unidentifiable_spread_is_none_and_falls_back_to_the_cap(n, c):
    assert spread_rho(n, c) is None
    assert prior_strength(None, 10_000, PriorSettings(max_strength=80.0)) == 80.0


def test_strength_bounds():
    settings = PriorSettings(max_strength=200.0, min_strength=2.0)
    assert prior_strength(1 / 51, 10_000, settings) == pytest.approx(50.0)     # s = 1/ρ − 1
    assert prior_strength(-0.01, 10_000, settings) == 200.0                    # no excess spread: cap
    assert prior_strength(1e-6, 10_000, settings) == 200.0                     # very alike: cap
    assert prior_strength(0.99, 10_000, settings) == 2.0                       # wildly different: floor
    assert prior_strength(1 / 51, 30, settings) == 30.0                        # never more than the data
    assert prior_strength(None, 0, settings) == 2.0                            # no data: as weak as Beta(1,1)


def test_pooled_rate_is_smoothed_and_strictly_inside_the_unit_interval():
    assert pooled_rate(1000, 50) == pytest.approx(50.5 / 1001)
    assert 0 < pooled_rate(0, 0) == 0.5
    assert 0 < pooled_rate(300, 0) < 0.002
    assert 0.998 < pooled_rate(300, 300) < 1


def test_slot_prior_centers_on_the_slot_rate_including_traffic_without_location():
    fit = fit_population([1000, 1000], [30, 50], slot_impressions=3000, slot_clicks=100,
                         settings=PriorSettings(max_strength=100.0))
    assert fit.mean == pytest.approx(100.5 / 3001)
    assert fit.alpha + fit.beta == pytest.approx(fit.strength)
    assert fit.alpha / (fit.alpha + fit.beta) == pytest.approx(fit.mean)
    prior = fit.prior()
    assert (prior.alpha, prior.beta, prior.source) == (pytest.approx(fit.alpha), pytest.approx(fit.beta), "slot")


def test_city_priors_shrink_sparse_cities_and_keep_rich_ones_near_their_rate():
    settings = PriorSettings(max_strength=200.0)
    fit = fit_population([50_000, 50_000, 40, 0], [2000, 3000, 12, 0], 100_040, 5012, settings)
    assert 2.0 < fit.strength < 200.0
    alpha, beta = city_priors(fit, [50_000, 50_000, 40, 0], [2000, 3000, 12, 0], settings)
    means = alpha / (alpha + beta)
    assert means[0] == pytest.approx(0.04, abs=0.002)            # rich: own rate 4 %
    assert means[1] == pytest.approx(0.06, abs=0.002)            # rich: own rate 6 %
    own, slot = 12 / 40, fit.mean                                 # sparse: 30 % on 40 impressions
    weight = 40 / (40 + fit.strength)
    assert means[2] == pytest.approx(weight * own + (1 - weight) * slot)
    assert slot < means[2] < own
    assert (alpha[3], beta[3]) == (pytest.approx(fit.alpha), pytest.approx(fit.beta))   # no history: slot prior
    np.testing.assert_array_less(alpha + beta, 200.0 + 1e-9)      # the cap holds
    assert alpha[0] + beta[0] == pytest.approx(200.0)


def test_city_prior_with_history_below_the_cap_is_the_empirical_bayes_posterior():
    settings = PriorSettings(max_strength=1000.0)
    fit = fit_population([100, 300], [10, 9], 400, 19, settings)
    alpha, beta = city_priors(fit, [100], [10], settings)
    assert alpha[0] == pytest.approx(fit.alpha + 10)
    assert beta[0] == pytest.approx(fit.beta + 90)


@pytest.mark.parametrize("n,c", [([10], [11]), ([-1], [0]), ([10, 20], [1]), ([[10]], [[1]]),
                                 ([float("nan")], [0])])
def test_invalid_counts_are_rejected(n, c):
    with pytest.raises(ValueError):
        spread_rho(n, c)


def test_slot_counts_must_include_the_cities():
    with pytest.raises(ValueError, match="include"):
        fit_population([100], [5], slot_impressions=50, slot_clicks=5)


@pytest.mark.parametrize("kwargs", [{"max_strength": 1.0, "min_strength": 2.0}, {"min_strength": 0.0},
                                    {"max_strength": float("inf")}])
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        PriorSettings(**kwargs)
