"""Results of randomized reminder experiments, honestly stated.

The experiments and each visit's arm belong to messaging, which assigns arms while
planning (careline.messaging.experiments); this reads them back for the result page.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from careline.analytics.statistics import RateComparison, compare_rates
from careline.messaging.models import Experiment, ExperimentArm, ExperimentAssignment
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


def results(experiment: Experiment) -> ExperimentResult:
    due = [AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED, AppointmentStatus.NO_SHOW]
    rows = {
        r["arm"]: r
        for r in ExperimentAssignment.objects.filter(experiment=experiment)
        .values("arm")
        .annotate(
            visits=Count("id"),
            due=Count("id", filter=Q(appointment__status__in=due)),
            no_shows=Count("id", filter=Q(appointment__status=AppointmentStatus.NO_SHOW)),
        )
        .order_by()
    }
    empty = {"visits": 0, "due": 0, "no_shows": 0}
    control = ArmResult(ExperimentArm.CONTROL, **{k: rows.get("control", empty)[k] for k in empty})
    withheld = ArmResult(
        ExperimentArm.WITHHELD, **{k: rows.get("withheld", empty)[k] for k in empty}
    )
    comparison = compare_rates(
        control.no_shows,
        control.due,
        withheld.no_shows,
        withheld.due,
        minimum_total=MINIMUM_PER_ARM,
    )
    p_value = None
    if control.due and withheld.due:
        from scipy.stats import fisher_exact

        table = [
            [control.no_shows, control.due - control.no_shows],
            [withheld.no_shows, withheld.due - withheld.no_shows],
        ]
        p_value = float(fisher_exact(table).pvalue)
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
