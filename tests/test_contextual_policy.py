"""Contextual Thompson sampling (bandits/contextual.py): encoding, the posterior against its closed form,
seeded reproducibility, learning who clicks what, invalid parameters. Pure: no services."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits import BetaPrior
from bandits.contextual import (
    CELL_FIRST_BLOCK,
    FEATURE_PRIOR,
    MAX_FEATURE_PRIOR,
    OTHER,
    ContextualThompson,
    InvalidContext,
    cell_key,
    context_features,
    parse_cell,
    raw_level,
    shrinkage_precision,
)
from bandits.policy import Context, Policy, SlotStatistics
from bandits.registry import policy_class
from eventlog.counting import SLOT_WIDE

FEATURES = ("referrer", "device")
CELLS = {
    cell_key(FEATURES, ("news", "mobile")): {"a": (400, 60), "b": (400, 8)},
    cell_key(FEATURES, ("search", "mobile")): {"a": (300, 6), "b": (300, 45)},
    cell_key(FEATURES, ("search", "desktop")): {"a": (200, 4), "b": (200, 30)},
    cell_key(FEATURES, ("rare", "desktop")): {"a": (3, 1)},
}


def contextual(cells=CELLS, features=FEATURES, arms=("a", "b"), max_levels=16, **kwargs) -> ContextualThompson:
    statistics = SlotStatistics(context_features=features, context_counts=cells, max_levels=max_levels,
                                **kwargs)
    return ContextualThompson.from_statistics(arms, statistics, max_draws=4096)


def test_it_is_registered_and_follows_the_protocol():
    assert policy_class("contextual") is ContextualThompson
    assert isinstance(contextual(), Policy)
    # no statistics at all: cold start on the default features still serves
    policy = ContextualThompson.from_statistics(("a", "b", "c"), SlotStatistics(), max_draws=16)
    assert policy.choose(Context(), np.random.default_rng(0)).arm in (0, 1, 2)


def test_levels_are_normalized_and_missing_ones_are_other():
    context = Context(location="pune", referrer_id="  NewsLetter ", hour=23, weekday=6, device="tablet",
                      segment="VIP")
    assert [raw_level(context, f) for f in ("location", "referrer", "hour", "weekday", "device", "segment")] \
        == ["pune", "newsletter", "23", "6", "tablet", "vip"]
    assert [raw_level(Context(), f) for f in ("location", "referrer", "hour", "weekday", "device", "segment")] \
        == [OTHER] * 6
    assert raw_level(Context(device="toaster"), "device") == OTHER
    assert raw_level(Context(segment="x" * 200), "segment") == "x" * 64
    assert parse_cell(cell_key(FEATURES, ("news", "mobile"))) == {"referrer": "news", "device": "mobile"}


def test_rare_and_unseen_levels_are_encoded_as_other():
    policy = contextual()
    assert policy.levels == [["news", "search"], ["desktop", "mobile"]]     # 'rare' has 3 impressions < 20
    assert "referrer=rare" not in policy.feature_names and "referrer=other" in policy.feature_names
    rare, unseen, other = policy.encode_levels([("rare", "mobile"), ("never-seen", "mobile"), (OTHER, "mobile")])
    assert rare.tolist() == other.tolist() == unseen.tolist()
    assert rare[0] == 1.0 and rare.sum() == 3.0                   # intercept + one level per feature


def test_open_features_admit_new_levels_up_to_the_cap_then_other():
    policy = contextual(max_levels=4)                 # 3 named levels + other; news, search, rare are known
    assert policy.cell_levels(Context(referrer_id="fresh", device="mobile")) == (OTHER, "mobile")
    roomy = contextual(max_levels=5)
    assert roomy.cell_levels(Context(referrer_id="fresh", device="mobile")) == ("fresh", "mobile")
    assert roomy.cell_levels(Context(referrer_id="fresher", device="mobile")) == (OTHER, "mobile")
    assert roomy.cell_levels(Context(referrer_id="fresh")) == ("fresh", OTHER)      # admitted stays
    assert roomy.cell_levels(Context(referrer_id="newer"), admit=False) == (OTHER, OTHER)


def test_the_posterior_is_bayesian_linear_regression_in_closed_form():
    """μ = (Λ0 + XᵀX)⁻¹ (Λ0 m0 + Xᵀy) over one row per impression, from counts per cell alone."""
    priors = {SLOT_WIDE: {"a": BetaPrior(2.0, 38.0, "slot")}}
    policy = contextual(counts={SLOT_WIDE: {"a": (1000, 80), "b": (1000, 90)}}, priors=priors)
    rows = []
    for cell, by_banner in CELLS.items():
        levels = tuple(parse_cell(cell)[f] for f in FEATURES)
        x = policy.encode_levels([levels])[0]
        for banner, (n, c) in by_banner.items():
            for i in range(n):
                rows.append((banner, x, float(i < c)))
    d = len(policy.feature_names) + 1
    intercept_only = np.eye(d)[0]
    # history without a cell: slot-wide counts minus the cells' counts, intercept only
    rest = {"a": (1000 - 903, 80 - 71), "b": (1000 - 900, 90 - 83)}
    for banner, (n, c) in rest.items():
        rows += [(banner, intercept_only, float(i < c)) for i in range(n)]
    for arm, banner, n0, p0 in ((0, "a", 40.0, 2.0 / 40.0), (1, "b", 2.0, None)):
        x = np.array([r[1] for r in rows if r[0] == banner])
        y = np.array([r[2] for r in rows if r[0] == banner])
        pooled = (80 + 90 + 1) / (2000 + 2)
        levels = [policy.feature_priors[f] for j, f in enumerate(FEATURES) for _ in range(len(policy.levels[j]) + 1)]
        prior_precision = np.diag([n0, *levels])
        prior_mean = np.zeros(d)
        prior_mean[0] = p0 if p0 is not None else pooled
        precision = prior_precision + x.T @ x
        mean = np.linalg.solve(precision, prior_precision @ prior_mean + x.T @ y)
        np.testing.assert_allclose(policy.precision[arm], precision, rtol=1e-10)
        np.testing.assert_allclose(policy.mean[arm], mean, rtol=1e-8, atol=1e-12)
        assert policy.noise == pytest.approx(pooled * (1 - pooled))


def test_the_feature_prior_is_the_method_of_moments_between_level_variance():
    """λ_f = σ²/τ_f², τ_f² = Σ [n (r_lb − r_b)² − σ²(1 − n/n_b)] / Σ n, clipped to [floor, ceiling]."""
    level_n = np.array([[1000.0, 2000.0], [3000.0, 2000.0]])
    level_c = np.array([[60.0, 40.0], [60.0, 80.0]])
    noise = 0.03 * 0.97
    arm_rate = level_c.sum(axis=0) / level_n.sum(axis=0)
    tau2 = ((level_n * (level_c / level_n - arm_rate) ** 2).sum()
            - noise * (1 - level_n / level_n.sum(axis=0)).sum()) / level_n.sum()
    assert tau2 > 0
    assert shrinkage_precision(level_n, level_c, noise, 1.0, 1e9) == pytest.approx(noise / tau2)
    assert shrinkage_precision(level_n, level_c, noise, 1e6, 1e9) == 1e6                 # the floor
    alike = np.array([[30.0, 60.0], [90.0, 60.0]])                                      # same rate at each level
    assert shrinkage_precision(level_n, alike, noise, 20.0, 1e5) == 1e5                  # no spread: the ceiling
    assert shrinkage_precision(np.zeros((2, 2)), np.zeros((2, 2)), noise) == MAX_FEATURE_PRIOR   # no data


def test_a_feature_that_moves_nothing_is_shrunk_and_one_that_does_is_not():
    """Referrer decides the winner; device, independent of it, changes no banner's rate."""
    rng = np.random.default_rng(5)
    cells = {}
    for referrer, rates in (("news", (0.10, 0.02)), ("search", (0.02, 0.10))):
        for device in ("mobile", "desktop", "tablet"):
            cells[cell_key(FEATURES, (referrer, device))] = {
                arm: (2000, int(rng.binomial(2000, rate))) for arm, rate in zip("ab", rates)}
    policy = contextual(cells=cells)
    # referrer: rates ±0.04 around 0.06, so τ² ≈ 0.0016 and λ ≈ σ²/τ² = 0.0564/0.0016 ≈ 35 impressions
    assert FEATURE_PRIOR <= policy.feature_priors["referrer"] < 2 * FEATURE_PRIOR
    assert policy.feature_priors["device"] > 50 * FEATURE_PRIOR             # no spread beyond noise
    fixed = ContextualThompson(("a", "b"), SlotStatistics(context_features=FEATURES, context_counts=cells),
                               empirical_prior=False)
    assert fixed.feature_priors == {"referrer": FEATURE_PRIOR, "device": FEATURE_PRIOR}
    # the shrunk feature adds (almost) no variance to a cell's draws
    _, sd = policy.scores(("news", "mobile"))
    _, sd_fixed = fixed.scores(("news", "mobile"))
    assert (sd < sd_fixed).all()


