"""A practice that books online: one provider 9-5 on weekdays, Chicago time, a future week."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

import pytest
from django.utils import timezone

from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import SimulatedPhoneMessage
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource


def next_monday(weeks_ahead: int = 2) -> date:
    today = timezone.now().date()
    return today + timedelta(days=7 * weeks_ahead - today.weekday())


class Clinic:
    def __init__(self, build):
        self.build = build
        self.org = build.organization(name="Lakeside Health")
        self.practice = build.practice(
            self.org, name="Lakeside Family Medicine", code="LFM", time_zone="America/Chicago"
        )
        self.provider = build.provider(self.practice, display_name="Dr. Lee")
        self.visit_type = build.appointment_type(
            self.org, minutes=20, bookable_online=True, patient_facing_name="Office visit"
        )
        self.monday = next_monday()

    def at(self, day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=self.practice.zone)

    def patient(self, **kw):
        kw.setdefault("birth_date", date(1980, 5, 17))
        return self.build.patient(self.org, home_practice=self.practice, **kw)

    def appointment(self, start: datetime, patient=None, provider=None, **kw) -> Appointment:
        return Appointment.objects.create(
            organization=self.org,
            practice=self.practice,
            provider=provider or self.provider,
            patient=patient or self.patient(),
            appointment_type=kw.pop("appointment_type", self.visit_type),
            start=start,
            end=start + timedelta(minutes=20),
            status=kw.pop("status", AppointmentStatus.BOOKED),
            status_changed_at=timezone.now(),
            status_source=ChangeSource.STAFF,
            **kw,
        )


@pytest.fixture
def clinic(build) -> Clinic:
    return Clinic(build)


@pytest.fixture
def always_sending(settings):
    """Offers may go out at any hour (tests run at any time of day)."""
    settings.CARELINE_SENDING_HOURS_START = 0
    settings.CARELINE_SENDING_HOURS_END = 24


def texted_token(phone: str, containing: str = "") -> str:
    """Send what is due (the simulator stands in for the phone) and return the token of the
    link in the newest text on `phone` (containing `containing`): the outbox keeps only a
    redacted copy, so the phone is where a patient's link is."""
    Dispatcher(SimulatorGateway(), hours=SendingHours(0, 24)).run_once()
    text = (
        SimulatedPhoneMessage.objects.filter(to=phone, body__contains=containing).latest("id").body
    )
    return re.search(r"/a/([A-Za-z0-9_-]{16})", text).group(1)
