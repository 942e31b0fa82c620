"""Pure bandit math: numpy only. Imported by the server, the Spark jobs, the simulator and the benchmarks."""

from bandits.discounted import DiscountedThompsonSampling
from bandits.priors import PopulationFit, PriorSettings, city_priors, fit_population
from bandits.thompson import (
    UNIFORM_PRIOR,
    BetaPrior,
    ThompsonSampler,
    beta_posterior,
    thompson_winners,
    win_probabilities,
)

__all__ = ["UNIFORM_PRIOR", "BetaPrior", "DiscountedThompsonSampling", "PopulationFit", "PriorSettings",
           "ThompsonSampler", "beta_posterior", "city_priors", "fit_population", "thompson_winners",
           "win_probabilities"]
