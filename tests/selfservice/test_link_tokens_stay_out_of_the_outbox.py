"""A patient's link is a bearer credential: it reaches the patient's phone, never the
outbox, the FHIR API, the admin or a retry's stored text."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from careline.clinics.scoping import StaffRole
from careline.conversations.inbound import receive_sms
from careline.conversations.models import Conversation
from careline.integrations.api_keys import issue_api_key
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.gateways.twilio import TwilioGateway
from careline.messaging.models import MessageState, OutboundMessage, SimulatedPhoneMessage
from careline.messaging.planning import plan_all_reminders
from careline.selfservice import booking
from careline.selfservice.links import LinkRefused, issue_manage_link, resolve, url_for
from careline.selfservice.models import PatientLink
from tests.integrations.fhir.conftest import Fhir
from tests.messaging.fake_twilio import SERVER_ERROR, running_fake_twilio

TOKEN = re.compile(r"/a/([A-Za-z0-9_-]{16})(?![A-Za-z0-9_-])")
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token"


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def working_tokens(text: str) -> list[str]:
    """The tokens in `text` that open a link."""
    found = []
    for token in TOKEN.findall(text):
        try:
            resolve(token)
        except LinkRefused:
            continue
        found.append(token)
    return found


def assert_redacted(text: str) -> None:
    assert "/a/[redacted]" in text
    assert TOKEN.findall(text) == []


def test_a_reminder_link_reaches_the_phone_and_nowhere_else(clinic, client, settings):
    patient = clinic.patient(mobile_phone="+15125550401")
    visit = clinic.appointment(clinic.at(clinic.monday, 10), patient=patient)
    plan_all_reminders()
    day_before = Clock(visit.start - timedelta(hours=23))
    Dispatcher(SimulatorGateway(), clock=day_before, hours=SendingHours(0, 24)).run_once()

    sent = OutboundMessage.objects.filter(appointment=visit, state=MessageState.DELIVERED)
    assert sent.exists()
    for message in sent:
        assert_redacted(message.body)
    # The phone (the simulator stands in for it) got working links to this visit.
    phone = list(SimulatedPhoneMessage.objects.filter(to=patient.mobile_phone))
    assert len(phone) == sent.count()
    for text in phone:
        (token,) = working_tokens(text.body)
        assert resolve(token).appointment_id == visit.pk

    # Integrators (FHIR) and the admin see the redacted text.
    fhir = Fhir(issue_api_key(organization_slug=clinic.org.slug, name="tests").plaintext)
    bundle = fhir.get("Communication").content.decode()
    assert "/a/[redacted]" in bundle and working_tokens(bundle) == []
    admin = clinic.build.staff(clinic.org, role="org_admin")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    page = client.get(f"/admin/messaging/outboundmessage/{sent.first().pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/a/[redacted]" in html and working_tokens(html) == []


def test_a_booking_confirmation_is_queued_without_the_token(clinic, always_sending):
    patient = clinic.patient(mobile_phone="+15125550402")
    appointment = booking.book_online(
        clinic.practice,
        patient,
        clinic.visit_type,
        clinic.provider.pk,
        clinic.at(clinic.monday, 11),
        client_address="203.0.113.9",
    )
    queued = OutboundMessage.objects.get(to_address=patient.mobile_phone, kind="reply")
    assert_redacted(queued.body)
    # No link in the database can be opened from what was stored before the send.
    assert PatientLink.objects.filter(outbound_message_id=queued.pk).exists()
    Dispatcher(SimulatorGateway(), hours=SendingHours(0, 24)).run_once()
    queued.refresh_from_db()
    assert queued.state == MessageState.DELIVERED
    assert_redacted(queued.body)
    (token,) = working_tokens(SimulatedPhoneMessage.objects.get(outbound_message=queued).body)
    assert resolve(token).appointment_id == appointment.pk


@pytest.fixture
def twilio(settings):
    with running_fake_twilio(ACCOUNT_SID, AUTH_TOKEN) as server:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        settings.TWILIO_API_BASE_URL = server.base_url
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.TWILIO_FROM_NUMBER = "+15125550100"
        settings.TWILIO_TIMEOUT_SECONDS = 2
        settings.CARELINE_BASE_URL = "https://careline.example.org"
        yield server


def _book(clinic, phone: str, hour: int):
    patient = clinic.patient(mobile_phone=phone)
    appointment = booking.book_online(
        clinic.practice,
        patient,
        clinic.visit_type,
        clinic.provider.pk,
        clinic.at(clinic.monday, hour),
        client_address="203.0.113.10",
    )
    return appointment, OutboundMessage.objects.get(to_address=phone, kind="reply")


def test_a_retry_after_a_twilio_error_sends_a_working_link(clinic, twilio):
    appointment, queued = _book(clinic, "+15125550403", 13)
    now = timezone.now()
    twilio.next_errors.append(SERVER_ERROR)
    first = Dispatcher(TwilioGateway(), clock=Clock(now), hours=SendingHours(0, 24))
    first.run_once()
    assert first.stats["retry"] == 1 and twilio.messages == {}
    queued.refresh_from_db()
    assert queued.state == MessageState.SCHEDULED
    assert_redacted(queued.body)

    later = Dispatcher(
        TwilioGateway(), clock=Clock(now + timedelta(minutes=5)), hours=SendingHours(0, 24)
    )
    later.run_once()
    queued.refresh_from_db()
    assert queued.state == MessageState.SENT
    assert_redacted(queued.body)
    (received,) = twilio.messages.values()
    (token,) = working_tokens(received["body"])
    assert resolve(token).appointment_id == appointment.pk


def test_a_send_that_reached_twilio_before_timing_out_is_not_sent_again(clinic, twilio, settings):
    appointment, queued = _book(clinic, "+15125550404", 14)
    now = timezone.now()
    settings.TWILIO_TIMEOUT_SECONDS = 0.2
    twilio.delay = 0.5
    first = Dispatcher(TwilioGateway(), clock=Clock(now), hours=SendingHours(0, 24))
    first.run_once()
    assert first.stats["retry"] == 1
    deadline = time.monotonic() + 3
    while not twilio.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    twilio.delay = 0
    settings.TWILIO_TIMEOUT_SECONDS = 2

    # The retry finds the first send by its stored (redacted) text and sends nothing.
    later = Dispatcher(
        TwilioGateway(), clock=Clock(now + timedelta(minutes=5)), hours=SendingHours(0, 24)
    )
    later.run_once()
    queued.refresh_from_db()
    assert queued.state == MessageState.SENT
    assert len([r for r in twilio.requests if r[0] == "POST"]) == 1
    assert_redacted(queued.body)
    (received,) = twilio.messages.values()
    assert queued.provider_message_id == received["sid"]
    # The link the patient already has keeps working.
    (token,) = working_tokens(received["body"])
    assert resolve(token).appointment_id == appointment.pk


def test_a_link_pasted_into_a_staff_reply_is_redacted_in_the_thread_and_the_api(
    clinic, client, settings, always_sending
):
    settings.CARELINE_OFFICE_HOURS = "Mon-Sun 00:00-24:00"
    clinic.org.default_sender_number = "+15125550100"
    clinic.org.save()
    patient = clinic.patient(mobile_phone="+15125550405")
    visit = clinic.appointment(clinic.at(clinic.monday, 15), patient=patient)
    patients_link = issue_manage_link(visit.pk)
    receive_sms(
        from_phone=patient.mobile_phone,
        to_phone="+15125550100",
        body="Is there parking near the office?",
        provider_message_id="SMLINK" + "0" * 28,
        received_at=timezone.now(),
    )
    conversation = Conversation.objects.get(organization=clinic.org)
    desk = clinic.build.staff(clinic.org, StaffRole.FRONT_DESK, [clinic.practice])
    client.force_login(desk)
    answer = f"Yes: open {url_for(patients_link)} and pick Move."
    assert client.post(f"/inbox/{conversation.pk}/reply/", {"body": answer}).status_code < 400

    queued = OutboundMessage.objects.get(to_address=patient.mobile_phone, kind="reply")
    assert_redacted(queued.body)
    html = client.get(f"/inbox/{conversation.pk}/").content.decode()
    assert "Yes: open" in html and "/a/[redacted] and pick Move" in html
    key = issue_api_key(organization_slug=clinic.org.slug, name="tests").plaintext
    api = client.get(
        f"/api/v1/conversations/{conversation.pk}", headers={"Authorization": f"Bearer {key}"}
    ).content.decode()
    assert "/a/[redacted] and pick Move" in api

    Dispatcher(SimulatorGateway(), hours=SendingHours(0, 24)).run_once()
    (token,) = working_tokens(SimulatedPhoneMessage.objects.get(outbound_message=queued).body)
    assert resolve(token).appointment_id == visit.pk
    # The link the patient already had keeps working too.
    assert resolve(patients_link).appointment_id == visit.pk
