"""What a reminder call says and what each key does (Twilio TwiML).

A key press is the patient's answer like a reply text, and goes the same way: the visit
changes through careline.scheduling.appointments.change_status (its event, version,
write-back and re-planning), with source "patient_call"; "9" opts the number out in the
consent ledger, like STOP (one ledger per number: no more automated calls or texts).

1 confirm; 2 cancel, then 1 to confirm the cancellation; 3 reschedule: a text with a
self-service link when the number takes texts, else the call is put through to the
practice; 9 stop. Any other key or silence plays the menu once more, then says goodbye.
A voicemail (AnsweredBy machine_end_*) gets a short message and no menu.
"""

from __future__ import annotations

import logging

from django.utils import timezone
from twilio.twiml.voice_response import VoiceResponse

from careline.messaging import calls, visit_links
from careline.messaging.call_script import call_values, say, voice_for
from careline.messaging.models import CallOutcome, VoiceCall
from careline.messaging.outbox import queue_reply
from careline.patients.consent import record_consent
from careline.patients.models import ConsentSource, PhoneConsent
from careline.patients.phone_lines import is_landline
from careline.scheduling.appointments import InvalidTransition, change_status
from careline.scheduling.models import (
    UPCOMING_STATUSES,
    Appointment,
    AppointmentStatus,
    ChangeSource,
)

log = logging.getLogger(__name__)

# AnsweredBy values (machine_detection=DetectMessageEnd) that mean a voicemail took the
# call and its greeting has ended: the message is left after the beep or silence.
VOICEMAIL = ("machine_end_beep", "machine_end_silence", "machine_end_other")
# How many times the menu is played before a polite goodbye.
MENU_PLAYS = 2
GATHER_SECONDS = 6


def _visit(call: VoiceCall) -> Appointment | None:
    visit = call.outbound_message.appointment
    if visit is None or visit.status not in UPCOMING_STATUSES or visit.start <= timezone.now():
        return None
    return visit


class _Reply:
    """One TwiML answer in the visit's language."""

    def __init__(self, call: VoiceCall, visit: Appointment | None) -> None:
        self.call = call
        self.visit = visit
        language = visit.patient.preferred_language if visit else "en"
        self.language = language
        self.voice = voice_for(language)
        self.values = call_values(visit, language) if visit else {}
        self.twiml = VoiceResponse()

    def words(self, *keys: str) -> str:
        return " ".join(say(self.language, key, self.values) for key in keys)

    def say(self, *keys: str, into=None) -> None:
        (into or self.twiml).say(
            self.words(*keys), voice=self.voice.voice, language=self.voice.language
        )

    def ask(self, *keys: str) -> None:
        """Say `keys` while listening for one key; silence posts to the same place."""
        action = calls.url(self.call, "gather")
        gather = self.twiml.gather(
            input="dtmf", num_digits=1, action=action, method="POST", timeout=GATHER_SECONDS
        )
        self.say(*keys, into=gather)
        self.twiml.redirect(action, method="POST")

    def end(self, *keys: str) -> str:
        self.say(*keys)
        self.twiml.hangup()
        return str(self.twiml)


def answer_call(call: VoiceCall, params: dict[str, str]) -> str:
    """The TwiML Twilio fetches when the call is answered."""
    answered_by = params.get("AnsweredBy", "")
    calls.note_progress(call, call_sid=params.get("CallSid", ""), answered_by=answered_by)
    visit = _visit(call)
    reply = _Reply(call, visit)
    if visit is None:
        return reply.end("unavailable")
    if answered_by in VOICEMAIL:
        calls.note_progress(call, outcome=CallOutcome.VOICEMAIL)
        return reply.end("voicemail")
    if answered_by == "fax":
        reply.twiml.hangup()
        return str(reply.twiml)
    calls.note_progress(call, prompts=1, awaiting="")
    reply.ask("greeting", "menu")
    return str(reply.twiml)


