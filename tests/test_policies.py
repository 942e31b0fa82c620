"""The policy interface (bandits/policy.py), its registry and per-city Thompson sampling. Pure: no services."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits import BetaPrior
from bandits.city_thompson import FIRST_BLOCK, CityThompson
from bandits.policy import Choice, Context, Policy, SlotStatistics, prior_for
from bandits.registry import DEFAULT_POLICY, POLICIES, UnknownPolicy, policy_class
from eventlog.counting import SLOT_WIDE

PRIORS = {SLOT_WIDE: {"a": BetaPrior(2.0, 50.0, "slot"), "b": BetaPrior(3.0, 60.0, "slot")},
          "pune": {"a": BetaPrior(5.0, 40.0, "location")}}
COUNTS = {SLOT_WIDE: {"a": (1000, 30), "b": (1000, 60)}, "pune": {"a": (100, 10)}}


def thompson(arms=("a", "b"), counts=COUNTS, priors=PRIORS, max_draws=4096) -> CityThompson:
    return CityThompson.from_statistics(arms, SlotStatistics(counts, priors), max_draws=max_draws)


def test_every_registered_policy_follows_the_protocol_under_its_name():
    assert DEFAULT_POLICY == "thompson"
    for name, cls in POLICIES.items():
        assert cls.name == name
        assert isinstance(cls.from_statistics(("a",), SlotStatistics(), max_draws=16), Policy)
    assert policy_class(None) is policy_class("") is policy_class("thompson") is CityThompson


def test_an_unknown_policy_name_is_refused_clearly():
    with pytest.raises(UnknownPolicy, match="unknown policy 'linucb'; known: contextual, thompson"):
        policy_class("linucb")


def test_the_prior_falls_back_from_location_to_slot_wide_to_uniform():
    assert prior_for(PRIORS, "pune", "a").source == "location"
    assert prior_for(PRIORS, "pune", "b") == PRIORS[SLOT_WIDE]["b"]          # no location prior for b
    assert prior_for(PRIORS, "delhi", "a") == PRIORS[SLOT_WIDE]["a"]         # unknown location
    assert prior_for(PRIORS, SLOT_WIDE, "a") == PRIORS[SLOT_WIDE]["a"]
    assert prior_for(PRIORS, "pune", "c") == BetaPrior(1.0, 1.0, "uniform")


def test_a_known_location_uses_its_counts_and_priors():
    posterior = thompson().posterior("pune")
    assert posterior.scope == "location"
    assert posterior.alpha.tolist() == [5.0 + 10, 3.0 + 0]                  # b: slot-wide prior, no pune counts
    assert posterior.beta.tolist() == [40.0 + 90, 60.0 + 0]
    assert posterior.prior_sources == ("location", "slot")


def test_an_unknown_or_missing_location_uses_the_slot_wide_posterior():
    policy = thompson()
    for location in ("delhi", SLOT_WIDE):
        posterior = policy.posterior(location)
        assert posterior is policy.posterior(SLOT_WIDE)
        assert posterior.scope == "slot"
        assert posterior.alpha.tolist() == [2.0 + 30, 3.0 + 60]
        assert posterior.beta.tolist() == [50.0 + 970, 60.0 + 940]


def test_a_choice_logs_the_chosen_arms_posterior_and_its_propensity():
    policy = thompson()
    rng = np.random.default_rng(7)
    choices = [policy.choose(Context("pune"), rng) for _ in range(FIRST_BLOCK)]
    assert all(isinstance(c, Choice) for c in choices)
    posterior = policy.posterior("pune")
    for arm in (0, 1):
        mine = [c for c in choices if c.arm == arm]
        assert mine, arm
        # one block: an arm's propensity is its win frequency in the block of FIRST_BLOCK draws
        assert {c.propensity for c in mine} == {len(mine) / FIRST_BLOCK}
        state = json.loads(mine[0].state_json)
        assert state == dict(mine[0].state) == {"scope": "location", "alpha": posterior.alpha[arm],
                                                "beta": posterior.beta[arm], "prior": posterior.prior_sources[arm]}


def test_choices_are_thompson_draws_from_the_posterior():
    # Beta(15, 130) against Beta(3, 60): P(a wins) ≈ 0.8; 20,000 choices estimate it within ±0.01.
    policy = thompson(max_draws=4096)
    rng = np.random.default_rng(11)
    wins = sum(policy.choose(Context("pune"), rng).arm == 0 for _ in range(20_000)) / 20_000
    exact = np.mean(np.random.default_rng(3).beta(15, 130, 400_000) > np.random.default_rng(4).beta(3, 60, 400_000))
    assert abs(wins - exact) < 0.015


def test_explain_gives_each_arms_posterior_and_p_best():
    explained = thompson().explain(Context("pune"), np.random.default_rng(5), draws=20_000)
    assert [e.arm for e in explained] == ["a", "b"]
    assert (explained[0].alpha, explained[0].beta, explained[0].prior.source) == (15.0, 130.0, "location")
    assert explained[0].mean == pytest.approx(15 / 145)
    assert sum(e.p_best for e in explained) == pytest.approx(1.0)
    assert explained[0].p_best > 0.7


def test_a_policy_without_arms_refuses_to_choose():
    with pytest.raises(ValueError, match="zero arms"):
        thompson(arms=()).choose(Context(), np.random.default_rng(1))


def test_max_draws_must_be_positive():
    with pytest.raises(ValueError, match="max_draws must be ≥ 1"):
        thompson(max_draws=0)
