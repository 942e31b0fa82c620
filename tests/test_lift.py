"""The holdout's lift math (evaluation/lift.py) and group assignment (webapp/serving/holdout.py), against
hand-computed values. Pure: no database."""

from __future__ import annotations

import math

import numpy as np
import pytest

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
