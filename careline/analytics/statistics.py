"""Interval estimates for rates and their differences, from statsmodels (no hand formulas):
Wilson score intervals for one proportion, Newcomb's hybrid score interval (method 10) for
the difference of two."""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.05  # 95% intervals


def wilson_interval(events: int, total: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson score interval for a proportion; well-behaved for small counts and 0 or 1.
    Nothing observed: anything from 0 to 1."""
    if total <= 0:
        return (0.0, 1.0)
    # Imported here: statsmodels (with scipy) costs two seconds at start-up of every command.
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(events, total, alpha=alpha, method="wilson")
    return (max(0.0, float(low)), min(1.0, float(high)))


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
    """Difference of two proportions (after − before) with Newcomb's hybrid score interval.
    With nothing observed on one side the difference can be anything from -1 to 1."""
    p1 = before_events / before_total if before_total else 0.0
    p2 = after_events / after_total if after_total else 0.0
    if before_total > 0 and after_total > 0:
        from statsmodels.stats.proportion import confint_proportions_2indep

        low, high = confint_proportions_2indep(
            after_events,
            after_total,
            before_events,
            before_total,
            method="newcomb",
            compare="diff",
            alpha=ALPHA,
        )
        low, high = float(low), float(high)
    else:
        low, high = -1.0, 1.0
    relative = (p2 / p1) if p1 > 0 and after_total else None
    return RateComparison(
        before_rate=p1,
        after_rate=p2,
        difference=p2 - p1,
        difference_low=max(-1.0, low),
        difference_high=min(1.0, high),
        relative_risk=relative,
        enough_data=before_total >= minimum_total and after_total >= minimum_total,
    )
