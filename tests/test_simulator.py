"""The simulator's own behaviour, and a short run in which Thompson sampling beats uniform decisively."""

from __future__ import annotations

import datetime as dt

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from bandits import beta_posterior
from simulator import ENV_ID, BannerSlotEnv, Scenario, impressions_to_share, run
from simulator.__main__ import main as simulator_cli
from simulator.policies import (
    HierarchicalThompson,
    MabwiserThompson,
    PosteriorMeanGreedy,
    ThompsonPerCity,
    ThompsonPooled,
    ThompsonSlot,
    empirical_bayes_prior,
    slot_wide_prior,
)

SMALL = Scenario(name="small", n_banners=5, n_cities=4, horizon=20_000, batch_size=100, base_ctr=0.1,
                 banner_spread=0.7)


@pytest.mark.parametrize("batch_size", [1, 25])
def test_env_passes_the_gymnasium_checker(batch_size):
    env = BannerSlotEnv(SMALL.with_(horizon=200, batch_size=batch_size, click_delay_seconds=30.0))
    check_env(env, skip_render_check=True)


def test_env_is_registered_with_gymnasium():
    env = gym.make(ENV_ID, scenario=SMALL.with_(horizon=100, batch_size=10), disable_env_checker=True)
    obs, _ = env.reset(seed=1)
    assert obs["city"].shape == (10,) and env.action_space.shape == (10,)
    env.close()


def test_a_seed_reproduces_the_problem_the_visitors_and_the_run():
    a = run(SMALL.with_(drift_at=10_000), "thompson", seed=11)
    b = run(SMALL.with_(drift_at=10_000), "thompson", seed=11)
    c = run(SMALL.with_(drift_at=10_000), "thompson", seed=12)
    np.testing.assert_array_equal(a.cumulative_regret, b.cumulative_regret)
    assert (a.clicks, a.oracle_clicks, a.to_share) == (b.clicks, b.oracle_clicks, b.to_share)
    assert a.regret != c.regret
    first, second = BannerSlotEnv(SMALL), BannerSlotEnv(SMALL)
    first.reset(seed=5)
    second.reset(seed=5)
    np.testing.assert_array_equal(first.true_ctr, second.true_ctr)
    np.testing.assert_array_equal(first.city, second.city)


def test_oracle_regret_is_zero_and_it_gets_every_oracle_click():
    for scenario in (SMALL, SMALL.with_(drift_at=7_000, new_city_at=12_000, click_delay_seconds=60.0)):
        result = run(scenario, "oracle", seed=3)
        assert result.regret == 0.0
        assert result.clicks == result.oracle_clicks > 0
        assert result.to_share[0.9] == 2000                # the first block is all on the best banner


def test_uniform_regret_matches_its_closed_form():
    # Uniform serves banner b with probability 1/K, so visitor t's regret is X_t = m(h_t)·(p*_c − p_cb) with
    # E[X_t | c, h] = m(h)·(max_b p_cb − mean_b p_cb). Over whole days m averages to 1 (Σ_h cos(2π(h − peak)/24)
    # = 0) and m² to 1 + A²/2, so over T visitors (c ~ w, b uniform, independent across t)
    #     E[regret] = T · Σ_c w_c (max_b p_cb − mean_b p_cb),   Var ≤ T · (1 + A²/2) Σ_c w_c mean_b (p*_c − p_cb)².
    scenario = Scenario(n_banners=6, n_cities=5, horizon=96_000, impressions_per_hour=2000.0,  # 48 hours
                        base_ctr=0.05, banner_spread=0.5)
    for seed in (0, 1):
        env = BannerSlotEnv(scenario)
        env.reset(seed=seed)
        p, w = env.true_ctr[0], env.city_weights[0]
        gap = p.max(axis=1, keepdims=True) - p                                          # (C, K)
        closed_form = scenario.horizon * float(w @ gap.mean(axis=1))
        second_moment = (1 + scenario.hour_amplitude ** 2 / 2) * float(w @ (gap ** 2).mean(axis=1))
        tolerance = 4 * np.sqrt(scenario.horizon * second_moment)                      # 4 s.d.
        result = run(scenario, "uniform", seed=seed)
        assert result.regret == pytest.approx(closed_form, abs=tolerance), (result.regret, closed_form)
        assert tolerance < 0.05 * closed_form                # the check is tight enough to mean something


