"""Candidate policies replayed on a log (evaluation/candidates.py) and the slot evaluation (evaluation/offline.py).
Pure: no database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation import candidates, offline

ARMS = ("a", "b", "c")
START = pd.Timestamp("2026-12-01", tz="UTC")


def _log(n: int, ctr: dict[str, float], seed: int = 0, every_seconds: float = 10.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    log = pd.DataFrame({"served_at": START + pd.to_timedelta(np.arange(n) * every_seconds, unit="s"),
                        "location": rng.choice(["pune", "delhi", ""], n),
                        "banner_id": rng.choice(list(ctr), n)})
    log["clicked"] = (rng.random(n) < log["banner_id"].map(ctr)).astype(int)
    log["propensity"] = 1 / len(ctr)
    return log


def test_uniform_and_always_one_banner():
    log = _log(5, dict.fromkeys(ARMS, 0.1))
    rng = np.random.default_rng(0)
    assert candidates.candidate("uniform", ARMS).probabilities(log, rng).tolist() == [[1 / 3] * 3] * 5
    assert candidates.candidate("always:b", ARMS).probabilities(log, rng).tolist() == [[0, 1, 0]] * 5


@pytest.mark.parametrize("name", ["linucb", "always:z", "thompson:prior=0", "thompson:half-life=x", "policy:nope",
                                  "thompson:prior=-3"])
def test_an_unknown_candidate_is_refused(name):
    with pytest.raises(candidates.UnknownCandidate):
        candidates.candidate(name, ARMS)


def test_thompson_replay_learns_from_what_the_log_held_before_each_refresh():
    log = _log(20_000, {"a": 0.02, "b": 0.06, "c": 0.03})           # 10 s apart: ~56 hourly refreshes
    pi = candidates.candidate("thompson", ARMS).probabilities(log, np.random.default_rng(1))
    first_hour = (log["served_at"] < START + pd.Timedelta(hours=1)).to_numpy()
    assert np.allclose(pi[first_hour], 1 / 3, atol=0.05)              # nothing learned yet: Beta(1, 1) each
    assert pi[-2000:, 1].mean() > 0.9                                 # later: the best banner wins the draws
    assert np.allclose(pi.sum(axis=1), 1.0)


def test_a_half_life_forgets_a_banner_that_stopped_working():
    before = _log(10_000, {"a": 0.08, "b": 0.02, "c": 0.02}, seed=2, every_seconds=30)
    after = _log(10_000, {"a": 0.0, "b": 0.08, "c": 0.02}, seed=3, every_seconds=30)
    after["served_at"] += pd.Timedelta(seconds=30 * 10_000)
    log = pd.concat([before, after], ignore_index=True)
    rng = np.random.default_rng(4)
    cumulative = candidates.candidate("thompson", ARMS).probabilities(log, rng)
    decayed = candidates.candidate("thompson:half-life=6", ARMS).probabilities(log, rng)
    # 8 to 25 hours after the change (rows 11,000..13,000): the decayed replay has moved to 'b', the cumulative
    # one still believes in 'a'
    assert decayed[11_000:13_000, 1].mean() > 0.6
    assert cumulative[11_000:13_000, 1].mean() < 0.2


def test_evaluate_log_leaves_out_rows_without_a_propensity_and_counts_them():
    log = _log(6000, {"a": 0.02, "b": 0.06, "c": 0.03}, seed=5)
    log.loc[:99, "propensity"] = np.nan
    results = offline.evaluate_log(log, ["uniform", "always:b"], bootstrap=50)
    assert [r.candidate for r in results] == ["uniform", "always:b"]
    assert all(r.left_out == 100 and r.evaluation.events == 5900 for r in results)
    uniform = results[0].evaluation
    assert uniform.estimates["ips"].value == pytest.approx(uniform.observed_ctr)    # on-policy: w = 1
    assert uniform.estimates["dr"].low < uniform.observed_ctr < uniform.estimates["dr"].high


def test_evaluate_log_refuses_an_unknown_candidate_before_any_work():
    with pytest.raises(candidates.UnknownCandidate):
        offline.evaluate_log(_log(10, dict.fromkeys(ARMS, 0.1)), ["uniform", "greedy"])


def test_a_holdout_row_is_weighed_by_the_mixture_of_both_loggers():
    # three rows at the first refresh (the replayed Thompson policy is uniform there: Beta(1, 1) everywhere)
    log = _log(3, dict.fromkeys(ARMS, 0.1))
    log["serving_group"] = ["policy", "holdout", "policy"]
    log["holdout_share"] = [0.2, 0.2, 0.0]
    logged = np.array([0.5, 1 / 3, 0.9])
    actions = log["banner_id"].map({a: i for i, a in enumerate(ARMS)}).to_numpy()
    mixture, support = offline.logging_propensities(log, ARMS, actions, logged, np.random.default_rng(0))
    # policy row: h/K + (1 − h)·p; holdout row: h/K + (1 − h)·π_log(a) with π_log ≈ 1/3 (replayed, Monte Carlo)
    assert mixture[0] == pytest.approx(0.2 / 3 + 0.8 * 0.5)
    assert mixture[1] == pytest.approx(0.2 / 3 + 0.8 / 3, abs=0.03)
    assert mixture[2] == pytest.approx(0.9)            # no holdout: the logged propensity as it is
    assert support.all()
