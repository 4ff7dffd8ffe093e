"""Reminder experiments: deterministic recorded arms, withheld steps never planned, results."""

from datetime import datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.analytics import experiments
from careline.analytics.models import Experiment, ExperimentArm, ExperimentAssignment
from careline.clinics.models import StaffRole
from careline.messaging.models import MessageKind, OutboundMessage
from careline.messaging.planning import sync_reminders
from careline.scheduling.models import Appointment, AppointmentStatus


@pytest.fixture
def clinic(build):
    practice = build.practice(time_zone="America/Chicago")
    provider = build.provider(practice, weekdays=range(7))
    kind = build.appointment_type(practice.organization, minutes=20)
    return practice, provider, kind


def _visits(build, clinic, n, days_ahead=10):
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


def _experiment(practice, step="all", share=5000):
    return Experiment.objects.create(
        organization=practice.organization,
        practice=practice,
        name="Holdout",
        withheld_step=step,
        share_basis_points=share,
        started_at=timezone.now() - timedelta(minutes=5),
    )


def test_holdout_arms_are_deterministic_recorded_and_never_reminded(build, clinic):
    experiment = _experiment(clinic[0])
    visits = _visits(build, clinic, 120)
    sync_reminders([v.id for v in visits])
    sync_reminders([v.id for v in visits])  # re-planning changes no arm

    arms = dict(ExperimentAssignment.objects.values_list("appointment_id", "arm"))
    assert len(arms) == 120
    assert all(arms[v.id] == experiments.arm_of(v.id, experiment) for v in visits)
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
    _experiment(clinic[0], step="reminder:4320")
    visits = _visits(build, clinic, 40)
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
    visits = _visits(build, clinic, 10)
    _experiment(clinic[0])
    Experiment.objects.update(started_at=timezone.now() + timedelta(seconds=1))
    sync_reminders([v.id for v in visits])
    assert not ExperimentAssignment.objects.exists()


def test_results_say_when_data_is_short_and_measure_when_it_is_not(build, clinic):
    experiment = _experiment(clinic[0])
    visits = _visits(build, clinic, 40, days_ahead=-30)
    sync_reminders([v.id for v in visits])
    early = experiments.results(experiment)
    assert not early.enough_data and "Not enough data yet" in early.verdict

    # Hand-built outcomes: 300 visits per arm; 30% no-shows withheld vs 10% usual.
    now = timezone.now()
    for arm, rate in ((ExperimentArm.CONTROL, 0.10), (ExperimentArm.WITHHELD, 0.30)):
        made = _visits(build, clinic, 300, days_ahead=-60)
        for i, visit in enumerate(made):
            visit.status = (
                AppointmentStatus.NO_SHOW if i < rate * 300 else AppointmentStatus.FULFILLED
            )
        Appointment.objects.bulk_update(made, ["status"])
        ExperimentAssignment.objects.bulk_create(
            ExperimentAssignment(
                experiment=experiment,
                appointment=v,
                arm=arm,
                withheld_step="all" if arm == ExperimentArm.WITHHELD else "",
                assigned_at=now,
            )
            for v in made
        )
    result = experiments.results(experiment)
    assert (result.control.due, result.control.no_shows) == (300, 30)
    assert (result.withheld.due, result.withheld.no_shows) == (300, 90)
    assert result.comparison.difference == pytest.approx(0.2)
    assert result.comparison.difference_low > 0.13 and result.comparison.difference_high < 0.27
    assert result.p_value < 1e-6
    assert result.verdict.startswith("Withholding the step raised no-shows")


def test_manager_starts_and_reads_an_experiment(client, build, clinic):
    practice = clinic[0]
    client.force_login(
        build.staff(practice.organization, StaffRole.PRACTICE_MANAGER, practices=[practice])
    )
    response = client.post(
        reverse("analytics:experiments"),
        {
            "name": "Is the 72h text worth it?",
            "practice": practice.id,
            "withheld_step": "reminder:4320",
            "share_percent": 20,
        },
    )
    experiment = Experiment.objects.get()
    assert response.status_code == 302
    assert experiment.share_basis_points == 2000 and experiment.withheld_step == "reminder:4320"
    page = client.get(reverse("analytics:experiment", args=[experiment.id]))
    assert "Not enough data yet" in page.content.decode()
    bad = client.post(
        reverse("analytics:experiments"),
        {"name": "x", "practice": practice.id, "withheld_step": "sometimes", "share_percent": 20},
    )
    assert "Write &#x27;all&#x27; or a reminder step" in bad.content.decode()


def test_front_desk_cannot_run_experiments(client, build, clinic):
    practice = clinic[0]
    client.force_login(
        build.staff(practice.organization, StaffRole.FRONT_DESK, practices=[practice])
    )
    assert client.get(reverse("analytics:experiments")).status_code == 403
