"""Off-policy estimators (evaluation/estimators.py) against hand-computed values. Pure: no database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation import estimators

REWARDS = [1, 0, 1, 0]
ACTIONS = [0, 1, 0, 1]
PROPENSITIES = [0.5, 0.5, 0.8, 0.2]
ALWAYS_0 = [[1.0, 0.0]] * 4
UNIFORM = [[0.5, 0.5]] * 4


def test_ips_snips_dr_and_ess_by_hand():
    q_hat = np.array([[0.5, 0.2]] * 4)
    result = estimators.evaluate(REWARDS, PROPENSITIES, ACTIONS, ALWAYS_0, q_hat=q_hat, bootstrap=10)
    # w = (1/0.5, 0, 1/0.8, 0) = (2, 0, 1.25, 0)
    assert result.estimates["ips"].value == pytest.approx(3.25 / 4)
    assert result.estimates["snips"].value == pytest.approx(1.0)
    # DR terms: 0.5 + w (r − q̂(a)) = 1.5, 0.5, 1.125, 0.5
    assert result.estimates["dr"].value == pytest.approx(3.625 / 4)
    assert result.effective_sample_size == pytest.approx(3.25 ** 2 / (4 + 1.5625))
    assert result.observed_ctr == 0.5 and result.events == 4
    assert "small_ess" in result.flags


def test_uniform_candidate_by_hand():
    result = estimators.evaluate(REWARDS, PROPENSITIES, ACTIONS, UNIFORM, bootstrap=10)
    # w = (1, 1, 0.625, 2.5), w r = (1, 0, 0.625, 0)
    assert result.estimates["ips"].value == pytest.approx(1.625 / 4)
    assert result.estimates["snips"].value == pytest.approx(1.625 / 5.125)
    assert "dr" not in result.estimates


def test_zero_support_is_measured_from_the_banners_logged_in_each_context():
    support = estimators.logged_support(["x", "x", "y", "z"], ACTIONS, 2)
    assert support.tolist() == [[True, True], [True, True], [True, False], [False, True]]
    result = estimators.evaluate(REWARDS, PROPENSITIES, ACTIONS, ALWAYS_0, support=support, bootstrap=10)
    assert result.zero_support == pytest.approx(0.25)          # the 'z' row puts all its mass on banner 0
    assert "zero_support" in result.flags
    assert estimators.evaluate(REWARDS, PROPENSITIES, ACTIONS, UNIFORM, support=np.ones((4, 2), bool),
                               bootstrap=10).zero_support == 0.0


def test_the_bootstrap_interval_covers_the_truth_of_a_known_candidate():
    rng = np.random.default_rng(3)
    n, ctr = 20_000, np.array([0.02, 0.05, 0.03])
    actions = rng.integers(3, size=n)                          # logged uniformly
    rewards = (rng.random(n) < ctr[actions]).astype(int)
    candidate = np.tile([0.1, 0.8, 0.1], (n, 1))
    truth = float(candidate[0] @ ctr)
    result = estimators.evaluate(rewards, np.full(n, 1 / 3), actions, candidate, bootstrap=200, rng=1)
    for name in ("ips", "snips"):
        estimate = result.estimates[name]
        assert estimate.low < truth < estimate.high
        assert estimate.high - estimate.low < 0.5 * truth     # and it is informative
    assert result.flags == ()


def test_the_cross_fitted_reward_model_learns_each_banner_per_context():
    rng = np.random.default_rng(5)
    n = 6000
    cities = rng.choice(["pune", "delhi"], size=n)
    actions = rng.integers(2, size=n)
    rate = np.where(cities == "pune", np.where(actions == 0, 0.10, 0.02), np.where(actions == 0, 0.02, 0.10))
    rewards = (rng.random(n) < rate).astype(int)
    q = estimators.reward_model(pd.DataFrame({"location": cities}), actions, rewards, 2)
    assert q.shape == (n, 2)
    for city in ("pune", "delhi"):                 # each (city, banner) cell: its observed click rate
        here = cities == city
        for banner in (0, 1):
            observed = rewards[here & (actions == banner)].mean()
            assert q[here, banner].mean() == pytest.approx(observed, abs=0.005)
    assert q[cities == "pune", 0].mean() > 3 * q[cities == "pune", 1].mean()     # the interaction is learned
    assert q[cities == "delhi", 1].mean() > 2 * q[cities == "delhi", 0].mean()


def test_required_ess_for_ten_percent():
    assert estimators.required_ess(0.02) == pytest.approx(1.959963984540054 ** 2 * 0.98 / (0.01 * 0.02))
    assert round(estimators.required_ess(0.05)) == 7299


@pytest.mark.parametrize("propensities, candidate", [
    ([0.5, 0.0, 0.8, 0.2], ALWAYS_0),                   # a propensity of 0
    ([0.5, 0.5, 1.2, 0.2], ALWAYS_0),                   # above 1
    (PROPENSITIES, [[0.5, 0.6]] * 4),                   # a row not summing to 1
    (PROPENSITIES, [[1.0, 0.0]] * 3),                   # wrong length
])
def test_bad_input_is_refused(propensities, candidate):
    with pytest.raises(ValueError):
        estimators.evaluate(REWARDS, propensities, ACTIONS, candidate, bootstrap=1)
