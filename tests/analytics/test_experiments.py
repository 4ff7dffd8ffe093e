"""Reminder experiments: deterministic recorded arms, withheld steps never planned, results."""

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.analytics import experiments
from careline.clinics.models import StaffRole
from careline.messaging.models import Experiment, ExperimentArm, ExperimentAssignment
from careline.messaging.planning import sync_reminders
from careline.scheduling.models import Appointment, AppointmentStatus
from tests.messaging.test_experiments import experiment_clinic, start_holdout, visits_for


@pytest.fixture
def clinic(build):
    return experiment_clinic(build)


def test_results_say_when_data_is_short_and_measure_when_it_is_not(build, clinic):
    experiment = start_holdout(clinic[0])
    visits = visits_for(build, clinic, 40, days_ahead=-30)
    sync_reminders([v.id for v in visits])
    early = experiments.results(experiment)
    assert not early.enough_data and "Not enough data yet" in early.verdict

    # Hand-built outcomes: 300 visits per arm; 30% no-shows withheld vs 10% usual.
    now = timezone.now()
    for arm, rate in ((ExperimentArm.CONTROL, 0.10), (ExperimentArm.WITHHELD, 0.30)):
        made = visits_for(build, clinic, 300, days_ahead=-60)
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
