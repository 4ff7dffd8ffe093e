"""Reminder experiments over the API: start, read with arm balance and results, list, stop;
another organization sees none of it; the experiment page shows the same balance."""

from __future__ import annotations

import pytest
from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.integrations.api_keys import issue_api_key
from careline.messaging import experiments
from careline.messaging.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    PatientAssignment,
)
from careline.messaging.planning import sync_reminders
from tests.api.conftest import Api, error, make_appointment


def _start(api, practice, **overrides):
    body = {
        "name": "Holdout 2026",
        "practice_id": practice.pk,
        "withheld_step": "all",
        "share_percent": 10,
    } | overrides
    return api.post("experiments", body)


def test_start_read_list_and_stop(api, build, org, practice):
    response = _start(api, practice)
    assert response.status_code == 201, response.content
    started = response.json()
    assert response["Location"].endswith(f"/api/v1/experiments/{started['id']}")
    assert started["running"] and started["share_percent"] == 10
    assert started["practice"] == {"id": practice.pk, "name": "Oak Clinic"}
    assert started["arm_balance"]["patients"] == {"control": 0, "withheld": 0}
    assert started["arm_balance"]["p_value"] is None

    visits = [make_appointment(build, practice, days_ahead=5 + i % 20) for i in range(60)]
    sync_reminders([v.id for v in visits])
    experiment = Experiment.objects.get(pk=started["id"])
    withheld = sum(
        experiments.arm_of(v.patient_id, experiment) == ExperimentArm.WITHHELD for v in visits
    )

    read = api.get(f"experiments/{started['id']}").json()
    balance = read["arm_balance"]
    assert balance["patients"] == {"control": 60 - withheld, "withheld": withheld}
    assert balance["visits"] == {"control": 60 - withheld, "withheld": withheld}
    assert balance["expected"] == {"control": pytest.approx(54), "withheld": pytest.approx(6)}
    assert 0 < balance["p_value"] <= 1 and balance["chi_square"] >= 0
    assert balance["summary"].startswith(("The arms match", "The arms are out of line"))
    assert read["results"]["control"]["visits"] == 60 - withheld
    assert read["results"]["enough_data"] is False and read["results"]["difference"] is None

    listed = api.get("experiments").json()
    assert [e["id"] for e in listed["data"]] == [started["id"]]
    assert listed["next"] is None

    stopped = api.post(f"experiments/{started['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["running"] is False
    assert stopped.json()["ended_at"] is not None
    later = make_appointment(build, practice, days_ahead=9)
    sync_reminders([later.id])
    assert not ExperimentAssignment.objects.filter(appointment=later).exists()
    again = api.post(f"experiments/{started['id']}/stop")
    assert again.json()["ended_at"] == stopped.json()["ended_at"]


def test_bad_experiments_are_refused_naming_each_field_and_nothing_is_stored(api, build, practice):
    other = build.practice(build.organization())
    response = _start(
        api,
        practice,
        name="",
        practice_id=other.pk,
        withheld_step="sometimes",
        share_percent=80,
    )
    assert response.status_code == 422
    fields = error(response)["fields"]
    assert set(fields) == {"name", "practice_id", "share_percent"}
    bad_step = _start(api, practice, withheld_step="sometimes")
    assert bad_step.status_code == 422
    assert "withheld_step" in error(bad_step)["fields"]
    assert _start(api, practice, share_percent=True).status_code == 422
    assert _start(api, practice, colour="red").status_code == 422
    assert not Experiment.objects.exists()


def test_another_organization_cannot_see_or_stop_them(api, build, practice):
    started = _start(api, practice).json()
    stranger = Api(
        issue_api_key(organization_slug=build.organization().slug, name="Other EHR").plaintext
    )
    assert stranger.get("experiments").json()["data"] == []
    assert stranger.get(f"experiments/{started['id']}").status_code == 404
    assert stranger.post(f"experiments/{started['id']}/stop").status_code == 404
    assert Experiment.objects.get().ended_at is None


def test_the_page_shows_the_same_arm_balance_and_calls_out_a_lopsided_split(
    api, client, build, org, practice
):
    started = _start(api, practice, share_percent=50).json()
    experiment = Experiment.objects.get(pk=started["id"])
    # A split that went wrong: 70 of 100 patients withheld against 50% configured.
    for i in range(100):
        patient = build.patient(org)
        PatientAssignment.objects.create(
            experiment=experiment,
            patient=patient,
            bucket=0,
            arm=ExperimentArm.WITHHELD if i < 70 else ExperimentArm.CONTROL,
            assigned_at=experiment.started_at,
        )
    client.force_login(build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[practice]))
    page = client.get(reverse("analytics:experiment", args=[experiment.id])).content.decode()
    balance = api.get(f"experiments/{experiment.id}").json()["arm_balance"]
    assert balance["patients"] == {"control": 30, "withheld": 70}
    assert balance["p_value"] == pytest.approx(6.3e-5, rel=0.05)  # chi-square, 1 df: 16.0
    assert "<td>Step withheld</td><td>70</td><td>50.0</td>" in page
    assert "χ² = 16.000, p = 0.0001" in page
    assert balance["summary"] in page and "out of line with the split" in balance["summary"]
