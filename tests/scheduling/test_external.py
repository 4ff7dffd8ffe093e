"""Appointments owned by an outside system: upsert by its id, overlap allowed, no rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from careline.clinics.directory import appointment_type_for_code
from careline.scheduling.external import upsert_external_appointment
from careline.scheduling.models import AppointmentStatus, ChangeSource

T0 = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def feed(build):
    org = build.organization()
    practice = build.practice(org)
    provider = build.provider(practice)
    visit = appointment_type_for_code(org, code="FU", name="Follow-up", duration_minutes=20)

    def send(patient, start=T0, status=AppointmentStatus.BOOKED, at=None, ext="E1", **kw):
        return upsert_external_appointment(
            organization=org,
            practice=kw.pop("practice", practice),
            provider=provider,
            patient=patient,
            appointment_type=visit,
            start=start,
            end=start + timedelta(minutes=20),
            status=status,
            source=ChangeSource.HL7,
            external_system="urn:ehr",
            external_id=ext,
            updated_at=at,
            **kw,
        )

    return org, practice, provider, send


@pytest.mark.django_db
def test_upsert_matches_by_external_id_and_allows_the_ehr_to_overbook(build, feed):
    org, practice, provider, send = feed
    first = send(build.patient(org))
    again = send(first.appointment.patient, start=T0 + timedelta(hours=1))
    assert (first.created, again.created) == (True, False)
    assert again.appointment.pk == first.appointment.pk
    assert again.appointment.start == T0 + timedelta(hours=1)
    # Same provider, same time, another patient: the EHR's calendar wins.
    other = send(build.patient(org), start=T0 + timedelta(hours=1), ext="E2")
    assert other.created and other.appointment.allow_overlap
    events = list(first.appointment.events.values_list("to_status", "note", "source"))
    assert events == [("booked", "", "hl7"), ("booked", "rescheduled", "hl7")]


@pytest.mark.django_db
def test_an_older_message_never_rolls_back(build, feed):
    org, _, _, send = feed
    patient = build.patient(org)
    send(patient, at=T0 - timedelta(days=2))
    newer = send(patient, status=AppointmentStatus.CANCELLED, at=T0 - timedelta(days=1))
    late = send(patient, status=AppointmentStatus.BOOKED, at=T0 - timedelta(days=1, hours=1))
    assert newer.applied and not late.applied
    late.appointment.refresh_from_db()
    assert late.appointment.status == AppointmentStatus.CANCELLED


@pytest.mark.django_db
def test_confirmation_goes_through_the_state_machine_and_survives_an_unaware_feed(build, feed):
    org, _, _, send = feed
    patient = build.patient(org)
    send(patient)
    confirmed = send(patient, status=AppointmentStatus.CONFIRMED).appointment
    assert confirmed.status == AppointmentStatus.CONFIRMED and confirmed.confirmed_at
    # The EHR re-sends "booked" (it never heard of the confirmation): it stays confirmed.
    assert send(patient).appointment.status == AppointmentStatus.CONFIRMED
    # A new time needs a new confirmation.
    moved = send(patient, start=T0 + timedelta(days=1)).appointment
    assert moved.status == AppointmentStatus.BOOKED and moved.confirmed_at is None
    transitions = list(moved.events.values_list("from_status", "to_status"))
    assert transitions == [("", "booked"), ("booked", "confirmed"), ("confirmed", "booked")]


@pytest.mark.django_db
def test_the_practice_link_and_home_practice_follow_the_feed(build, feed):
    org, practice, provider, send = feed
    elsewhere = build.practice(org)
    patient = build.patient(org)
    send(patient, practice=elsewhere)
    assert elsewhere in provider.practices.all()
    patient.refresh_from_db()
    assert patient.home_practice == elsewhere
    send(patient, ext="E2")  # a later visit elsewhere does not move the home practice
    patient.refresh_from_db()
    assert patient.home_practice == elsewhere


@pytest.mark.django_db
def test_reminders_are_planned_in_the_same_transaction(build, feed):
    from careline.messaging.models import MessageState, OutboundMessage

    org, _, _, send = feed
    patient = build.patient(org)
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    appointment = send(patient, start=soon).appointment
    planned = OutboundMessage.objects.filter(appointment=appointment, kind="reminder")
    assert planned.filter(state=MessageState.SCHEDULED).exists()
    send(patient, start=soon, status=AppointmentStatus.CANCELLED)
    assert not planned.filter(state=MessageState.SCHEDULED).exists()
