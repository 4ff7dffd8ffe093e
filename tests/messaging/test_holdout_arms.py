"""Holdout arms: a pure, uniform function of (experiment, patient), drawn once at first
eligibility, identical after every re-plan, with exclusions decided before the draw."""

from collections import Counter
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone
from scipy.stats import chisquare

from careline.messaging import experiments
from careline.messaging.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    OutboundMessage,
    PatientAssignment,
)
from careline.messaging.planning import plan_all_reminders, sync_reminders
from careline.messaging.rules import save_default_rule
from careline.patients.models import Patient
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import Appointment, AppointmentStatus
from tests.messaging.test_experiments import experiment_clinic


def _experiment(organization, share: int, name: str = "Holdout") -> Experiment:
    return Experiment.objects.create(
        organization=organization,
        name=name,
        withheld_step=Experiment.ALL_STEPS,
        share_basis_points=share,
        started_at=timezone.now() - timedelta(minutes=5),
    )


@pytest.mark.parametrize("patients", [10_000, 100_000])
@pytest.mark.parametrize("share", [1000, 5000])
@pytest.mark.parametrize("experiment_id", [1, 2, 77])
def test_realised_share_is_within_one_point_of_the_configured_split(patients, share, experiment_id):
    experiment = Experiment(id=experiment_id, share_basis_points=share)
    withheld = sum(
        experiments.arm_of(patient_id, experiment) == ExperimentArm.WITHHELD
        for patient_id in range(1, patients + 1)
    )
    assert abs(withheld / patients - share / 10_000) <= 0.01


def test_buckets_are_uniform():
    """The old fold gave buckets below 2,768 four values in 32,768 and the rest three:
    a goodness-of-fit test over 10^6 draws rejected it outright."""
    counts = Counter(experiments.bucket_of(5, patient_id) for patient_id in range(1, 1_000_001))
    assert len(counts) == 10_000
    assert chisquare([counts[b] for b in range(10_000)]).pvalue > 0.001
    low = sum(counts[b] for b in range(2768)) / 2768
    high = sum(counts[b] for b in range(2768, 10_000)) / (10_000 - 2768)
    assert abs(low / high - 1) < 0.01  # not 4 : 3


