"""Discounted Thompson sampling and per-scope Thompson decisions (bandits)."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import DiscountedThompsonSampling, beta_posterior, thompson_winners
from bandits.discounted import select_by_scope


def test_select_by_scope_serves_each_scope_from_a_block_of_thompson_winners():
    rng = np.random.default_rng(1)
    alpha, beta = rng.uniform(0.5, 40, (2, 4)), rng.uniform(0.5, 900, (2, 4))
    scopes = np.array([1, 0, 1, 1, 0])
    got = select_by_scope(alpha, beta, scopes, np.random.default_rng(5))
    same = np.random.default_rng(5)
    expected = np.empty(5, dtype=np.intp)
    expected[[1, 4]] = thompson_winners(alpha[0], beta[0], same, 2)          # scopes in ascending order
    expected[[0, 2, 3]] = thompson_winners(alpha[1], beta[1], same, 3)
    assert got.tolist() == expected.tolist()


def test_select_by_scope_picks_banners_with_their_win_probabilities():
    alpha, beta = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    scopes = np.repeat([0, 1], 20_000)
    picks = select_by_scope(alpha, beta, scopes, np.random.default_rng(3))
    assert np.mean(picks[:20_000] == 0) == pytest.approx(2 / 3, abs=0.015)    # P(Beta(2,1) > Beta(1,1)) = 2/3
    assert np.mean(picks[20_000:] == 1) == pytest.approx(2 / 3, abs=0.015)


def test_gamma_one_is_plain_thompson_sampling():
    policy = DiscountedThompsonSampling(3, gamma=1.0, n_scopes=2, rng=0)
    scopes, arms, clicks = np.array([0, 0, 1, 1, 1]), np.array([2, 2, 0, 1, 1]), np.array([1, 0, 0, 1, 1])
    policy.record_impressions(scopes, arms, clicks)
    policy.record_impressions(np.array([0]), np.array([0]))
    policy.record_clicks(np.array([0]), np.array([0]))
    alpha, beta = policy.posterior()
    n = np.array([[1, 0, 2], [1, 2, 0]])
    c = np.array([[1, 0, 1], [0, 2, 0]])
    expected_alpha, expected_beta = beta_posterior(np.ones((2, 3)), np.ones((2, 3)), n, c)
    np.testing.assert_allclose(alpha, expected_alpha)
    np.testing.assert_allclose(beta, expected_beta)


def test_one_decision_at_a_time_follows_the_raj_kalyani_recursion():
    gamma, a0, b0 = 0.9, np.array([2.0, 1.0]), np.array([3.0, 5.0])
    policy = DiscountedThompsonSampling(2, gamma=gamma, prior_alpha=a0, prior_beta=b0, rng=0)
    alpha, beta = a0.copy(), b0.copy()
    rng = np.random.default_rng(4)
    for _ in range(40):
        arm, reward = int(rng.integers(2)), int(rng.random() < 0.4)
        policy.record_impressions([0], [arm], [reward])
        served = np.eye(2)[arm]
        alpha = gamma * alpha + (1 - gamma) * a0 + reward * served          # α ← γα + (1−γ)α0 + r
        beta = gamma * beta + (1 - gamma) * b0 + (1 - reward) * served      # β ← γβ + (1−γ)β0 + (1−r)
    got_alpha, got_beta = policy.posterior()
    np.testing.assert_allclose(got_alpha[0], alpha)
    np.testing.assert_allclose(got_beta[0], beta)


def test_a_batch_of_m_decisions_discounts_by_gamma_to_the_m():
    policy = DiscountedThompsonSampling(2, gamma=0.5, n_scopes=2, rng=0)
    policy.record_impressions([0, 1], [0, 0], [1, 0])
    policy.record_impressions([0, 0, 0], [1, 1, 1])          # scope 0: 3 decisions, scope 1: none
    np.testing.assert_allclose(policy.impressions, [[0.125, 3.0], [1.0, 0.0]])
    np.testing.assert_allclose(policy.clicks, [[0.125, 0.0], [0.0, 0.0]])


def test_the_slot_clock_ages_every_scope_by_the_decisions_of_the_slot():
    policy = DiscountedThompsonSampling(2, gamma=0.5, n_scopes=2, rng=0, clock="slot")
    policy.record_impressions([0, 1], [0, 0], [1, 0])
    policy.record_impressions([0, 0, 0], [1, 1, 1])          # 3 decisions of the slot: both scopes age by γ³
    np.testing.assert_allclose(policy.impressions, [[0.125, 3.0], [0.125, 0.0]])
    np.testing.assert_allclose(policy.clicks, [[0.125, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="clock"):
        DiscountedThompsonSampling(2, clock="wall")


def test_forgotten_evidence_returns_to_the_prior():
    policy = DiscountedThompsonSampling(2, gamma=0.99, prior_alpha=1.0, prior_beta=30.0, rng=0)
    policy.record_impressions(np.zeros(500, dtype=int), np.zeros(500, dtype=int), np.ones(500, dtype=int))
    for _ in range(2000):                                         # only banner 1 is served from now on
        policy.record_impressions([0], [1], [0])
    alpha, beta = policy.posterior()
    assert alpha[0, 0] == pytest.approx(1.0, abs=1e-3) and beta[0, 0] == pytest.approx(30.0, abs=1e-3)
    assert beta[0, 1] == pytest.approx(30.0 + 1 / (1 - 0.99), rel=1e-3)     # at most 1/(1−γ) impressions


def test_discounting_follows_a_change_that_plain_thompson_is_slow_to_see():
    shares = {gamma: [_switch_run(gamma, seed) for seed in range(3)] for gamma in (1.0, 0.999)}
    assert min(shares[0.999]) > 0.85, shares
    assert max(shares[1.0]) < 0.3, shares


def _switch_run(gamma: float, seed: int, steps: int = 1600, batch: int = 10) -> float:
    """Two banners swap CTRs (20 % / 10 % → 10 % / 20 %) halfway through ``steps`` refreshes of ``batch``
    decisions; the new best banner's share of decisions 200–600 refreshes after the swap."""
    policy = DiscountedThompsonSampling(2, gamma=gamma, rng=seed)
    rng = np.random.default_rng(seed + 100)
    scopes = np.zeros(batch, dtype=int)
    swap = steps // 2
    measured = []
    for step in range(steps):
        ctr = np.array([0.20, 0.10]) if step < swap else np.array([0.10, 0.20])
        arms = policy.select_actions(scopes)
        policy.record_impressions(scopes, arms, (rng.random(batch) < ctr[arms]).astype(int))
        if swap + 200 <= step < swap + 600:
            measured.append(arms)
    return float(np.mean(np.concatenate(measured) == 1))


def test_late_clicks_are_added_without_discount():
    policy = DiscountedThompsonSampling(2, gamma=0.5, rng=0)
    policy.record_impressions([0, 0], [1, 1])
    policy.record_clicks([0], [1])
    np.testing.assert_allclose(policy.clicks, [[0.0, 1.0]])
    policy.record_impressions([0], [0])
    np.testing.assert_allclose(policy.impressions, [[1.0, 1.0]])
    np.testing.assert_allclose(policy.clicks, [[0.0, 0.5]])


def test_discounted_sampler_is_reproducible_under_a_seed():
    def picks(seed):
        policy = DiscountedThompsonSampling(4, gamma=0.99, n_scopes=3, rng=seed)
        policy.record_impressions([0, 1, 2, 2], [0, 1, 2, 3], [1, 0, 1, 1])
        return policy.select_actions(np.arange(60) % 3).tolist()

    assert picks(7) == picks(7)
    assert picks(7) != picks(8)
