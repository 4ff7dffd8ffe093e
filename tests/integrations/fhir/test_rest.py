"""The FHIR API through Django's test client: mapping, searches, conditional writes, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from careline.clinics.models import Practice
from careline.integrations.api_keys import issue_api_key, revoke_api_key
from careline.patients.models import Patient
from careline.scheduling.models import Appointment, AppointmentEvent, AppointmentStatus
from tests.integrations.fhir.conftest import Fhir, outcome

TZ_EXT = "http://hl7.org/fhir/StructureDefinition/timezone"


@pytest.fixture
def world(build, org):
    practice = build.practice(org, time_zone="America/Chicago")
    provider = build.provider(practice)
    patient = build.patient(org)
    return practice, provider, patient


def appointment_body(patient, provider, practice, start, minutes=20, **extra):
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=minutes)).isoformat(),
        "participant": [
            {"actor": {"reference": f"Patient/{patient.pk}"}, "status": "needs-action"},
            {"actor": {"reference": f"Practitioner/{provider.pk}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{practice.pk}"}, "status": "accepted"},
        ],
    }
    body.update(extra)
    return body


def test_metadata_is_a_truthful_capability_statement(fhir):
    response = fhir.get("metadata")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    statement = CapabilityStatement.model_validate(response.json())
    resources = {r.type: r for r in statement.rest[0].resource}
    assert set(resources) == {
        "Patient", "Practitioner", "Location", "Schedule", "Slot", "Appointment", "Communication"
    }  # fmt: skip
    codes = {name: {i.code for i in r.interaction} for name, r in resources.items()}
    assert codes["Slot"] == {"read", "search-type"}
    assert codes["Appointment"] == {
        "read", "vread", "history-instance", "search-type", "create", "update"
    }  # fmt: skip
    assert resources["Appointment"].conditionalUpdate is True
    assert "date" in {p.name for p in resources["Appointment"].searchParam}


@pytest.mark.django_db
def test_no_wrong_or_revoked_key_is_401_and_another_organizations_resource_is_404(
    fhir, world, build
):
    _, _, patient = world
    for key in (None, "cl_000000000000_" + "x" * 43, "not-a-key"):
        response = Fhir(key).get(f"Patient/{patient.pk}")
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
        assert "key" in outcome(response).lower() or "Authorization" in outcome(response)
    assert fhir.get(f"Patient/{patient.pk}").status_code == 200

    stranger = build.patient(build.organization())
    response = fhir.get(f"Patient/{stranger.pk}")
    assert response.status_code == 404 and f"Patient/{stranger.pk}" in outcome(response)
    found = fhir.get("Patient", _id=str(stranger.pk)).json()
    assert found["total"] == 0

    revoked = issue_api_key(organization_slug=patient.organization.slug, name="old")
    revoke_api_key(revoked.api_key.prefix)
    response = Fhir(revoked.plaintext).get(f"Patient/{patient.pk}")
    assert response.status_code == 401 and "revoked" in outcome(response)


@pytest.mark.django_db
def test_patient_mapping_normalizes_the_mobile_and_reads_language_and_mrn(fhir, org):
    response = fhir.post(
        "Patient",
        {
            "resourceType": "Patient",
            "identifier": [
                {"system": "urn:ssn", "value": "999-00-1111", "type": {"text": "SSN"}},
                {"type": {"coding": [{"code": "MR"}]}, "system": "urn:ehr:mrn", "value": "A-77"},
            ],
            "name": [{"use": "official", "family": "Reyes", "given": ["Ana", "Luz"]}],
            "telecom": [
                {"system": "phone", "use": "home", "value": "512 555 0100"},
                {"system": "phone", "use": "mobile", "value": "(512) 555-0177"},
                {"system": "email", "value": "ana@example.org"},
            ],
            "birthDate": "1980-02-03",
            "communication": [{"language": {"coding": [{"code": "es-MX"}]}, "preferred": True}],
        },
    )
    assert response.status_code == 201, response.content
    patient = Patient.objects.get(pk=response.json()["id"])
    assert response["Location"].endswith(f"/fhir/R4/Patient/{patient.pk}")
    assert (patient.mrn, patient.mobile_phone, patient.preferred_language) == (
        "A-77",
        "+15125550177",
        "es",
    )
    assert (patient.given_name, patient.family_name) == ("Ana Luz", "Reyes")
    assert patient.organization == org
    body = response.json()
    assert {"system": "sms", "value": "+15125550177", "use": "mobile"} in body["telecom"]

    assert fhir.get("Patient", identifier="urn:ehr:mrn|A-77").json()["total"] == 1
    assert fhir.get("Patient", telecom="sms|512.555.0177").json()["total"] == 1
    assert fhir.get("Patient", telecom="+15125550100").json()["total"] == 0


@pytest.mark.django_db
def test_an_opted_out_number_shows_on_the_patient(fhir, org):
    from careline.integrations.fhir.resources.patient import SMS_OPT_OUT_EXTENSION
    from careline.patients.consent import record_consent

    created = fhir.post(
        "Patient",
        {
            "resourceType": "Patient",
            "name": [{"family": "Diaz", "given": ["Rita"]}],
            "telecom": [{"system": "sms", "value": "512 555 0166"}],
        },
    )
    assert created.status_code == 201, created.content
    patient_id = created.json()["id"]
    sms = fhir.get(f"Patient/{patient_id}").json()["telecom"][0]
    assert "extension" not in sms
    record_consent(
        organization_id=org.id,
        phone="+15125550166",
        opted_out=True,
        source="patient_text",
        detail="STOP",
    )
    sms = fhir.get(f"Patient/{patient_id}").json()["telecom"][0]
    assert sms["value"] == "+15125550166"
    assert sms["extension"][0]["url"] == SMS_OPT_OUT_EXTENSION
    record_consent(
        organization_id=org.id,
        phone="+15125550166",
        opted_out=False,
        source="patient_text",
        detail="START",
    )
    assert "extension" not in fhir.get(f"Patient/{patient_id}").json()["telecom"][0]


@pytest.mark.django_db
def test_bad_phone_is_400_with_the_validators_message(fhir):
    response = fhir.post(
        "Patient",
        {
            "resourceType": "Patient",
            "name": [{"family": "Doe", "given": ["Jo"]}],
            "telecom": [{"system": "sms", "value": "call me maybe"}],
        },
    )
    assert response.status_code == 400
    message = outcome(response)
    assert "Patient.telecom[0]" in message and "is not a phone number" in message
    assert not Patient.objects.exists()


@pytest.mark.django_db
def test_conditional_create_returns_the_existing_patient(fhir):
    body = {
        "resourceType": "Patient",
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "urn:x", "value": "M1"}],
        "name": [{"family": "Doe", "given": ["Jo"]}],
    }
    first = fhir.post("Patient", body, headers={"If-None-Exist": "identifier=urn:x|M1"})
    again = fhir.post("Patient", body, headers={"If-None-Exist": "identifier=urn:x|M1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Patient.objects.count() == 1
    duplicate = fhir.post("Patient", body)
    assert duplicate.status_code == 409 and "identifier urn:x|M1" in outcome(duplicate)


@pytest.mark.django_db
def test_location_time_zone_and_texting_number(fhir, org):
    body = {
        "resourceType": "Location",
        "name": "Eastside Clinic",
        "identifier": [{"value": "EAST"}],
        "extension": [{"url": TZ_EXT, "valueCode": "America/Denver"}],
        "telecom": [
            {"system": "phone", "value": "2328"},
            {"system": "phone", "value": "303 555 0111"},
            {"system": "sms", "value": "303-555-0199"},
        ],
        "address": {"line": ["1 Main St"], "city": "Denver", "state": "CO"},
    }
    response = fhir.post("Location", body)
    assert response.status_code == 201, response.content
    practice = Practice.objects.get(pk=response.json()["id"])
    assert (practice.time_zone, practice.code) == ("America/Denver", "EAST")
    assert (practice.sender_number, practice.phone) == ("+13035550199", "+13035550111")
    assert practice.address == "1 Main St, Denver, CO"

    body["extension"][0]["valueCode"] = "Mars/Olympus_Mons"
    response = fhir.put(f"Location/{practice.pk}", body)
    assert response.status_code == 400
    assert "'Mars/Olympus_Mons' is not an IANA time zone" in outcome(response)
    practice.refresh_from_db()
    assert practice.time_zone == "America/Denver"

    # Without its own number a practice texts from the organization's default sender.
    del body["telecom"][2]
    body["extension"][0]["valueCode"] = "America/Denver"
    read_back = fhir.put(f"Location/{practice.pk}", body).json()
    assert {"system": "sms", "value": org.default_sender_number, "use": "work"} in read_back[
        "telecom"
    ]


@pytest.mark.django_db
def test_appointment_create_confirm_and_cancel(fhir, world):
    practice, provider, patient = world
    start = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)
    body = appointment_body(
        patient, provider, practice, start, identifier=[{"system": "urn:ehr", "value": "V1"}]
    )
    created = fhir.post("Appointment", body)
    assert created.status_code == 201, created.content
    appointment = Appointment.objects.get(pk=created.json()["id"])
    assert appointment.status == AppointmentStatus.BOOKED
    assert (appointment.external_system, appointment.external_id) == ("urn:ehr", "V1")
    assert appointment.allow_overlap
    assert created.json()["participant"][0]["status"] == "needs-action"

    # The patient participant accepting is Careline's confirmation.
    body["participant"][0]["status"] = "accepted"
    confirmed = fhir.put(f"Appointment/{appointment.pk}", body)
    assert confirmed.status_code == 200
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert appointment.confirmed_at is not None
    assert confirmed.json()["status"] == "booked"
    assert confirmed.json()["participant"][0]["status"] == "accepted"

    body["status"] = "cancelled"
    body["cancelationReason"] = {"text": "Provider out sick"}
    cancelled = fhir.put(f"Appointment/{appointment.pk}", body)
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancelationReason"]["text"] == "Provider out sick"
    events = list(appointment.events.values_list("to_status", "source"))
    assert events == [("booked", "fhir"), ("confirmed", "fhir"), ("cancelled", "fhir")]


@pytest.mark.django_db
def test_conditional_update_upserts_by_identifier_and_never_rolls_back(fhir, world):
    practice, provider, patient = world
    start = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)
    body = appointment_body(
        patient,
        provider,
        practice,
        start,
        identifier=[{"system": "urn:ehr", "value": "V9"}],
        meta={"lastUpdated": "2031-01-02T10:00:00Z"},
    )
    first = fhir.put("Appointment?identifier=urn:ehr|V9", body)
    assert first.status_code == 201
    body["start"] = (start + timedelta(hours=1)).isoformat()
    body["end"] = (start + timedelta(hours=1, minutes=20)).isoformat()
    body["meta"]["lastUpdated"] = "2031-01-02T11:00:00Z"
    second = fhir.put("Appointment?identifier=urn:ehr|V9", body)
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    # An older message arriving late changes nothing.
    stale = dict(body, status="cancelled", meta={"lastUpdated": "2031-01-02T10:30:00Z"})
    late = fhir.put("Appointment?identifier=urn:ehr|V9", stale)
    assert late.status_code == 200 and late.json()["status"] == "booked"
    appointment = Appointment.objects.get()
    assert appointment.start == start + timedelta(hours=1)
    assert appointment.status == AppointmentStatus.BOOKED
    moved = AppointmentEvent.objects.filter(appointment=appointment, note="rescheduled")
    assert moved.count() == 1

    duplicate = fhir.post("Appointment", body)
    assert duplicate.status_code == 409 and "urn:ehr|V9" in outcome(duplicate)


@pytest.mark.django_db
def test_unknown_references_are_named(fhir, world, build):
    practice, provider, patient = world
    foreign = build.patient(build.organization())
    start = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)
    for ref in ("Patient/987654", f"Patient/{foreign.pk}", "Patient/example"):
        body = appointment_body(patient, provider, practice, start)
        body["participant"][0]["actor"]["reference"] = ref
        response = fhir.post("Appointment", body)
        assert response.status_code == 422
        assert f"'{ref}'" in outcome(response)
        assert "participant[0]" in outcome(response)
    body = appointment_body(patient, provider, practice, start)
    body["participant"].append({"actor": {"reference": "Device/1"}, "status": "accepted"})
    response = fhir.post("Appointment", body)
    assert response.status_code == 422 and "Device/1" in outcome(response)
    assert not Appointment.objects.exists()


@pytest.mark.django_db
def test_appointment_date_search_follows_fhir_semantics(fhir, world):
    practice, provider, patient = world
    chicago_evening = datetime(2031, 3, 10, 23, 30, tzinfo=UTC) - timedelta(hours=1)  # 17:30 CDT
    times = [
        datetime(2031, 2, 28, 12, 0, tzinfo=UTC),
        datetime(2031, 3, 1, 0, 0, tzinfo=UTC),
        datetime(2031, 3, 10, 15, 0, tzinfo=UTC),
        datetime(2031, 3, 11, 2, 0, tzinfo=UTC),  # 21:00 on the 10th in Chicago
        datetime(2031, 4, 1, 0, 0, tzinfo=UTC),
        chicago_evening,
    ]
    ids = {}
    for t in times:
        response = fhir.post("Appointment", appointment_body(patient, provider, practice, t))
        ids[t] = response.json()["id"]

    def found(**params):
        bundle = fhir.get("Appointment", **params).json()
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    march = {ids[t] for t in times if t.month == 3 and t.year == 2031}
    assert found(date="2031-03") == march
    assert found(date=["ge2031-03-01", "lt2031-04"]) == march
    assert found(date="gt2031-03") == {ids[times[4]]}
    assert found(date="le2031-02") == {ids[times[0]]}
    assert found(date="ne2031-03") == set(ids.values()) - march
    assert found(date="ge2031-03-10T15:00:00Z") >= {ids[times[2]]}
    assert ids[times[1]] not in found(date="gt2031-03-01T00:00:00Z")
    # A calendar day without a zone is the practice's day when one location is given.
    in_chicago = found(date="2031-03-10", location=f"Location/{practice.pk}")
    assert in_chicago == {ids[times[2]], ids[times[3]], ids[chicago_evening]}
    assert ids[times[3]] not in found(date="2031-03-10")
    response = fhir.get("Appointment", date="2031-02-30")
    assert response.status_code == 400 and "2031-02-30" in outcome(response)
    response = fhir.get("Appointment", date="yesterday")
    assert response.status_code == 400 and "prefix" in outcome(response)


@pytest.mark.django_db
def test_appointment_searches_by_participant_status_and_identifier(fhir, world, build):
    practice, provider, patient = world
    other = build.patient(practice.organization)
    start = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)
    a = fhir.post("Appointment", appointment_body(patient, provider, practice, start)).json()
    b_body = appointment_body(
        other, provider, practice, start, identifier=[{"system": "urn:ehr", "value": "B"}]
    )
    b_body["status"] = "cancelled"
    b = fhir.post("Appointment", b_body).json()

    def ids(**params):
        return [e["resource"]["id"] for e in fhir.get("Appointment", **params).json()["entry"]]

    assert ids(patient=f"Patient/{patient.pk}") == [a["id"]]
    assert ids(practitioner=f"Practitioner/{provider.pk}", status="cancelled") == [b["id"]]
    assert ids(location=str(practice.pk), status="booked,cancelled") == [a["id"], b["id"]]
    assert ids(identifier="urn:ehr|B") == [b["id"]]
    assert fhir.get("Appointment", identifier="urn:other|B").json()["total"] == 0
    response = fhir.get("Appointment", patients="1")
    assert response.status_code == 400 and "patients" in outcome(response)


@pytest.mark.django_db
def test_paging_links_walk_every_result_once(fhir, world):
    practice, provider, patient = world
    base = datetime(2031, 5, 1, 14, 0, tzinfo=UTC)
    for i in range(7):
        fhir.post(
            "Appointment",
            appointment_body(patient, provider, practice, base + timedelta(minutes=20 * i)),
        )
    seen = []
    url = "Appointment?_count=3"
    while url:
        bundle = fhir.client.get(url if url.startswith("http") else f"/fhir/R4/{url}",
                                 headers=fhir._headers()).json()  # fmt: skip
        Bundle.model_validate(bundle)
        assert bundle["total"] == 7
        seen += [e["resource"]["start"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert len(seen) == 7 and seen == sorted(seen)
    assert fhir.get("Appointment", _count="0").json()["total"] == 7


@pytest.mark.django_db
def test_free_slots_leave_out_booked_time(fhir, world):
    practice, provider, patient = world
    # Next Monday 9:00-17:00 Chicago, 20-minute grid.
    today = datetime.now(practice.zone).date()
    monday = today + timedelta(days=7 - today.weekday())
    nine = datetime(monday.year, monday.month, monday.day, 9, tzinfo=practice.zone)
    fhir.post("Appointment", appointment_body(patient, provider, practice, nine))
    schedule = f"Schedule/{provider.pk}-{practice.pk}"
    response = fhir.get(
        "Slot",
        schedule=schedule,
        start=[f"ge{monday.isoformat()}", f"lt{(monday + timedelta(days=1)).isoformat()}"],
        status="free",
    )
    bundle = response.json()
    Bundle.model_validate(bundle)
    starts = [e["resource"]["start"] for e in bundle["entry"]]
    assert bundle["total"] == 8 * 3 - 1
    assert nine.astimezone(UTC).isoformat().replace("+00:00", "Z") not in starts
    slot = bundle["entry"][0]["resource"]
    assert slot["status"] == "free" and slot["schedule"]["reference"] == schedule
    assert fhir.get(f"Slot/{slot['id']}").json()["status"] == "free"
    schedules = fhir.get("Schedule", actor=f"Practitioner/{provider.pk}").json()
    assert [e["resource"]["id"] for e in schedules["entry"]] == [f"{provider.pk}-{practice.pk}"]
    response = fhir.get("Slot", schedule=schedule, status="busy")
    assert response.status_code == 400 and "status=free" in outcome(response)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method, path, body, status, fragment",
    [
        ("post", "Patient", "{not json", 400, "not valid JSON"),
        ("post", "Patient", "[1, 2]", 400, "must be a JSON object"),
        ("post", "Patient", {"resourceType": "Practitioner"}, 400, "takes Patient"),
        ("post", "Patient", {"resourceType": "Patient", "gender": 5}, 400, "Patient.gender"),
        ("post", "Patient", {"resourceType": "Patient", "bogus": 1}, 400, "Patient.bogus"),
        ("post", "Patient", {"resourceType": "Patient", "name": [{"family": "X\x00"}]}, 400,
         "NUL"),
        ("post", "Appointment", {"resourceType": "Appointment", "status": "booked"}, 400,
         "Appointment.participant"),
        ("post", "Slot", {"resourceType": "Slot"}, 405, "read-only"),
        ("post", "Observation", {"resourceType": "Observation"}, 404, "not supported"),
        ("get", "Patient/1/_history", None, 404, "not known"),
        ("get", "Slot/1/_history", None, 404, "keeps no versions"),
        ("get", "Patient/1/x/y", None, 404, "not a FHIR endpoint"),
        ("delete", "Patient/1", None, 405, "DELETE"),
        ("put", "Patient", {"resourceType": "Patient"}, 400, "needs search criteria"),
    ],
)  # fmt: skip
def test_every_error_is_an_operation_outcome(fhir, method, path, body, status, fragment):
    if method == "get":
        response = fhir.get(path)
    elif method == "delete":
        response = fhir.client.delete(f"/fhir/R4/{path}", headers=fhir._headers())
    else:
        response = getattr(fhir, method)(path, body)
    assert response.status_code == status, response.content
    assert fragment in outcome(response)
