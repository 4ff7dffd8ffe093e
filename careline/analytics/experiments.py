"""Results of randomized reminder experiments, honestly stated.

The experiments and each visit's arm belong to messaging, which assigns arms while
planning (careline.messaging.experiments); this reads them back for the result page.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from careline.analytics.statistics import RateComparison, compare_rates
from careline.messaging.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    RiskTouch,
    RiskTouchPolicy,
    TouchArm,
)
from careline.scheduling.models import AppointmentStatus

# Visits with a known outcome each arm needs before the result page draws a conclusion.
MINIMUM_PER_ARM = 200


@dataclass(frozen=True)
class ArmResult:
    arm: str
    visits: int
    due: int
    no_shows: int

    @property
    def rate(self) -> float | None:
        return self.no_shows / self.due if self.due else None


@dataclass(frozen=True)
class ExperimentResult:
    experiment: Experiment
    control: ArmResult
    withheld: ArmResult
    comparison: RateComparison
    p_value: float | None
    enough_data: bool
    verdict: str


_DUE = [AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED, AppointmentStatus.NO_SHOW]


def _arms(assignments, *arms: str) -> list[ArmResult]:
    """Visits, visits with a known outcome and no-shows per arm of these assignment rows
    (each with an `arm` and an `appointment`)."""
    rows = {
        r["arm"]: r
        for r in assignments.values("arm")
        .annotate(
            visits=Count("id"),
            due=Count("id", filter=Q(appointment__status__in=_DUE)),
            no_shows=Count("id", filter=Q(appointment__status=AppointmentStatus.NO_SHOW)),
        )
        .order_by()
    }
    empty = {"visits": 0, "due": 0, "no_shows": 0}
    return [ArmResult(arm, **{k: rows.get(arm, empty)[k] for k in empty}) for arm in arms]


def _compare(reference: ArmResult, changed: ArmResult) -> tuple[RateComparison, float | None]:
    """`changed` − `reference` no-show rates with their interval, and Fisher's exact p."""
    comparison = compare_rates(
        reference.no_shows,
        reference.due,
        changed.no_shows,
        changed.due,
        minimum_total=MINIMUM_PER_ARM,
    )
    p_value = None
    if reference.due and changed.due:
        from scipy.stats import fisher_exact

        table = [
            [reference.no_shows, reference.due - reference.no_shows],
            [changed.no_shows, changed.due - changed.no_shows],
        ]
        p_value = float(fisher_exact(table).pvalue)
    return comparison, p_value


def results(experiment: Experiment) -> ExperimentResult:
    control, withheld = _arms(
        ExperimentAssignment.objects.filter(experiment=experiment),
        ExperimentArm.CONTROL,
        ExperimentArm.WITHHELD,
    )
    comparison, p_value = _compare(control, withheld)
    enough = comparison.enough_data
    if not enough:
        verdict = (
            f"Not enough data yet: each arm needs {MINIMUM_PER_ARM} visits with a known outcome "
            f"(now {control.due} and {withheld.due})."
        )
    elif comparison.difference_low > 0:
        verdict = "Withholding the step raised no-shows: the reminders help."
    elif comparison.difference_high < 0:
        verdict = "Withholding the step lowered no-shows."
    else:
        verdict = "No difference shown yet: the interval still includes zero."
    return ExperimentResult(experiment, control, withheld, comparison, p_value, enough, verdict)


@dataclass(frozen=True)
class TouchResult:
    """The extra touch's randomized comparison among high-risk visits."""

    policy: RiskTouchPolicy
    no_touch: ArmResult
    touch: ArmResult
    comparison: RateComparison  # touch − no touch
    p_value: float | None
    enough_data: bool
    verdict: str


def touch_results(policy: RiskTouchPolicy) -> TouchResult:
    no_touch, touch = _arms(
        RiskTouch.objects.filter(policy=policy), TouchArm.NO_TOUCH, TouchArm.TOUCH
    )
    comparison, p_value = _compare(no_touch, touch)
    enough = comparison.enough_data
    if not enough:
        verdict = (
            f"Not enough data yet: each arm needs {MINIMUM_PER_ARM} visits with a known outcome "
            f"(now {no_touch.due} and {touch.due})."
        )
    elif comparison.difference_high < 0:
        verdict = "The extra touch lowered no-shows among high-risk visits."
    elif comparison.difference_low > 0:
        verdict = "The extra touch raised no-shows among high-risk visits."
    else:
        verdict = "No difference shown yet: the interval still includes zero."
    return TouchResult(policy, no_touch, touch, comparison, p_value, enough, verdict)
