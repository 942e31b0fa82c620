"""The holdout's lift: the policy group against the holdout group (served uniformly at random).

Visitors are the randomization unit: a visitor with a ``customer_id`` is one unit (sticky group), a serve
without one is a unit of its own. Each group's click rate is a ratio of sums over its units,
r = Σ c_u / Σ n_u, whose variance by the delta method is (Deng, Knoblich & Lu 2018, "Applying the delta
method in metric analytics")

    Var(r̂) ≈ Σ_u (c_u − r̂ n_u)² / (Σ_u n_u)²

— for one-impression units this is the binomial r(1 − r)/n. Then, for the policy group p and the holdout h:

- relative lift  L = r_p / r_h − 1, 95 % interval exp(log(r_p/r_h) ± z·√(Var r_p / r_p² + Var r_h / r_h²)) − 1;
- extra clicks   E = n_p (r_p − r_h): clicks the policy group got beyond what serving it like the holdout
  would have got, interval E ± z·n_p·√(Var r_p + Var r_h);
- sample-ratio mismatch: units per group against the expected counts Σ_u s_u (holdout) and Σ_u (1 − s_u)
  (policy), s_u the holdout share logged with the unit's first impression (so a split changed during the window
  is followed, as GrowthBook's check does); Pearson's χ² with 1 degree of freedom, flagged when p < 0.001.

From counters (:func:`counted_report`, what the lift endpoint reads: lift_counts, cql/014) there are no visitors,
only per (group, visitor shard) sums — a visitor's impressions all in one of S shards (eventlog.counting.lift_shard).
Shards are then the units: Σ_b (C_b − r̂ N_b)² / (Σ_b N_b)² is the same delta-method variance with visitors grouped
into independent clusters (the "bucket" method of online-experiment platforms), so returning visitors still widen
it; intervals take Student's t with S − 1 degrees of freedom instead of z. The counts, CTRs, lift and extra clicks
are those of the visitor-level formulas exactly. The sample-ratio check compares holdout impressions with their
expectation Σ_i s_i (each impression's logged share), per shard, d_b = H_b − Σ_{i∈b} s_i, by a one-sample t test of
the d_b against 0 (S − 1 degrees of freedom; reported as ``chi_square`` = t², which is F(1, S − 1)): Pearson's χ²
over impressions would take a returning visitor's impressions as independent draws and flag honest splits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

POLICY, HOLDOUT = "policy", "holdout"
SRM_ALPHA = 0.001
Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Unit:
    """One randomization unit's traffic in a window."""

    group: str          # POLICY or HOLDOUT (its first impression's group)
    share: float        # P(holdout) logged with its first impression
    impressions: int
    clicks: int


@dataclass(frozen=True)
class GroupRate:
    units: int
    impressions: int
    clicks: int
    ctr: float | None
    variance: float | None        # Var(ctr) by the delta method (module doc)


def group_rate(units: list[Unit]) -> GroupRate:
    n = np.array([u.impressions for u in units], dtype=np.float64)
    c = np.array([u.clicks for u in units], dtype=np.float64)
    total_n, total_c = float(n.sum()), float(c.sum())
    if total_n == 0:
        return GroupRate(len(units), 0, 0, None, None)
    rate = total_c / total_n
    variance = float(np.sum((c - rate * n) ** 2)) / total_n ** 2        # Σ(c_u − r n_u)² / (Σ n_u)²
    return GroupRate(len(units), int(total_n), int(total_c), rate, variance)


def relative_lift(policy: GroupRate, holdout: GroupRate, z: float = Z95
                  ) -> tuple[float | None, float | None, float | None]:
    """(lift, low, high) of r_p / r_h − 1; None where a rate is missing or zero (the ratio is undefined)."""
    if not policy.ctr or not holdout.ctr:
        return None, None, None
    log_ratio = math.log(policy.ctr / holdout.ctr)
    se = math.sqrt(policy.variance / policy.ctr ** 2 + holdout.variance / holdout.ctr ** 2)
    return math.exp(log_ratio) - 1, math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1


def extra_clicks(policy: GroupRate, holdout: GroupRate, z: float = Z95
                 ) -> tuple[float | None, float | None, float | None]:
    """(E, low, high): E = n_p (r_p − r_h), the policy group's clicks beyond the holdout's rate."""
    if policy.ctr is None or holdout.ctr is None:
        return None, None, None
    extra = policy.impressions * (policy.ctr - holdout.ctr)
    half = z * policy.impressions * math.sqrt(policy.variance + holdout.variance)
    return extra, extra - half, extra + half


@dataclass(frozen=True)
class SampleRatio:
    observed: dict[str, int]
    expected: dict[str, float]
    chi_square: float | None
    p_value: float | None
    mismatch: bool


def sample_ratio(units: list[Unit], alpha: float = SRM_ALPHA) -> SampleRatio:
    """Units per group against the counts expected from their logged holdout shares (module doc)."""
    observed = {POLICY: sum(u.group == POLICY for u in units), HOLDOUT: sum(u.group == HOLDOUT for u in units)}
    expected_holdout = float(sum(u.share for u in units))
    expected = {POLICY: len(units) - expected_holdout, HOLDOUT: expected_holdout}
    if min(expected.values()) <= 0:     # no holdout configured (or no traffic): nothing to check
        return SampleRatio(observed, expected, None, None, False)
    chi2, p = stats.chisquare([observed[POLICY], observed[HOLDOUT]], [expected[POLICY], expected[HOLDOUT]])
    return SampleRatio(observed, expected, float(chi2), float(p), bool(p < alpha))


