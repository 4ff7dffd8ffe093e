"""The no-show model recovers the effects the demo plants, and says honestly how good it is."""

from datetime import UTC, datetime, timedelta
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
    # Planted: longer lead time and a history of no-shows raise risk.
    assert coef["log_lead_days"] > 0
    assert coef["prior_noshow_rate"] > 0
    # Confirming lowers risk too, but a confirmation comes after the reminders the score
    # decides on: it is not a feature.
    assert "confirmed" not in model.feature_names
    assert report["model"]["auc"] > 0.6
    assert report["model"]["auc"] > report["baseline"]["auc"]
    ci = report["intervals"]
    assert ci["model_auc"][0] < report["model"]["auc"] < ci["model_auc"][1]
    assert ci["baseline_auc"][0] < report["baseline"]["auc"] < ci["baseline_auc"][1]
    gain = report["model"]["auc"] - report["baseline"]["auc"]
    assert ci["gain"][0] < gain < ci["gain"][1]
    calibration = report["model"]["calibration"]
    assert calibration[-1]["observed"] > 2 * calibration[0]["observed"]
    # Calibrated on average: mean predicted within 3 points of the observed test rate.
    mean_predicted = sum(r["predicted"] * r["visits"] for r in calibration) / report["tested_on"]
    assert abs(mean_predicted - report["test_rate"]) < 0.03

    # Scoring writes a risk on every upcoming visit and on nothing in the past.
    past = Appointment.objects.filter(organization=demo_org, start__lt=NOW)
    past_risks = dict(past.values_list("id", "noshow_risk"))
    scored = risk.score_upcoming(demo_org.id, now=NOW)
    upcoming = Appointment.objects.filter(
        organization=demo_org,
        start__gte=NOW,
        status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED],
    )
    assert scored == upcoming.count() > 0
    risks = np.array(list(upcoming.values_list("noshow_risk", flat=True)))
    assert ((risks > 0) & (risks < 1)).all()
    # The past keeps the risk it was scored with (the demo's, at each decision time).
    assert past_risks == dict(past.values_list("id", "noshow_risk"))


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


@pytest.mark.django_db
def test_training_sees_each_visit_as_scoring_saw_it_at_decision_time(demo_org):
    """No leakage: features computed at a visit's decision time (before its reminders,
    replies and outcome) are exactly the features training later uses for it. A feature
    known only after the reminders (a confirmation, a reply, the reminder count) would make
    the two differ."""
    base_rate = 0.2
    later = datetime(2025, 6, 20, tzinfo=UTC)
    # Visits whose decision time has passed by NOW and that happen before `later`.
    upcoming = dict(risk.upcoming_features(demo_org.id, now=NOW, base_rate=base_rate))
    window = Appointment.objects.filter(id__in=list(upcoming), start__lt=NOW + risk.DECISION_LEAD)
    assert window.count() > 50
    # The future happens: these visits are confirmed by reply, then kept or missed.
    ids = list(window.order_by("id").values_list("id", flat=True))
    for i, pk in enumerate(ids):
        Appointment.objects.filter(id=pk).update(
            confirmed_at=NOW + timedelta(minutes=5),
            status=AppointmentStatus.NO_SHOW if i % 3 == 0 else AppointmentStatus.FULFILLED,
        )
    history = risk.load_history(demo_org.id, until=later, base_rate=base_rate)
    trained = {
        int(pk): row for pk, row in zip(history.appointment_ids, history.features, strict=True)
    }
    for pk in ids:
        np.testing.assert_allclose(trained[pk], upcoming[pk], err_msg=f"visit {pk}")


def test_decision_time_is_two_days_ahead_or_at_booking():
    start = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)
    assert risk.decision_time(start, start - timedelta(days=30)) == start - timedelta(days=2)
    booked_late = start - timedelta(hours=5)
    assert risk.decision_time(start, booked_late) == booked_late
    assert risk.decision_time(start, start + timedelta(hours=1)) == start


@pytest.mark.django_db
def test_train_command_prints_auc_with_intervals_beside_the_baseline(db):
    options = DemoOptions(
        practices=2, providers=4, patients=800, appointments=8000, organization_slug="today"
    )
    generate_demo(options)
    out = StringIO()
    call_command("train-noshow", "--organization", "today", "--no-score", stdout=out)
    text = out.getvalue()
    model = NoShowModel.objects.get()
    for name in ("model", "baseline"):
        auc = model.report[name]["auc"]
        low, high = model.report["intervals"][f"{name}_auc"]
        line = next(x for x in text.splitlines() if x.startswith(name))
        assert f"{auc:.3f}" in line and f"{low:.3f}–{high:.3f}" in line
    assert "gain over baseline" in text and "48 h before each visit" in text


@pytest.mark.django_db
def test_scoring_refuses_a_model_trained_on_other_features(demo_org):
    NoShowModel.objects.create(
        organization=demo_org,
        feature_names=[*risk.FEATURES, "confirmed"],
        coefficients=[0.0] * (len(risk.FEATURES) + 1),
        intercept=0.0,
        means=[0.0] * (len(risk.FEATURES) + 1),
        scales=[1.0] * (len(risk.FEATURES) + 1),
        report={"organization_rate": 0.1},
    )
    with pytest.raises(risk.NotEnoughHistory, match="train-noshow"):
        risk.score_upcoming(demo_org.id, now=NOW)
