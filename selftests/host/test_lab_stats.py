"""The decision rule for benchmark goals (mshare_lab.stats)."""
from __future__ import annotations

import math

import pytest

from mshare_lab import stats
from mshare_lab.stats import Verdict

STOCK = [1000.0, 1040.0, 980.0, 1010.0, 995.0, 1025.0, 990.0, 1005.0, 1015.0, 985.0, 1000.0,
         1020.0]


def scaled(factor: float) -> list[float]:
    return [v * factor for v in STOCK]


def test_clearly_ahead_is_met() -> None:
    j = stats.judge_ratio(scaled(1.2), STOCK)
    assert j.verdict is Verdict.MET and j.met
    assert j.interval is not None and math.isclose(j.interval.ratio, 1.2)
    assert j.interval.lower >= 0.95


def test_clearly_behind_is_not_met() -> None:
    j = stats.judge_ratio(scaled(0.5), STOCK)
    assert j.verdict is Verdict.NOT_MET and not j.met
    assert j.interval is not None and j.interval.upper < 0.95


def test_straddling_the_margin_is_inconclusive_never_met() -> None:
    # Paired ratios spread from 0.90 to 1.00 around the margin.
    new = [s * r for s, r in zip(STOCK, [0.90, 1.00, 0.92, 0.99, 0.94, 0.97, 0.91, 0.98, 0.95,
                                         0.96, 0.93, 1.00], strict=True)]
    j = stats.judge_ratio(new, STOCK)
    assert j.verdict is Verdict.INCONCLUSIVE and not j.met
    assert j.interval is not None and j.interval.lower < 0.95 <= j.interval.upper


def test_fewer_than_ten_pairs_is_inconclusive() -> None:
    j = stats.judge_ratio(scaled(2.0)[:9], STOCK[:9])
    assert j.verdict is Verdict.INCONCLUSIVE and j.interval is None and j.pairs == 9
    assert "fewer than the 10" in j.describe()


def test_margin_is_the_goals() -> None:
    assert stats.judge_ratio(scaled(1.0), STOCK, margin=1.1).verdict is Verdict.NOT_MET
    assert stats.judge_ratio(scaled(1.0), STOCK, margin=0.9).verdict is Verdict.MET


def test_interval_is_reproducible_and_reports_its_width() -> None:
    noisy = [s * (1 + 0.05 * math.sin(i)) for i, s in enumerate(STOCK)]
    a, b = stats.ratio_interval(noisy, STOCK), stats.ratio_interval(noisy, STOCK)
    assert a == b
    assert a.lower < a.ratio < a.upper and a.width == pytest.approx(a.upper - a.lower)
    assert a.confidence == 0.90
    assert "width" in stats.judge_ratio(noisy, STOCK).describe()


def test_unpaired_or_non_positive_data_is_refused() -> None:
    with pytest.raises(ValueError):
        stats.judge_ratio(STOCK[:11], STOCK)
    with pytest.raises(ValueError):
        stats.judge_ratio([0.0] * 12, STOCK)


def test_counts_are_judged_as_counts() -> None:
    assert stats.judge_counts([0, 0, 0], 0).met
    worse = stats.judge_counts([0, 1, 0], 0)
    assert worse.verdict is Verdict.NOT_MET and worse.worst == 1
    assert stats.judge_counts([12, 15], 10, at_most=False).met
    assert not stats.judge_counts([12, 9], 10, at_most=False).met


def test_a_short_plan_says_why_its_ratio_goal_is_inconclusive() -> None:
    j = stats.judge_ratio(scaled(2.0)[:3], STOCK[:3])
    assert j.describe("quick").startswith("inconclusive (quick plan: 3 < 10 reps")


NOISE = [3.0, 0.0, 5.0, 1.0, 2.0, 4.0, 0.0, 6.0, 2.0, 1.0, 3.0, 2.0]


def test_a_noisy_count_below_its_base_is_met_by_the_mean_difference() -> None:
    j = stats.judge_difference([v - 2.0 for v in NOISE], NOISE)
    assert j.verdict is Verdict.MET and j.mean == pytest.approx(-2.0)
    assert j.upper <= 0 and j.describe().startswith("met: mean excess -2.0, 90% interval")


def test_a_noisy_count_above_its_base_is_not_met() -> None:
    j = stats.judge_difference([v + 1.0 for v in NOISE], NOISE)
    assert j.verdict is Verdict.NOT_MET and j.lower > 0


def test_a_mean_difference_straddling_the_bound_is_inconclusive() -> None:
    j = stats.judge_difference(NOISE, list(reversed(NOISE)))
    assert j.verdict is Verdict.INCONCLUSIVE and j.lower < 0 < j.upper


def test_a_mean_difference_of_fewer_than_ten_pairs_is_inconclusive() -> None:
    j = stats.judge_difference([0.0] * 9, [5.0] * 9)
    assert j.verdict is Verdict.INCONCLUSIVE and math.isnan(j.upper)
    assert "9 pairs, fewer than the 10" in j.describe()


def test_an_unpaired_or_empty_difference_is_refused() -> None:
    with pytest.raises(ValueError, match="unpaired"):
        stats.judge_difference(NOISE[:11], NOISE)
    with pytest.raises(ValueError, match="no pairs"):
        stats.judge_difference([], [])