def test_thompson_beats_uniform_decisively():
    ratios = []
    for seed in range(3):
        thompson = run(SMALL, "thompson", seed=seed)
        uniform = run(SMALL, "uniform", seed=seed)
        ratios.append(thompson.regret / uniform.regret)
        assert thompson.clicks_vs_oracle > uniform.clicks_vs_oracle + 0.1, seed
    assert max(ratios) < 0.4 and np.mean(ratios) < 0.3, ratios


def test_hours_are_local_hours_of_the_tenant():
    scenario = SMALL.with_(horizon=48_000, impressions_per_hour=1000.0,
                           start=dt.datetime(2026, 3, 28, 20, 0, tzinfo=dt.UTC))
    env = BannerSlotEnv(scenario)
    env.reset(seed=0)
    assert env.hour[0] == 1                                  # 20:00 UTC is 01:30 IST (+05:30)
    assert env.hour[1000] == 2
    berlin = BannerSlotEnv(scenario.with_(timezone="Europe/Berlin"))
    berlin.reset(seed=0)
    assert berlin.hour[0] == 21                              # CET (+01:00)
    assert berlin.hour[12 * 1000] == 10                      # 08:00 UTC on 29 March is 10:00 CEST (+02:00)
    m = env.modulation
    assert m[env.hour == 21].max() == pytest.approx(1.3) and m[env.hour == 9].min() == pytest.approx(0.7)


def test_drift_makes_the_worst_banner_the_best():
    env = BannerSlotEnv(SMALL.with_(drift_at=5_000))
    env.reset(seed=2)
    before, after = env.slot_logit
    assert env.new_best_banner == int(np.argmin(before))
    assert after[env.new_best_banner] > before.max()
    assert (env.true_ctr[1].argmax(axis=1) == env.new_best_banner).mean() >= 0.75


def test_a_reversed_city_ranks_the_banners_against_the_slot_and_no_other_city_changes():
    scenario = SMALL.with_(city_spread=0.0, drift_at=5_000)
    plain, reversed_ = BannerSlotEnv(scenario), BannerSlotEnv(scenario.with_(reversed_city=2))
    plain.reset(seed=8)
    reversed_.reset(seed=8)
    others = [0, 1, 3]
    np.testing.assert_array_equal(plain.true_ctr[:, others], reversed_.true_ctr[:, others])
    for phase, slot in enumerate(reversed_.slot_logit):                # before and after the drift
        ctr = reversed_.true_ctr[phase, 2]
        np.testing.assert_array_equal(np.argsort(ctr), np.argsort(slot)[::-1])
        np.testing.assert_allclose(np.sort(ctr), np.sort(plain.true_ctr[phase, 2]))   # the same rates, moved
    np.testing.assert_array_equal(plain.city, reversed_.city)


@pytest.mark.parametrize("city", [-1, 4, True, 1.0])
def test_a_reversed_city_must_be_one_of_the_cities(city):
    with pytest.raises(ValueError, match="reversed_city"):
        SMALL.with_(reversed_city=city)


def test_the_command_line_runs_a_preset_with_a_reversed_city_and_refuses_one_that_is_not_there(capsys):
    assert simulator_cli(["run", "--horizon", "2000", "--policy", "thompson", "--reversed-city", "1"]) == 0
    out = capsys.readouterr().out
    assert "city 1 (0 = largest) with the slot's ranking reversed" in out and "thompson" in out
    assert simulator_cli(["run", "--horizon", "2000", "--reversed-city", "20"]) == 2
    assert "reversed_city must be an integer in [0, 19]" in capsys.readouterr().err


def test_a_run_reports_each_citys_share_of_the_totals():
    result = run(SMALL.with_(reversed_city=0), "thompson", seed=9)
    per_city = result.per_city
    assert per_city["impressions"].sum() == result.horizon
    assert per_city["regret"].sum() == pytest.approx(result.regret)
    assert per_city["oracle_expected_clicks"].sum() == pytest.approx(result.oracle_expected_clicks)
    assert per_city["expected_clicks"].sum() == pytest.approx(result.expected_clicks)
    assert np.all(per_city["regret"] >= 0) and np.all(per_city["impressions"] > 0)


