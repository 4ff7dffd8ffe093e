"""A practice whose patients get real reminders and answer through the signed Twilio webhook."""

from __future__ import annotations

import itertools
from datetime import datetime, time, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from careline.conversations.inbound import interpret_waiting
from careline.conversations.models import InboundMessage
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.messaging.planning import sync_reminders
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

TOKEN = "two-way-test-token"
BASE = "https://careline.example.org"
ORG_NUMBER = "+15125550100"
SMS_PATH = "/webhooks/twilio/sms"
ALWAYS_OPEN = "Mon-Sun 00:00-24:00"
_sids = itertools.count(1)
_phones = itertools.count(1000)


class _Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def run_worker_at(moment: datetime) -> None:
    """Send what is due at `moment` (a reminder is planned only while it is still to come,
    so tests send it from a future clock), then date the sends now, as if they had just
    reached the phones."""
    before = set(OutboundMessage.objects.filter(sent_at__isnull=False).values_list("id", flat=True))
    Dispatcher(SimulatorGateway(), clock=_Clock(moment), hours=SendingHours(0, 24)).run_once()
    OutboundMessage.objects.filter(sent_at__isnull=False).exclude(id__in=before).update(
        sent_at=timezone.now()
    )


def post_sms(
    client: Client, to_number: str, phone: str, body: str, sid: str | None = None
) -> InboundMessage:
    """A text to `to_number` as Twilio posts it, signed with Twilio's own validator, then
    read by the worker's inbound pass (the webhook only stores it)."""
    params = {
        "MessageSid": sid or f"SM{next(_sids):032d}",
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": to_number,
        "Body": body,
        "NumMedia": "0",
    }
    signature = RequestValidator(TOKEN).compute_signature(BASE + SMS_PATH, params)
    response = client.post(SMS_PATH, params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 200, response.content
    interpret_waiting()
    return InboundMessage.objects.get(provider_message_id=params["MessageSid"])


class TwoWay:
    """One organization, one practice in Chicago, one provider working 9-17 every day."""

    def __init__(self, build):
        self.build = build
        self.client = Client(enforce_csrf_checks=True)
        self.org = build.organization(name="Hill Country Health", default_sender_number=ORG_NUMBER)
        self.practice = build.practice(self.org, name="Oak Clinic", phone="+15125550199")
        self.provider = build.provider(
            self.practice, hours=(time(9), time(17)), weekdays=range(7), display_name="Dr. Lee"
        )
        self.visit_type = build.appointment_type(self.org, minutes=20)

    def new_phone(self) -> str:
        return f"+1737555{next(_phones) % 10000:04d}"

    def patient(self, phone: str | None = None, **kw):
        return self.build.patient(
            self.org, home_practice=self.practice, mobile_phone=phone or self.new_phone(), **kw
        )

    def local(self, days_ahead: int, hour: int, minute: int = 0) -> datetime:
        """A wall-clock time at the practice `days_ahead` days from today."""
        day = timezone.now().astimezone(self.practice.zone).date() + timedelta(days=days_ahead)
        return datetime.combine(day, time(hour, minute), tzinfo=self.practice.zone)

    def visit(self, patient, start: datetime | None = None) -> Appointment:
        """A visit as the EHR feed writes it, with its reminders planned."""
        start = start or self.local(2, 10)
        appointment = Appointment.objects.create(
            organization=self.org,
            practice=self.practice,
            provider=self.provider,
            patient=patient,
            appointment_type=self.visit_type,
            start=start,
            end=start + timedelta(minutes=20),
            status=AppointmentStatus.BOOKED,
            status_changed_at=timezone.now(),
            status_source=ChangeSource.FHIR,
            allow_overlap=True,
        )
        sync_reminders([appointment.pk])
        return appointment

    def send_reminders(self, appointment: Appointment) -> list[OutboundMessage]:
        """Run the worker at the moment the visit's day-before reminder is due."""
        due = (
            OutboundMessage.objects.filter(appointment=appointment, step_key="reminder:1440")
            .values_list("due_at", flat=True)
            .get()
        )
        run_worker_at(due + timedelta(minutes=1))
        return list(
            OutboundMessage.objects.filter(
                appointment=appointment,
                kind=MessageKind.REMINDER,
                state__in=(MessageState.SENT, MessageState.DELIVERED),
            )
        )

    def text(self, phone: str, body: str, sid: str | None = None) -> InboundMessage:
        """The patient's reply, as Twilio posts it, signed with Twilio's own validator."""
        return post_sms(self.client, ORG_NUMBER, phone, body, sid)

    def replies_to(self, phone: str) -> list[str]:
        return list(
            OutboundMessage.objects.filter(kind=MessageKind.REPLY, to_address=phone)
            .order_by("id")
            .values_list("body", flat=True)
        )


@pytest.fixture
def twoway(build, settings) -> TwoWay:
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE
    # Tests about after-hours answers set their own hours; the rest must not depend on
    # the time of day they run at.
    settings.CARELINE_OFFICE_HOURS = ALWAYS_OPEN
    return TwoWay(build)