def test_batch_decisions_draw_from_the_same_distribution_as_choose():
    policy = contextual()
    rng = np.random.default_rng(9)
    rows = [("news", "mobile"), ("search", "mobile"), (OTHER, "desktop")] * 4000
    arms = policy.sample_arms(rows, rng)
    for levels in set(rows):
        chosen = arms[[i for i, row in enumerate(rows) if row == levels]]
        context = Context(referrer_id=None if levels[0] == OTHER else levels[0], device=levels[1])
        expected = policy.action_probabilities(context, rng, draws=50_000)
        np.testing.assert_allclose(np.bincount(chosen, minlength=2) / len(chosen), expected, atol=0.03)


def test_each_referrer_gets_its_own_winner_and_the_choice_explains_itself():
    policy = contextual()
    rng = np.random.default_rng(7)
    news = [policy.choose(Context(referrer_id="news", device="mobile"), rng) for _ in range(2000)]
    search = [policy.choose(Context(referrer_id="search", device="mobile"), rng) for _ in range(2000)]
    assert np.mean([c.arm == 0 for c in news]) > 0.95
    assert np.mean([c.arm == 1 for c in search]) > 0.95
    assert news[0].state["cell"] == "referrer=news\tdevice=mobile"
    assert news[0].state["top"][0] == "referrer=news"
    assert json.loads(news[0].state_json) == news[0].state
    # propensities: the block's win frequencies, summing to one over the arms
    first = {c.arm: c.propensity for c in news[:CELL_FIRST_BLOCK]}
    assert 0.9 < first[0] <= 1.0