def test_a_new_city_has_no_traffic_before_it_appears():
    scenario = SMALL.with_(new_city_at=8_000, new_city_share=0.2)
    env = BannerSlotEnv(scenario)
    env.reset(seed=4)
    new = scenario.n_cities - 1
    assert not np.any(env.city[:8_000] == new)
    assert np.mean(env.city[8_000:] == new) == pytest.approx(0.2, abs=0.02)
    result = run(scenario, "thompson", seed=4)
    assert result.new_city["impressions"] == int(np.sum(env.city == new))


def test_delayed_clicks_arrive_later_and_none_is_lost():
    scenario = SMALL.with_(horizon=5_000, click_delay_seconds=120.0, impressions_per_hour=3600.0)
    env = BannerSlotEnv(scenario)
    obs, _ = env.reset(seed=6)
    revealed, clicked, lags = [], 0, []
    truncated = False
    while not truncated:
        obs, reward, _, truncated, info = env.step(np.zeros(scenario.batch_size, dtype=np.int64))
        clicked += int(info["clicks"].sum())
        assert reward == info["revealed_impressions"].size
        lags.extend(info["t"] + scenario.batch_size - info["revealed_impressions"])
        revealed.extend(info["revealed_impressions"])
    assert len(set(revealed)) == len(revealed)                   # each click once
    pending = len(env._pending_index)
    assert len(revealed) + pending == clicked
    assert np.mean(lags) > scenario.batch_size                   # later than the refresh of their impression


def test_impressions_to_share_counts_whole_blocks():
    on_best = np.r_[np.zeros(3000, bool), np.ones(3000, bool)]
    assert impressions_to_share(on_best, 1000) == 4000
    assert impressions_to_share(on_best[:3500], 1000) is None


def test_our_thompson_policy_serves_from_the_servers_posterior():
    policy = ThompsonPerCity(n_banners=3, n_cities=3, rng=0)
    policy.update_params(np.array([0, 0, 1]), np.array([2, 2, 0]), np.array([0]), np.array([2]))
    ones = np.ones(3)
    alpha, beta = beta_posterior(ones, ones, [0, 0, 2], [0, 0, 1])
    np.testing.assert_allclose(policy._alpha[0], alpha)
    np.testing.assert_allclose(policy._beta[0], beta)
    slot_alpha, slot_beta = beta_posterior(ones, ones, [1, 0, 2], [0, 0, 1])   # city 2 is unseen: slot-wide
    np.testing.assert_allclose(policy._alpha[2], slot_alpha)
    np.testing.assert_allclose(policy._beta[2], slot_beta)


def test_slot_wide_prior_pools_the_other_cities_with_a_capped_strength():
    impressions = np.array([[1000.0, 0.0], [3000.0, 10.0], [0.0, 0.0]])
    clicks = np.array([[100.0, 0.0], [300.0, 1.0], [0.0, 0.0]])
    alpha0, beta0 = slot_wide_prior(impressions, clicks, max_strength=50.0)
    assert alpha0[2, 0] / (alpha0[2, 0] + beta0[2, 0]) == pytest.approx(401 / 4002)   # new city: slot rate
    assert alpha0[2, 0] + beta0[2, 0] == pytest.approx(50.0)                                           # capped
    assert alpha0[0, 0] / (alpha0[0, 0] + beta0[0, 0]) == pytest.approx(301 / 3002)   # leave-one-out
    assert alpha0[0, 1] + beta0[0, 1] == pytest.approx(12.0)                                           # below the cap
    pooled = ThompsonPooled(n_banners=2, n_cities=3, rng=0, max_strength=50.0)
    pooled.update_params(np.array([0]), np.array([0]), np.array([], int), np.array([], int))
    assert pooled._alpha.shape == (3, 2)


