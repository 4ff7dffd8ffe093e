"""Reminder calls end to end: placed through the real `twilio` client against the local fake
Twilio, then answered by posting signed TwiML, key-press and status webhooks as Twilio
would, in English and Spanish; the visit, its FHIR view and its audit trail show the answer."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from careline.integrations.api_keys import issue_api_key
from careline.messaging.models import (
    CallOutcome,
    Channel,
    MessageKind,
    MessageState,
    OutboundMessage,
    VoiceCall,
)
from careline.patients.models import ConsentEvent, ConsentSource, PhoneConsent
from careline.scheduling.models import AppointmentEvent, AppointmentStatus, ChangeSource
from tests.conversations.voice import (
    BASE,
    ORG_NUMBER,
    PRACTICE_PHONE,
    VoicePractice,
    fake_twilio_for_calls,
    spoken,
)


@pytest.fixture
def fake(settings):
    yield from fake_twilio_for_calls(settings)


@pytest.fixture
def clinic(build, fake) -> VoicePractice:
    return VoicePractice(build, fake)


def fhir_get(client, org, path: str) -> dict:
    key = issue_api_key(organization_slug=org.slug, name="voice tests").plaintext
    response = client.get(
        f"/fhir/R4/{path}",
        headers={"Authorization": f"Bearer {key}", "Accept": "application/fhir+json"},
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_the_call_is_placed_with_twilio_parameters_and_urls_without_phi(clinic, fake):
    patient = clinic.patient(mobile_phone="+15125550142")
    visit = clinic.visit(patient)

    call = clinic.call_reminder(visit)

    token_url = call["Url"]
    assert call["To"] == "+15125550142"
    assert call["From"] == ORG_NUMBER
    assert re.fullmatch(rf"{BASE}/webhooks/twilio/voice/[A-Za-z0-9_-]{{32,}}", token_url)
    assert call["Method"] == "POST"
    assert call["StatusCallback"] == token_url + "/status"
    assert call["StatusCallbackMethod"] == "POST"
    assert call["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert call["MachineDetection"] == "DetectMessageEnd"
    token = token_url.removeprefix(BASE + "/webhooks/twilio/voice/")
    assert token == VoiceCall.objects.get().token
    assert "5125550142" not in token and "Ana" not in token
    message = clinic.reminder(visit)
    assert message.channel == Channel.VOICE
    assert message.state == MessageState.SENT, message.reason
    assert message.provider_message_id == call["Sid"]


def test_press_1_confirms_in_english(clinic):
    patient = clinic.patient(mobile_phone="+15125550143")
    visit = clinic.visit(patient)
    call = clinic.call_reminder(visit)

    twiml = clinic.answer(call)
    gather = twiml.find("Gather")
    assert gather.get("input") == "dtmf"
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == call["Url"] + "/gather"
    say = gather.find("Say")
    assert say.get("language") == "en-US"
    assert say.get("voice") == "Polly.Joanna-Neural"
    assert "Ana" in say.text and "Oak Clinic" in say.text and "press 1" in say.text

    done = clinic.press(call, twiml, "1")
    assert "confirmed" in spoken(done)
    assert done.find("Hangup") is not None
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CONFIRMED
    event = AppointmentEvent.objects.filter(appointment=visit).latest("id")
    assert (event.to_status, event.source) == (
        AppointmentStatus.CONFIRMED,
        ChangeSource.PATIENT_CALL,
    )
    resource = fhir_get(clinic.client, clinic.org, f"Appointment/{visit.pk}")
    patient_part = next(p for p in resource["participant"] if "Patient/" in p["actor"]["reference"])
    assert patient_part["status"] == "accepted"
    communication = fhir_get(
        clinic.client, clinic.org, f"Communication/out-{clinic.reminder(visit).pk}"
    )
    assert communication["medium"][0]["coding"][0]["code"] == "PHONE"
    assert VoiceCall.objects.get().outcome == CallOutcome.CONFIRMED


def test_press_2_then_1_cancels_in_spanish(clinic):
    patient = clinic.patient(mobile_phone="+15125550144", preferred_language="es")
    visit = clinic.visit(patient)
    call = clinic.call_reminder(visit)

    twiml = clinic.answer(call)
    say = twiml.find("Gather/Say")
    assert (say.get("language"), say.get("voice")) == ("es-US", "Polly.Lupe-Neural")
    assert "Para confirmar, oprima 1" in say.text

    asked = clinic.press(call, twiml, "2")
    assert "oprima 1" in spoken(asked)
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED  # not before the second key

    done = clinic.press(call, asked, "1")
    assert "cancelada" in spoken(done)
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED
    event = AppointmentEvent.objects.filter(appointment=visit).latest("id")
    assert event.source == ChangeSource.PATIENT_CALL
    resource = fhir_get(clinic.client, clinic.org, f"Appointment/{visit.pk}")
    assert resource["status"] == "cancelled"
    assert resource["cancelationReason"]["coding"][0]["code"] == "pat"


def test_press_2_then_another_key_keeps_the_visit(clinic):
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550145"))
    call = clinic.call_reminder(visit)

    asked = clinic.press(call, clinic.answer(call), "2")
    done = clinic.press(call, asked, "5")

    assert "not cancelled" in spoken(done)
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    assert not AppointmentEvent.objects.filter(
        appointment=visit, source=ChangeSource.PATIENT_CALL
    ).exists()


def test_press_3_on_a_mobile_texts_a_self_service_link(clinic):
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550146"))
    call = clinic.call_reminder(visit)

    done = clinic.press(call, clinic.answer(call), "3")

    assert "text message" in spoken(done)
    text = OutboundMessage.objects.get(kind=MessageKind.REPLY, to_address="+15125550146")
    assert text.channel == Channel.SMS
    # Stored with the link's token redacted; the worker sends a fresh link.
    assert "/a/[redacted]" in text.body
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED


def test_press_3_on_a_landline_puts_the_patient_through_to_the_practice(build, fake):
    clinic = VoicePractice(build, fake)
    # A home phone only, as an HL7 feed sends it (PID-13 PRN/PH): no mobile to text.
    patient = clinic.patient(
        mobile_phone="", phones=[{"system": "phone", "use": "home", "value": "+15125550147"}]
    )
    visit = clinic.visit(patient)
    call = clinic.call_reminder(visit)
    assert call["To"] == "+15125550147"

    done = clinic.press(call, clinic.answer(call), "3")

    assert done.find("Dial").text == PRACTICE_PHONE
    assert not OutboundMessage.objects.filter(kind=MessageKind.REPLY).exists()


def test_press_9_stops_automated_calls_and_texts_to_that_number(clinic):
    patient = clinic.patient(mobile_phone="+15125550148")
    visit = clinic.visit(patient)
    call = clinic.call_reminder(visit)

    done = clinic.press(call, clinic.answer(call), "9")

    assert "automated calls" in spoken(done)
    consent = PhoneConsent.objects.get(phone="+15125550148")
    assert consent.opted_out and consent.source == ConsentSource.PATIENT_CALL
    event = ConsentEvent.objects.get(phone="+15125550148")
    assert (event.kind, event.via) == (ConsentEvent.Kind.OPT_OUT, "voice")
    assert abs(event.occurred_at - timezone.now()) < timedelta(minutes=1)
    # The next reminder, to the same number, is not placed.
    later = clinic.visit(patient, hours_ahead=54)
    clinic.run_worker(clinic.reminder(later).due_at + timedelta(seconds=1))
    assert clinic.reminder(later).state == MessageState.SUPPRESSED
    assert clinic.reminder(later).reason == "opted_out"


def test_silence_repeats_the_menu_once_then_says_goodbye(clinic):
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550149"))
    call = clinic.call_reminder(visit)

    first = clinic.answer(call)
    again = clinic.press(call, first, "")
    assert "did not get that" in spoken(again)
    assert again.find("Gather") is not None
    done = clinic.press(call, again, "")

    assert done.find("Gather") is None
    assert "Goodbye" in spoken(done)
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    assert VoiceCall.objects.get().outcome == CallOutcome.NO_ANSWER_GIVEN


def test_an_unknown_key_repeats_the_menu_once(clinic):
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550150"))
    call = clinic.call_reminder(visit)

    again = clinic.press(call, clinic.answer(call), "7")
    assert again.find("Gather") is not None
    done = clinic.press(call, again, "1")

    assert "confirmed" in spoken(done)


@pytest.mark.parametrize("language", ["en", "es"])
def test_a_voicemail_gets_the_minimum_and_no_menu(clinic, language):
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550151", preferred_language=language))
    call = clinic.call_reminder(visit)

    twiml = clinic.answer(call, answered_by="machine_end_beep")

    assert twiml.find("Gather") is None
    words = spoken(twiml)
    assert "Ana" in words and "Oak Clinic" in words
    assert "512, 555, 0199" in words  # the practice's number to call back
    assert "Example" not in words  # no family name
    assert twiml.find("Say").get("voice") == (
        "Polly.Joanna-Neural" if language == "en" else "Polly.Lupe-Neural"
    )
    assert VoiceCall.objects.get().outcome == CallOutcome.VOICEMAIL


def test_status_callbacks_record_the_outcome_and_duration(clinic):
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550152"))
    call = clinic.call_reminder(visit)

    for status in ("initiated", "ringing", "in-progress"):
        clinic.status(call, status)
    clinic.status(call, "completed", duration=47)

    record = VoiceCall.objects.get()
    assert (record.status, record.duration_seconds, record.call_sid) == (
        "completed",
        47,
        call["Sid"],
    )
    assert clinic.reminder(visit).state == MessageState.DELIVERED


def test_busy_is_tried_once_more_later_the_same_day(clinic, fake, settings):
    settings.CARELINE_CALL_RETRY_MINUTES = 30
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550153"))
    call = clinic.call_reminder(visit)

    clinic.status(call, "busy", duration=0)

    first = clinic.reminder(visit)
    assert first.state == MessageState.UNDELIVERED
    retry = OutboundMessage.objects.get(appointment=visit, step_key="reminder:1440:retry")
    assert retry.channel == Channel.VOICE
    assert timedelta(minutes=29) < retry.due_at - timezone.now() <= timedelta(minutes=30)
    assert (
        retry.due_at.astimezone(clinic.practice.zone).date()
        == timezone.now().astimezone(clinic.practice.zone).date()
    )

    before = set(fake.calls)
    clinic.run_worker(retry.due_at + timedelta(seconds=1))
    second_sid = next(sid for sid in fake.calls if sid not in before)
    second = {**fake.calls[second_sid]["_params"], "Sid": second_sid}
    clinic.status(second, "no-answer")

    # One retry only.
    assert OutboundMessage.objects.filter(appointment=visit, channel=Channel.VOICE).count() == 2


def test_a_busy_line_that_would_be_retried_after_hours_is_not(clinic, settings):
    settings.CARELINE_CALL_RETRY_MINUTES = 24 * 60
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550154"))
    call = clinic.call_reminder(visit)

    clinic.status(call, "no-answer")

    assert not OutboundMessage.objects.filter(step_key__endswith=":retry").exists()


def test_webhooks_refuse_bad_signatures_and_unknown_tokens(clinic):
    visit = clinic.visit(clinic.patient(mobile_phone="+15125550155"))
    call = clinic.call_reminder(visit)
    params = {"CallSid": call["Sid"], "AnsweredBy": "human"}

    assert clinic.post(call["Url"], params, signed=False).status_code == 403
    assert clinic.post(call["Url"] + "/gather", {"Digits": "1"}, signed=False).status_code == 403
    assert clinic.post(call["StatusCallback"], params, signed=False).status_code == 403
    unknown = f"{BASE}/webhooks/twilio/voice/{'x' * 32}"
    assert clinic.post(unknown, params).status_code == 404
    bad = clinic.post(call["StatusCallback"], {"CallStatus": "completed", "CallDuration": "²"})
    assert bad.status_code == 400 and b"CallDuration" in bad.content
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED


def test_the_patient_page_shows_each_calls_outcome(clinic, build):
    from django.test import Client

    patient = clinic.patient(mobile_phone="+15125550156")
    visit = clinic.visit(patient)
    call = clinic.call_reminder(visit)
    clinic.press(call, clinic.answer(call), "1")
    clinic.status(call, "completed", duration=38)
    staff = Client()
    staff.force_login(build.staff(clinic.org, practices=[clinic.practice]))

    page = staff.get(f"/patients/{patient.pk}/")

    assert page.status_code == 200
    html = page.content.decode()
    section = html[html.index('id="reminder-calls"') :]
    section = section[: section.index("</section>")]
    assert "completed" in section and "38 s" in section and "Confirmed by phone" in section
