"""Bad input at every FHIR door gets a 4xx OperationOutcome naming the field, and nothing
is stored: dates at the ends of the calendar, visits shorter than a minute, Unicode digits,
numbers that overflow, ids that cannot be ours. (Shapes the FHIR model already refused
are left to the property-based tests in test_fuzz.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from careline.patients.models import Patient
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from tests.integrations.fhir.conftest import outcome

START = datetime(2031, 1, 6, 15, 0, tzinfo=UTC)


@pytest.fixture
def world(build, org):
    practice = build.practice(org, time_zone="America/Chicago")
    provider = build.provider(practice)
    patient = build.patient(org)
    return practice, provider, patient


def appointment(world, start: str, end: str, **extra) -> dict:
    practice, provider, patient = world
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": ref}, "status": "accepted"}
            for ref in (
                f"Patient/{patient.pk}",
                f"Practitioner/{provider.pk}",
                f"Location/{practice.pk}",
            )
        ],
        **extra,
    }


def refused(response, status: int, expression: str) -> str:
    """Assert an OperationOutcome with `status` naming `expression`; its diagnostics."""
    assert response.status_code == status, response.content
    text = outcome(response)
    assert any(expression in e for e in response.json()["issue"][0].get("expression", [])), (
        response.json()
    )
    return text


def write_doors(fhir, world) -> list[tuple[str, str]]:
    """Each write door, with a stored visit for the updates to aim at: create, update by
    id, conditional update."""
    existing = fhir.post(
        "Appointment",
        appointment(
            world,
            START.isoformat(),
            (START + timedelta(minutes=20)).isoformat(),
            identifier=[{"system": "urn:ehr", "value": "A-1"}],
        ),
    )
    assert existing.status_code == 201, existing.content
    return [
        ("post", "Appointment"),
        ("put", f"Appointment/{existing.json()['id']}"),
        ("put", "Appointment?identifier=urn:ehr|A-1"),
    ]


def stored() -> list[tuple]:
    return list(Appointment.objects.values_list("id", "start", "end", "status_changed_at"))


BAD_VISITS = [
    ("9999-12-31T12:00:00Z", "9999-12-31T12:20:00Z", {}, 422, "Appointment.start"),
    ("0001-01-01T00:00:00+05:00", "0001-01-01T00:20:00+05:00", {}, 422, "Appointment.start"),
    ("1899-12-31T10:00:00Z", "1899-12-31T10:20:00Z", {}, 422, "Appointment.start"),
    ("2031-01-06T15:00:00Z", "2031-01-06T15:00:30Z", {}, 422, "Appointment.end"),
    ("2031-01-06T15:00:00Z", "2031-01-07T16:00:00Z", {}, 422, "Appointment.end"),
    ("2031-01-06T15:00:00Z", "2200-01-01T00:00:00Z", {}, 422, "Appointment.end"),
    ("2031-01-06T15:00:00Z", "2031-01-06T15:20:00Z", {"minutesDuration": 5000}, 422,
     "Appointment.minutesDuration"),
    ("2031-01-06T15:00:00Z", "2031-01-06T15:20:00Z",
     {"meta": {"lastUpdated": "9999-12-31T23:59:59-05:00"}}, 422, "Appointment.meta.lastUpdated"),
]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("start, end, extra, status, expression", BAD_VISITS)
def test_a_visit_careline_cannot_handle_is_refused_at_every_write_and_nothing_is_stored(
    fhir, world, start, end, extra, status, expression
):
    doors = write_doors(fhir, world)
    before = stored()
    for method, path in doors:
        refused(
            getattr(fhir, method)(path, appointment(world, start, end, **extra)), status, expression
        )
        assert stored() == before
    assert fhir.get("Appointment").status_code == 200


@pytest.mark.django_db
def test_an_appointment_shorter_than_a_minute_is_refused_and_searches_still_work(fhir, world):
    response = fhir.post(
        "Appointment", appointment(world, "2031-01-06T15:00:00Z", "2031-01-06T15:00:30Z")
    )

    assert "at least one minute" in refused(response, 422, "Appointment.end")
    assert not Appointment.objects.exists()
    assert fhir.get("Appointment").status_code == 200
    assert fhir.get("Appointment", date="2031-01-06").status_code == 200


@pytest.mark.django_db
def test_a_stored_sub_minute_appointment_does_not_break_reads_or_searches(fhir, world, org, build):
    # Stored before the door refused them.
    practice, provider, patient = world
    short = Appointment.objects.create(
        organization=org,
        practice=practice,
        provider=provider,
        patient=patient,
        appointment_type=build.appointment_type(org),
        start=START,
        end=START + timedelta(seconds=30),
        status=AppointmentStatus.BOOKED,
        status_changed_at=START,
        status_source=ChangeSource.FHIR,
    )

    search = fhir.get("Appointment")
    assert search.status_code == 200, search.content
    assert [e["resource"]["id"] for e in search.json()["entry"]] == [str(short.pk)]
    read = fhir.get(f"Appointment/{short.pk}")
    assert read.status_code == 200 and "minutesDuration" not in read.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "birth_date, status",
    [("0001-01-01", 422), ("9999-12-31", 422), ("1899-12-31", 422)],
)  # fmt: skip
def test_a_birth_date_out_of_range_is_refused(fhir, birth_date, status):
    body = {"resourceType": "Patient", "name": [{"family": "Lee"}], "birthDate": birth_date}
    refused(fhir.post("Patient", body), status, "Patient.birthDate")
    assert not Patient.objects.exists()


SEARCHES = [
    ("Appointment", {"_count": "99999999999999999999"}, "_count"),
    ("Appointment", {"_count": "²"}, "_count"),
    ("Appointment", {"_count": "٣"}, "_count"),
    ("Patient", {"_offset": "٣"}, "_offset"),
    ("Patient", {"_offset": "99999999999999999999"}, "_offset"),
    ("Appointment", {"date": "ge9999-12-31"}, "date"),
    ("Appointment", {"date": "ap9998-12-31T23:59"}, "date"),
    ("Appointment", {"date": "0001-01-01"}, "date"),
    ("Appointment", {"date": "lt0000"}, "date"),
    ("Appointment", {"date": "٢٠٣١-01-06"}, "date"),
    ("Appointment", {"date": "2031-0²-06"}, "date"),
    ("Appointment", {"status": "bogus"}, "status"),
    ("Appointment", {"actor": "Patient"}, "actor"),
    ("Patient", {"birthdate": "le0001-01-01"}, "birthdate"),
    ("Patient", {"birthdate": "eq9999-12-31"}, "birthdate"),
    ("Communication", {"sent": "ge9999-12-31T23:59:59Z"}, "sent"),
    ("Communication", {"about": "Patient/1"}, "about"),
    ("Practitioner", {"active": "²"}, "active"),
    ("Schedule", {"actor": "Patient/1"}, "actor"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("resource_type, params, expression", SEARCHES)
def test_a_search_value_out_of_range_is_400_naming_the_parameter(
    fhir, world, resource_type, params, expression
):
    refused(fhir.get(resource_type, **params), 400, expression)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, expression",
    [({"start": "ge9999-01-01"}, "start"), ({"start": "le0001-01-01"}, "start"),
     ({"start": "ge٢٠٣١-01-01"}, "start"), ({"status": "busy"}, "status"),
     ({"appointment-type": "nope"}, "appointment-type")],
)  # fmt: skip
def test_slot_search_values_out_of_range_are_400_naming_the_parameter(
    fhir, world, params, expression
):
    practice, provider, _ = world
    response = fhir.get("Slot", schedule=f"Schedule/{provider.pk}-{practice.pk}", **params)
    refused(response, 400, expression)
    refused(fhir.get("Slot", schedule="Schedule/²-٣"), 404, "schedule")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["Slot/1-1-²-20", "Slot/1-1-٣-20", "Slot/1-1-99999999999-20"],
)  # fmt: skip
def test_a_slot_id_that_cannot_be_ours_is_404(fhir, world, path):
    response = fhir.get(path)
    assert response.status_code == 404, response.content
    outcome(response)


@pytest.mark.django_db
def test_a_stored_row_that_is_not_valid_fhir_does_not_hide_the_others(fhir, org, build):
    # Stored by another door: an empty family name is no FHIR string.
    odd = build.patient(org, family_name="")
    fine = build.patient(org)

    search = fhir.get("Patient")
    assert search.status_code == 200, search.content
    entries = search.json()["entry"]
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == [
        str(fine.pk)
    ]
    (warning,) = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    assert f"Patient/{odd.pk}" in warning["issue"][0]["diagnostics"]
    read = fhir.get(f"Patient/{odd.pk}")
    assert read.status_code == 422
    assert f"Patient/{odd.pk}" in outcome(read)
