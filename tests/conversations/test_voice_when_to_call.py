"""Who gets a call instead of a text: a number known to be a landline (from FHIR, or from
Twilio's 21614 / 30006), a patient who prefers calls; and the limits that hold whoever is
called: calling hours even when the worker is late, one automated message a day."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from careline.integrations.api_keys import issue_api_key
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.twilio import TwilioGateway
from careline.messaging.models import Channel, MessageKind, MessageState, OutboundMessage
from careline.patients.models import LineType, Patient, PhoneLine
from tests.conversations.voice import ACCOUNT_SID, BASE, TOKEN, VoicePractice, fake_twilio_for_calls
from tests.messaging.fake_twilio import NOT_MOBILE


@pytest.fixture
def fake(settings):
    yield from fake_twilio_for_calls(settings)


@pytest.fixture
def texting(build, fake) -> VoicePractice:
    """A practice whose rule texts reminders (no booking notices)."""
    return VoicePractice(build, fake, rule_channel="sms")


def placed_to(fake) -> list[str]:
    return [c["to"] for c in fake.calls.values()]


def texted_to(fake) -> list[str]:
    return [m["to"] for m in fake.messages.values()]


def test_a_home_phone_from_fhir_is_called_not_texted(texting, fake, client):
    key = issue_api_key(organization_slug=texting.org.slug, name="ehr").plaintext
    created = client.post(
        "/fhir/R4/Patient",
        {
            "resourceType": "Patient",
            "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "L100"}],
            "name": [{"family": "Ortiz", "given": ["Rosa"]}],
            "telecom": [{"system": "phone", "use": "home", "value": "(512) 555-0170"}],
        },
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status_code == 201, created.content
    patient = Patient.objects.get(pk=created.json()["id"])
    visit = texting.visit(patient)

    call = texting.call_reminder(visit)

    assert call["To"] == "+15125550170"
    assert texted_to(fake) == []
    assert texting.reminder(visit).channel == Channel.VOICE


def test_a_patient_who_prefers_calls_is_called(texting, fake):
    visit = texting.visit(texting.patient(mobile_phone="+15125550171", prefers_calls=True))

    call = texting.call_reminder(visit)

    assert call["To"] == "+15125550171"
    assert texted_to(fake) == []


def test_a_text_refused_as_not_mobile_marks_the_number_and_the_call_goes_the_same_day(
    texting, fake
):
    fake.number_errors["+15125550172"] = NOT_MOBILE
    patient = texting.patient(mobile_phone="+15125550172")
    visit = texting.visit(patient)
    due = texting.reminder(visit).due_at + timedelta(seconds=1)

    texting.run_worker(due)

    text = texting.reminder(visit)
    assert (text.state, text.error_code) == (MessageState.FAILED, "21614")
    line = PhoneLine.objects.get(phone="+15125550172")
    assert (line.line_type, line.source) == (LineType.LANDLINE, "twilio:21614")
    texting.run_worker(due + timedelta(seconds=1))
    assert placed_to(fake) == ["+15125550172"]
    call_row = OutboundMessage.objects.get(appointment=visit, channel=Channel.VOICE)
    assert call_row.state == MessageState.SENT
    assert call_row.sent_at.date() == text.finished_at.date()
    # A later visit's reminder to that number is a call from the start: landline is a fact
    # about the number, whoever's visit it is.
    sibling = texting.patient(mobile_phone="+15125550172", given_name="Luis")
    later = texting.visit(sibling, hours_ahead=80)
    texting.run_worker(texting.reminder(later).due_at + timedelta(seconds=1))
    assert texting.reminder(later).channel == Channel.VOICE


def test_an_undelivered_30006_report_marks_the_number_and_queues_a_call(texting, fake):
    patient = texting.patient(mobile_phone="+15125550173")
    visit = texting.visit(patient)
    texting.run_worker(texting.reminder(visit).due_at + timedelta(seconds=1))
    text = texting.reminder(visit)
    params = {
        "MessageSid": text.provider_message_id,
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
        "AccountSid": ACCOUNT_SID,
    }
    url = BASE + "/webhooks/twilio/status"
    signature = RequestValidator(TOKEN).compute_signature(url, params)

    response = texting.client.post(
        "/webhooks/twilio/status", params, HTTP_X_TWILIO_SIGNATURE=signature
    )

    assert response.status_code == 204
    assert PhoneLine.objects.get(phone="+15125550173").line_type == LineType.LANDLINE
    # The undelivered text does not count against the one automated message a day.
    texting.run_worker(texting.reminder(visit).due_at + timedelta(seconds=2))
    assert placed_to(fake) == ["+15125550173"]


def test_a_call_is_not_started_after_hours_even_when_the_worker_is_late(build, fake, settings):
    settings.CARELINE_CALLING_HOURS_START = 8
    settings.CARELINE_CALLING_HOURS_END = 21
    clinic = VoicePractice(build, fake)
    zone = clinic.practice.zone
    # A patient whose phone is in the practice's zone (no area-code zones of their own).
    patient = clinic.patient(mobile_phone="", phones=[], email="", prefers_calls=True)
    patient.phones = [{"system": "phone", "use": "home", "value": "+15125550174"}]
    Patient.objects.filter(pk=patient.pk).update(phones=patient.phones, time_zones="")
    day = timezone.now().astimezone(zone).date() + timedelta(days=2)
    start = datetime.combine(day, time(10), tzinfo=zone)
    visit = clinic.visit(patient, start=start)
    # Claimed a second before the hours close; the worker reaches the dial after they did.
    claim = datetime.combine(day - timedelta(days=1), time(20, 59, 59), tzinfo=zone)
    times = iter([claim, claim])
    Dispatcher(TwilioGateway(), clock=lambda: next(times, claim + timedelta(seconds=2))).run_once()

    assert fake.calls == {}
    row = clinic.reminder(visit)
    assert row.state == MessageState.SCHEDULED
    assert row.next_attempt_at.astimezone(zone).time() == time(8)


def test_one_automated_message_a_day_a_text_counts_for_the_call(build, fake):
    clinic = VoicePractice(build, fake)
    patient = clinic.patient(mobile_phone="+15125550175")
    visit = clinic.visit(patient)
    due = clinic.reminder(visit).due_at
    OutboundMessage.objects.create(
        organization=clinic.org,
        practice=clinic.practice,
        patient=patient,
        channel=Channel.SMS,
        to_address=patient.mobile_phone,
        kind=MessageKind.BROADCAST,
        state=MessageState.DELIVERED,
        due_at=due - timedelta(hours=2),
        sent_at=due - timedelta(hours=2),
        created_at=due - timedelta(hours=2),
    )

    clinic.run_worker(due + timedelta(seconds=1))

    assert fake.calls == {}
    assert clinic.reminder(visit).reason == "call_limit_day"
