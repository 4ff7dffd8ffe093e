"""Randomized reminder experiments: deterministic assignment in SQL, honest results.

A visit's arm is a pure function of (visit id, experiment id): a multiplicative hash of the
two, cut at the experiment's share. It is computed set-based when the visit is planned and
written down, so it never changes and anyone can re-derive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, Q

from careline.analytics.models import Experiment, ExperimentArm, ExperimentAssignment
from careline.analytics.statistics import RateComparison, compare_rates
from careline.scheduling.models import Appointment, AppointmentStatus

# Visits with a known outcome each arm needs before the result page draws a conclusion.
MINIMUM_PER_ARM = 200
# "%%" is a literal % in SQL that also carries parameters (psycopg and Django's SQLite wrapper).
_BUCKET = "(((a.id * 1103515245 + x.id * 12345 + 12345) %% 2147483648) / 65536) %% 10000"


def arm_of(appointment_id: int, experiment: Experiment) -> str:
    """The same hash as the SQL, for explanations and tests."""
    bucket = (
        ((appointment_id * 1103515245 + experiment.id * 12345 + 12345) % 2147483648) // 65536
    ) % 10000
    return (
        ExperimentArm.WITHHELD if bucket < experiment.share_basis_points else ExperimentArm.CONTROL
    )


def assignment_sql(appointment_filter: str) -> str:
    """INSERT … SELECT assigning the filtered appointments (alias `a`) to running experiments;
    parameters: assigned_at, then the filter's own."""
    t = ExperimentAssignment._meta.db_table
    return f"""
        INSERT INTO {t} (experiment_id, appointment_id, arm, withheld_step, assigned_at)
        SELECT x.id, a.id,
               CASE WHEN {_BUCKET} < x.share_basis_points THEN '{ExperimentArm.WITHHELD}'
                    ELSE '{ExperimentArm.CONTROL}' END,
               CASE WHEN {_BUCKET} < x.share_basis_points THEN x.withheld_step ELSE '' END,
               %s
        FROM {Appointment._meta.db_table} a
        JOIN {Experiment._meta.db_table} x ON x.organization_id = a.organization_id
             AND (x.practice_id IS NULL OR x.practice_id = a.practice_id)
        WHERE x.ended_at IS NULL AND a.created_at >= x.started_at AND {appointment_filter}
          AND NOT EXISTS (SELECT 1 FROM {t} ea
                          WHERE ea.experiment_id = x.id AND ea.appointment_id = a.id)
    """


def withheld_condition(step_column: str) -> str:
    """SQL that is true when the reminder step in `step_column` is withheld for visit `a`."""
    t = ExperimentAssignment._meta.db_table
    return (
        f"EXISTS (SELECT 1 FROM {t} ea WHERE ea.appointment_id = a.id "
        f"AND ea.withheld_step IN ({step_column}, '{Experiment.ALL_STEPS}'))"
    )


def assign(appointment_filter: str, params: list, now: datetime) -> None:
    if not Experiment.objects.filter(ended_at__isnull=True).exists():
        return
    with connection.cursor() as cursor:
        cursor.execute(assignment_sql(appointment_filter), [now, *params])


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
