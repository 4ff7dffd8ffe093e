"""Experiment arms are assigned while planning, and a withheld step is never planned."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from careline.messaging import experiments
from careline.messaging.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    MessageKind,
    OutboundMessage,
)
from careline.messaging.planning import sync_reminders
from careline.scheduling.models import Appointment, AppointmentStatus


def experiment_clinic(build):
    """A practice open every day, a provider and a 20-minute visit type."""
    practice = build.practice(time_zone="America/Chicago")
    provider = build.provider(practice, weekdays=range(7))
    kind = build.appointment_type(practice.organization, minutes=20)
    return practice, provider, kind


@pytest.fixture
def clinic(build):
    return experiment_clinic(build)


def visits_for(build, clinic, n, days_ahead=10):
    practice, provider, kind = clinic
    day = timezone.now().astimezone(practice.zone).date() + timedelta(days=days_ahead)
    now = timezone.now()
    made = []
    for i in range(n):
        start = datetime.combine(
            day + timedelta(days=i // 24), time(9), tzinfo=practice.zone
        ) + timedelta(minutes=20 * (i % 24))
        made.append(
            Appointment(
                organization=practice.organization,
                practice=practice,
                provider=provider,
                patient=build.patient(practice.organization),
                appointment_type=kind,
                start=start,
                end=start + timedelta(minutes=20),
                status=AppointmentStatus.BOOKED,
                status_changed_at=now,
                status_source="hl7",
                allow_overlap=True,
            )
        )
    return Appointment.objects.bulk_create(made)


def start_holdout(practice, step="all", share=5000):
    return Experiment.objects.create(
        organization=practice.organization,
        practice=practice,
        name="Holdout",
        withheld_step=step,
        share_basis_points=share,
        started_at=timezone.now() - timedelta(minutes=5),
    )


def test_holdout_arms_are_deterministic_recorded_and_never_reminded(build, clinic):
    experiment = start_holdout(clinic[0])
    visits = visits_for(build, clinic, 120)
    sync_reminders([v.id for v in visits])
    sync_reminders([v.id for v in visits])  # re-planning changes no arm

    arms = dict(ExperimentAssignment.objects.values_list("appointment_id", "arm"))
    assert len(arms) == 120
    assert all(arms[v.id] == experiments.arm_of(v.patient_id, experiment) for v in visits)
    withheld = {a for a, arm in arms.items() if arm == ExperimentArm.WITHHELD}
    assert 35 <= len(withheld) <= 85  # about half, not all or none
    reminded = set(
        OutboundMessage.objects.filter(kind=MessageKind.REMINDER).values_list(
            "appointment_id", flat=True
        )
    )
    assert reminded.isdisjoint(withheld)
    assert reminded == set(arms) - withheld


def test_cadence_comparison_drops_only_the_named_step(build, clinic):
    start_holdout(clinic[0], step="reminder:4320")
    visits = visits_for(build, clinic, 40)
    sync_reminders([v.id for v in visits])
    for a in ExperimentAssignment.objects.all():
        steps = set(
            OutboundMessage.objects.filter(
                appointment_id=a.appointment_id, kind=MessageKind.REMINDER
            ).values_list("step_key", flat=True)
        )
        expected = (
            {"reminder:1440"}
            if a.arm == ExperimentArm.WITHHELD
            else {"reminder:1440", "reminder:4320"}
        )
        assert steps == expected


def test_visits_booked_before_the_experiment_are_not_assigned(build, clinic):
    visits = visits_for(build, clinic, 10)
    start_holdout(clinic[0])
    Experiment.objects.update(started_at=timezone.now() + timedelta(seconds=1))
    sync_reminders([v.id for v in visits])
    assert not ExperimentAssignment.objects.exists()
