"""The extra touch for high-risk visits fires as a planned reminder, randomized, and its
lift is measured against the no-touch arm."""

import random
from datetime import datetime, time, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from careline.analytics import experiments
from careline.clinics.models import StaffRole
from careline.demo.generator import DemoOptions, generate_demo
from careline.messaging import touches
from careline.messaging.models import OutboundMessage, RiskTouch, TouchArm
from careline.patients.models import Patient
from careline.scheduling.models import Appointment, AppointmentStatus
from tests.messaging.test_dispatch import run_at
from tests.messaging.test_experiments import experiment_clinic, start_holdout, visits_for


@pytest.fixture
def clinic(build):
    return experiment_clinic(build)


def _policy(practice, threshold=0.3, share=5000, now=None):
    return touches.start_policy(
        organization_id=practice.organization_id,
        practice_id=practice.id,
        threshold=threshold,
        touch_basis_points=share,
        now=now or timezone.now() - timedelta(days=1),
    )


def _touch_messages(ids):
    return OutboundMessage.objects.filter(appointment_id__in=ids, step_key="touch")


def test_high_risk_visits_at_decision_time_get_an_arm_once_and_the_touch_arm_a_reminder(
    build, clinic
):
    practice = clinic[0]
    policy = _policy(practice)
    soon = visits_for(build, clinic, 24, days_ahead=1)  # tomorrow: within the two-day lead
    later = visits_for(build, clinic, 5, days_ahead=9)
    risks = {v.id: 0.6 for v in soon + later}
    risks[soon[0].id] = 0.29  # just under the practice's threshold
    now = timezone.now()

    assert touches.decide(practice.organization_id, risks, now) == 23
    arms = dict(RiskTouch.objects.values_list("appointment_id", "arm"))
    assert soon[0].id not in arms and not any(v.id in arms for v in later)
    touched = [pk for pk, arm in arms.items() if arm == TouchArm.TOUCH]
    untouched = [pk for pk, arm in arms.items() if arm == TouchArm.NO_TOUCH]
    assert touched and untouched
    assert all(arms[pk] == touches.arm_of(policy, pk) for pk in arms)
    # The touch arm has one more reminder planned, due now; the other arm has none.
    planned = _touch_messages(list(arms))
    assert sorted(planned.values_list("appointment_id", flat=True)) == sorted(touched)
    assert set(planned.values_list("kind", "state")) == {("reminder", "scheduled")}

    # Scored again (the daily run, a rule re-plan): nothing is decided twice or flips.
    assert touches.decide(practice.organization_id, {k: 0.9 for k in risks}, now) == 1
    assert RiskTouch.objects.get(appointment_id=soon[0].id).risk == 0.9
    assert dict(RiskTouch.objects.exclude(appointment_id=soon[0].id).values_list(
        "appointment_id", "arm")) == arms  # fmt: skip
    from careline.messaging.planning import sync_reminders

    sync_reminders(touched)
    assert _touch_messages(touched).filter(state="scheduled").count() == len(touched)


def test_the_worker_sends_the_touch_like_any_reminder(build, clinic):
    practice = clinic[0]
    _policy(practice, threshold=0.1, share=9999)
    visit = visits_for(build, clinic, 1, days_ahead=1)[0]
    now = timezone.now()
    touches.decide(practice.organization_id, {visit.id: 0.5}, now)
    message = _touch_messages([visit.id]).get()
    run_at(max(now, message.due_at) + timedelta(minutes=1))
    message.refresh_from_db()
    assert message.state in ("sent", "delivered")


def test_a_holdout_visit_gets_no_touch(build, clinic):
    practice = clinic[0]
    start_holdout(practice, share=9999)
    _policy(practice, threshold=0.1, share=9999)
    visits = visits_for(build, clinic, 20, days_ahead=1)
    from careline.messaging.planning import sync_reminders

    sync_reminders([v.id for v in visits])
    touches.decide(practice.organization_id, {v.id: 0.5 for v in visits}, timezone.now())
    assert RiskTouch.objects.filter(arm=TouchArm.TOUCH).exists()
    assert not _touch_messages([v.id for v in visits]).exists()


