"""Contextual Thompson sampling: who clicks what, by referrer, hour, weekday, device, segment and location.

A contextual slot names some of :data:`FEATURES` (``slots.context``). A serve's context is reduced to one
*level* per feature (:func:`raw_level`: normalized; unseen values beyond the slot's cap, and missing ones,
are :data:`OTHER`), and the tuple of levels is the serve's *context cell*. The server counts impressions
and clicks per (cell, banner) — integer counters like banner_counts, with the same exactly-once rules — and
those counts are exact sufficient statistics of any model over one-hot features of the cell.

The model, per banner b (Bayesian linear regression, "LinTS": Agrawal & Goyal, ICML 2013; Thompson sampling
for display advertising: Chapelle & Li, NIPS 2011). x ∈ {0, 1}^(1+D) is the intercept and the one-hot
encoding of the cell's levels (scikit-learn's OneHotEncoder, rare levels folded into :data:`OTHER`);
r ∈ {0, 1} a click, r = xᵀw_b + ε, ε ~ N(0, σ²), with prior w_b ~ N(m0_b, σ² Λ0_b⁻¹)::

    Λ0_b = diag(n0_b, λ_f, …, λ_f)       # prior precision, in impressions: n0_b on the intercept, λ_f on
                                         # each level of feature f (below)
    m0_b = (p0_b, 0, …, 0)               # intercept: the banner's slot-wide prior mean α0/(α0+β0), or the
                                         # slot's pooled rate when it has no stored prior (cold start)
    A_b  = Λ0_b + Σ_cells n_cb x_c x_cᵀ  # = Λ0 + XᵀX     (n_cb impressions of b in cell c)
    μ_b  = A_b⁻¹ (Λ0_b m0_b + Σ_cells c_cb x_c)   # = A⁻¹(Λ0 m0 + Xᵀy)   (c_cb clicks)
    w_b | data ~ N(μ_b, σ² A_b⁻¹),   σ² = p̄(1 − p̄)   (p̄: the slot's pooled click rate)

The price of a feature that does not matter. Every level's coefficient starts uncertain, and that prior
variance is exploration spent on nothing where only the city matters. So λ_f is set by empirical Bayes, per
feature, from the same counts (a hierarchical model w_{f,l,b} ~ N(0, τ_f²) whose τ_f² is estimated by the
method of moments, as DerSimonian & Laird (1986) do for random effects and bandits/priors.py does for city
priors): with r_lb = c_lb/n_lb the click rate of banner b at level l of f, r_b = c_b/n_b its rate over all
cells, and Var(r_lb − r_b | no effect) = σ²(1/n_lb − 1/n_b)::

    τ_f² = max(0, Σ_lb [n_lb (r_lb − r_b)² − σ²(1 − n_lb/n_b)] / Σ_lb n_lb)     # between-level variance
    λ_f  = clip(σ²/τ_f², FEATURE_PRIOR, MAX_FEATURE_PRIOR)   # prior sd of a coefficient √(σ²/λ_f) = τ_f

A feature whose levels do not move any banner gets τ_f² ≈ 0 and the ceiling: its coefficients stay at 0 and
add no variance to the draws until the counts show an effect; one that matters gets the spread it shows.

History counted without a cell (served while the slot was per-city Thompson: slot-wide banner_counts minus
the cell counts) enters as intercept-only rows, so switching a slot keeps what it learned.

Thompson sampling for a request in cell x draws, for every banner, its score xᵀw_b — exactly
N(xᵀμ_b, σ² xᵀA_b⁻¹x), independent across banners, its deviation scaled by EXPLORATION — and serves the
argmax. The fit (A_b⁻¹, μ_b) is made
once per snapshot of the statistics; a cell's means and deviations once per snapshot at its first serve;
decisions come from blocks of precomputed draws per cell (CELL_FIRST_BLOCK, then doubling), as in
bandits/city_thompson.py, whose win
frequencies are the propensities. Pure: no Flask, Cassandra or Spark here.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.preprocessing import OneHotEncoder

from bandits.policy import ArmExplanation, Choice, Context, SlotStatistics
from bandits.thompson import BetaPrior
from eventlog.counting import SLOT_WIDE

FEATURES = ("location", "referrer", "hour", "weekday", "device", "segment")    # in cell order
DEFAULT_FEATURES = ("referrer", "device", "segment")     # a contextual slot that names none
OPEN_FEATURES = frozenset({"location", "referrer", "segment"})  # values chosen by callers: capped per slot
DEVICES = ("mobile", "tablet", "desktop", "other")
OTHER = "other"                 # unseen, rare, missing and over-the-cap values
PAIR_SEPARATOR = "\t"           # between the feature=level pairs of a cell key (no level holds a control
#                                 character: webapp/web/validation.py refuses them)
MIN_LEVELS, MAX_LEVELS = 2, 1000
MAX_LEVEL_LENGTH = 64           # characters of an open feature's level kept (cells ride in click tokens)
MIN_LEVEL_IMPRESSIONS = 20      # a level with fewer impressions is fitted as OTHER (min_frequency)
FEATURE_PRIOR = 20.0            # λ: prior precision of each level's coefficient, in impressions
COLD_INTERCEPT_PRIOR = 2.0      # n0 when the banner has no stored prior (intercept: the slot's pooled rate)
EXPLORATION = 0.5               # scale of the draws' deviation (1 = the posterior's). Chapelle & Li (2011)
#                                 found a scaled-down posterior variance loses less; 0.5 was the better of
#                                 1, 0.5 and 0.3 on bench-context's seed 0 at 20k impressions (a tuned value)
TOP_FEATURES = 3                # features named in a serve's explanation
MAX_CELLS = 4096                # cells whose draws a snapshot keeps (the oldest are rebuilt when needed)
MAX_FEATURE_PRIOR = 1e5        # λ_f's ceiling (a coefficient's prior sd √(σ²/λ) ≈ 0.05 points at 3% CTR)
DENSE_DESIGN = 250_000          # design entries (cells × columns) up to which the refit multiplies densely
CELL_FIRST_BLOCK = 128          # draws at a cell's first serve of a snapshot (FIRST_BLOCK's role: with six
#                                 features most cells are served a few times a snapshot; blocks then double)


class InvalidContext(ValueError):
    """A context feature list or a policy parameter that cannot be used."""


def context_features(names: Iterable[Any]) -> tuple[str, ...]:
    """Validated feature names in canonical (:data:`FEATURES`) order; duplicates are dropped.

    Raises InvalidContext for anything but a list of known names."""
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise InvalidContext(f"context must be a list of feature names from {', '.join(FEATURES)}")
    names = list(names)
    unknown = [n for n in names if not isinstance(n, str) or n not in FEATURES]
    if unknown:
        raise InvalidContext(f"unknown context feature(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(FEATURES)}")
    return tuple(f for f in FEATURES if f in names)


def raw_level(context: Context, feature: str) -> str:
    """The normalized level of ``feature`` in ``context`` (before any cap): lower-cased and stripped IDs,
    the hour and weekday as numbers, the device class; :data:`OTHER` when missing."""
    if feature == "location":
        value = context.location
    elif feature == "referrer":
        value = context.referrer_id
    elif feature == "segment":
        value = context.segment
    elif feature == "hour":
        return str(context.hour) if context.hour is not None and 0 <= context.hour <= 23 else OTHER
    elif feature == "weekday":
        return str(context.weekday) if context.weekday is not None and 0 <= context.weekday <= 6 else OTHER
    elif feature == "device":
        return context.device if context.device in DEVICES else OTHER
    else:
        raise InvalidContext(f"unknown context feature {feature!r}")
    value = (value or "").strip().lower()[:MAX_LEVEL_LENGTH]
    return value or OTHER


@functools.lru_cache(maxsize=1 << 16)
def _projected(cell: str, features: tuple[str, ...]) -> tuple[str, ...]:
    """A stored cell key's levels of ``features`` (OTHER for a feature it was not recorded with); cached, as a
    slot's refits parse the same keys again and again."""
    levels = parse_cell(cell)
    return tuple(levels.get(f, OTHER) for f in features)


