"""Pure bandit math: numpy only. Imported by the server, the Spark jobs, the simulator and the benchmarks."""

from webapp.bandits.priors import PopulationFit, PriorSettings, city_priors, fit_population
from webapp.bandits.thompson import (
    UNIFORM_PRIOR,
    BetaPrior,
    ThompsonSampler,
    beta_posterior,
    win_probabilities,
)

__all__ = ["UNIFORM_PRIOR", "BetaPrior", "PopulationFit", "PriorSettings", "ThompsonSampler", "beta_posterior",
           "city_priors", "fit_population", "win_probabilities"]