@pytest.mark.parametrize("patients", [10_000])
def test_randomized_lift_is_recovered_from_planted_outcomes(build, clinic, patients):
    """10⁴ high-risk visits, half touched: the touch lowers no-shows from 30% to 20%. The
    arms come out within a point of half, and the measured difference's interval holds the
    planted −10 points and excludes zero."""
    practice, provider, kind = clinic
    org = practice.organization
    policy = _policy(practice)
    Patient.objects.bulk_create(
        Patient(organization=org, given_name=f"P{i}", family_name="Sim", mobile_phone="")
        for i in range(patients)
    )
    people = list(Patient.objects.filter(organization=org, family_name="Sim").values_list(
        "id", flat=True))  # fmt: skip
    now = timezone.now()
    day = now.astimezone(practice.zone).date() + timedelta(days=1)
    Appointment.objects.bulk_create(
        (
            Appointment(
                organization=org, practice=practice, provider=provider, patient_id=pid,
                appointment_type=kind, allow_overlap=True, status=AppointmentStatus.BOOKED,
                start=(start := datetime.combine(day, time(9), tzinfo=practice.zone)
                       + timedelta(minutes=i % 480)),
                end=start + timedelta(minutes=20), status_changed_at=now, status_source="hl7",
            )
            for i, pid in enumerate(people)
        ),
        batch_size=2000,
    )  # fmt: skip
    ids = list(Appointment.objects.filter(patient_id__in=people).values_list("id", flat=True))
    assert touches.decide(org.id, dict.fromkeys(ids, 0.5), timezone.now()) == patients
    arms = dict(RiskTouch.objects.values_list("appointment_id", "arm"))
    share = sum(a == TouchArm.TOUCH for a in arms.values()) / patients
    assert abs(share - 0.5) < 0.01

    rng = random.Random(7)
    noshow = [pk for pk in ids if rng.random() < (0.20 if arms[pk] == TouchArm.TOUCH else 0.30)]
    Appointment.objects.filter(id__in=ids).update(status=AppointmentStatus.FULFILLED)
    for i in range(0, len(noshow), 900):
        Appointment.objects.filter(id__in=noshow[i : i + 900]).update(
            status=AppointmentStatus.NO_SHOW
        )
    result = experiments.touch_results(policy)
    assert result.touch.due + result.no_touch.due == patients
    assert result.comparison.difference_low < -0.10 < result.comparison.difference_high
    assert result.comparison.difference_high < 0
    assert result.verdict == "The extra touch lowered no-shows among high-risk visits."


def test_the_scoring_run_fires_the_touch(db):
    """`careline train-noshow` scores upcoming visits; with a policy, those due for a
    decision get their arms and the touch arm its reminder."""
    demo = generate_demo(
        DemoOptions(practices=1, providers=3, patients=800, appointments=8000,
                    organization_slug="touchy")
    ).organization  # fmt: skip
    practice = demo.practices.get()
    policy = _policy(practice, threshold=0.01)
    call_command("train-noshow", "--organization", "touchy", stdout=StringIO())
    decided = RiskTouch.objects.filter(policy=policy)
    now = timezone.now()
    due_soon = Appointment.objects.filter(
        organization=demo,
        start__gt=now,
        start__lt=now + touches.DECISION_LEAD - timedelta(minutes=5),
        status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED],
    )
    assert decided.count() == due_soon.count() > 0
    assert not decided.filter(appointment__start__gt=now + touches.DECISION_LEAD + timedelta(
        hours=1), appointment__created_at__lt=now - timedelta(days=3)).exists()  # fmt: skip
    touched = decided.filter(arm=TouchArm.TOUCH).values_list("appointment_id", flat=True)
    assert _touch_messages(list(touched)).exists()


def test_manager_starts_reads_and_stops_a_touch_on_the_page(client, build, clinic):
    practice = clinic[0]
    manager = build.staff(practice.organization, StaffRole.PRACTICE_MANAGER, practices=[practice])
    client.force_login(manager)
    url = reverse("analytics:extra-touch")
    response = client.post(
        url, {"practice": practice.id, "threshold_percent": 40, "touch_percent": 25}
    )
    assert response.status_code == 302
    policy = touches.RiskTouchPolicy.objects.get()
    assert (policy.threshold, policy.touch_basis_points) == (0.4, 2500)
    page = client.get(url).content.decode()
    assert "risk from 40" in page and "Not enough data yet" in page
    bad = client.post(url, {"practice": practice.id, "threshold_percent": 0, "touch_percent": 25})
    assert bad.status_code == 200 and touches.RiskTouchPolicy.objects.count() == 1
    client.post(url, {"action": "stop", "policy": policy.id})
    policy.refresh_from_db()
    assert policy.ended_at is not None

    other = build.practice()
    client.force_login(build.staff(other.organization, StaffRole.PRACTICE_MANAGER,
                                   practices=[other]))  # fmt: skip
    assert "risk from 40" not in client.get(url).content.decode()
    assert client.post(url, {"action": "stop", "policy": policy.id}).status_code == 404
    client.force_login(build.staff(practice.organization, StaffRole.FRONT_DESK,
                                   practices=[practice]))  # fmt: skip
    assert client.get(url).status_code == 403


