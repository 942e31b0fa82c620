"""Banner Bandit's learning simulator: a simulated banner slot (a Gymnasium environment), the policies it
compares, a runner that measures them, and an end-to-end mode that drives the running HTTP service.

    from simulator import BannerSlotEnv, STATIONARY, run
    result = run(STATIONARY, "thompson", seed=0)
"""

import gymnasium as gym

from simulator.env import BannerSlotEnv
from simulator.policies import POLICIES, slot_wide_prior
from simulator.runner import RunResult, impressions_to_share, make_policy, run
from simulator.scenario import COLD_START, DRIFT, PRESETS, STATIONARY, Scenario

ENV_ID = "BannerBandit/BannerSlot-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="simulator.env:BannerSlotEnv")

__all__ = ["COLD_START", "DRIFT", "ENV_ID", "POLICIES", "PRESETS", "STATIONARY", "BannerSlotEnv", "RunResult",
           "Scenario", "impressions_to_share", "make_policy", "run", "slot_wide_prior"]
