"""The holdout: a share of a slot's visitors served uniformly at random, around whatever policy the slot runs.

A slot with ``holdout_percent`` h (0..50) puts a visitor in the holdout group with probability h/100:

- with a ``customer_id``, by a salted hash of it (the salt is the slot, so a visitor's group is sticky within a
  slot and independent across slots): ``blake2b(customer_id, key=tenant/slot) mod 10,000 < 100·h``;
- without one, per impression, by the worker's seeded generator.

The holdout serves each active banner with probability 1/K (the logged propensity); the policy group is served
by the slot's policy, untouched. This layer sits in serving, not in a policy, so that any registered policy
gets a holdout and the holdout's choices never depend on what the policy learned.

Holdout traffic feeds learning like any other (counters and posteriors): see docs/learning.md, "What it
earned", for why.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

POLICY = "policy"
HOLDOUT = "holdout"
GROUPS = (POLICY, HOLDOUT)
MAX_HOLDOUT_PERCENT = 50
_BASIS = 10_000         # hash buckets: the share is exact to 0.01 %


class Assignment(NamedTuple):
    group: str              # POLICY or HOLDOUT
    share: float            # P(holdout) for this visitor when assigned: holdout_percent / 100


NO_HOLDOUT = Assignment(POLICY, 0.0)       # a slot without a holdout: made once, not per serve


def customer_bucket(tenant_id: str, slot_id: str, customer_id: str) -> int:
    """A visitor's bucket in 0..9,999 for a slot: a keyed hash (BLAKE2b), stable across processes and restarts."""
    digest = hashlib.blake2b(customer_id.encode(), key=f"{tenant_id}/{slot_id}".encode()[:64],
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BASIS


def assign(tenant_id: str, slot_id: str, customer_id: str, holdout_percent: int,
           rng: np.random.Generator) -> Assignment:
    """The group of one serve (module doc). ``holdout_percent`` 0 never draws from ``rng``."""
    share = holdout_percent / 100
    if holdout_percent <= 0:
        return NO_HOLDOUT
    if customer_id:
        held = customer_bucket(tenant_id, slot_id, customer_id) < holdout_percent * (_BASIS // 100)
    else:
        held = bool(rng.random() < share)
    return Assignment(HOLDOUT if held else POLICY, share)


def uniform_arm(arms: int, rng: np.random.Generator) -> int:
    """The holdout's choice: an arm uniformly at random among ``arms`` (propensity 1/arms)."""
    return int(rng.integers(arms))