def test_the_worker_scores_and_fires_the_touch_in_its_regular_run(db):
    demo = generate_demo(
        DemoOptions(practices=1, providers=3, patients=800, appointments=8000,
                    organization_slug="worker-touch")
    ).organization  # fmt: skip
    policy = _policy(demo.practices.get(), threshold=0.01)
    call_command("train-noshow", "--organization", "worker-touch", "--no-score", stdout=StringIO())
    assert not RiskTouch.objects.filter(policy=policy).exists()
    out = StringIO()
    call_command("worker", "--once", stdout=out)
    assert "visits_scored=" in out.getvalue()
    assert RiskTouch.objects.filter(policy=policy, arm=TouchArm.TOUCH).exists()
    assert Appointment.objects.filter(
        organization=demo, start__gt=timezone.now(), noshow_risk__isnull=False
    ).exists()


def test_the_rest_api_starts_reads_and_stops_a_touch_within_its_organization(build, clinic):
    from careline.integrations.api_keys import issue_api_key
    from tests.api.conftest import Api

    practice = clinic[0]
    org = practice.organization
    api = Api(issue_api_key(organization_slug=org.slug, name="analytics").plaintext)
    started = api.post("extra-touch", {"practice": practice.id, "threshold": 0.35})
    assert started.status_code == 201, started.content
    body = started.json()
    assert (body["threshold"], body["touch_share"], body["practice"]["id"]) == (
        0.35, 0.5, practice.id)  # fmt: skip
    assert started["Location"].endswith(f"/api/v1/extra-touch/{body['id']}")
    policy = touches.RiskTouchPolicy.objects.get(pk=body["id"])

    visits = visits_for(build, clinic, 24, days_ahead=1)
    touches.decide(org.id, {v.id: 0.5 for v in visits}, timezone.now())
    read = api.get(f"extra-touch/{policy.id}").json()
    arms = RiskTouch.objects.filter(policy=policy)
    assert read["touch"]["visits"] == arms.filter(arm=TouchArm.TOUCH).count()
    assert read["touch"]["visits"] + read["no_touch"]["visits"] == 24
    assert read["enough_data"] is False and read["verdict"].startswith("Not enough data")
    assert [d["id"] for d in api.get("extra-touch").json()["data"]] == [policy.id]

    bad = api.post("extra-touch", {"practice": build.practice().id, "threshold": 1.5})
    assert bad.status_code == 422
    assert set(bad.json()["error"]["fields"]) == {"practice", "threshold"}
    assert touches.RiskTouchPolicy.objects.count() == 1

    stranger = Api(issue_api_key(organization_slug=build.organization().slug, name="x").plaintext)
    assert stranger.get(f"extra-touch/{policy.id}").status_code == 404
    assert stranger.post(f"extra-touch/{policy.id}/stop").status_code == 404
    assert stranger.get("extra-touch").json()["data"] == []
    stopped = api.post(f"extra-touch/{policy.id}/stop")
    assert stopped.status_code == 200 and stopped.json()["ended_at"] is not None


def test_the_call_list_phones_high_risk_visits_of_the_touch_arm_only(client, build, clinic):
    """A call for risk is a touch too: the no-touch arm is not phoned for its risk."""
    practice = clinic[0]
    _policy(practice, threshold=0.3)
    visits = visits_for(build, clinic, 24, days_ahead=1)
    ids = [v.id for v in visits]
    Appointment.objects.filter(id__in=ids).update(noshow_risk=0.5)
    touches.decide(practice.organization_id, dict.fromkeys(ids, 0.5), timezone.now())
    arms = dict(RiskTouch.objects.values_list("appointment_id", "arm"))
    client.force_login(build.staff(practice.organization, StaffRole.FRONT_DESK,
                                   practices=[practice]))  # fmt: skip
    rows = client.get(reverse("scheduling:call_list", args=[practice.id])).context["rows"]
    listed = {r.appointment.id for r in rows}
    assert listed == {pk for pk, arm in arms.items() if arm == TouchArm.TOUCH}
    assert 0 < len(listed) < 24


def test_the_demos_planted_touch_lift_is_recovered(db):
    """The demo randomizes high-risk visits of the last 120 days and plants a relative risk
    of 0.7 for the touch: the measured difference's interval holds the planted one and
    excludes zero."""
    from careline.demo import generator

    demo = generate_demo(
        DemoOptions(practices=6, providers=24, patients=3000, appointments=30_000,
                    organization_slug="touch-demo")
    ).organization  # fmt: skip
    policy = touches.RiskTouchPolicy.objects.get(organization=demo)
    result = experiments.touch_results(policy)
    assert result.touch.due > 500 and result.no_touch.due > 500
    share = result.touch.visits / (result.touch.visits + result.no_touch.visits)
    assert abs(share - 0.5) < 0.03
    planted = result.no_touch.rate * (generator.TOUCH_RELATIVE_RISK - 1)
    c = result.comparison
    assert c.difference_low < planted < c.difference_high
    assert c.difference_high < 0
    assert all(
        arm == touches.arm_of(policy, pk)
        for pk, arm in RiskTouch.objects.values_list("appointment_id", "arm")
    )
