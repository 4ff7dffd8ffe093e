"""A practice whose reminders are calls placed through the real `twilio` client against the
local fake Twilio, answered by posting signed webhooks as Twilio would."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, time, timedelta

from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.twilio import TwilioGateway
from careline.messaging.models import MessageKind, OutboundMessage, ReminderRule
from careline.messaging.planning import sync_reminders
from careline.messaging.rules import save_rule
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from tests.messaging.fake_twilio import running_fake_twilio

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TOKEN = "voice-test-auth-token"
BASE = "https://careline.example.org"
ORG_NUMBER = "+15125550100"
PRACTICE_PHONE = "+15125550199"
_sids = itertools.count(1)


def zone_at_midday() -> str:
    """A fixed-offset zone where it is about noon now: calling hours and "later the same
    day" hold whenever the test runs."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12
    # POSIX-style names: Etc/GMT-3 is three hours east of UTC.
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


class _Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class VoicePractice:
    def __init__(self, build, fake, *, rule_channel: str = "voice"):
        self.build = build
        self.fake = fake
        self.client = Client(enforce_csrf_checks=True)
        self.org = build.organization(name="Hill Country Health", default_sender_number=ORG_NUMBER)
        self.practice = build.practice(
            self.org, name="Oak Clinic", phone=PRACTICE_PHONE, time_zone=zone_at_midday()
        )
        self.provider = build.provider(self.practice, hours=None, display_name="Dr. Lee")
        self.visit_type = build.appointment_type(self.org)
        if rule_channel:
            save_rule(
                # No booking notices: a text within the day would use up the one
                # automated call a day the limits allow.
                ReminderRule(
                    organization=self.org,
                    offsets_minutes=[1440],
                    channel=rule_channel,
                    send_event_messages=False,
                )
            )

    def patient(self, **kw):
        kw.setdefault("given_name", "Ana")
        return self.build.patient(self.org, home_practice=self.practice, **kw)

    def visit(
        self, patient, *, hours_ahead: int = 30, start: datetime | None = None
    ) -> Appointment:
        """A visit as the EHR feed writes it, with its reminders planned."""
        if start is None:
            start = (timezone.now() + timedelta(hours=hours_ahead)).replace(second=0, microsecond=0)
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

    def reminder(self, visit: Appointment) -> OutboundMessage:
        return OutboundMessage.objects.get(
            appointment=visit, kind=MessageKind.REMINDER, step_key="reminder:1440"
        )

    def run_worker(self, at: datetime | None = None) -> None:
        Dispatcher(
            TwilioGateway(), clock=_Clock(at or timezone.now()), hours=SendingHours(0, 24)
        ).run_once()

    def call_reminder(self, visit: Appointment) -> dict[str, str | list[str]]:
        """Run the worker when the visit's reminder is due; the one call it placed, as the
        fake Twilio received it."""
        before = set(self.fake.calls)
        self.run_worker(max(self.reminder(visit).due_at, timezone.now()) + timedelta(seconds=1))
        placed = [c for sid, c in self.fake.calls.items() if sid not in before]
        assert len(placed) == 1, placed
        return {**placed[0]["_params"], "Sid": placed[0]["sid"]}

    # -- Twilio's side of the call ------------------------------------------------------

    def post(self, url: str, params: dict[str, str], *, signed: bool = True):
        assert url.startswith(BASE), url
        path = url.removeprefix(BASE)
        signature = RequestValidator(TOKEN).compute_signature(url, params) if signed else "x"
        return self.client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)

    def _call_params(self, call: dict, **extra: str) -> dict[str, str]:
        return {
            "CallSid": call["Sid"],
            "AccountSid": ACCOUNT_SID,
            "From": call["From"],
            "To": call["To"],
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            **extra,
        }

    def answer(self, call: dict, answered_by: str = "human") -> ET.Element:
        response = self.post(
            call["Url"],
            self._call_params(call, CallStatus="in-progress", AnsweredBy=answered_by),
        )
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/xml")
        return ET.fromstring(response.content)

    def press(self, call: dict, twiml: ET.Element, digits: str = "") -> ET.Element:
        """Press `digits` at the gather in `twiml` (empty: silence, Twilio follows the
        redirect after the gather instead)."""
        if digits:
            url = twiml.find("Gather").get("action")
            params = self._call_params(call, CallStatus="in-progress", Digits=digits)
        else:
            url = twiml.find("Redirect").text
            params = self._call_params(call, CallStatus="in-progress")
        response = self.post(url, params)
        assert response.status_code == 200, response.content
        return ET.fromstring(response.content)

    def status(self, call: dict, status: str, duration: int | None = None) -> None:
        params = self._call_params(call, CallStatus=status)
        if duration is not None:
            params["CallDuration"] = str(duration)
        response = self.post(call["StatusCallback"], params)
        assert response.status_code == 204, response.content


def spoken(twiml: ET.Element) -> str:
    return " ".join(say.text or "" for say in twiml.iter("Say"))


def local_noon_today(zone) -> datetime:
    return datetime.combine(timezone.now().astimezone(zone).date(), time(12), tzinfo=zone)


def fake_twilio_for_calls(settings):
    """A running fake Twilio with Careline pointed at it, calls unthrottled and allowed at
    any hour (the hours themselves are the property tests': test_calling_hours.py)."""
    with running_fake_twilio(ACCOUNT_SID, TOKEN) as server:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = TOKEN
        settings.TWILIO_API_BASE_URL = server.base_url
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.TWILIO_FROM_NUMBER = ""
        settings.TWILIO_TIMEOUT_SECONDS = 2
        settings.CARELINE_BASE_URL = BASE
        settings.CARELINE_CALLS_PER_SECOND = 0
        settings.CARELINE_CALLING_HOURS_START = 0
        settings.CARELINE_CALLING_HOURS_END = 24
        yield server
