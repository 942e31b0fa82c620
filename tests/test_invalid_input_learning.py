"""Invalid parameters of the learning code are refused at construction, with a message naming the problem."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bandits import DiscountedThompsonSampling
from simulator import BannerSlotEnv, Scenario
from simulator.policies import UCB1, DiscountedThompson, EpsilonGreedy, ThompsonPooled, slot_wide_prior


@pytest.mark.parametrize("gamma", [0, -0.5, 1.0001, 2, float("nan"), float("inf"), "0.9", None, True])
def test_discounted_rejects_gamma_outside_zero_one(gamma):
    with pytest.raises(ValueError, match="gamma"):
        DiscountedThompsonSampling(3, gamma=gamma)


@pytest.mark.parametrize("field,value", [("n_arms", 0), ("n_arms", 2.5), ("n_arms", True), ("n_scopes", 0),
                                         ("n_scopes", -1)])
def test_discounted_rejects_bad_sizes(field, value):
    params = {"n_arms": 3, "n_scopes": 2, field: value}
    with pytest.raises(ValueError, match=field):
        DiscountedThompsonSampling(params.pop("n_arms"), **params)


@pytest.mark.parametrize("prior", [0.0, -1.0, float("nan"), float("inf"), [1.0, 0.0, 1.0], [1.0, 2.0],
                                   "one"])
def test_discounted_rejects_bad_priors(prior):
    with pytest.raises(ValueError, match="prior_alpha"):
        DiscountedThompsonSampling(3, prior_alpha=prior)
    with pytest.raises(ValueError, match="prior_beta"):
        DiscountedThompsonSampling(3, prior_beta=prior)


def test_discounted_rejects_out_of_range_scopes_arms_and_clicks():
    policy = DiscountedThompsonSampling(3, n_scopes=2)
    with pytest.raises(ValueError, match="scopes"):
        policy.select_actions([2])
    with pytest.raises(ValueError, match="scopes"):
        policy.select_actions([0.5])
    with pytest.raises(ValueError, match="arms"):
        policy.record_impressions([0], [3])
    with pytest.raises(ValueError, match="same length"):
        policy.record_impressions([0, 1], [0])
    with pytest.raises(ValueError, match="clicks"):
        policy.record_impressions([0], [1], [2])
    with pytest.raises(ValueError, match="arms"):
        policy.record_clicks([0], [-1])
    assert policy.impressions.sum() == 0 and policy.clicks.sum() == 0       # nothing half-recorded


@pytest.mark.parametrize("changes,field", [
    ({"n_banners": 1}, "n_banners"), ({"n_cities": 0}, "n_cities"), ({"n_cities": 31}, "n_cities"),
    ({"horizon": 0}, "horizon"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 300}, "batch_size"),
    ({"base_ctr": 0.0}, "base_ctr"), ({"base_ctr": 0.7}, "base_ctr"), ({"city_spread": -0.1}, "city_spread"),
    ({"hour_amplitude": 1.0}, "hour_amplitude"), ({"peak_hour": 24}, "peak_hour"),
    ({"timezone": "Mars/Olympus"}, "timezone"), ({"start": dt.datetime(2026, 1, 1)}, "start"),
    ({"drift_at": 0}, "drift_at"), ({"drift_at": 1000}, "drift_at"), ({"new_city_share": 1.0}, "new_city_share"),
    ({"click_delay_seconds": -1.0}, "click_delay_seconds"), ({"impressions_per_hour": 0}, "impressions_per_hour"),
    ({"n_banners": 2.0}, "n_banners"), ({"base_ctr": float("nan")}, "base_ctr"),
])
def test_scenario_rejects_bad_parameters(changes, field):
    with pytest.raises(ValueError, match=field):
        Scenario(**{"horizon": 1000, **changes})


def test_scenario_new_city_needs_two_cities():
    with pytest.raises(ValueError, match="n_cities"):
        Scenario(horizon=1000, n_cities=1, new_city_at=10)


def test_env_rejects_bad_actions_and_steps_before_reset():
    env = BannerSlotEnv(Scenario(horizon=100, batch_size=10, n_banners=3, n_cities=2))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(10, dtype=int))
    env.reset(seed=0)
    for action in (np.zeros(9, dtype=int), np.full(10, 3), np.full(10, -1), np.zeros(10)):
        with pytest.raises(ValueError, match="action"):
            env.step(action)
    with pytest.raises(ValueError, match="Scenario"):
        BannerSlotEnv("stationary")


@pytest.mark.parametrize("policy,params,field", [
    (EpsilonGreedy, {"epsilon": 1.5}, "epsilon"), (EpsilonGreedy, {"epsilon": -0.1}, "epsilon"),
    (ThompsonPooled, {"max_strength": 0}, "max_strength"), (UCB1, {"n_banners": 0}, "n_banners"),
    (DiscountedThompson, {"gamma": 1.5}, "gamma"), (DiscountedThompson, {"n_cities": 0}, "n_cities"),
])
def test_policies_reject_bad_parameters(policy, params, field):
    arguments = {"n_banners": 3, "n_cities": 2, **params}
    with pytest.raises(ValueError, match=field):
        policy(**arguments)


def test_slot_wide_prior_rejects_a_bad_cap():
    with pytest.raises(ValueError, match="max_strength"):
        slot_wide_prior(np.zeros((2, 2)), np.zeros((2, 2)), max_strength=-5)