def shrinkage_precision(level_n: NDArray[np.float64], level_c: NDArray[np.float64], noise: float,
                        floor: float = FEATURE_PRIOR, ceiling: float = MAX_FEATURE_PRIOR) -> float:
    """λ_f of one feature by the method of moments (module doc).

    Parameters
    ----------
    level_n, level_c : arrays, shape (L, K)
        Impressions and clicks of each of the feature's L fitted levels (OTHER included) and K banners; the
        columns' sums are each banner's totals.
    noise : float
        σ², the click noise variance p̄(1 − p̄).
    """
    arm_n, arm_c = level_n.sum(axis=0), level_c.sum(axis=0)                                # (K,)
    use = (level_n > 0) & (arm_n > 0)[None, :]
    if not use.any():
        return float(ceiling)
    n = level_n[use]
    rate = level_c[use] / n
    arm_rate = np.broadcast_to(arm_c / np.maximum(arm_n, 1.0), level_n.shape)[use]
    arm_total = np.broadcast_to(arm_n, level_n.shape)[use]
    # Σ n (r_lb − r_b)² − σ² (1 − n/n_b), over Σ n: unbiased for τ² when the levels are alike
    tau2 = float((n * (rate - arm_rate) ** 2 - noise * (1.0 - n / arm_total)).sum() / n.sum())
    if tau2 <= 0:
        return float(ceiling)
    return float(np.clip(noise / tau2, floor, ceiling))


