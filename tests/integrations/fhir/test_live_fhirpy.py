"""A real FHIR client (fhirpy) against a live Careline server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, OperationOutcome, ResourceNotFound

from careline.integrations.api_keys import issue_api_key
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

pytestmark = pytest.mark.django_db(transaction=True)

TZ_EXT = "http://hl7.org/fhir/StructureDefinition/timezone"


def valid(resource) -> dict:
    """The resource as JSON, after checking it validates against fhir.resources."""
    data = resource.serialize()
    get_fhir_model_class(data["resourceType"]).model_validate(data)
    return data


@pytest.fixture
def client(live_server) -> SyncFHIRClient:
    key = issue_api_key(
        organization_slug="riverside", name="live tests", create_organization=True
    ).plaintext
    return SyncFHIRClient(f"{live_server.url}/fhir/R4", authorization=f"Bearer {key}")


def test_an_ehr_feed_round_trip(client):
    location = client.resource(
        "Location",
        name="Riverside Family Medicine",
        identifier=[{"value": "RFM"}],
        extension=[{"url": TZ_EXT, "valueCode": "America/Los_Angeles"}],
        telecom=[{"system": "sms", "value": "+1 415 555 0142"}],
    )
    location.save()
    practitioner = client.resource(
        "Practitioner",
        identifier=[{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
        name=[{"family": "Okafor", "given": ["Ada"], "prefix": ["Dr."]}],
    )
    practitioner.save()
    patient = client.resource(
        "Patient",
        identifier=[{"type": {"coding": [{"code": "MR"}]}, "system": "urn:any", "value": "RV-100"}],
        name=[{"family": "Nguyen", "given": ["Bao"]}],
        telecom=[{"system": "phone", "use": "mobile", "value": "415-555-0177"}],
    )
    patient.save()
    start = datetime(2031, 6, 2, 17, 0, tzinfo=UTC)
    appointment = client.resource(
        "Appointment",
        status="booked",
        identifier=[{"system": "urn:riverside:ehr", "value": "A-1"}],
        start=start.isoformat(),
        end=(start + timedelta(minutes=30)).isoformat(),
        participant=[
            {"actor": {"reference": f"Patient/{patient.id}"}, "status": "needs-action"},
            {"actor": {"reference": f"Practitioner/{practitioner.id}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{location.id}"}, "status": "accepted"},
        ],
    )
    appointment.save()
    assert appointment.id and appointment["status"] == "booked"

    # Search everything back.
    found = client.resources("Patient").search(identifier="urn:any|RV-100").fetch()
    assert [p.id for p in found] == [patient.id]
    assert valid(found[0])["telecom"][0]["value"] == "+14155550177"
    npi = client.resources("Practitioner").search(identifier="1234567893").fetch()
    assert [valid(p)["name"][0]["text"] for p in npi] == ["Dr. Okafor"]
    located = client.resources("Location").search(name="riverside").fetch()
    assert valid(located[0])["extension"][0]["valueCode"] == "America/Los_Angeles"
    visits = (
        client.resources("Appointment")
        .search(date="ge2031-06-02")
        .search(date="lt2031-06-03")
        .search(patient=f"Patient/{patient.id}")
        .fetch()
    )
    assert [v.id for v in visits] == [appointment.id]

    # Update: the EHR moves the visit and the patient accepts it.
    appointment["start"] = (start + timedelta(hours=1)).isoformat()
    appointment["end"] = (start + timedelta(hours=1, minutes=30)).isoformat()
    appointment["participant"][0]["status"] = "accepted"
    appointment.save()
    stored = Appointment.objects.get(pk=appointment.id)
    assert stored.start == start + timedelta(hours=1)
    assert stored.status == AppointmentStatus.CONFIRMED
    reread = client.resources("Appointment").search(_id=appointment.id).get()
    assert valid(reread)["participant"][0]["status"] == "accepted"

    # Cancel.
    appointment["status"] = "cancelled"
    appointment["cancelationReason"] = {"text": "Patient moved away"}
    appointment.save()
    stored.refresh_from_db()
    assert stored.status == AppointmentStatus.CANCELLED
    assert stored.status_source == ChangeSource.FHIR
    cancelled = client.resources("Appointment").search(status="cancelled").fetch()
    assert valid(cancelled[0])["cancelationReason"]["text"] == "Patient moved away"

    # Conditional update by the EHR's own id: the first creates, the second updates.
    again = client.resource("Appointment", **{k: v for k, v in valid(reread).items() if k != "id"})
    again["identifier"] = [{"system": "urn:riverside:ehr", "value": "A-2"}]
    again["status"] = "booked"
    feed = client.resources("Appointment").search(identifier="urn:riverside:ehr|A-2")
    first, created = feed.update(again)
    second, created_again = feed.update(again)
    assert (created, created_again) == (True, False) and first.id == second.id

    # Errors arrive as OperationOutcomes the client can read.
    with pytest.raises(OperationOutcome) as bad_phone:
        client.resource("Patient", name=[{"family": "X"}], telecom=[
            {"system": "sms", "value": "12"}]).save()  # fmt: skip
    assert "phone" in str(bad_phone.value)
    with pytest.raises(ResourceNotFound):
        client.resources("Patient").search(_id="999999").get()
    stranger = SyncFHIRClient(client.url, authorization="Bearer cl_nope")
    with pytest.raises(AuthorizationError):
        stranger.resources("Patient").fetch()


def test_paging_through_250_appointments(client, build):
    from careline.clinics.models import Organization

    org = Organization.objects.get(slug="riverside")
    practice = build.practice(org)
    provider = build.provider(practice)
    patient = build.patient(org)
    visit_type = build.appointment_type(org)
    base = datetime(2031, 7, 1, 15, 0, tzinfo=UTC)
    Appointment.objects.bulk_create(
        Appointment(
            organization=org,
            practice=practice,
            provider=provider,
            patient=patient,
            appointment_type=visit_type,
            start=base + timedelta(minutes=20 * i),
            end=base + timedelta(minutes=20 * i + 20),
            status_changed_at=base,
            status_source=ChangeSource.DEMO,
            external_id=f"P{i}",
        )
        for i in range(250)
    )
    search = client.resources("Appointment").search(patient=f"Patient/{patient.pk}").limit(100)
    assert search.count() == 250
    pages = search.fetch_all()
    ids = [a.id for a in pages]
    assert len(ids) == 250 and len(set(ids)) == 250
    starts = [valid(a)["start"] for a in pages]
    assert starts == sorted(starts)
    first_page = search.fetch_raw()
    assert first_page["total"] == 250 and len(first_page["entry"]) == 100
    assert {link["relation"] for link in first_page["link"]} == {"self", "next"}
