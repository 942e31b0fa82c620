"""Off-policy evaluation of a slot's log: the candidates' probabilities (candidates.py) and the estimators
(estimators.py) put together. Used by spark_jobs/evaluate.py (one slot's log at a time, on the driver), the
simulator's proof (benchmarks/bench_evaluation.py) and tests.

The log: a pandas DataFrame, one row per impression, with ``served_at`` (UTC), ``location``, ``banner_id``,
``clicked`` (0/1) and ``propensity`` (the logging policy's P(logged banner | context); NaN where unknown, e.g.
imported history without one: such rows are left out and counted). Other columns named in ``context_columns``
join the location as features of the DR reward model. Optional: ``serving_group`` ('policy' or 'holdout') and
``holdout_share`` (P(holdout) at serve time), logged by serving since cql/013, and ``policy`` (the logging
policy's name).

With a holdout the log has two loggers: a visitor is in the holdout with probability h (independent of the
context: a hash or a coin), so the probability that banner a was shown in context x is the mixture

    μ(a | x) = h / K + (1 − h) · π_log(a | x)

and the estimators weigh by it (the "balanced" weights of Agarwal et al. 2017, "Effective evaluation using
logged bandit feedback from multiple loggers"): a policy row logs π_log(a | x) itself; for a holdout row the
logging policy's probability of the uniformly drawn banner is not logged, and comes from replaying the logging
policy (candidates.py) on that context. The mixture gives every banner at least h/K: a candidate far from the
policy (uniform, one banner) keeps its support and a useful ESS.

What a learning candidate's estimate targets: its replayed probabilities are P(best) under the posteriors it
would hold, i.e. already an expectation over its own Thompson draws, so the estimate is of its *expected* click
rate on this traffic — not of one online run, whose realized rate also carries that run's own draws. What is
still random in the replay is the data it learns from; hence its interval resamples that data and replays the
candidate on each resample (``relearn_bootstrap``), instead of holding the probabilities learned from the one
log fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd

from evaluation import candidates as candidates_module
from evaluation import estimators

RELEARN_BOOTSTRAP = 50          # resamples for a learning candidate's interval: each one is a replay
RELEARN_DRAWS = 500             # P(best) draws per context and period in those replays: their Monte Carlo error
#                                 (≤ 0.5/√500 per probability, independent across periods and contexts) averages
#                                 out over a resample's rows; the point estimate keeps candidates.DRAWS


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


def logging_propensities(kept: pd.DataFrame, arms: tuple[str, ...], actions: np.ndarray, logged: np.ndarray,
                         rng: np.random.Generator, refresh_seconds: float | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """μ(a_i | x_i) of the module doc, shape (n,), and the logging support μ(· | x_i) > 0, shape (n, K): the
    banners the logging policy (replayed) could show, or every banner where a holdout could show it."""
    n, k = len(kept), len(arms)
    share = (kept["holdout_share"].fillna(0.0).to_numpy(dtype=np.float64) if "holdout_share" in kept
             else np.zeros(n))
    held = (kept["serving_group"] == "holdout").to_numpy() if "serving_group" in kept else np.zeros(n, bool)
    names = kept["policy"].dropna() if "policy" in kept else pd.Series(dtype=object)
    policy = names.mode().iloc[0] if not names.empty else "thompson"
    replay = candidates_module.candidate("thompson" if policy == "thompson" else f"policy:{policy}", arms)
    if refresh_seconds is not None:
        replay = candidates_module.Replay(**{**replay.__dict__, "refresh_seconds": refresh_seconds})
    replayed = replay.probabilities(kept, rng)                           # π_log(· | x_i), shape (n, K)
    own = np.where(held, replayed[np.arange(n), actions], logged)       # π_log(a_i | x_i)
    mixture = share / k + (1.0 - share) * own
    # A holdout row's banner may have had no chance under the policy: μ is then h/K, never 0.
    support = (replayed > 0) | (share > 0)[:, None]
    support[np.arange(n), actions] = True                               # what was shown had a chance
    return np.clip(mixture, 1e-12, 1.0), support


def evaluate_log(log: pd.DataFrame, names: Sequence[str] | None = None, *, bootstrap: int = 200,
                 seed: int = 0, context_columns: Sequence[str] = (), arms: Sequence[str] | None = None,
                 refresh_seconds: float | None = None, relearn_bootstrap: int | None = None
                 ) -> list[CandidateResult]:
    """Each candidate's IPS, SNIPS and DR estimates on ``log`` (module doc). Unknown names raise
    candidates.UnknownCandidate before any work. A fixed candidate's interval comes from ``bootstrap``
    resamples; a learning one's from ``relearn_bootstrap`` resamples (default: ``bootstrap``, at most
    RELEARN_BOOTSTRAP), each replaying the candidate on the resample (0: ``bootstrap`` resamples with the
    probabilities learned from the whole log held fixed, which leaves the candidate's own learning path out of
    the interval)."""
    kept, left_out, logged_arms = prepare(log)
    if relearn_bootstrap is None:
        relearn_bootstrap = min(bootstrap, RELEARN_BOOTSTRAP)
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
    rng = np.random.default_rng(seed)
    propensities, support = logging_propensities(kept, arms, actions, propensities, rng, refresh_seconds)
    results = []
    for cand in chosen:
        pi = cand.probabilities(kept, rng)
        relearn = None                  # counts → the candidate's probabilities after learning from that resample
        if relearn_bootstrap and isinstance(cand, candidates_module.Replay):
            relearn = partial(replace(cand, draws=min(cand.draws, RELEARN_DRAWS)).probabilities, kept, rng)
        evaluation = estimators.evaluate(rewards, propensities, actions, pi, q_hat=q_hat, support=support,
                                         bootstrap=relearn_bootstrap if relearn else bootstrap, rng=rng,
                                         relearn=relearn)
        results.append(CandidateResult(cand.name, evaluation, left_out))
    return results