def test_a_city_only_signal_is_learned_through_location():
    cells = {cell_key(("location",), ("pune",)): {"a": (500, 50), "b": (500, 10)},
             cell_key(("location",), ("delhi",)): {"a": (500, 10), "b": (500, 50)}}
    policy = contextual(cells=cells, features=("location",))
    rng = np.random.default_rng(3)
    assert policy.action_probabilities(Context(location="pune"), rng)[0] > 0.95
    assert policy.action_probabilities(Context(location="delhi"), rng)[1] > 0.95


def test_cells_of_other_features_are_projected_so_switching_features_keeps_history():
    policy = contextual(features=("referrer",))
    assert policy.levels == [["news", "search"]]
    rng = np.random.default_rng(3)
    assert policy.action_probabilities(Context(referrer_id="news"), rng)[0] > 0.95


def test_seeded_choices_are_reproducible():
    def run(seed):
        policy, rng = contextual(), np.random.default_rng(seed)
        return [policy.choose(Context(referrer_id=r, device="mobile"), rng).arm
                for r in ("news", "search", "x") * 300]
    assert run(11) == run(11)
    assert run(11) != run(12)


def test_explain_gives_moment_matched_betas_and_p_best():
    explained = contextual().explain(Context(referrer_id="search", device="desktop"), np.random.default_rng(1))
    assert [e.arm for e in explained] == ["a", "b"]
    assert sum(e.p_best for e in explained) == pytest.approx(1.0)
    assert explained[1].p_best > 0.95 and explained[1].mean > explained[0].mean


@pytest.mark.parametrize(("names", "message"), [
    (["referrer", "colour"], "unknown context feature\\(s\\) 'colour'"),
    ("referrer", "must be a list"),
    ([3], "unknown context feature"),
])
def test_invalid_feature_lists_are_refused_clearly(names, message):
    with pytest.raises(InvalidContext, match=message):
        context_features(names)


def test_feature_lists_are_canonical():
    assert context_features(["device", "referrer", "device"]) == ("referrer", "device")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_draws": 0}, "max_draws"), ({"feature_prior": 0.0}, "feature_prior"),
    ({"min_level_impressions": -1}, "min_level_impressions"),
])
def test_invalid_parameters_are_refused_clearly(kwargs, message):
    with pytest.raises(InvalidContext, match=message):
        ContextualThompson(("a",), SlotStatistics(), **kwargs)


def test_an_invalid_level_cap_is_refused():
    with pytest.raises(InvalidContext, match="max_levels must be an integer from 2"):
        contextual(max_levels=1)


def test_a_feature_prior_ceiling_below_the_floor_is_refused():
    with pytest.raises(InvalidContext, match="max_feature_prior must be a number ≥ feature_prior"):
        ContextualThompson(("a",), SlotStatistics(), feature_prior=50.0, max_feature_prior=10.0)


def test_an_invalid_exploration_scale_is_refused():
    with pytest.raises(InvalidContext, match="exploration must be a positive number"):
        ContextualThompson(("a",), SlotStatistics(), exploration=0.0)
