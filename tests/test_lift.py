"""The holdout's lift math (evaluation/lift.py) and group assignment (webapp/serving/holdout.py), against
hand-computed values. Pure: no database."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evaluation import lift
from evaluation.lift import HOLDOUT, POLICY, Unit
from webapp.serving import holdout


def _anonymous(group: str, clicks: list[int], share: float = 0.5) -> list[Unit]:
    return [Unit(group, share, 1, c) for c in clicks]


def test_lift_and_extra_clicks_match_the_delta_method_by_hand():
    units = _anonymous(POLICY, [1, 0, 1, 0]) + _anonymous(HOLDOUT, [1, 0, 0, 0])
    report = lift.lift_report(units)
    # policy: r = 2/4, Var = Σ(c − r)² / n² = 4·0.25/16 = 0.0625; holdout: r = 1/4, Var = (0.75² + 3·0.25²)/16
    assert report["groups"][POLICY] == {"units": 4, "impressions": 4, "clicks": 2, "ctr": 0.5}
    assert report["groups"][HOLDOUT]["ctr"] == 0.25
    se = math.sqrt(0.0625 / 0.25 + 0.046875 / 0.0625)          # = 1
    z = 1.959963984540054
    assert report["lift"]["estimate"] == pytest.approx(1.0)
    assert report["lift"]["low"] == pytest.approx(math.exp(math.log(2) - z * se) - 1)
    assert report["lift"]["high"] == pytest.approx(math.exp(math.log(2) + z * se) - 1)
    half = z * 4 * math.sqrt(0.0625 + 0.046875)
    assert report["extra_clicks"] == pytest.approx({"estimate": 1.0, "low": 1.0 - half, "high": 1.0 + half})


def test_a_returning_visitor_widens_the_variance_beyond_the_binomial():
    # one customer with 3 impressions and 3 clicks, one anonymous impression without a click: r = 3/4
    units = lift.units_of([("c1", POLICY, 0.1, True), ("", POLICY, 0.1, False), ("c1", POLICY, 0.1, True),
                           ("c1", HOLDOUT, 0.3, True)])
    assert units == [Unit(POLICY, 0.1, 3, 3), Unit(POLICY, 0.1, 1, 0)]     # a customer stays in its first group
    rate = lift.group_rate(units)
    assert rate.ctr == 0.75
    assert rate.variance == pytest.approx(((3 - 2.25) ** 2 + 0.75 ** 2) / 16)    # 0.0703 > binomial 0.0469
    assert rate.variance > 0.75 * 0.25 / 4


def test_no_click_in_the_holdout_leaves_the_lift_undefined_not_infinite():
    report = lift.lift_report(_anonymous(POLICY, [1, 0]) + _anonymous(HOLDOUT, [0, 0]))
    assert report["lift"] == {"estimate": None, "low": None, "high": None}
    assert report["extra_clicks"]["estimate"] == pytest.approx(1.0)


def test_sample_ratio_mismatch_is_flagged_by_hand_computed_chi_square():
    units = [Unit(HOLDOUT, 0.1, 1, 0)] * 30 + [Unit(POLICY, 0.1, 1, 0)] * 70
    srm = lift.sample_ratio(units)
    assert srm.expected == {POLICY: pytest.approx(90.0), HOLDOUT: pytest.approx(10.0)}
    assert srm.chi_square == pytest.approx(20 ** 2 / 10 + 20 ** 2 / 90)
    assert srm.mismatch and srm.p_value < 1e-9


def test_sample_ratio_follows_a_split_that_changed_during_the_window():
    # 50 visitors at 0 %, then 50 at 40 %: 20 holdout visitors are expected, not 40 % of all 100
    units = [Unit(POLICY, 0.0, 1, 0)] * 50 + [Unit(HOLDOUT, 0.4, 1, 0)] * 20 + [Unit(POLICY, 0.4, 1, 0)] * 30
    srm = lift.sample_ratio(units)
    assert srm.expected[HOLDOUT] == pytest.approx(20.0)
    assert srm.chi_square == pytest.approx(0.0)
    assert not srm.mismatch


def test_without_a_holdout_there_is_no_sample_ratio_check():
    srm = lift.sample_ratio([Unit(POLICY, 0.0, 1, 0)] * 10)
    assert (srm.chi_square, srm.p_value, srm.mismatch) == (None, None, False)


def test_a_customer_stays_in_one_group_and_the_share_holds():
    rng = np.random.default_rng(7)
    groups = [holdout.assign("t", "s", f"customer-{i}", 20, rng).group for i in range(20_000)]
    again = [holdout.assign("t", "s", f"customer-{i}", 20, rng).group for i in range(20_000)]
    assert groups == again
    held = groups.count(HOLDOUT) / len(groups)
    assert abs(held - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 20_000)          # 5 standard errors
    other_slot = [holdout.assign("t", "s2", f"customer-{i}", 20, rng).group for i in range(20_000)]
    both = sum(a == b == HOLDOUT for a, b in zip(groups, other_slot)) / len(groups)
    assert abs(both - 0.04) < 5 * math.sqrt(0.04 * 0.96 / 20_000)       # independent across slots


def test_anonymous_serves_are_assigned_per_impression():
    rng = np.random.default_rng(11)
    groups = [holdout.assign("t", "s", "", 30, rng).group for _ in range(20_000)]
    assert abs(groups.count(HOLDOUT) / 20_000 - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 20_000)
    assert holdout.assign("t", "s", "", 0, rng) == holdout.Assignment(POLICY, 0.0)


# -- from counters: (group, visitor shard) cells (cql/014) ------------------------------------------------------

def test_counted_report_sums_shards_with_the_delta_method_by_hand():
    # 4 shards; policy shards (n, c): (2, 2), (2, 0) → r = 1/2, Var = ((2 − 1)² + (0 − 1)²)/16 = 1/8;
    # holdout shards (2, 1), (2, 0) → r = 1/4, Var = ((1 − .5)² + (0 − .5)²)/16 = 1/32
    cells = lift.cells_of([(POLICY, 0, 1, 1, 500_000), (POLICY, 0, 1, 1, 500_000), (POLICY, 1, 2, 0, 1_000_000),
                           (HOLDOUT, 2, 2, 1, 1_000_000), (HOLDOUT, 3, 2, 0, 1_000_000)])
    assert lift.Cell(POLICY, 0, 2, 2, 1_000_000) in cells and len(cells) == 4     # rows of one cell summed
    report = lift.counted_report(cells, shards=4)
    t = 3.182446305284263                                               # Student t, 0.975, 3 df
    se = math.sqrt((1 / 8) / 0.25 + (1 / 32) / 0.0625)                  # = 1
    assert report["groups"] == {POLICY: {"units": 4, "impressions": 4, "clicks": 2, "ctr": 0.5},
                                HOLDOUT: {"units": 4, "impressions": 4, "clicks": 1, "ctr": 0.25}}
    assert report["lift"] == pytest.approx({"estimate": 1.0, "low": math.exp(math.log(2) - t * se) - 1,
                                            "high": math.exp(math.log(2) + t * se) - 1})
    half = t * 4 * math.sqrt(1 / 8 + 1 / 32)
    assert report["extra_clicks"] == pytest.approx({"estimate": 1.0, "low": 1.0 - half, "high": 1.0 + half})
    # SRM: d_b = H_b − Σ s = (0 − 1, 0 − 1, 2 − 1, 2 − 1) → mean 0: no mismatch, t = 0
    srm = report["sample_ratio"]
    assert srm["observed"] == {POLICY: 4, HOLDOUT: 4} and srm["expected"] == {POLICY: 4.0, HOLDOUT: 4.0}
    assert srm["chi_square"] == pytest.approx(0.0) and srm["p_value"] == pytest.approx(1.0)


def test_counted_sample_ratio_is_a_t_test_over_shards_by_hand():
    # 4 shards, share 0.5 each impression, 4 impressions a shard; holdout impressions per shard 4, 3, 4, 3
    rows = []
    for shard, held in enumerate((4, 3, 4, 3)):
        rows += [(HOLDOUT, shard, held, 0, held * 500_000), (POLICY, shard, 4 - held, 0, (4 - held) * 500_000)]
    srm = lift.counted_report(lift.cells_of(rows), shards=4)["sample_ratio"]
    d = np.array([2.0, 1.0, 2.0, 1.0])                                  # H_b − 2
    t = d.mean() / (d.std(ddof=1) / 2)
    assert srm["expected"] == {POLICY: 8.0, HOLDOUT: 8.0} and srm["observed"] == {POLICY: 2, HOLDOUT: 14}
    assert srm["chi_square"] == pytest.approx(t * t)
    assert srm["p_value"] == pytest.approx(2 * (1 - stats.t.cdf(t, 3)))
    assert srm["mismatch"] == (srm["p_value"] < 0.001)


def test_a_returning_visitor_does_not_make_an_honest_split_a_mismatch():
    """Pearson's χ² over impressions flags a 10% holdout whose few heavy visitors happen to be held out; over
    visitor shards the same traffic passes: those impressions are one visitor's, not independent draws."""
    rng = np.random.default_rng(3)
    shards, flagged_pearson, flagged = 32, 0, 0
    for _ in range(20):
        rows = []
        for visitor in range(400):
            held = rng.random() < 0.1
            n = int(rng.integers(1, 4)) if visitor % 20 else int(rng.integers(100, 300))   # 5% heavy visitors
            rows.append((HOLDOUT if held else POLICY, visitor % shards, n, 0, n * 100_000))
        report = lift.counted_report(lift.cells_of(rows), shards)
        flagged += report["sample_ratio"]["mismatch"]
        srm = report["sample_ratio"]
        pearson = lift.sample_ratio([Unit(g, 0.1, 1, 0) for g, _, n, _, _ in rows for _ in range(n)])
        flagged_pearson += pearson.mismatch
        assert srm["expected"][HOLDOUT] == pytest.approx(0.1 * sum(r[2] for r in rows))
    assert flagged <= 1 < flagged_pearson


def test_counted_report_without_holdout_or_traffic_has_no_check_and_no_lift():
    empty = lift.counted_report([], shards=32)
    assert empty["groups"][POLICY] == {"units": 0, "impressions": 0, "clicks": 0, "ctr": None}
    assert empty["lift"]["estimate"] is None and empty["sample_ratio"]["p_value"] is None
    only_policy = lift.counted_report(lift.cells_of([(POLICY, 5, 10, 1, 0)]), shards=32)
    assert only_policy["sample_ratio"]["mismatch"] is False and only_policy["sample_ratio"]["chi_square"] is None