@functools.lru_cache(maxsize=256)
def _encoding(features: tuple[str, ...], levels: tuple[tuple[str, ...], ...]
              ) -> tuple[OneHotEncoder, tuple[str, ...], list[dict[str, int]]]:
    """The one-hot encoder of the fitted levels (each feature's levels, then OTHER), its feature names, and its
    columns as lookups for one cell at a time on the serve path: feature j's level → its column of the design
    row (0 is the intercept). Cached: a slot's levels rarely change between refits. Read-only once made."""
    encoder = OneHotEncoder(
        categories=[np.array([*lv, OTHER], dtype=object) for lv in levels],
        handle_unknown="ignore", sparse_output=False, dtype=np.float64,
        feature_name_combiner=lambda feature, level: f"{feature}={level}")
    encoder.fit(np.array([[OTHER] * len(features)], dtype=object))
    names = tuple(encoder.get_feature_names_out(list(features)))
    columns: list[dict[str, int]] = []
    offset = 1
    for categories in encoder.categories_:
        columns.append({str(level): offset + i for i, level in enumerate(categories)})
        offset += len(categories)
    return encoder, names, columns


def cell_key(features: Sequence[str], levels: Sequence[str]) -> str:
    """The stored key of a context cell: ``feature=level`` pairs in feature order."""
    return PAIR_SEPARATOR.join(f"{f}={level}" for f, level in zip(features, levels))


def parse_cell(cell: str) -> dict[str, str]:
    """feature → level of a stored cell key (a cell recorded under other features still parses)."""
    pairs = (pair.partition("=") for pair in cell.split(PAIR_SEPARATOR) if pair)
    return {feature: level for feature, _, level in pairs}


@dataclass
class _Cell:
    """A cell's decision state for one snapshot: scores ~ N(mean, sd²) per arm, shape (K,)."""

    key: str
    mean: NDArray[np.float64]
    sd: NDArray[np.float64]
    top_of: Callable[[int], list[str]]          # an arm → the levels that raise it most (made when served)
    choices: dict[int, Choice] = field(default_factory=dict)    # per arm served in the current block
    propensities: list[float] = field(default_factory=list)
    winners: list[int] | None = None
    cursor: int = 0

    def choice(self, arm: int) -> Choice:
        """The choice of ``arm`` in the current block, its state and JSON made on its first serve."""
        found = self.choices.get(arm)
        if found is None:
            state = {"cell": self.key, "mean": round(float(self.mean[arm]), 6),
                     "sd": round(float(self.sd[arm]), 6), "top": self.top_of(arm)}
            found = self.choices[arm] = Choice(arm, self.propensities[arm], state,
                                               json.dumps(state, separators=(",", ":")))
        return found


