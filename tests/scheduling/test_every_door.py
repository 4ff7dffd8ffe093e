"""Whichever door a change comes through (staff page, patient text, patient link, FHIR,
HL7), it is recorded by scheduling.appointments.record_change: one AppointmentEvent naming
the door, and one re-plan announced in the same transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.conversations.models import InboundMessage
from careline.conversations.replies import _change as change_by_text
from careline.scheduling import appointments, changes, external
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import AppointmentEvent, AppointmentStatus, ChangeSource
from careline.selfservice import links, visit_actions


@pytest.fixture
def recorded(monkeypatch):
    """Every record_change call as (appointment id, new status, source), and every
    appointment re-planned."""
    calls, replanned = [], []
    original = appointments.record_change

    def spy(appointment, status, *, source, **kw):
        original(appointment, status, source=source, **kw)
        calls.append((appointment.pk, status, source))

    monkeypatch.setattr(appointments, "record_change", spy)
    monkeypatch.setattr(external, "record_change", spy)
    monkeypatch.setattr(changes, "_changed_subscribers", [*changes._changed_subscribers])
    changes.on_appointments_changed(replanned.extend)
    return calls, replanned


@pytest.fixture
def visit(build):
    org = build.organization()
    practice = build.practice(org)
    provider = build.provider(practice)
    visit_type = build.appointment_type(org)
    start = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    return book_appointment(
        patient=build.patient(org, home_practice=practice),
        provider=provider,
        practice=practice,
        appointment_type=visit_type,
        start=start,
        check_working_time=False,
    )


def _feed(visit, status: str, source: str):
    return external.upsert_external_appointment(
        organization=visit.practice.organization,
        practice=visit.practice,
        provider=visit.provider,
        patient=visit.patient,
        appointment_type=visit.appointment_type,
        start=visit.start,
        end=visit.end,
        status=status,
        source=source,
        appointment=visit,
    ).appointment


def _staff_page(client, build, visit):
    user = build.staff(
        visit.practice.organization, role=StaffRole.ORGANIZATION_ADMIN, practices=[visit.practice]
    )
    client.force_login(user)
    client.post(
        reverse("scheduling:set_status", args=[visit.pk]), {"status": "arrived"}, follow=False
    )
    return AppointmentStatus.ARRIVED, ChangeSource.STAFF


def _patient_text(client, build, visit):
    message = InboundMessage.objects.create(
        provider_message_id="SM-door",
        from_phone=visit.patient.mobile_phone,
        to_phone="+15125550000",
        body="C",
        received_at=timezone.now(),
    )
    change_by_text([visit], AppointmentStatus.CONFIRMED, message)
    return AppointmentStatus.CONFIRMED, ChangeSource.PATIENT_TEXT


def _patient_link(client, build, visit):
    visit_actions.cancel(links.resolve(links.issue_manage_link(visit.pk)))
    return AppointmentStatus.CANCELLED, ChangeSource.PATIENT_LINK


def _fhir(client, build, visit):
    _feed(visit, AppointmentStatus.NO_SHOW, ChangeSource.FHIR)
    return AppointmentStatus.NO_SHOW, ChangeSource.FHIR


def _hl7(client, build, visit):
    _feed(visit, AppointmentStatus.CANCELLED, ChangeSource.HL7)
    return AppointmentStatus.CANCELLED, ChangeSource.HL7


@pytest.mark.parametrize("door", [_staff_page, _patient_text, _patient_link, _fhir, _hl7])
def test_every_door_records_its_change_through_record_change(client, build, visit, recorded, door):
    calls, replanned = recorded

    status, source = door(client, build, visit)

    assert calls == [(visit.pk, status, source)]
    assert replanned == [visit.pk]
    visit.refresh_from_db()
    assert (visit.status, visit.status_source) == (status, source)
    event = AppointmentEvent.objects.filter(appointment=visit).latest("id")
    assert (event.to_status, event.source) == (status, source)
