"""The specification's own example resources are accepted on create."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from careline.clinics.models import Practice, Provider
from careline.patients.models import Patient
from careline.scheduling.models import Appointment, AppointmentStatus

DATA = Path(__file__).resolve().parent.parent.parent / "data" / "fhir"


def example(name: str) -> dict:
    return json.loads((DATA / f"{name}-example.json").read_text(encoding="utf-8"))


@pytest.mark.django_db
def test_official_examples_are_accepted_on_create(fhir, settings):
    # The patient example is Australian: its "(03) 3410 5613" is a Victorian number.
    settings.CARELINE_DEFAULT_REGION = "AU"
    ids = {}
    for name, reference in (
        ("patient", "Patient/example"),
        ("practitioner", "Practitioner/example"),
        ("location", "Location/1"),
    ):
        response = fhir.post(name.title(), example(name))
        assert response.status_code == 201, response.content
        ids[reference] = f"{name.title()}/{response.json()['id']}"

    patient = Patient.objects.get()
    assert (patient.given_name, patient.family_name, patient.mrn) == (
        "Peter James",
        "Chalmers",
        "12345",
    )
    assert patient.mobile_phone == "+61334105613"
    assert str(patient.birth_date) == "1974-12-25"
    provider = Provider.objects.get()
    assert provider.display_name == "Dr Careful"
    practice = Practice.objects.get()
    assert (practice.name, practice.code) == ("South Wing, second floor", "B1-S.F2")
    # "2328" is an internal extension, not a number the front desk can be texted or called on.
    assert practice.phone == ""

    appointment = example("appointment")
    for participant in appointment["participant"]:
        participant["actor"]["reference"] = ids[participant["actor"]["reference"]]
    response = fhir.post("Appointment", appointment)
    assert response.status_code == 201, response.content
    stored = Appointment.objects.get()
    # Booked, and the patient participant has accepted: confirmed in Careline's words.
    assert stored.status == AppointmentStatus.CONFIRMED
    assert stored.start == datetime(2013, 12, 10, 9, tzinfo=UTC)
    assert stored.appointment_type.code == "FOLLOWUP"
    assert stored.appointment_type.patient_facing_name == "Appointment"
    assert (stored.patient, stored.provider, stored.practice) == (patient, provider, practice)
