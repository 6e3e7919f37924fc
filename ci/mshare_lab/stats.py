"""One statistics module and one decision rule for every goal a benchmark states.

A ratio goal ("msharefs does at least m times what stock does") is judged on paired
repetitions: repetition i ran both sides back to back, so ratio_i = new_i / base_i.  The
ratio's interval comes from a bootstrap of the mean log-ratio (fixed seed, so a report
is reproducible; 90% two-sided); with margin m (0.95 unless the goal says otherwise):

- **met** when the interval's lower bound is >= m;
- **NOT met** when its upper bound is < m;
- **inconclusive** otherwise, and with fewer than MIN_PAIRS pairs.  Inconclusive is
  never reported as met.

Spread (median, range, n) is how every bench table shows repeated measurements.

Orient a goal so that higher is better: for times or latencies pass (base, new) as
(new, base).  Counts (page tables, faults, IPIs) are not sampled quantities with noise
to average away: judge_counts compares every repetition's count with the bound.  A
count that other sources also feed (the function-call IPIs an idle CPU takes whatever
the benchmark does) is judged by judge_difference instead: the paired mean difference
new_i - base_i, bootstrapped the same way, met when its interval's upper bound is <= the
bound, NOT met when its lower bound is above it, inconclusive otherwise.
"""
from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "CONFIDENCE", "MARGIN", "MIN_PAIRS", "RESAMPLES", "SEED", "CountJudgement",
    "DifferenceJudgement", "RatioInterval", "RatioJudgement", "Spread", "Verdict",
    "judge_counts", "judge_difference", "judge_ratio",
    "line_fit", "ratio_interval", "spread",
]

MIN_PAIRS = 10
CONFIDENCE = 0.90
MARGIN = 0.95
RESAMPLES = 10_000
SEED = 19  # any fixed value: the same data always gives the same interval


@dataclass(frozen=True)
class Spread:
    """The median of n measurements and the range they fell in."""
    median: float
    low: float
    high: float
    n: int

    @property
    def width(self) -> float:
        return self.high - self.low

    def text(self, fmt: str = "{:,.0f}") -> str:
        """"1,782 [1,166-1,885]"; the median alone for one measurement."""
        m = fmt.format(self.median)
        return m if self.n < 2 else f"{m} [{fmt.format(self.low)}-{fmt.format(self.high)}]"


def spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def line_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares y = intercept + slope * x: (slope, intercept), None when every x is
    the same (no slope to separate from the offset)."""
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


class Verdict(Enum):
    MET = "met"
    NOT_MET = "NOT met"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class RatioInterval:
    ratio: float  # exp(mean log-ratio): the geometric mean of the paired ratios
    lower: float
    upper: float
    width: float  # upper - lower: how much the repetitions leave open
    pairs: int
    confidence: float


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _log_ratios(new: Sequence[float], base: Sequence[float]) -> list[float]:
    if len(new) != len(base):
        raise ValueError(f"unpaired: {len(new)} new against {len(base)} base values")
    if any(v <= 0 for v in (*new, *base)):
        raise ValueError("a ratio needs positive values on both sides")
    return [math.log(n / b) for n, b in zip(new, base, strict=True)]


def ratio_interval(new: Sequence[float], base: Sequence[float], *,
                   confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                   seed: int = SEED) -> RatioInterval:
    """The paired ratio new/base and its bootstrap percentile interval."""
    logs = _log_ratios(new, base)
    if not logs:
        raise ValueError("no pairs")
    lower, upper = _mean_interval(logs, confidence, resamples, seed)
    return RatioInterval(math.exp(statistics.fmean(logs)), math.exp(lower), math.exp(upper),
                         math.exp(upper) - math.exp(lower), len(logs), confidence)


def _mean_interval(values: Sequence[float], confidence: float, resamples: int,
                   seed: int) -> tuple[float, float]:
    """The bootstrap percentile interval of the mean of values."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    return _percentile(means, tail), _percentile(means, 1 - tail)


