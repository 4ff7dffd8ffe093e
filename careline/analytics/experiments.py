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
    PatientAssignment,
    RiskTouch,
    RiskTouchPolicy,
    TouchArm,
)
from careline.scheduling.models import AppointmentStatus

# Visits with a known outcome each arm needs before the result page draws a conclusion.
MINIMUM_PER_ARM = 200
# Below this p-value the arm counts are called out of line with the configured split.
BALANCE_ALPHA = 0.01


@dataclass(frozen=True)
class ArmBalance:
    """Patients (the unit randomized) and visits per arm against the configured split, with
    a chi-square goodness-of-fit test of the patient counts."""

    control_patients: int
    withheld_patients: int
    control_visits: int
    withheld_visits: int
    expected_withheld_share: float
    chi_square: float | None
    p_value: float | None
    summary: str

    @property
    def patients(self) -> int:
        return self.control_patients + self.withheld_patients

    @property
    def expected_withheld(self) -> float:
        return self.patients * self.expected_withheld_share

    @property
    def expected_control(self) -> float:
        return self.patients - self.expected_withheld

    @property
    def withheld_share(self) -> float | None:
        return self.withheld_patients / self.patients if self.patients else None


def arm_balance(experiment: Experiment) -> ArmBalance:
    from scipy.stats import chisquare

    patients = dict(
        PatientAssignment.objects.filter(experiment=experiment)
        .values("arm")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("arm", "n")
    )
    visits = dict(
        ExperimentAssignment.objects.filter(experiment=experiment)
        .values("arm")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("arm", "n")
    )
    control = patients.get(ExperimentArm.CONTROL, 0)
    withheld = patients.get(ExperimentArm.WITHHELD, 0)
    share = experiment.share_basis_points / 10_000
    total = control + withheld
    statistic = p_value = None
    if total == 0:
        summary = "No patient has been assigned yet."
    else:
        test = chisquare([withheld, control], f_exp=[total * share, total * (1 - share)])
        statistic, p_value = float(test.statistic), float(test.pvalue)
        realised = f"{withheld / total:.1%} of {total} patients held out against {share:.1%} set"
        if p_value < BALANCE_ALPHA:
            summary = (
                f"The arms are out of line with the split: {realised} (chi-square p = "
                f"{p_value:.4f}). A split this far off is unlikely by chance; check the "
                "assignment before trusting the result."
            )
        else:
            summary = (
                f"The arms match the split: {realised} (chi-square p = {p_value:.2f}); "
                "a difference this size is what chance gives."
            )
    return ArmBalance(
        control_patients=control,
        withheld_patients=withheld,
        control_visits=visits.get(ExperimentArm.CONTROL, 0),
        withheld_visits=visits.get(ExperimentArm.WITHHELD, 0),
        expected_withheld_share=share,
        chi_square=statistic,
        p_value=p_value,
        summary=summary,
    )


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
    balance: ArmBalance


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
    return ExperimentResult(
        experiment,
        control,
        withheld,
        comparison,
        p_value,
        enough,
        verdict,
        arm_balance(experiment),
    )


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