class ContextualThompson:
    """Thompson sampling over a Bayesian linear model of each banner's click probability given the
    context cell (see the module doc).

    Parameters
    ----------
    arms : sequence of str, length K
        The servable banners, in a fixed order.
    statistics : SlotStatistics
        ``context_features`` (empty: :data:`DEFAULT_FEATURES`), ``context_counts`` (cell → banner →
        (impressions, clicks)), ``max_levels`` (levels kept per open feature, OTHER included), the slot-wide
        ``counts`` (history without a cell) and ``priors`` (intercept priors).
    max_draws : int ≥ 1
        Largest block of precomputed draws per cell and snapshot.
    feature_prior : float > 0
        λ, the prior precision of every level's coefficient, in impressions.
    min_level_impressions : int ≥ 0
        Levels with fewer impressions are fitted as OTHER.
    exploration : float > 0
        Scale of the draws' deviation.
    empirical_prior : bool
        λ_f per feature by empirical Bayes, between ``feature_prior`` and ``max_feature_prior`` (module doc);
        False: ``feature_prior`` for every level.
    """

    name: ClassVar[str] = "contextual"

    def __init__(self, arms: Sequence[str], statistics: SlotStatistics, *, max_draws: int = 4096,
                 feature_prior: float = FEATURE_PRIOR, min_level_impressions: int = MIN_LEVEL_IMPRESSIONS,
                 exploration: float = EXPLORATION, empirical_prior: bool = True,
                 max_feature_prior: float = MAX_FEATURE_PRIOR) -> None:
        if not isinstance(max_draws, int) or max_draws < 1:
            raise InvalidContext(f"max_draws must be an integer ≥ 1, got {max_draws!r}")
        if not np.isfinite(feature_prior) or feature_prior <= 0:
            raise InvalidContext(f"feature_prior must be a positive number, got {feature_prior!r}")
        if not np.isfinite(max_feature_prior) or max_feature_prior < feature_prior:
            raise InvalidContext(f"max_feature_prior must be a number ≥ feature_prior, got {max_feature_prior!r}")
        if not np.isfinite(exploration) or exploration <= 0:
            raise InvalidContext(f"exploration must be a positive number, got {exploration!r}")
        if not isinstance(min_level_impressions, int) or min_level_impressions < 0:
            raise InvalidContext(f"min_level_impressions must be an integer ≥ 0, got {min_level_impressions!r}")
        max_levels = statistics.max_levels
        if not isinstance(max_levels, int) or not MIN_LEVELS <= max_levels <= MAX_LEVELS:
            raise InvalidContext(f"max_levels must be an integer from {MIN_LEVELS} to {MAX_LEVELS}, "
                                 f"got {max_levels!r}")
        self.arms = tuple(arms)
        self.features = context_features(statistics.context_features) or DEFAULT_FEATURES
        self.max_levels = max_levels
        self.max_draws = max_draws
        self.feature_prior = float(feature_prior)
        self.exploration = float(exploration)
        self.empirical_prior = bool(empirical_prior)
        self.max_feature_prior = float(max_feature_prior)
        self._lock = threading.Lock()
        self._cells: dict[str, _Cell] = {}
        self._fit(statistics, min_level_impressions)

    @classmethod
    def from_statistics(cls, arms: Sequence[str], statistics: SlotStatistics, *, max_draws: int = 4096
                        ) -> ContextualThompson:
        return cls(arms, statistics, max_draws=max_draws)

    # -- fitting (once per snapshot) ----------------------------------------------------------------

    def _fit(self, statistics: SlotStatistics, min_level_impressions: int) -> None:
        arms, features = self.arms, self.features
        index = {arm: i for i, arm in enumerate(arms)}
        k, nf = len(arms), len(features)
        # Cells projected on the slot's current features (a feature the cell was not recorded with: OTHER),
        # as rows (cell, arm, impressions, clicks); the projection of a stored key is cached across refits.
        cell_of: dict[tuple[str, ...], int] = {}
        at_cell: list[int] = []
        at_arm: list[int] = []
        at_counts: list[tuple[float, float]] = []
        for cell, by_banner in statistics.context_counts.items():
            m = None
            for banner, (n, c) in by_banner.items():
                b = index.get(banner)
                if b is None:
                    continue
                if m is None:
                    m = cell_of.setdefault(_projected(cell, features), len(cell_of))
                at_cell.append(m)
                at_arm.append(b)
                at_counts.append((n, c))
        keys = list(cell_of)
        cells = len(keys)
        counts = np.zeros((cells, k, 2))                                                      # (M, K, 2)
        if at_cell:
            np.add.at(counts, (np.array(at_cell), np.array(at_arm)), np.array(at_counts, dtype=np.float64))
        served = counts[:, :, 0].sum(axis=1)
        # Levels the serve path records as themselves (the rest: OTHER), at most max_levels per open feature;
        # levels the model fits: the most served, each with at least min_level_impressions; the rest → OTHER.
        self.known: list[set[str]] = []
        self.levels: list[list[str]] = []
        codes: list[tuple[list[str], NDArray[np.intp]]] = []
        for j in range(nf):
            ids: dict[str, int] = {}
            inverse = np.fromiter((ids.setdefault(key[j], len(ids)) for key in keys), dtype=np.intp, count=cells)
            weight = np.bincount(inverse, weights=served, minlength=len(ids))
            seen = list(ids)
            self.known.append(set(seen) - {OTHER})
            order = sorted(range(len(seen)), key=lambda i: (-weight[i], seen[i]))
            kept = [seen[i] for i in order if seen[i] != OTHER and weight[i] >= min_level_impressions]
            self.levels.append(sorted(kept[:self.max_levels - 1]))
            codes.append((seen, np.asarray(inverse, dtype=np.intp)))
        self.encoder, self.feature_names, self._columns = _encoding(features, tuple(map(tuple, self.levels)))
        d = 1 + len(self.feature_names)

        # Design rows: each cell once (the encoder's row, built from the column lookups: 1 + F ones), with its
        # counts; plus history without a cell, intercept only.
        active = np.zeros((cells, 1 + nf), dtype=np.intp)
        for j, (seen, inverse) in enumerate(codes):
            columns = self._columns[j]
            lookup = np.array([columns.get(level, columns[OTHER]) for level in seen], dtype=np.intp)
            active[:, 1 + j] = lookup[inverse] if cells else active[:, 1 + j]
        x = sparse.csr_matrix((np.ones(active.size), active.ravel(), np.arange(0, active.size + 1, 1 + nf)),
                              shape=(cells, d))
        if cells * d <= DENSE_DESIGN:
            x = x.toarray()             # small: dense BLAS products beat sparse ones' overhead
        slot_wide = statistics.counts.get(SLOT_WIDE, {})
        rest = np.array([slot_wide.get(arm, (0, 0)) for arm in arms], dtype=np.float64).reshape(k, 2)
        rest = np.maximum(rest - counts.sum(axis=0), 0.0)
        rest[:, 1] = np.minimum(rest[:, 1], rest[:, 0])
        impressions, clicks = counts[..., 0], counts[..., 1]                                  # (M, K)
        total_n, total_c = impressions.sum() + rest[:, 0].sum(), clicks.sum() + rest[:, 1].sum()
        pooled = (total_c + 1.0) / (total_n + 2.0)
        self.noise = max(pooled * (1.0 - pooled), 1e-4)                                         # σ²
        priors = [statistics.priors.get(SLOT_WIDE, {}).get(arm) for arm in arms]
        n0 = np.array([p.alpha + p.beta if p else COLD_INTERCEPT_PRIOR for p in priors])
        p0 = np.array([p.alpha / (p.alpha + p.beta) if p else pooled for p in priors])
        self.intercept_priors = tuple(p or BetaPrior(float(pooled * COLD_INTERCEPT_PRIOR),
                                                     float((1 - pooled) * COLD_INTERCEPT_PRIOR), "pooled")
                                      for p in priors)
        # Each feature's prior precision λ_f: empirical Bayes from the cells (module doc), or the fixed floor.
        level_n = np.asarray(x.T @ impressions).reshape(d, k)                                 # (D+1, K)
        level_c = np.asarray(x.T @ clicks).reshape(d, k)
        self.feature_priors: dict[str, float] = {}
        column_prior = np.full(d, self.feature_prior)
        offset = 1
        for j, feature in enumerate(features):
            width = len(self.levels[j]) + 1
            block = slice(offset, offset + width)
            lam = shrinkage_precision(level_n[block], level_c[block], self.noise, self.feature_prior,
                                      self.max_feature_prior) if self.empirical_prior else self.feature_prior
            column_prior[block] = lam
            self.feature_priors[feature] = lam
            offset += width
        prior_precision = np.tile(column_prior, (k, 1))
        prior_precision[:, 0] = n0
        prior_mean = np.zeros((k, d))
        prior_mean[:, 0] = p0
        # A_b = Λ0 + XᵀX (weighted by the cell's impressions of b);  Xᵀy = Σ clicks · x. History without a
        # cell is intercept-only rows: (rest_n, rest_c) on column 0.
        # x is one-hot (1 + F nonzeros a row): sparse products cost O(M F²) per arm
        if sparse.issparse(x):
            gram = np.stack([(x.T @ x.multiply(impressions[:, [b]])).toarray() for b in range(k)]) if k \
                else np.zeros((0, d, d))
        else:
            gram = np.stack([x.T @ (x * impressions[:, [b]]) for b in range(k)]) if k else np.zeros((0, d, d))
        gram[:, 0, 0] += rest[:, 0]
        self.precision = gram + np.einsum("ki,ij->kij", prior_precision, np.eye(d))          # (K, D+1, D+1)
        rhs = prior_precision * prior_mean + level_c.T                                         # (K, D+1)
        rhs[:, 0] += rest[:, 1]
        self.covariance = np.linalg.inv(self.precision) if k else np.zeros((0, d, d))         # A⁻¹
        self.mean = np.einsum("kij,kj->ki", self.covariance, rhs)                             # μ = A⁻¹(Λ0m0 + Xᵀy)
        # What each level adds to an arm's score beyond the arms' average, as lists (explanations, per serve)
        self._lift = (self.mean - self.mean.mean(axis=0, keepdims=True)).tolist() if k else []

    def encode_levels(self, rows: Sequence[Sequence[str]]) -> NDArray[np.float64]:
        """The design rows, shape (M, 1 + D), of cells given as level tuples (intercept first); levels the
        model does not fit are encoded as OTHER."""
        return self._design(rows).toarray()

    def _design(self, rows: Sequence[Sequence[str]]) -> sparse.csr_matrix:
        fitted = [set(lv) for lv in self.levels]
        mapped = np.array([[lvl if lvl in fitted[j] else OTHER for j, lvl in enumerate(row)] for row in rows],
                          dtype=object).reshape(len(rows), len(self.features))
        return sparse.csr_matrix(np.hstack([np.ones((len(rows), 1)), self.encoder.transform(mapped)]))

    # -- serving ----------------------------------------------------------------------------------------

    def cell_levels(self, context: Context, *, admit: bool = True) -> tuple[str, ...]:
        """The levels a serve records: an open feature's value not seen before is admitted while the slot has
        fewer than max_levels − 1 levels of it (``admit``), else it is OTHER."""
        levels = []
        for j, feature in enumerate(self.features):
            level = raw_level(context, feature)
            if feature in OPEN_FEATURES and level != OTHER and level not in self.known[j]:
                if admit and len(self.known[j]) < self.max_levels - 1:
                    self.known[j].add(level)
                else:
                    level = OTHER
            levels.append(level)
        return tuple(levels)

    def active_columns(self, levels: Sequence[str]) -> NDArray[np.intp]:
        """The nonzero columns of a cell's design row (intercept, then one level per feature): the same row as
        :meth:`encode_levels`, looked up instead of transformed."""
        return np.array([0, *[columns.get(level, columns[OTHER]) for columns, level in zip(self._columns, levels)]],
                        dtype=np.intp)

    def scores(self, levels: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Each arm's score distribution in a cell: mean xᵀμ_b and sd √(σ² xᵀA_b⁻¹x), shape (K,). With x
        one-hot these are sums over the cell's active columns (1 + F of them)."""
        return self._scores(self.active_columns(levels))

    def _scores(self, active: NDArray[np.intp]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        mean = self.mean[:, active].sum(axis=1)
        variance = self.covariance[:, active][:, :, active].sum(axis=(1, 2))
        return mean, np.sqrt(self.noise * np.maximum(variance, 0.0))

    def top_features(self, levels: Sequence[str], arm: int, top: int = TOP_FEATURES) -> list[str]:
        """The cell's levels that raise ``arm``'s score most against the other arms' average (positive only)."""
        return self._top_features(self.active_columns(levels), arm, top)

    def _top_features(self, active: NDArray[np.intp], arm: int, top: int = TOP_FEATURES) -> list[str]:
        lift = self._lift[arm]
        ranked = sorted(active.tolist()[1:], key=lambda column: -lift[column])[:top]       # stable: feature order
        return [self.feature_names[column - 1] for column in ranked if lift[column] > 1e-9]

    def _cell(self, levels: tuple[str, ...]) -> _Cell:
        key = cell_key(self.features, levels)
        found = self._cells.get(key)
        if found is None:
            active = self.active_columns(levels)
            mean, sd = self._scores(active)
            found = _Cell(key, mean, sd, functools.partial(self._top_features, active))
            with self._lock:
                while len(self._cells) >= MAX_CELLS:
                    self._cells.pop(next(iter(self._cells)))
                self._cells[key] = found
        return found

    def choose(self, context: Context, rng: np.random.Generator) -> Choice:
        """One Thompson decision in the context's cell. Not thread-safe: the caller holds a lock."""
        if not self.arms:
            raise ValueError("cannot choose from zero arms")
        cell = self._cell(self.cell_levels(context))
        if cell.winners is None or cell.cursor >= len(cell.winners):
            size = min(self.max_draws, CELL_FIRST_BLOCK if cell.winners is None else 2 * len(cell.winners))
            draws = cell.mean + self.exploration * cell.sd * rng.standard_normal((size, len(self.arms)))
            winners = np.argmax(draws, axis=1)
            cell.propensities = (np.bincount(winners, minlength=len(self.arms)) / size).tolist()
            cell.choices = {}
            cell.winners = winners.tolist()
            cell.cursor = 0
        choice = cell.choice(cell.winners[cell.cursor])
        cell.cursor += 1
        return choice

    def sample_arms(self, rows: Sequence[Sequence[str]], rng: np.random.Generator) -> NDArray[np.intp]:
        """Thompson decisions for many visitors of one snapshot at once, shape (N,): each a fresh draw of the
        scores in its cell, as :meth:`choose`'s blocks are (for simulations; records and admits nothing).
        ``rows``: each visitor's levels in feature order."""
        rows = [tuple(row) for row in rows]
        unique = {row: i for i, row in enumerate(dict.fromkeys(rows))}
        active = np.array([self.active_columns(row) for row in unique], dtype=np.intp)        # (U, 1+F)
        mean = self.mean[:, active].sum(axis=2)                                               # (K, U)
        variance = self.covariance[:, active[:, :, None], active[:, None, :]].sum(axis=(2, 3))
        sd = np.sqrt(self.noise * np.maximum(variance, 0.0))
        which = np.fromiter((unique[row] for row in rows), dtype=np.intp, count=len(rows))
        draws = mean.T[which] + self.exploration * sd.T[which] * rng.standard_normal((len(rows), len(self.arms)))
        return np.argmax(draws, axis=1)

    def action_probabilities(self, context: Context, rng: np.random.Generator, draws: int = 20_000
                             ) -> NDArray[np.float64]:
        """P(arm | context) by Monte Carlo over ``draws`` joint draws, shape (K,); admits no new level."""
        mean, sd = self.scores(self.cell_levels(context, admit=False))
        winners = np.argmax(mean + self.exploration * sd * rng.standard_normal((draws, len(self.arms))), axis=1)
        return np.bincount(winners, minlength=len(self.arms)) / draws

    def explain(self, context: Context, rng: np.random.Generator, draws: int = 20_000) -> list[ArmExplanation]:
        """Each arm's score in the context's cell as a Beta of the same mean and variance (moment-matched,
        for the Beta-shaped reports), its intercept prior, and P(best) by Monte Carlo."""
        mean, sd = self.scores(self.cell_levels(context, admit=False))
        p_best = self.action_probabilities(context, rng, draws)
        result = []
        for arm, m, s, prior, p in zip(self.arms, mean, sd, self.intercept_priors, p_best):
            m = float(np.clip(m, 1e-4, 1 - 1e-4))
            strength = max(m * (1 - m) / max(float(s) ** 2, 1e-12) - 1.0, 1e-3)
            result.append(ArmExplanation(arm, m * strength, (1 - m) * strength, prior, float(p)))
        return result

    def level_rates(self, arm: int) -> dict[str, tuple[float, float]]:
        """For the dashboard: ``feature=level`` → (estimated CTR, sd) of ``arm`` in a cell with that level
        and every other feature at OTHER."""
        result = {}
        for j, feature in enumerate(self.features):
            for level in [*self.levels[j], OTHER]:
                levels = [OTHER] * len(self.features)
                levels[j] = level
                mean, sd = self.scores(levels)
                result[f"{feature}={level}"] = (float(mean[arm]), float(sd[arm]))
        return result


def cell_of(state: Mapping[str, Any]) -> str | None:
    """The context cell a logged choice was made in (None for a policy without cells)."""
    cell = state.get("cell")
    return cell if isinstance(cell, str) else None
