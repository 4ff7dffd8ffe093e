"""Web fixtures. `ringing`: a reminder call ringing on a simulated phone (a practice whose
rule calls, one visit, the worker run when its reminder is due)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageKind, OutboundMessage, ReminderRule
from careline.messaging.planning import sync_reminders
from careline.messaging.rules import save_rule
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

PASSWORD = "careline-test-pw"


@pytest.fixture
def ringing(build, settings):
    settings.CARELINE_SMS_GATEWAY = "simulator"
    settings.CARELINE_CALLS_PER_SECOND = 0
    settings.CARELINE_CALLING_HOURS_START = 0
    settings.CARELINE_CALLING_HOURS_END = 24
    org = build.organization(name="Lakeside Health", default_sender_number="+15125550100")
    practice = build.practice(org, name="Lakeside Family Medicine", phone="+15125550199")
    provider = build.provider(practice, display_name="Dr. Lee", hours=None)
    kind = build.appointment_type(org)
    build.staff(org, StaffRole.FRONT_DESK, [practice], username="frontdesk", password=PASSWORD)
    save_rule(
        ReminderRule(
            organization=org, offsets_minutes=[1440], channel="voice", send_event_messages=False
        )
    )
    patient = build.patient(
        org, home_practice=practice, given_name="Rosa", mobile_phone="+15125550180"
    )
    start = (timezone.now() + timedelta(hours=30)).replace(second=0, microsecond=0)
    visit = Appointment.objects.create(
        organization=org,
        practice=practice,
        provider=provider,
        patient=patient,
        appointment_type=kind,
        start=start,
        end=start + timedelta(minutes=20),
        status=AppointmentStatus.BOOKED,
        status_changed_at=timezone.now(),
        status_source=ChangeSource.FHIR,
        allow_overlap=True,
    )
    sync_reminders([visit.pk])
    due = OutboundMessage.objects.get(appointment=visit, kind=MessageKind.REMINDER).due_at
    Dispatcher(
        SimulatorGateway(), clock=lambda: due + timedelta(seconds=1), hours=SendingHours(0, 24)
    ).run_once()
    return visit
