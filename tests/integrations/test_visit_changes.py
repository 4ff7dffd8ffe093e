"""One way to decide that a visit an outside system owns moved or changed.

The CSV importer had its own copy of the upsert's rules and disagreed with the one FHIR
and HL7 use (scheduling.external): a new provider at the same time was not a move for CSV
(the patient's confirmation was kept and no history was written), and a moved visit went
back to booked but kept its confirmation time. The rules now live in one place
(integrations.appointments.feed_change); every feed reaches the same result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from careline.clinics.models import Provider
from careline.integrations.csv.importer import import_csv
from careline.scheduling.appointments import change_status
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

HEADER = "appointment_id,practice,provider,mrn,given_name,family_name,start,status"
START = datetime(2031, 3, 4, 14, 0, tzinfo=UTC)


def _via_csv(feeds, tmp_path):
    def send(provider: str, start: datetime, status: str = "booked") -> Appointment:
        path = tmp_path / "visits.csv"
        row = f"V1,TROY,{provider},M1,Ana,Lopez,{start.isoformat()},{status}"
        path.write_text(f"{HEADER}\n{row}\n", encoding="utf-8")
        report = import_csv(path, feeds.organization)
        assert report.imported, report.errors
        return Appointment.objects.get(external_id="V1")

    return send


def _via_upsert(feeds, tmp_path):
    from careline.clinics.directory import appointment_type_for_code
    from careline.patients.models import Patient
    from careline.scheduling.external import upsert_external_appointment

    org = feeds.organization
    patient = Patient.objects.create(organization=org, mrn="M1", given_name="A", family_name="L")

    def send(provider: str, start: datetime, status: str = "booked") -> Appointment:
        who, _ = Provider.objects.get_or_create(organization=org, display_name=provider)
        return upsert_external_appointment(
            organization=org,
            practice=feeds.troy,
            provider=who,
            patient=patient,
            appointment_type=appointment_type_for_code(org, code="VISIT"),
            start=start,
            end=start + timedelta(minutes=20),
            status=status,
            source=ChangeSource.HL7,
            external_system="csv",
            external_id="V1",
        ).appointment

    return send


@pytest.fixture(params=[_via_csv, _via_upsert], ids=["csv", "fhir-hl7"])
def confirmed(request, feeds, tmp_path):
    """A booked visit with Dr. Lee that the patient confirmed by text; and the feed."""
    send = request.param(feeds, tmp_path)
    visit = send("Dr. Lee", START)
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    return send


def _last_event(visit: Appointment):
    return visit.events.order_by("-id").first()


@pytest.mark.django_db
def test_an_unaware_feed_keeps_the_patients_confirmation(confirmed):
    visit = confirmed("Dr. Lee", START)
    assert visit.status == AppointmentStatus.CONFIRMED and visit.confirmed_at is not None


@pytest.mark.django_db
def test_a_new_time_needs_a_fresh_confirmation(confirmed):
    visit = confirmed("Dr. Lee", START + timedelta(days=1))
    assert (visit.status, visit.confirmed_at) == (AppointmentStatus.BOOKED, None)
    event = _last_event(visit)
    assert (event.old_start, event.new_start) == (START, START + timedelta(days=1))
    assert event.note == "rescheduled"


@pytest.mark.django_db
def test_a_new_provider_is_a_move_and_needs_a_fresh_confirmation(confirmed):
    visit = confirmed("Dr. Patel", START)
    assert visit.provider.display_name == "Dr. Patel"
    assert (visit.status, visit.confirmed_at) == (AppointmentStatus.BOOKED, None)
    event = _last_event(visit)
    assert (event.from_status, event.to_status) == (
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.BOOKED,
    )
    assert event.note == "rescheduled"
