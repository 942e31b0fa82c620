"""The per-process posterior cache: configuration, counts and priors, re-read from Cassandra in the background.

Serving never waits on Cassandra after the first load: it reads an immutable snapshot that a background
thread replaces every CACHE_REFRESH_SECONDS. Each slot of a snapshot holds its policy (bandits/registry.py,
by the slot's ``policy`` name), built from the slot's counts and priors; the policy's math is in bandits/
(per-city Thompson sampling: bandits/city_thompson.py).

A slot with a decay half-life learns from time-decayed counts instead (webapp.learning.decay): the same formula over
Σ weight · count, with old evidence halving every half-life.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bandits import BetaPrior
from bandits.city_thompson import FIRST_BLOCK, Posterior  # noqa: F401 - re-exported (benchmarks)
from bandits.policy import Policy, SlotStatistics
from bandits.registry import UnknownPolicy, policy_class
from webapp.learning.decay import DecayedCounts
from webapp.serving.click_filter import ClickFilterSettings
from webapp.storage import store
from webapp.storage.database import Database

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Banner:
    banner_id: str
    image_url: str
    target_url: str
    alt: str
    active: bool


@dataclass
class SlotState:
    tenant_id: str
    slot_id: str
    banners: dict[str, Banner]                      # all banners, paused ones included (click redirects)
    active: tuple[Banner, ...]                      # servable, in banner_id order: the policy's arms
    policy: Policy                                  # built from the snapshot's counts and priors


class PosteriorCache:
    """Holds the latest snapshot {(tenant, slot): SlotState}; :meth:`refresh` replaces it whole."""

    def __init__(self, db: Database, max_draws: int = 4096) -> None:
        self.db = db
        self.max_draws = max_draws          # PROPENSITY_DRAWS: the largest block of precomputed draws
        self._slots: dict[tuple[str, str], SlotState] | None = None
        self._click_filters: dict[str, ClickFilterSettings] = {}
        self._refresh_lock = threading.Lock()
        self._decayed = DecayedCounts(db)
        self.refreshes = 0
        self.refreshed_at: float | None = None     # time.monotonic() of the last successful refresh

    @property
    def loaded(self) -> bool:
        return self._slots is not None

    def slot(self, tenant_id: str, slot_id: str) -> SlotState | None:
        if self._slots is None:
            self.refresh()
        assert self._slots is not None
        return self._slots.get((tenant_id, slot_id))

    def click_filter(self, tenant_id: str) -> ClickFilterSettings:
        return self._click_filters.get(tenant_id) or ClickFilterSettings()

    def refresh(self) -> None:
        with self._refresh_lock:
            tenants, slots, banners = store.all_config(self.db)
            counts = store.all_counts(self.db)
            priors = store.all_priors(self.db)
            decaying = {(r["tenant_id"], r["slot_id"]): float(r["decay_half_life_hours"]) for r in slots
                        if r.get("decay_half_life_hours")}
            decayed = {key: self._decayed.counts(*key, half_life) for key, half_life in decaying.items()}
            self._decayed.forget(set(decaying))
            self._click_filters = click_filters(tenants)
            self._slots = build_snapshot(slots, banners, counts, priors, decayed, self.max_draws)
            self.refreshes += 1
            self.refreshed_at = time.monotonic()

    def age(self) -> float:
        """Seconds since the snapshot was last refreshed."""
        return time.monotonic() - self.refreshed_at if self.refreshed_at is not None else float("inf")


def click_filters(tenants: list[dict[str, Any]]) -> dict[str, ClickFilterSettings]:
    result = {}
    for row in tenants:
        if row["click_filter"]:
            try:
                result[row["tenant_id"]] = ClickFilterSettings.from_dict(json.loads(row["click_filter"]))
            except ValueError:
                log.warning("tenant %s: invalid click_filter ignored", row["tenant_id"])
    return result


def build_snapshot(slots: list[dict[str, Any]], banners: list[dict[str, Any]], counts: list[dict[str, Any]],
                   priors: list[dict[str, Any]],
                   decayed: dict[tuple[str, str], dict[str, dict[str, tuple[float, float]]]] | None = None,
                   max_draws: int = 4096) -> dict[tuple[str, str], SlotState]:
    """Assemble SlotStates from the rows of the config, counts and priors tables, each with its policy
    (``slots.policy``, null = the default; an unknown name is logged and served by the default); ``decayed``
    replaces the counts of the slots with a decay half-life."""
    decayed = decayed or {}
    by_slot_banners: dict[tuple[str, str], dict[str, Banner]] = defaultdict(dict)
    for row in banners:
        by_slot_banners[(row["tenant_id"], row["slot_id"])][row["banner_id"]] = Banner(
            row["banner_id"], row["image_url"] or "", row["target_url"] or "", row["alt"] or "",
            bool(row["active"]))
    by_slot_counts: dict[tuple[str, str], dict[str, dict[str, tuple[int, int]]]] = defaultdict(
        lambda: defaultdict(dict))
    for row in counts:
        by_slot_counts[(row["tenant_id"], row["slot_id"])][row["location"]][row["banner_id"]] = (
            int(row["impressions"] or 0), int(row["clicks"] or 0))
    by_slot_priors: dict[tuple[str, str], dict[str, dict[str, BetaPrior]]] = defaultdict(
        lambda: defaultdict(dict))
    for row in priors:
        try:
            prior = BetaPrior(float(row["alpha"]), float(row["beta"]), row["source"] or "prior")
        except (TypeError, ValueError):
            log.warning("ignoring invalid prior row %s", row)
            continue
        scope = "location" if row["location"] else "slot"
        by_slot_priors[(row["tenant_id"], row["slot_id"])][row["location"]][row["banner_id"]] = BetaPrior(
            prior.alpha, prior.beta, scope)
    snapshot: dict[tuple[str, str], SlotState] = {}
    for row in slots:
        key = (row["tenant_id"], row["slot_id"])
        all_banners = by_slot_banners.get(key, {})
        active = tuple(b for _, b in sorted(all_banners.items()) if b.active)
        statistics = SlotStatistics(counts=decayed[key] if key in decayed else dict(by_slot_counts.get(key, {})),
                                    priors=dict(by_slot_priors.get(key, {})))
        try:
            policy = policy_class(row.get("policy"))
        except UnknownPolicy as exc:        # written by an older or newer server: serve, and say so
            log.warning("slot %s/%s: %s; serving with the default", key[0], key[1], exc)
            policy = policy_class(None)
        snapshot[key] = SlotState(
            tenant_id=key[0], slot_id=key[1], banners=all_banners, active=active,
            policy=policy.from_statistics(tuple(b.banner_id for b in active), statistics, max_draws=max_draws),
        )
    return snapshot
