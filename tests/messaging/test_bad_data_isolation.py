"""One organization's bad data never stops another's reminders.

A visit at the very end of the calendar (year 9999) could once be posted through FHIR with
any organization's key; the shared worker then crashed on it (OverflowError) on every run,
and no organization's texts went out. Now every door refuses such a visit, and the worker
fails a row it cannot prepare, logs it with ids only and goes on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from careline.integrations.api_keys import issue_api_key
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.messaging.planning import sync_reminders
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from tests.integrations.fhir.conftest import Fhir, outcome

# Kiritimati is 14 hours ahead of UTC: the last day of year 9999 there is year 10000.
EDGE_OF_TIME = datetime(9999, 12, 31, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def any_hour_is_a_sending_hour(settings):
    settings.CARELINE_SENDING_HOURS_START = 0
    settings.CARELINE_SENDING_HOURS_END = 24


class Org:
    """An organization with a practice, a provider, a patient and a FHIR key."""

    def __init__(self, build, time_zone: str):
        self.org = build.organization()
        self.practice = build.practice(self.org, time_zone=time_zone)
        self.provider = build.provider(self.practice)
        self.patient = build.patient(self.org)
        self.fhir = Fhir(issue_api_key(organization_slug=self.org.slug, name="ehr").plaintext)

    def appointment(self, start: datetime, end: datetime):
        return self.fhir.post(
            "Appointment",
            {
                "resourceType": "Appointment",
                "status": "booked",
                "start": start.isoformat(),
                "end": end.isoformat(),
                "participant": [
                    {"actor": {"reference": ref}, "status": "accepted"}
                    for ref in (
                        f"Patient/{self.patient.pk}",
                        f"Practitioner/{self.provider.pk}",
                        f"Location/{self.practice.pk}",
                    )
                ],
            },
        )

    def messages(self):
        return OutboundMessage.objects.filter(organization=self.org)


@pytest.fixture
def careless(build) -> Org:
    return Org(build, "Pacific/Kiritimati")


@pytest.fixture
def other(build) -> Org:
    """Another organization, whose booking notice is due now."""
    other = Org(build, "America/Chicago")
    start = timezone.now() + timedelta(days=5)
    assert other.appointment(start, start + timedelta(minutes=20)).status_code == 201
    assert other.messages().filter(state=MessageState.SCHEDULED).exists()
    return other


def sent(org: Org) -> int:
    return org.messages().filter(state__in=[MessageState.SENT, MessageState.DELIVERED]).count()


@pytest.mark.django_db
def test_a_visit_in_year_9999_is_refused_and_other_organizations_reminders_go_out(careless, other):
    response = careless.appointment(EDGE_OF_TIME, EDGE_OF_TIME + timedelta(minutes=20))

    assert response.status_code == 422, response.content
    assert "Appointment.start" in outcome(response)
    assert response.json()["issue"][0]["expression"] == ["Appointment.start"]
    assert not Appointment.objects.filter(organization=careless.org).exists()
    assert not careless.messages().exists()
    call_command("worker", "--once")
    assert sent(other) == 1


@pytest.mark.django_db
def test_a_stored_visit_the_worker_cannot_prepare_is_failed_and_the_worker_goes_on(
    build, careless, other, caplog
):
    # Rows stored before the doors refused them: a visit at the edge of time with its
    # booking notice planned, and a reminder about such a visit.
    now = timezone.now()
    visit = Appointment.objects.create(
        organization=careless.org,
        practice=careless.practice,
        provider=careless.provider,
        patient=careless.patient,
        appointment_type=build.appointment_type(careless.org),
        start=EDGE_OF_TIME,
        end=EDGE_OF_TIME + timedelta(minutes=20),
        status=AppointmentStatus.BOOKED,
        status_changed_at=now,
        status_source=ChangeSource.FHIR,
    )
    sync_reminders([visit.pk])
    notice = careless.messages().get(kind=MessageKind.BOOKED)
    reminder = OutboundMessage.objects.create(
        organization=careless.org,
        practice=careless.practice,
        patient=careless.patient,
        appointment=visit,
        kind=MessageKind.REMINDER,
        step_key="reminder:1440",
        to_address=careless.patient.mobile_phone,
        visit_start=datetime(9999, 12, 31, 23, 0, tzinfo=UTC),
        due_at=now - timedelta(minutes=1),
        created_at=now,
    )

    with caplog.at_level(logging.INFO):
        call_command("worker", "--once")

    assert sent(other) == 1
    for message in (notice, reminder):
        message.refresh_from_db()
        assert (message.state, message.reason) == (MessageState.FAILED, "invalid_data")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert f"Message {notice.pk} (organization {careless.org.pk}" in logged
    assert f"Message {reminder.pk} (organization {careless.org.pk}" in logged
    for phi in (careless.patient.given_name, careless.patient.mobile_phone):
        assert phi not in caplog.text
    # Its organization's staff and systems see it failed, with the reason.
    shown = careless.fhir.get(f"Communication/out-{notice.pk}").json()
    assert shown["status"] == "not-done"
    assert shown["statusReason"]["text"] == "invalid_data"
    # Nothing is left for the next run to trip over.
    call_command("worker", "--once")
