"""Builders for messaging tests: a practice with a provider, bookable visits, clocks."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource


class Clinic:
    def __init__(self, build, time_zone: str = "America/Chicago"):
        self.build = build
        self.org = build.organization()
        self.practice = build.practice(self.org, time_zone=time_zone)
        self.provider = build.provider(self.practice, hours=None)
        self.visit_type = build.appointment_type(self.org)

    def patient(self, **kw):
        return self.build.patient(self.org, home_practice=self.practice, **kw)

    def appointment(
        self, start: datetime, patient=None, status: str = AppointmentStatus.BOOKED, **kw
    ) -> Appointment:
        """An appointment as a feed would write it: no planning side effects."""
        return Appointment.objects.create(
            organization=self.org,
            practice=kw.pop("practice", self.practice),
            provider=kw.pop("provider", self.provider),
            patient=patient or self.patient(),
            appointment_type=kw.pop("appointment_type", self.visit_type),
            start=start,
            end=start + timedelta(minutes=20),
            status=status,
            status_changed_at=timezone.now(),
            status_source=ChangeSource.HL7,
            allow_overlap=True,
            **kw,
        )


@pytest.fixture
def clinic(build) -> Clinic:
    return Clinic(build)
