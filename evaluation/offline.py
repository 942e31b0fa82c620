"""Off-policy evaluation of a slot's log: the candidates' probabilities (candidates.py) and the estimators
(estimators.py) put together. Used by spark_jobs/evaluate.py (one slot's log at a time, on the driver), the
simulator's proof (benchmarks/bench_evaluation.py) and tests.

The log: a pandas DataFrame, one row per impression, with ``served_at`` (UTC), ``location``, ``banner_id``,
``clicked`` (0/1) and ``propensity`` (the logging policy's P(logged banner | context); NaN where unknown, e.g.
imported history without one: such rows are left out and counted). Other columns named in ``context_columns``
join the location as features of the DR reward model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation import candidates as candidates_module
from evaluation import estimators


@dataclass(frozen=True)
class CandidateResult:
    candidate: str
    evaluation: estimators.Evaluation
    left_out: int


def prepare(log: pd.DataFrame) -> tuple[pd.DataFrame, int, tuple[str, ...]]:
    """The rows with a usable propensity, in serve order; how many were left out; the banners (arms)."""
    usable = log["propensity"].notna() & (log["propensity"] > 0) & (log["propensity"] <= 1)
    kept = log[usable].sort_values("served_at", kind="stable").reset_index(drop=True)
    kept["location"] = kept["location"].fillna("").astype(str)
    arms = tuple(sorted(kept["banner_id"].astype(str).unique()))
    return kept, int((~usable).sum()), arms


def evaluate_log(log: pd.DataFrame, names: Sequence[str] | None = None, *, bootstrap: int = 200,
                 seed: int = 0, context_columns: Sequence[str] = (), arms: Sequence[str] | None = None,
                 refresh_seconds: float | None = None) -> list[CandidateResult]:
    """Each candidate's IPS, SNIPS and DR estimates on ``log`` (module doc). Unknown names raise
    candidates.UnknownCandidate before any work."""
    kept, left_out, logged_arms = prepare(log)
    arms = tuple(arms) if arms else logged_arms
    names = list(names) if names else candidates_module.default_candidates(arms)
    chosen = [candidates_module.candidate(name, arms) for name in names]
    if refresh_seconds is not None:
        chosen = [c if not isinstance(c, candidates_module.Replay) else
                  candidates_module.Replay(**{**c.__dict__, "refresh_seconds": refresh_seconds}) for c in chosen]
    if kept.empty:
        raise ValueError("no logged impression with a propensity in the window")
    index = {arm: i for i, arm in enumerate(arms)}
    kept = kept[kept["banner_id"].isin(index)].reset_index(drop=True)
    actions = kept["banner_id"].map(index).to_numpy()
    rewards = kept["clicked"].to_numpy(dtype=np.float64)
    propensities = kept["propensity"].to_numpy(dtype=np.float64)
    features = kept[["location", *context_columns]].fillna("")
    q_hat = estimators.reward_model(features, actions, rewards, len(arms), seed=seed)
    support = estimators.logged_support(kept["location"], actions, len(arms))
    rng = np.random.default_rng(seed)
    results = []
    for cand in chosen:
        pi = cand.probabilities(kept, rng)
        evaluation = estimators.evaluate(rewards, propensities, actions, pi, q_hat=q_hat, support=support,
                                         bootstrap=bootstrap, rng=rng)
        results.append(CandidateResult(cand.name, evaluation, left_out))
    return results
