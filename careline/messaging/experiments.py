"""Randomized reminder experiments: which arm a visit falls in, decided in SQL at planning.

A visit's arm is a pure function of (visit id, experiment id): a multiplicative hash of the
two, cut at the experiment's share. It is computed set-based when the visit is planned and
written down, so it never changes and anyone can re-derive it. Planning skips the step a
withheld visit's experiment names (withheld_condition); careline.analytics reports the
results.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone

from careline.messaging.models import Experiment, ExperimentArm, ExperimentAssignment
from careline.scheduling.models import Appointment

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


def start_experiment(
    *,
    organization_id: int,
    practice_id: int | None,
    name: str,
    withheld_step: str,
    share_basis_points: int,
    created_by=None,
) -> Experiment:
    """Start now: visits booked from here on are assigned an arm when first planned."""
    return Experiment.objects.create(
        organization_id=organization_id,
        practice_id=practice_id,
        name=name,
        withheld_step=withheld_step,
        share_basis_points=share_basis_points,
        started_at=timezone.now(),
        created_by=created_by,
    )


def end_experiment(experiment: Experiment) -> None:
    """No new visits join; the arms already assigned stay, for the results."""
    if experiment.ended_at is None:
        experiment.ended_at = timezone.now()
        experiment.save(update_fields=["ended_at"])
