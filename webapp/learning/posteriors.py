"""The per-process posterior cache: configuration, counts and priors, re-read from Cassandra in the background.

Serving never waits on Cassandra after the first load: it reads an immutable snapshot that a background
thread replaces every CACHE_REFRESH_SECONDS. Posterior for banner b in (tenant, slot, location):

    Beta(α0 + clicks, β0 + impressions − clicks)

with (α0, β0) the location's prior for b, else the slot-wide prior for b, else Beta(1, 1). A location the
slot has no counts or priors for (or no location) uses the slot-wide posterior: slot-wide counts with the
slot-wide prior.

A slot with a decay half-life learns from time-decayed counts instead (webapp.learning.decay): the same formula over
Σ weight · count, with old evidence halving every half-life.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from webapp.storage import store
from bandits import UNIFORM_PRIOR, BetaPrior, beta_posterior, thompson_winners
from webapp.storage.database import Database
from webapp.serving.click_filter import ClickFilterSettings
from webapp.learning.decay import DecayedCounts
from webapp.storage.events import SLOT_WIDE

log = logging.getLogger(__name__)

FIRST_BLOCK = 512       # Thompson draws precomputed for a (slot, location) at its first serve of a snapshot


@dataclass(frozen=True)
class Banner:
    banner_id: str
    image_url: str
    target_url: str
    alt: str
    active: bool


@dataclass
class Posterior:
    """Posterior of the active banners of one (tenant, slot, location); arrays have shape (K,).

    Decisions come from a block of precomputed independent Thompson draws (``thompson_winners``): each
    serve takes the next one, so every serve is still a fresh draw from the current posterior, and the
    block's win frequencies are the propensities (P(banner wins the draw), Monte Carlo).
    """

    scope: str                          # 'location' or 'slot'
    alpha: NDArray[np.float64]
    beta: NDArray[np.float64]
    prior_sources: tuple[str, ...]
    _winners: NDArray[np.intp] | None = None
    _cursor: int = 0
    _propensities: NDArray[np.float64] | None = None

    def choose(self, rng: np.random.Generator, draws: int) -> tuple[int, float]:
        """(index of the banner to serve, its propensity). Not thread-safe: the caller holds a lock."""
        if self._winners is None or self._cursor >= len(self._winners):
            # Blocks grow while a location is busy: a rarely served city costs FIRST_BLOCK draws per snapshot.
            size = min(draws, FIRST_BLOCK if self._winners is None else 2 * len(self._winners))
            self._winners = thompson_winners(self.alpha, self.beta, rng, size)
            self._cursor = 0
            self._propensities = np.bincount(self._winners, minlength=len(self.alpha)) / size
        index = int(self._winners[self._cursor])
        self._cursor += 1
        return index, float(self._propensities[index])


@dataclass
class SlotState:
    tenant_id: str
    slot_id: str
    banners: dict[str, Banner]                      # all banners, paused ones included (click redirects)
    active: tuple[Banner, ...]                      # servable, in banner_id order
    counts: dict[str, dict[str, tuple[float, float]]]   # location → banner → (impressions, clicks)
    priors: dict[str, dict[str, BetaPrior]]             # location → banner → prior
    _posteriors: dict[str, Posterior] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def has_location(self, location: str) -> bool:
        return location != SLOT_WIDE and (location in self.counts or location in self.priors)

    def posterior(self, location: str) -> Posterior:
        """The posterior used to serve ``location`` (slot-wide when the location is unknown)."""
        key = location if self.has_location(location) else SLOT_WIDE
        found = self._posteriors.get(key)
        if found is None:
            with self._lock:
                found = self._posteriors.get(key)
                if found is None:
                    found = self._build(key)
                    self._posteriors[key] = found
        return found

    def _build(self, location: str) -> Posterior:
        counts = self.counts.get(location, {})
        location_priors = self.priors.get(location, {}) if location != SLOT_WIDE else {}
        slot_priors = self.priors.get(SLOT_WIDE, {})
        priors = [location_priors.get(b.banner_id) or slot_priors.get(b.banner_id) or UNIFORM_PRIOR
                  for b in self.active]
        observed = np.array([counts.get(b.banner_id, (0, 0)) for b in self.active], dtype=np.float64)
        observed = observed.reshape(len(self.active), 2)
        alpha, beta = beta_posterior([p.alpha for p in priors], [p.beta for p in priors],
                                     observed[:, 0], observed[:, 1])
        return Posterior(
            scope="slot" if location == SLOT_WIDE else "location",
            alpha=alpha, beta=beta, prior_sources=tuple(p.source for p in priors),
        )


class PosteriorCache:
    """Holds the latest snapshot {(tenant, slot): SlotState}; :meth:`refresh` replaces it whole."""

    def __init__(self, db: Database) -> None:
        self.db = db
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
            self._slots = build_snapshot(slots, banners, counts, priors, decayed)
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
                   ) -> dict[tuple[str, str], SlotState]:
    """Assemble SlotStates from the rows of the config, counts and priors tables; ``decayed`` replaces the
    counts of the slots with a decay half-life."""
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
        snapshot[key] = SlotState(
            tenant_id=key[0], slot_id=key[1], banners=all_banners,
            active=tuple(b for _, b in sorted(all_banners.items()) if b.active),
            counts=decayed[key] if key in decayed else dict(by_slot_counts.get(key, {})),
            priors=dict(by_slot_priors.get(key, {})),
        )
    return snapshot