def units_of(impressions: Iterable[tuple[str, str, float, bool]]) -> list[Unit]:
    """Units from impressions (customer_id or '' for none, group, holdout share, clicked), in serve order: a
    customer's impressions form one unit, in the group and share of its first one; an anonymous impression is
    a unit of its own."""
    customers: dict[str, list] = {}
    units: list[list] = []
    for customer, group, share, clicked in impressions:
        if customer:
            found = customers.get(customer)
            if found is None:
                found = customers[customer] = [group, share, 0, 0]
                units.append(found)
        else:
            found = [group, share, 0, 0]
            units.append(found)
        found[2] += 1
        found[3] += int(clicked)
    return [Unit(g, s, n, c) for g, s, n, c in units]


def lift_report(units: list[Unit]) -> dict:
    """The lift document of a window's units: per group counts and CTR, lift, extra clicks, SRM."""
    rates = {g: group_rate([u for u in units if u.group == g]) for g in (POLICY, HOLDOUT)}
    lift, low, high = relative_lift(rates[POLICY], rates[HOLDOUT])
    extra, extra_low, extra_high = extra_clicks(rates[POLICY], rates[HOLDOUT])
    srm = sample_ratio(units)
    return {
        "groups": {g: {"units": r.units, "impressions": r.impressions, "clicks": r.clicks, "ctr": r.ctr}
                   for g, r in rates.items()},
        "lift": {"estimate": lift, "low": low, "high": high},
        "extra_clicks": {"estimate": extra, "low": extra_low, "high": extra_high},
        "sample_ratio": {"observed": srm.observed, "expected": srm.expected, "chi_square": srm.chi_square,
                         "p_value": srm.p_value, "mismatch": srm.mismatch},
    }


@dataclass(frozen=True)
class Cell:
    """Counts of one (group, visitor shard) over a window: lift_counts rows summed over their quarter hours."""

    group: str          # POLICY or HOLDOUT
    shard: int          # 0 .. shards − 1
    impressions: int
    clicks: int
    share_micros: int   # Σ round(10⁶ · P(holdout)) over the impressions


def cells_of(rows: Iterable[tuple[str, int, int, int, int]]) -> list[Cell]:
    """(group, shard, impressions, clicks, share_micros) rows summed per (group, shard)."""
    sums: dict[tuple[str, int], list[int]] = {}
    for group, shard, impressions, clicks, micros in rows:
        found = sums.setdefault((group, shard), [0, 0, 0])
        found[0] += impressions
        found[1] += clicks
        found[2] += micros
    return [Cell(g, b, n, c, m) for (g, b), (n, c, m) in sorted(sums.items())]


def shard_sample_ratio(cells: list[Cell], shards: int, alpha: float = SRM_ALPHA) -> SampleRatio:
    """Holdout impressions against Σ s_i, tested over shards (module doc)."""
    observed = {g: sum(c.impressions for c in cells if c.group == g) for g in (POLICY, HOLDOUT)}
    expected_holdout = sum(c.share_micros for c in cells) / 1e6
    expected = {POLICY: sum(observed.values()) - expected_holdout, HOLDOUT: expected_holdout}
    if min(expected.values()) <= 0:     # no holdout configured (or no traffic): nothing to check
        return SampleRatio(observed, expected, None, None, False)
    residuals = np.zeros(shards)        # d_b = H_b − Σ_{i∈b} s_i
    for cell in cells:
        residuals[cell.shard] += (cell.impressions if cell.group == HOLDOUT else 0) - cell.share_micros / 1e6
    mean, spread = float(residuals.mean()), float(residuals.std(ddof=1))
    if spread == 0:
        # Every shard off by the same amount (or none at all): no spread to scale by; not infinity in JSON.
        return SampleRatio(observed, expected, 0.0 if mean == 0 else None, 1.0 if mean == 0 else 0.0, mean != 0)
    t = mean / (spread / math.sqrt(shards))
    p = float(2 * stats.t.sf(abs(t), df=shards - 1))
    return SampleRatio(observed, expected, t * t, p, bool(p < alpha))


def counted_report(cells: list[Cell], shards: int) -> dict:
    """The lift document (:func:`lift_report`'s shape) of a window's counters: shards are the units of the
    variance (module doc); ``units`` per group is its impressions, the units the counters can see."""
    z = float(stats.t.ppf(0.975, df=shards - 1))
    rates = {g: group_rate([Unit(c.group, 0.0, c.impressions, c.clicks) for c in cells if c.group == g])
             for g in (POLICY, HOLDOUT)}
    lift, low, high = relative_lift(rates[POLICY], rates[HOLDOUT], z)
    extra, extra_low, extra_high = extra_clicks(rates[POLICY], rates[HOLDOUT], z)
    srm = shard_sample_ratio(cells, shards)
    return {
        "groups": {g: {"units": r.impressions, "impressions": r.impressions, "clicks": r.clicks, "ctr": r.ctr}
                   for g, r in rates.items()},
        "lift": {"estimate": lift, "low": low, "high": high},
        "extra_clicks": {"estimate": extra, "low": extra_low, "high": extra_high},
        "sample_ratio": {"observed": srm.observed, "expected": srm.expected, "chi_square": srm.chi_square,
                         "p_value": srm.p_value, "mismatch": srm.mismatch},
    }
