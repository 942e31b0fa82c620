"""Pure bandit math and the server's policies: numpy only. Imported by the server, the Spark jobs, the simulator
and the benchmarks. A policy follows :class:`bandits.policy.Policy` and is registered in
:data:`bandits.registry.POLICIES` (docs/extending.md)."""

from bandits.discounted import DiscountedThompsonSampling
from bandits.policy import ArmExplanation, Choice, Context, Policy, SlotStatistics, prior_for
from bandits.priors import PopulationFit, PriorSettings, city_priors, fit_population
from bandits.registry import DEFAULT_POLICY, POLICIES, UnknownPolicy, policy_class
from bandits.thompson import (
    UNIFORM_PRIOR,
    BetaPrior,
    ThompsonSampler,
    beta_posterior,
    thompson_winners,
    win_probabilities,
)

__all__ = ["DEFAULT_POLICY", "POLICIES", "UNIFORM_PRIOR", "ArmExplanation", "BetaPrior", "Choice", "Context",
           "DiscountedThompsonSampling", "Policy", "PopulationFit", "PriorSettings", "SlotStatistics",
           "ThompsonSampler", "UnknownPolicy", "beta_posterior", "city_priors", "fit_population", "policy_class",
           "prior_for", "thompson_winners", "win_probabilities"]
