"""Small, dependency-free interval estimates for rates and their differences."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


def wilson_interval(events: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; well-behaved for small counts and 0 or 1."""
    if total <= 0:
        return (0.0, 1.0)
    p = events / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class RateComparison:
    before_rate: float
    after_rate: float
    difference: float  # after − before
    difference_low: float
    difference_high: float
    relative_risk: float | None
    enough_data: bool


def compare_rates(
    before_events: int,
    before_total: int,
    after_events: int,
    after_total: int,
    minimum_total: int = 30,
) -> RateComparison:
    """Difference of two proportions with Newcomb's hybrid score interval (method 10)."""
    p1 = before_events / before_total if before_total else 0.0
    p2 = after_events / after_total if after_total else 0.0
    l1, u1 = wilson_interval(before_events, before_total)
    l2, u2 = wilson_interval(after_events, after_total)
    diff = p2 - p1
    low = diff - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = diff + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    relative = (p2 / p1) if p1 > 0 and after_total else None
    return RateComparison(
        before_rate=p1,
        after_rate=p2,
        difference=diff,
        difference_low=max(-1.0, low),
        difference_high=min(1.0, high),
        relative_risk=relative,
        enough_data=before_total >= minimum_total and after_total >= minimum_total,
    )
