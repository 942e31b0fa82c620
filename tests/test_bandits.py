"""The bandit math, without services."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import BetaPrior, ThompsonSampler, beta_posterior, win_probabilities


def test_posterior_is_prior_plus_clicks_and_non_clicks():
    alpha, beta = beta_posterior([1.0, 2.5], [1.0, 40.0], impressions=[10, 100], clicks=[3, 7])
    np.testing.assert_allclose(alpha, [1 + 3, 2.5 + 7])
    np.testing.assert_allclose(beta, [1 + 7, 40 + 93])


def test_posterior_with_no_data_is_the_prior():
    alpha, beta = beta_posterior([3.0], [97.0], [0], [0])
    assert (alpha[0], beta[0]) == (3.0, 97.0)


def test_posterior_clamps_a_click_counted_before_its_impression():
    alpha, beta = beta_posterior([1.0], [1.0], impressions=[2], clicks=[3])
    assert (alpha[0], beta[0]) == (4.0, 1.0)


@pytest.mark.parametrize("a0,b0,n,c", [(0, 1, 1, 0), (1, -1, 1, 0), (1, 1, -1, 0), (1, 1, 1, -1)])
def test_posterior_rejects_invalid_input(a0, b0, n, c):
    with pytest.raises(ValueError):
        beta_posterior([a0], [b0], [n], [c])


@pytest.mark.parametrize("alpha,beta", [(0, 1), (1, 0), (float("nan"), 1), (1, float("inf"))])
def test_prior_rejects_invalid_parameters(alpha, beta):
    with pytest.raises(ValueError, match="positive finite"):
        BetaPrior(alpha, beta)


def test_win_probability_matches_closed_form():
    # For θ1 ~ Beta(2, 1), θ2 ~ Beta(1, 1): P(θ1 > θ2) = ∫ 2x · x dx = 2/3.
    p = win_probabilities([2.0, 1.0], [1.0, 1.0], np.random.default_rng(7), draws=200_000)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] == pytest.approx(2 / 3, abs=0.005)


def test_win_probabilities_of_symmetric_arms_are_equal():
    p = win_probabilities([5.0] * 4, [50.0] * 4, np.random.default_rng(3), draws=100_000)
    np.testing.assert_allclose(p, 0.25, atol=0.01)


def test_win_probabilities_single_and_invalid():
    assert win_probabilities([1.0], [1.0], np.random.default_rng(0)).tolist() == [1.0]
    with pytest.raises(ValueError):
        win_probabilities([1.0, 2.0], [1.0], np.random.default_rng(0))
    with pytest.raises(ValueError):
        win_probabilities([1.0], [1.0], np.random.default_rng(0), draws=0)


def test_sampler_is_reproducible_under_a_seed():
    alpha, beta = np.array([2.0, 3.0, 4.0]), np.array([5.0, 5.0, 5.0])
    a, b, c = ThompsonSampler(42), ThompsonSampler(42), ThompsonSampler(43)
    picks_a = [a.select(alpha, beta) for _ in range(50)]
    assert picks_a == [b.select(alpha, beta) for _ in range(50)]
    assert picks_a != [c.select(alpha, beta) for _ in range(50)]


def test_sampler_selection_frequency_matches_win_probability():
    alpha, beta = np.array([2.0, 1.0]), np.array([1.0, 1.0])
    sampler = ThompsonSampler(11)
    picks = np.array([sampler.select(alpha, beta) for _ in range(20_000)])
    assert np.mean(picks == 0) == pytest.approx(2 / 3, abs=0.015)


def test_thompson_sampling_concentrates_on_the_best_arm():
    rng = np.random.default_rng(5)
    true_ctr = np.array([0.02, 0.05, 0.10])
    sampler = ThompsonSampler(rng)
    n, c = np.zeros(3), np.zeros(3)
    picks = []
    for _ in range(5000):
        alpha, beta = beta_posterior(np.ones(3), np.ones(3), n, c)
        arm = sampler.select(alpha, beta)
        n[arm] += 1
        c[arm] += rng.random() < true_ctr[arm]
        picks.append(arm)
    assert np.mean(np.array(picks[-1000:]) == 2) > 0.8


def test_sampler_rejects_empty_arms():
    with pytest.raises(ValueError):
        ThompsonSampler(0).select(np.zeros(0), np.zeros(0))


def test_thompson_winners_match_single_draws_in_distribution():
    from bandits import thompson_winners
    alpha, beta = np.array([2.0, 1.0, 1.0]), np.array([1.0, 1.0, 3.0])
    block = thompson_winners(alpha, beta, np.random.default_rng(1), 60_000)
    sampler = ThompsonSampler(2)
    single = np.array([sampler.select(alpha, beta) for _ in range(20_000)])
    np.testing.assert_allclose(np.bincount(block, minlength=3) / block.size,
                               np.bincount(single, minlength=3) / single.size, atol=0.015)
    with pytest.raises(ValueError):
        thompson_winners([], [], np.random.default_rng(0), 10)
