"""The no-show model recovers the effects the demo plants, and says honestly how good it is."""

from datetime import UTC, datetime
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from careline.analytics import risk
from careline.analytics.models import NoShowModel
from careline.demo.generator import DemoOptions, generate_demo
from careline.scheduling.models import Appointment, AppointmentStatus

NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)


@pytest.fixture
def demo_org(db):
    options = DemoOptions(
        practices=4, providers=12, patients=1500, appointments=25_000, organization_slug="risk-demo"
    )
    return generate_demo(options, now=NOW).organization


@pytest.mark.django_db
def test_model_learns_planted_effects_and_scores_upcoming_visits(demo_org):
    model = risk.train(demo_org.id, now=NOW)
    report = model.report
    coef = dict(zip(model.feature_names, model.coefficients, strict=True))
    # Planted: longer lead time and a history of no-shows raise risk; confirming lowers it.
    assert coef["log_lead_days"] > 0
    assert coef["prior_noshow_rate"] > 0
    assert coef["confirmed"] < 0
    assert report["model"]["auc"] > 0.62
    assert report["model"]["auc"] > report["baseline"]["auc"]
    calibration = report["model"]["calibration"]
    assert calibration[-1]["observed"] > 2 * calibration[0]["observed"]
    # Calibrated on average: mean predicted within 3 points of the observed test rate.
    mean_predicted = sum(r["predicted"] * r["visits"] for r in calibration) / report["tested_on"]
    assert abs(mean_predicted - report["test_rate"]) < 0.03

    # Scoring writes a risk on every upcoming visit and on nothing in the past.
    scored = risk.score_upcoming(demo_org.id, now=NOW)
    upcoming = Appointment.objects.filter(
        organization=demo_org,
        start__gte=NOW,
        status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED],
    )
    assert scored == upcoming.count() > 0
    risks = np.array(list(upcoming.values_list("noshow_risk", flat=True)))
    assert ((risks > 0) & (risks < 1)).all()
    assert not Appointment.objects.filter(
        organization=demo_org, start__lt=NOW, noshow_risk__isnull=False
    ).exists()


def test_calibration_table_on_known_numbers():
    predicted = np.array([0.1] * 5 + [0.9] * 5)
    observed = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    table = risk.calibration_table(predicted, observed, bins=2)
    assert table == [
        {"visits": 5, "predicted": pytest.approx(0.1), "observed": pytest.approx(0.2)},
        {"visits": 5, "predicted": pytest.approx(0.9), "observed": pytest.approx(0.8)},
    ]


@pytest.mark.django_db
def test_train_command_refuses_without_history(build):
    org = build.organization(slug="empty-org")
    with pytest.raises(CommandError, match="at least 200"):
        call_command("train-noshow", "--organization", org.slug, stdout=StringIO())
    assert not NoShowModel.objects.exists()
