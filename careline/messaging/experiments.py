"""Randomized reminder experiments: which arm a patient falls in, and which visits join.

The arm is a pure function of (experiment, patient): the low 64 bits of a BLAKE2b hash of
"<experiment id>:<patient id>", taken mod 10,000, cut at the experiment's share
(`bucket_of`, `arm_of`). It is drawn when one of the patient's visits first becomes
eligible and stored (`PatientAssignment`, one row per experiment and patient), so re-planning,
a rule change or a later visit never changes it: every visit of the patient that joins the
experiment gets the same arm (`ExperimentAssignment`, one row per visit, read by planning
through `withheld_condition`). Exclusions come before the draw, in the same statement
that picks the candidates: a visit joins only while it is upcoming, in the future and its
patient can be reached (a mobile number or an email). A visit that could never have been
reminded is in neither arm, rather than diluting both after the fact.

Why the earlier assignment was biased (measured over 10^5 and 10^6 consecutive ids, as the
issue saw: a configured 10% realised 12.2%, 50% realised 54.2%): it took bits 16..30 of a
31-bit linear congruential value of the *visit* id, a number from 0 to 32,767, and folded it
into 10,000 buckets with `% 10000`. 32,768 = 3 × 10,000 + 2,768, so buckets 0..2,767 got four
of the 32,768 values and the rest three. Cutting at the low buckets therefore favoured the
withheld arm: 10% became 4,000/32,768 = 12.21%, 50% became (2,768 × 4 + 2,232 × 3)/32,768 =
54.22%, exactly the realised shares; re-planning and ordering played no part. A 64-bit hash
mod 10,000 is uniform to within 10^-15 per bucket. The old key was the visit, so a
patient's visits fell in different arms, and the control arm heard about visits the
withheld arm did not; the new key is the patient.

A withheld visit of a holdout ('all') gets nothing planned: no reminder and no booking,
move or cancellation notice (so no FHIR Communication in preparation for it). A cadence
comparison ('reminder:4320') drops that one step. careline.analytics reports the results.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from careline.messaging.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    PatientAssignment,
)
from careline.patients.models import Patient
from careline.scheduling.models import UPCOMING_STATUSES, Appointment

BUCKETS = 10_000
# Patients drawn per INSERT: bounded statements whatever the size of a bulk plan.
INSERT_BATCH = 5_000

_UPCOMING_SQL = ", ".join(f"'{s}'" for s in UPCOMING_STATUSES)


def bucket_of(experiment_id: int, patient_id: int) -> int:
    """The patient's bucket (0..9,999) in the experiment: uniform, and the same on every
    machine and database (computed here, not in SQL)."""
    digest = hashlib.blake2b(f"{experiment_id}:{patient_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % BUCKETS


def arm_for_bucket(bucket: int, share_basis_points: int) -> str:
    return ExperimentArm.WITHHELD if bucket < share_basis_points else ExperimentArm.CONTROL


def arm_of(patient_id: int, experiment: Experiment) -> str:
    """The arm the patient is (or will be) in."""
    return arm_for_bucket(bucket_of(experiment.id, patient_id), experiment.share_basis_points)


def _in_experiment(appointment_filter: str, join: str = "") -> str:
    """FROM … WHERE of the eligible visits (alias `a`) passing the filter and the running
    experiments (alias `x`) they fall in; parameters: now, then the filter's own."""
    return f"""
        FROM {Appointment._meta.db_table} a
        JOIN {Experiment._meta.db_table} x ON x.organization_id = a.organization_id
             AND (x.practice_id IS NULL OR x.practice_id = a.practice_id)
        JOIN {Patient._meta.db_table} p ON p.id = a.patient_id
        {join}
        WHERE x.ended_at IS NULL AND a.created_at >= x.started_at
          AND a.status IN ({_UPCOMING_SQL}) AND a.start > %s
          AND (p.mobile_phone <> '' OR p.email <> '')
          AND {appointment_filter}
    """


