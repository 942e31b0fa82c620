"""Pure bandit math: numpy only. Imported by the server, the Spark jobs, the simulator and the benchmarks."""

from webapp.bandits.thompson import (
    UNIFORM_PRIOR,
    BetaPrior,
    ThompsonSampler,
    beta_posterior,
    thompson_winners,
    win_probabilities,
)

__all__ = ["UNIFORM_PRIOR", "BetaPrior", "ThompsonSampler", "beta_posterior", "thompson_winners",
           "win_probabilities"]
