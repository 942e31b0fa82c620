"""Time-decayed counts: what a slot with a decay half-life learns from (the per-slot decay option).

A slot may set ``decay_half_life_hours`` (PUT /v1/admin/tenants/<t>/slots/<s>). Its posteriors then come from
the quarter-hour rows of traffic_counts, each weighted by 2^(−age / half-life) — age from the middle of the
bucket to now; a click counts in its impression's bucket — instead of the cumulative banner_counts:

    ñ = Σ_b w_b · impressions_b,   c̃ = Σ_b w_b · clicks_b,   posterior Beta(α0 + c̃, β0 + ñ − c̃)

This is discounted Thompson sampling (bandits.discounted) on a wall-clock: after the best banner
changes, the old evidence halves every half-life and the posterior follows the new rates. Buckets older than
HORIZON_HALF_LIVES half-lives (weight < 0.4 %), and than MAX_HORIZON_DAYS, are left out.

Cost: a full read of the horizon's day partitions (up to 96 buckets × locations × banners per day) is kept
per process and re-read every HISTORY_SECONDS; every cache refresh re-reads only the buckets of the last
RECENT_MINUTES (one filtered read of today's partition), so a click still reaches every worker's posteriors
within a refresh or two. A click on an impression older than RECENT_MINUTES counts in that impression's older
bucket: it reaches serving with the next full read, within HISTORY_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bandits.discounted import time_decay_weights
from webapp.storage import store
from webapp.storage.database import Database
from webapp.storage.events import BUCKET_MINUTES, traffic_bucket

MIN_HALF_LIFE_HOURS = 0.25
MAX_HALF_LIFE_HOURS = 720.0
HORIZON_HALF_LIVES = 8
MAX_HORIZON_DAYS = 30
RECENT_MINUTES = 30
HISTORY_SECONDS = 60.0

Counts = dict[str, dict[str, tuple[float, float]]]     # location → banner → (impressions, clicks)


def horizon_start(now: dt.datetime, half_life_hours: float) -> dt.datetime:
    """The oldest time whose traffic still counts."""
    span = min(dt.timedelta(hours=HORIZON_HALF_LIVES * half_life_hours), dt.timedelta(days=MAX_HORIZON_DAYS))
    return now - span


def _epoch(bucket: dt.datetime) -> float:
    """Cassandra timestamps come back naive, in UTC."""
    return bucket.replace(tzinfo=dt.UTC).timestamp() if bucket.tzinfo is None else bucket.timestamp()


@dataclass(frozen=True)
class Rows:
    """traffic_counts rows of one slot as arrays (one entry per (location, bucket, banner))."""

    locations: tuple[str, ...]
    banners: tuple[str, ...]
    location_index: NDArray[np.intp]
    banner_index: NDArray[np.intp]
    bucket_epoch: NDArray[np.float64]
    impressions: NDArray[np.float64]
    clicks: NDArray[np.float64]

    @classmethod
    def from_rows(cls, rows: list[dict]) -> Rows:
        locations = tuple(sorted({r["location"] for r in rows}))
        banners = tuple(sorted({r["banner_id"] for r in rows}))
        where = {name: i for i, name in enumerate(locations)}
        which = {name: i for i, name in enumerate(banners)}
        return cls(
            locations, banners,
            np.array([where[r["location"]] for r in rows], dtype=np.intp),
            np.array([which[r["banner_id"]] for r in rows], dtype=np.intp),
            np.array([_epoch(r["bucket"]) for r in rows], dtype=np.float64),
            np.array([r["impressions"] or 0 for r in rows], dtype=np.float64),
            np.array([r["clicks"] or 0 for r in rows], dtype=np.float64),
        )

    def select(self, mask: NDArray[np.bool_]) -> Rows:
        return Rows(self.locations, self.banners, self.location_index[mask], self.banner_index[mask],
                    self.bucket_epoch[mask], self.impressions[mask], self.clicks[mask])


def decayed_counts(parts: list[Rows], now: dt.datetime, half_life_hours: float) -> Counts:
    """Σ weight · count per (location, banner) over ``parts`` (which must not share a row)."""
    totals: dict[tuple[str, str], list[float]] = {}
    middle = BUCKET_MINUTES * 30.0          # seconds from a bucket's start to its middle
    oldest = horizon_start(now, half_life_hours).timestamp() - BUCKET_MINUTES * 60
    for rows in parts:
        rows = rows.select(rows.bucket_epoch >= oldest)
        if not len(rows.bucket_epoch):
            continue
        ages = (now.timestamp() - rows.bucket_epoch - middle) / 3600.0
        weights = time_decay_weights(ages, half_life_hours)
        pair = rows.location_index * len(rows.banners) + rows.banner_index
        size = len(rows.locations) * len(rows.banners)
        impressions = np.bincount(pair, weights * rows.impressions, minlength=size)
        clicks = np.bincount(pair, weights * rows.clicks, minlength=size)
        for index in np.flatnonzero(impressions + clicks):
            key = (rows.locations[index // len(rows.banners)], rows.banners[index % len(rows.banners)])
            total = totals.setdefault(key, [0.0, 0.0])
            total[0] += float(impressions[index])
            total[1] += float(clicks[index])
    counts: Counts = {}
    for (location, banner), (impressions, clicks) in totals.items():
        counts.setdefault(location, {})[banner] = (impressions, min(clicks, impressions))
    return counts


def read_decayed_counts(db: Database, tenant_id: str, slot_id: str, half_life_hours: float,
                        now: dt.datetime | None = None) -> Counts:
    """The decayed counts of a slot, read whole (the stats API; the serving cache uses DecayedCounts)."""
    now = now or dt.datetime.now(dt.UTC)
    return decayed_counts([read_rows(db, tenant_id, slot_id, horizon_start(now, half_life_hours), now)], now,
                          half_life_hours)


def read_rows(db: Database, tenant_id: str, slot_id: str, start: dt.datetime, now: dt.datetime,
              since: dt.datetime | None = None, timeout: float | None = None) -> Rows:
    """The slot's traffic_counts rows of the UTC days from ``start`` to ``now`` (only buckets >= ``since``
    when given; each read bounded by ``timeout`` seconds when given)."""
    return Rows.from_rows(store.traffic_partitions(db, tenant_id, slot_id, store.utc_days(start, now), since=since,
                                                   timeout=timeout))


@dataclass
class _History:
    half_life_hours: float
    loaded_at: float                # time.monotonic()
    rows: Rows


class DecayedCounts:
    """Per process: decayed counts of the decaying slots, for each cache refresh, without re-reading days of
    buckets every second (module doc)."""

    def __init__(self, db: Database, history_seconds: float = HISTORY_SECONDS) -> None:
        self.db = db
        self.history_seconds = history_seconds
        self._history: dict[tuple[str, str], _History] = {}
        self._lock = threading.Lock()

    def counts(self, tenant_id: str, slot_id: str, half_life_hours: float,
               now: dt.datetime | None = None, deadline: float | None = None) -> Counts:
        """The slot's decayed counts now. ``deadline`` (time.monotonic()): every read must be answered by then
        (a slot's first load is bounded by SLOT_LOAD_TIMEOUT_SECONDS); the driver raises OperationTimedOut."""
        now = now or dt.datetime.now(dt.UTC)

        def remaining() -> float | None:
            return None if deadline is None else max(0.01, deadline - time.monotonic())

        key = (tenant_id, slot_id)
        with self._lock:
            history = self._history.get(key)
            if (history is None or history.half_life_hours != half_life_hours
                    or time.monotonic() - history.loaded_at > self.history_seconds):
                rows = read_rows(self.db, tenant_id, slot_id, horizon_start(now, half_life_hours), now,
                                 timeout=remaining())
                history = self._history[key] = _History(half_life_hours, time.monotonic(), rows)
        recent_start = traffic_bucket(now - dt.timedelta(minutes=RECENT_MINUTES))
        recent = read_rows(self.db, tenant_id, slot_id, recent_start, now, since=recent_start, timeout=remaining())
        older = history.rows.select(history.rows.bucket_epoch < recent_start.timestamp())
        return decayed_counts([older, recent], now, half_life_hours)

    def forget(self, keep: set[tuple[str, str]]) -> None:
        """Drop the history of slots that no longer decay (or no longer exist)."""
        with self._lock:
            for key in set(self._history) - keep:
                del self._history[key]