def test_mabwiser_policy_counts_what_it_was_told():
    policy = MabwiserThompson(n_banners=3, n_cities=2, rng=0)
    policy.update_params(np.array([0, 0, 0, 1]), np.array([1, 1, 2, 0]), np.array([0]), np.array([1]))
    policy.update_params(np.array([1]), np.array([0]), np.array([1, 0]), np.array([2, 2]))  # 2 late clicks
    city0 = policy.mabs[0]._imp
    assert (city0.arm_to_success_count[1], city0.arm_to_fail_count[1]) == (2, 2)   # Beta(1 + 1, 1 + 1)
    assert (city0.arm_to_success_count[2], city0.arm_to_fail_count[2]) == (1, 2)   # click held back
    assert policy.pending_clicks[0, 2] == 1 and policy.pending_clicks[1, 2] == 1
    picks = policy.select_actions(np.array([0, 1, 1, 0, 0]))
    assert picks.shape == (5,) and set(picks.tolist()) <= {0, 1, 2}


def test_empirical_bayes_prior_is_the_priors_jobs_slot_wide_fit_per_banner():
    """The simulator's EB prior is bandits.priors' fit (not a copy): same α, β for every city, capped."""
    from bandits.priors import PriorSettings, fit_population

    rng = np.random.default_rng(3)
    impressions = rng.integers(200, 5000, size=(6, 3)).astype(float)
    clicks = np.floor(impressions * np.array([0.02, 0.05, 0.08]) * rng.uniform(0.6, 1.4, size=(6, 3)))
    alpha0, beta0 = empirical_bayes_prior(impressions, clicks, max_strength=300.0)
    for banner in range(3):
        fit = fit_population(impressions[:, banner], clicks[:, banner], int(impressions[:, banner].sum()),
                             int(clicks[:, banner].sum()), PriorSettings(max_strength=300.0))
        assert np.allclose(alpha0[:, banner], fit.alpha) and np.allclose(beta0[:, banner], fit.beta)
    assert np.all(alpha0 + beta0 <= 300.0 + 1e-9)
    means = alpha0[0] / (alpha0[0] + beta0[0])
    assert means[0] < means[1] < means[2]                 # centred on each banner's slot-wide rate
    policy = ThompsonPooled(n_banners=3, n_cities=6, prior_function=empirical_bayes_prior, rng=1)
    assert policy.select_actions(np.arange(6)).shape == (6,)    # a new slot (no counts) works too


def test_discounted_pooled_serves_from_priors_fitted_on_the_discounted_counts():
    """thompson-discounted-pooled: every city ages per decision of the slot, and its posterior is the EB prior
    fitted on the discounted counts plus those counts (not the plain counts)."""
    from simulator.policies import POLICIES, DiscountedPooled

    policy = POLICIES["thompson-discounted-pooled"](n_banners=3, n_cities=2, rng=0)
    assert isinstance(policy, DiscountedPooled) and policy.policy.clock == "slot"
    cities, banners = np.array([0] * 300 + [1] * 100), np.array([0, 1, 2] * 133 + [0])
    clicked = np.flatnonzero(banners == 2)[:30]
    policy.update_params(cities, banners, cities[clicked], banners[clicked])
    n = policy.policy.impressions.copy()
    assert n.sum() == 400                                            # a batch's own impressions count fully
    policy.update_params(np.array([0]), np.array([0]), np.array([], dtype=int), np.array([], dtype=int))
    assert np.allclose(policy.policy.impressions[1], n[1] * policy.gamma)   # city 1 aged by the slot's decision
    alpha0, beta0 = empirical_bayes_prior(policy.policy.impressions, policy.policy.clicks, max_strength=1000.0)
    alpha, beta = beta_posterior(alpha0, beta0, policy.policy.impressions, policy.policy.clicks)
    draws = policy.select_actions(np.zeros(4000, dtype=int))
    shares = np.bincount(draws, minlength=3) / draws.size
    means = alpha[0] / (alpha[0] + beta[0])
    assert np.argmax(shares) == np.argmax(means) == 2                # the clicked banner leads city 0