def answer_key(call: VoiceCall, digits: str) -> str:
    """The TwiML after a key press (or silence: `digits` empty)."""
    key = digits[:1]
    calls.note_progress(call, digits=key)
    visit = _visit(call)
    reply = _Reply(call, visit)
    if visit is None:
        return reply.end("unavailable")
    if call.awaiting == "cancel":
        calls.note_progress(call, awaiting="")
        if key == "1":
            return _change(call, visit, reply, AppointmentStatus.CANCELLED, "cancelled")
        calls.note_progress(call, outcome=CallOutcome.KEPT)
        return reply.end("kept")
    if key == "1":
        return _change(call, visit, reply, AppointmentStatus.CONFIRMED, "confirmed")
    if key == "2":
        calls.note_progress(call, awaiting="cancel")
        reply.ask("ask_cancel")
        return str(reply.twiml)
    if key == "3":
        return _reschedule(call, visit, reply)
    if key == "9":
        return _stop(call, visit, reply)
    if call.prompts < MENU_PLAYS:
        calls.note_progress(call, prompts=call.prompts + 1)
        reply.ask("not_understood", "greeting", "menu")
        return str(reply.twiml)
    calls.note_progress(call, outcome=CallOutcome.NO_ANSWER_GIVEN)
    return reply.end("goodbye")


def _change(call: VoiceCall, visit: Appointment, reply: _Reply, status: str, words: str) -> str:
    try:
        change_status(
            visit,
            status,
            source=ChangeSource.PATIENT_CALL,
            note=f"Patient call (outbound message {call.outbound_message_id})",
        )
    except InvalidTransition:
        log.info("Call %s: appointment %s cannot become %s", call.pk, visit.pk, status)
        return reply.end("unavailable")
    confirmed = status == AppointmentStatus.CONFIRMED
    outcome = CallOutcome.CONFIRMED if confirmed else CallOutcome.CANCELLED
    calls.note_progress(call, outcome=outcome)
    return reply.end(words)


def _takes_texts(call: VoiceCall, visit: Appointment) -> bool:
    number = call.outbound_message.to_address
    org_id = call.outbound_message.organization_id
    return (
        bool(number)
        and number == visit.patient.mobile_phone
        and visit_links.registered()
        and not is_landline(org_id, number)
        and not PhoneConsent.objects.filter(
            organization_id=org_id, phone=number, opted_out=True
        ).exists()
    )


def _reschedule(call: VoiceCall, visit: Appointment, reply: _Reply) -> str:
    practice = visit.practice
    if _takes_texts(call, visit):
        url, link = visit_links.issuer().new(visit.pk, call.outbound_message_id)
        visit_links.issuer().save([link])
        queue_reply(
            organization_id=visit.organization_id,
            to_phone=call.outbound_message.to_address,
            body=say(reply.language, "reschedule_text", {**reply.values, "link": url}),
            sender=practice.texting_number,
            patient_id=visit.patient_id,
            practice_id=practice.pk,
        )
        calls.note_progress(call, outcome=CallOutcome.LINK_TEXTED)
        return reply.end("link_texted")
    if not practice.phone:
        calls.note_progress(call, outcome=CallOutcome.NO_ANSWER_GIVEN)
        return reply.end("no_transfer")
    calls.note_progress(call, outcome=CallOutcome.TRANSFERRED)
    reply.say("transfer")
    reply.twiml.dial(practice.phone)
    return str(reply.twiml)


def _stop(call: VoiceCall, visit: Appointment, reply: _Reply) -> str:
    message = call.outbound_message
    record_consent(
        organization_id=message.organization_id,
        phone=message.to_address,
        opted_out=True,
        source=ConsentSource.PATIENT_CALL,
        via="voice",
        detail=f"pressed 9 on call {call.pk}",
    )
    calls.note_progress(call, outcome=CallOutcome.OPTED_OUT)
    return reply.end("opted_out")