@dataclass(frozen=True)
class RatioJudgement:
    verdict: Verdict
    margin: float
    pairs: int
    interval: RatioInterval | None  # None with too few pairs

    @property
    def met(self) -> bool:
        return self.verdict is Verdict.MET

    def describe(self, plan: str | None = None) -> str:
        """One line: "met: ratio 1.08, 90% interval 1.01-1.15 (width 0.14), 12 pairs,
        margin 0.95"; with too few pairs and the plan named, "inconclusive (quick plan:
        3 < 10 reps)", so a short plan's report says why it cannot judge."""
        if self.interval is None:
            if plan is not None:
                return (f"{self.verdict.value} ({plan} plan: {self.pairs} < {MIN_PAIRS} reps; "
                        f"margin {self.margin:g})")
            return (f"{self.verdict.value}: {self.pairs} pairs, fewer than the {MIN_PAIRS} "
                    f"a ratio goal needs (margin {self.margin:g})")
        i = self.interval
        return (f"{self.verdict.value}: ratio {i.ratio:.3f}, {i.confidence:.0%} interval "
                f"{i.lower:.3f}-{i.upper:.3f} (width {i.width:.3f}), {i.pairs} pairs, "
                f"margin {self.margin:g}")


def judge_ratio(new: Sequence[float], base: Sequence[float], *, margin: float = MARGIN,
                min_pairs: int = MIN_PAIRS, seed: int = SEED) -> RatioJudgement:
    """The goal new/base >= margin, judged by the rule in the module docstring."""
    if len(new) < min_pairs or len(base) < min_pairs:
        _log_ratios(new, base)  # still refuse unpaired or non-positive data
        return RatioJudgement(Verdict.INCONCLUSIVE, margin, min(len(new), len(base)), None)
    interval = ratio_interval(new, base, seed=seed)
    if interval.lower >= margin:
        verdict = Verdict.MET
    elif interval.upper < margin:
        verdict = Verdict.NOT_MET
    else:
        verdict = Verdict.INCONCLUSIVE
    return RatioJudgement(verdict, margin, interval.pairs, interval)


@dataclass(frozen=True)
class CountJudgement:
    verdict: Verdict  # MET or NOT_MET: a count is exact, never inconclusive
    worst: int
    bound: int
    at_most: bool

    @property
    def met(self) -> bool:
        return self.verdict is Verdict.MET

    def describe(self) -> str:
        return (f"{self.verdict.value}: worst {self.worst}, "
                f"{'at most' if self.at_most else 'at least'} {self.bound}")


def judge_counts(counts: Sequence[int], bound: int, *, at_most: bool = True) -> CountJudgement:
    """Every repetition's count against the bound (at most, or at least, bound)."""
    if not counts:
        raise ValueError("no counts")
    worst = max(counts) if at_most else min(counts)
    ok = worst <= bound if at_most else worst >= bound
    return CountJudgement(Verdict.MET if ok else Verdict.NOT_MET, worst, bound, at_most)


@dataclass(frozen=True)
class DifferenceJudgement:
    verdict: Verdict
    mean: float  # the mean of new_i - base_i over the pairs
    lower: float
    upper: float
    pairs: int
    bound: float
    confidence: float

    @property
    def met(self) -> bool:
        return self.verdict is Verdict.MET

    def describe(self) -> str:
        """"met: mean excess -24.0, 90% interval -48.7 to -3.0, 24 pairs, bound 0"."""
        if self.pairs < MIN_PAIRS:
            return (f"{self.verdict.value}: {self.pairs} pairs, fewer than the {MIN_PAIRS} "
                    f"a mean goal needs (bound {self.bound:g})")
        return (f"{self.verdict.value}: mean excess {self.mean:.1f}, {self.confidence:.0%} "
                f"interval {self.lower:.1f} to {self.upper:.1f}, {self.pairs} pairs, bound "
                f"{self.bound:g}")


def judge_difference(new: Sequence[float], base: Sequence[float], *, bound: float = 0.0,
                     min_pairs: int = MIN_PAIRS, seed: int = SEED) -> DifferenceJudgement:
    """The goal mean(new_i - base_i) <= bound, judged by the rule in the module docstring."""
    if len(new) != len(base):
        raise ValueError(f"unpaired: {len(new)} new against {len(base)} base values")
    if not new:
        raise ValueError("no pairs")
    diffs = [n - b for n, b in zip(new, base, strict=True)]
    mean = statistics.fmean(diffs)
    if len(diffs) < min_pairs:
        return DifferenceJudgement(Verdict.INCONCLUSIVE, mean, math.nan, math.nan,
                                   len(diffs), bound, CONFIDENCE)
    lower, upper = _mean_interval(diffs, CONFIDENCE, RESAMPLES, seed)
    if upper <= bound:
        verdict = Verdict.MET
    elif lower > bound:
        verdict = Verdict.NOT_MET
    else:
        verdict = Verdict.INCONCLUSIVE
    return DifferenceJudgement(verdict, mean, lower, upper, len(diffs), bound, CONFIDENCE)