def _draw_patients(appointment_filter: str, params: list, now: datetime) -> None:
    """Store the arm of every patient new to an experiment among the filtered visits: one
    SELECT of the (experiment, patient) pairs lacking a row, hashed here, then batched
    INSERTs (a concurrent planner drawing the same pair draws the same arm; the second
    insert is ignored)."""
    t = PatientAssignment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT x.id, x.share_basis_points, a.patient_id "
            f"{_in_experiment(appointment_filter)} "
            f"AND NOT EXISTS (SELECT 1 FROM {t} pa "
            "WHERE pa.experiment_id = x.id AND pa.patient_id = a.patient_id)",
            [now, *params],
        )
        pairs = cursor.fetchall()
    rows = []
    for experiment_id, share, patient_id in pairs:
        bucket = bucket_of(experiment_id, patient_id)
        rows.append((experiment_id, patient_id, bucket, arm_for_bucket(bucket, share), now))
    # Plain executemany, not the ORM's bulk_create: building model instances costs more than
    # the inserts themselves at a million visits.
    with connection.cursor() as cursor:
        for start in range(0, len(rows), INSERT_BATCH):
            cursor.executemany(
                f"INSERT INTO {t} (experiment_id, patient_id, bucket, arm, assigned_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (experiment_id, patient_id) DO NOTHING",
                rows[start : start + INSERT_BATCH],
            )


def assignment_sql(appointment_filter: str) -> str:
    """INSERT … SELECT putting the filtered eligible visits (alias `a`) into the running
    experiments, each in its patient's arm; parameters: assigned_at, now, then the
    filter's own."""
    t = ExperimentAssignment._meta.db_table
    pa = PatientAssignment._meta.db_table
    join = f"JOIN {pa} pa ON pa.experiment_id = x.id AND pa.patient_id = a.patient_id"
    return f"""
        INSERT INTO {t} (experiment_id, appointment_id, arm, withheld_step, assigned_at)
        SELECT x.id, a.id, pa.arm,
               CASE WHEN pa.arm = '{ExperimentArm.WITHHELD}' THEN x.withheld_step ELSE '' END,
               %s
        {_in_experiment(appointment_filter, join)}
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
    """Give the filtered visits (SQL on alias `a`, with its parameters) their experiments'
    arms, drawing the arm of patients new to an experiment first. `now` is the planner's
    moment as the database takes it (planning's `_dt`). Set-based: one SELECT, one INSERT
    per 5,000 new patients and one INSERT … SELECT per call, never a statement per visit."""
    if not Experiment.objects.filter(ended_at__isnull=True).exists():
        return
    _draw_patients(appointment_filter, params, now)
    with connection.cursor() as cursor:
        cursor.execute(assignment_sql(appointment_filter), [now, now, *params])


WITHHELD_STEP_ERROR = "Write 'all' or a reminder step like 'reminder:4320'."
# A share above a half would make the usual reminders the minority arm; 1% is the least
# that gives a result in a practice's lifetime.
SHARE_PERCENT_RANGE = (1, 50)


def check_withheld_step(value: str) -> str:
    """The step an experiment may withhold, tidied; ValidationError otherwise."""
    value = value.strip()
    if value != Experiment.ALL_STEPS and not re.fullmatch(r"reminder:[0-9]{1,6}", value):
        raise ValidationError(WITHHELD_STEP_ERROR, code="invalid")
    return value


def start_experiment(
    *,
    organization_id: int,
    practice_id: int | None,
    name: str,
    withheld_step: str,
    share_basis_points: int,
    created_by=None,
) -> Experiment:
    """Start now: visits booked from here on join when first planned while eligible.
    Raises ValidationError naming the field (name, withheld_step, share_basis_points)."""
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = ["Give the experiment a name."]
    elif len(name) > Experiment._meta.get_field("name").max_length:
        errors["name"] = ["Keep the name to 120 characters."]
    try:
        withheld_step = check_withheld_step(withheld_step)
    except ValidationError as exc:
        errors["withheld_step"] = exc.messages
    low, high = SHARE_PERCENT_RANGE
    if not low * 100 <= share_basis_points <= high * 100:
        errors["share_basis_points"] = [f"The withheld share must be {low}% to {high}%."]
    if errors:
        raise ValidationError(errors)
    return Experiment.objects.create(
        organization_id=organization_id,
        practice_id=practice_id,
        name=name.strip(),
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