def test_slot_thompson_reference_serves_every_city_from_the_slots_counts():
    policy = ThompsonSlot(n_banners=3, n_cities=2, rng=0)
    policy.update_params(np.array([0, 0, 1, 1]), np.array([0, 2, 2, 2]), np.array([0, 1]), np.array([2, 2]))
    ones = np.ones(3)
    alpha, beta = beta_posterior(ones, ones, [1, 0, 3], [0, 0, 2])
    for city in (0, 1):
        np.testing.assert_allclose(policy._alpha[city], alpha)
        np.testing.assert_allclose(policy._beta[city], beta)


def test_posterior_mean_reference_exploits_each_citys_posterior_and_never_explores():
    # prior: banner 1 best everywhere; city 1 has seen banner 1 fail often enough to fall below banner 0
    prior = (np.array([[3.0, 4.0], [3.0, 4.0]]), np.array([[97.0, 96.0], [97.0, 96.0]]))
    policy = PosteriorMeanGreedy(n_banners=2, n_cities=2, rng=0, prior_function=lambda n, c: prior)
    policy.update_params(np.full(300, 1), np.full(300, 1), np.array([], int), np.array([], int))
    picks = policy.select_actions(np.r_[np.zeros(500, int), np.ones(500, int)])
    assert (picks[:500] == 1).all()           # city 0: the prior's best, every time
    assert (picks[500:] == 0).all()           # city 1: 4 / 400 < 3 / 100, so banner 0, every time


def _served(cities, banners, clicks_per_pair):
    """Impressions of (city, banner) pairs and, for each pair, its first ``clicks`` impressions clicked."""
    click_cities = np.concatenate([np.full(k, c) for c, _, k in clicks_per_pair])
    click_banners = np.concatenate([np.full(k, b) for _, b, k in clicks_per_pair])
    return np.asarray(cities), np.asarray(banners), click_cities, click_banners


def test_hierarchical_candidate_serves_the_slots_best_to_a_new_city_and_a_citys_own_best_where_it_differs():
    # cities 1 and 2: 50,000 impressions per banner, banner 1 at 4 % beats banner 0 at 3 %;
    # city 0: 5,000 impressions of banner 1 at 1 %, so its posterior mean of banner 1 falls below banner 0's
    cities = np.r_[np.repeat([1, 2], 100_000), np.zeros(5_000, int)]
    banners = np.r_[np.tile(np.repeat([0, 1], 50_000), 2), np.ones(5_000, int)]
    policy = HierarchicalThompson(n_banners=2, n_cities=4, rng=0, temper=0.0)
    policy.update_params(*_served(cities, banners,
                                  [(1, 0, 1500), (1, 1, 2000), (2, 0, 1500), (2, 1, 2000), (0, 1, 50)]))
    picks = policy.select_actions(np.r_[np.full(500, 3), np.zeros(500, int)])
    assert (picks[:500] == 1).all()           # city 3, no data: the slot's best, every time
    assert (picks[500:] == 0).all()           # city 0: its own data outweighs the slot


def test_hierarchical_candidate_explores_within_a_city_only_as_far_as_temper_allows():
    # city 1 pins the slot: 100,000 impressions per banner, both at 3 %; city 0 has 400 per banner at 3 % and
    # 4 %: the mean prefers banner 1 every time, a plain draw of so few impressions still doubts it
    served = _served(np.r_[np.ones(200_000, int), np.zeros(800, int)],
                     np.r_[np.zeros(100_000, int), np.ones(100_000, int), np.zeros(400, int), np.ones(400, int)],
                     [(1, 0, 3000), (1, 1, 3000), (0, 0, 12), (0, 1, 16)])
    shares = {}
    for temper in (0.0, 1.0):
        policy = HierarchicalThompson(n_banners=2, n_cities=2, rng=1, temper=temper)
        policy.update_params(*served)
        shares[temper] = policy.select_actions(np.zeros(4000, int)).mean()      # share of banner 1
    assert shares[0.0] > 0.95 and shares[1.0] < 0.85


@pytest.mark.parametrize("temper", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_hierarchical_candidate_refuses_a_temper_outside_0_to_1(temper):
    with pytest.raises(ValueError, match="temper"):
        HierarchicalThompson(n_banners=2, n_cities=2, temper=temper)