def _bulk_visits(practice, provider, kind, patients, days_ahead=5):
    day = timezone.now().astimezone(practice.zone).date() + timedelta(days=days_ahead)
    now = timezone.now()
    made = []
    for i, patient in enumerate(patients):
        start = datetime.combine(
            day + timedelta(days=i // 40), time(8), tzinfo=practice.zone
        ) + timedelta(minutes=15 * (i % 40))
        made.append(
            Appointment(
                organization=practice.organization,
                practice=practice,
                provider=provider,
                patient=patient,
                appointment_type=kind,
                start=start,
                end=start + timedelta(minutes=15),
                status=AppointmentStatus.BOOKED,
                status_changed_at=now,
                status_source="hl7",
                allow_overlap=True,
            )
        )
    return Appointment.objects.bulk_create(made, batch_size=2000)


def _arms() -> dict:
    """(experiment id, patient id) -> arm, as stored."""
    return {
        (x, patient_id): arm
        for x, patient_id, arm in PatientAssignment.objects.values_list(
            "experiment_id", "patient_id", "arm"
        )
    }


def test_ten_thousand_patients_planned_in_bulk_keep_their_arms_through_replanning(build):
    practice, provider, kind = experiment_clinic(build)
    organization = practice.organization
    ten, half = _experiment(organization, 1000, "10%"), _experiment(organization, 5000, "50%")
    patients = Patient.objects.bulk_create(
        [
            Patient(
                organization=organization,
                given_name="Sim",
                family_name=str(i),
                mobile_phone=f"+1512{i:07d}",
            )
            for i in range(10_000)
        ],
        batch_size=2000,
    )
    visits = _bulk_visits(practice, provider, kind, patients)

    plan_all_reminders(organization_id=organization.id)
    first = _arms()
    assert len(first) == 20_000
    for experiment in (ten, half):
        arms = [arm for (x, _), arm in first.items() if x == experiment.id]
        share = arms.count(ExperimentArm.WITHHELD) / len(arms)
        # 10^4 draws: 0.3 (10%) and 0.5 (50%) points of standard error.
        assert abs(share - experiment.share_basis_points / 10_000) <= 0.02
    assert all(
        arm == experiments.arm_of(patient_id, Experiment.objects.get(pk=x))
        for (x, patient_id), arm in list(first.items())[:2000]
    )
    # Every visit carries its patient's arm; a withheld one has nothing planned.
    visit_arm = {
        (x, a): arm
        for x, a, arm in ExperimentAssignment.objects.values_list(
            "experiment_id", "appointment_id", "arm"
        )
    }
    assert len(visit_arm) == 20_000
    assert all(visit_arm[(ten.id, v.id)] == first[(ten.id, v.patient_id)] for v in visits)
    withheld = {a for (_, a), arm in visit_arm.items() if arm == ExperimentArm.WITHHELD}
    planned = set(OutboundMessage.objects.values_list("appointment_id", flat=True))
    assert planned and planned.isdisjoint(withheld)
    assert planned == {v.id for v in visits} - withheld

    # Re-plan every way Careline does: the bulk plan again, a rule change, a visit's own
    # re-plan, and a second visit of the same patients.
    plan_all_reminders(organization_id=organization.id)
    save_default_rule(organization, offsets_minutes=[2880, 120])
    sync_reminders([v.id for v in visits[:3000]])
    again = _bulk_visits(practice, provider, kind, patients[:500], days_ahead=20)
    sync_reminders([v.id for v in again])
    assert _arms() == first
    for v in again:
        arm = ExperimentAssignment.objects.get(experiment=half, appointment=v).arm
        assert arm == first[(half.id, v.patient_id)]


def test_exclusions_come_before_the_draw(build):
    practice, provider, kind = experiment_clinic(build)
    experiment = _experiment(practice.organization, 5000)
    unreachable = build.patient(practice.organization, mobile_phone="", email="")
    reachable = build.patient(practice.organization)
    past, cancelled = build.patient(practice.organization), build.patient(practice.organization)
    visits = _bulk_visits(practice, provider, kind, [unreachable, reachable])
    [gone] = _bulk_visits(practice, provider, kind, [past], days_ahead=-3)
    [off] = _bulk_visits(practice, provider, kind, [cancelled])
    Appointment.objects.filter(pk=off.pk).update(status=AppointmentStatus.CANCELLED)
    sync_reminders([v.id for v in [*visits, gone, off]])
    assert set(PatientAssignment.objects.values_list("patient_id", flat=True)) == {reachable.id}
    assert set(ExperimentAssignment.objects.values_list("appointment_id", flat=True)) == {
        visits[1].id
    }
    assert PatientAssignment.objects.get().arm == experiments.arm_of(reachable.id, experiment)


def test_a_held_out_visit_gets_no_message_at_all_not_even_its_booking_notice(build):
    practice, provider, kind = experiment_clinic(build)
    experiment = _experiment(practice.organization, 5000)
    # Patients until one of each arm, booked the way the front desk books (notices on).
    booked, tried = {}, 0
    while len(booked) < 2:
        tried += 1
        patient = build.patient(practice.organization)
        start = timezone.now() + timedelta(days=6, minutes=30 * tried)
        visit = book_appointment(
            patient=patient,
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=start,
            check_working_time=False,
        )
        booked.setdefault(experiments.arm_of(patient.id, experiment), visit)
    kinds = {
        arm: set(OutboundMessage.objects.filter(appointment=v).values_list("kind", flat=True))
        for arm, v in booked.items()
    }
    assert kinds[ExperimentArm.WITHHELD] == set()
    assert {"booked", "reminder"} <= kinds[ExperimentArm.CONTROL]
