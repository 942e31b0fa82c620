"""Intervals of a candidate that learns from the log: each bootstrap resample re-runs its learning
(evaluation/estimators.py ``relearn``, evaluation/candidates.py ``weights``, evaluation/offline.py).
Pure: no database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation import candidates, estimators, offline

REWARDS = [1, 0, 1, 0]
ACTIONS = [0, 1, 0, 1]
PROPENSITIES = [0.5, 0.5, 0.8, 0.2]
ALWAYS_0 = np.array([[1.0, 0.0]] * 4)
UNIFORM = np.array([[0.5, 0.5]] * 4)
ARMS = ("a", "b", "c")
START = pd.Timestamp("2026-12-01", tz="UTC")


def _learner(counts: np.ndarray) -> np.ndarray:
    """A toy learner: banner 0 for everyone if its click in row 0 is in the data it learns from, else uniform."""
    return ALWAYS_0 if counts[0] > 0 else UNIFORM


def test_each_resample_re_runs_the_learning_and_the_interval_is_value_plus_minus_z_sd():
    seen = []

    def relearn(counts):
        seen.append(counts.copy())
        return _learner(counts)

    result = estimators.evaluate(REWARDS, PROPENSITIES, ACTIONS, ALWAYS_0, bootstrap=6, rng=7, relearn=relearn)
    # by hand, with the same resamples: w_i = π*(a_i)/p_i, IPS* = Σ c_i w_i r_i / n, SNIPS* = Σ c w r / Σ c w
    rng = np.random.default_rng(7)
    r, a, p = np.array(REWARDS, float), np.array(ACTIONS), np.array(PROPENSITIES)
    ips, snips = [], []
    for drawn in seen:
        counts = np.bincount(rng.integers(4, size=4), minlength=4).astype(float)
        assert drawn.tolist() == counts.tolist()                  # the learner saw exactly the resample
        w = _learner(counts)[np.arange(4), a] / p
        ips.append(counts @ (w * r) / 4)
        snips.append(counts @ (w * r) / (counts @ w))
    assert len(seen) == 6
    assert len({tuple(_learner(c)[0]) for c in seen}) == 2       # the resamples did change what it learned
    # the point estimate is the candidate learned from the whole log: ALWAYS_0, w = (2, 0, 1.25, 0)
    for name, replicates, value in (("ips", ips, 3.25 / 4), ("snips", snips, 1.0)):
        half = 1.959963984540054 * np.std(replicates, ddof=1)
        estimate = result.estimates[name]
        assert estimate.value == pytest.approx(value)
        assert (estimate.low, estimate.high) == pytest.approx((value - half, value + half))


def test_two_resamples_give_half_width_z_times_their_difference_over_root_two():
    result = estimators.evaluate(REWARDS, PROPENSITIES, ACTIONS, ALWAYS_0, bootstrap=2, rng=7, relearn=_learner)
    rng = np.random.default_rng(7)
    a, p = np.array(ACTIONS), np.array(PROPENSITIES)
    values = []
    for _ in range(2):
        counts = np.bincount(rng.integers(4, size=4), minlength=4).astype(float)
        values.append(counts @ (_learner(counts)[np.arange(4), a] / p * np.array(REWARDS)) / 4)
    half = result.estimates["ips"].high - result.estimates["ips"].value
    assert half == pytest.approx(1.959963984540054 * abs(values[0] - values[1]) / np.sqrt(2))


@pytest.mark.parametrize("bootstrap, relearn", [
    (1, _learner),                                              # one resample has no spread
    (5, lambda counts: [[0.5, 0.6]] * 4),                       # a learned row not summing to 1
    (5, lambda counts: [[1.0, 0.0]] * 3),                       # the wrong shape
])
def test_a_bad_relearning_is_refused(bootstrap, relearn):
    with pytest.raises(ValueError):
        estimators.evaluate(REWARDS, PROPENSITIES, ACTIONS, ALWAYS_0, bootstrap=bootstrap, relearn=relearn)


def _log(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    log = pd.DataFrame({"served_at": START + pd.to_timedelta(np.arange(n) * 10.0, unit="s"),
                        "location": rng.choice(["pune", "delhi", ""], n),
                        "banner_id": rng.choice(list(ARMS), n)})
    log["clicked"] = (rng.random(n) < log["banner_id"].map({"a": 0.02, "b": 0.06, "c": 0.03})).astype(int)
    log["propensity"] = 1 / 3
    return log


@pytest.mark.parametrize("name", ["thompson", "thompson:prior=200", "thompson:half-life=6"])
def test_a_replay_counts_each_row_as_often_as_its_weight(name):
    log = _log(8000)
    replay = candidates.candidate(name, ARMS)
    twice = replay.probabilities(pd.concat([log, log]).sort_values("served_at", kind="stable"),
                                 np.random.default_rng(1))
    weighted = replay.probabilities(log, np.random.default_rng(1), weights=np.full(len(log), 2.0))
    assert np.array_equal(weighted, twice[::2])                 # the same posteriors, the same draws


def test_weights_change_what_a_replay_learns():
    log = _log(8000)
    replay = candidates.candidate("thompson", ARMS)
    weighted = replay.probabilities(log, np.random.default_rng(1), weights=np.full(len(log), 2.0))
    once = replay.probabilities(log, np.random.default_rng(1))
    assert np.array_equal(weighted[:360], once[:360])             # first hour: nothing learned by either
    assert np.abs(weighted[360:3000] - once[360:3000]).max() > 0.1      # then twice the evidence is sharper


def test_a_replay_without_the_rows_of_weight_zero():
    log = _log(8000, seed=3)
    kept = np.random.default_rng(2).random(len(log)) < 0.6
    hours = log["served_at"].dt.floor("h")
    # every (refresh, location) keeps a row, so both replays draw for the same contexts in the same order
    assert log[kept].groupby([hours[kept], log["location"][kept]]).ngroups == log.groupby([hours, "location"]).ngroups
    replay = candidates.candidate("thompson", ARMS)
    weighted = replay.probabilities(log, np.random.default_rng(1), weights=kept.astype(float))
    dropped = replay.probabilities(log[kept].reset_index(drop=True), np.random.default_rng(1))
    assert np.array_equal(weighted[kept], dropped)


def test_evaluate_log_replays_a_learning_candidate_on_each_resample():
    log = _log(6000, seed=5)
    fixed = offline.evaluate_log(log, ["uniform", "thompson"], bootstrap=40, relearn_bootstrap=0)
    relearned = offline.evaluate_log(log, ["uniform", "thompson"], bootstrap=40)
    # the fixed candidate's interval is the same either way; the learning one's comes from replays
    assert relearned[0].evaluation == fixed[0].evaluation
    assert relearned[1].evaluation.estimates["ips"].value == fixed[1].evaluation.estimates["ips"].value
    assert relearned[1].evaluation.estimates["ips"] != fixed[1].evaluation.estimates["ips"]
    for result in relearned:
        estimate = result.evaluation.estimates["dr"]
        assert estimate.low < estimate.value < estimate.high
