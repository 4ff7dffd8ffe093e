"""The words of a reminder call, in the patient's language (gettext, like the texts).

Only what a voicemail may carry: first name, practice, date and time, a number to call
back; never the visit's reason. The keypad: 1 confirm, 2 cancel (then 1 to confirm the
cancellation), 3 reschedule, 9 no more automated calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import translation
from django.utils.translation import gettext, gettext_noop

from careline.messaging.rendering import appointment_variables
from careline.patients.models import Language


@dataclass(frozen=True)
class Voice:
    language: str  # Twilio <Say language=…>
    voice: str  # a natural (neural) Amazon Polly voice


VOICES = {
    Language.ENGLISH: Voice("en-US", "Polly.Joanna-Neural"),
    Language.SPANISH: Voice("es-US", "Polly.Lupe-Neural"),
}

WORDS = {
    "greeting": gettext_noop(
        "Hello {first_name}. This is {practice}, calling to remind you of your visit on "
        "{date} at {time}."
    ),
    "menu": gettext_noop(
        "To confirm, press 1. To cancel, press 2. To reschedule, press 3. "
        "To stop automated calls, press 9."
    ),
    "ask_cancel": gettext_noop(
        "You asked to cancel your visit. To confirm the cancellation, press 1. "
        "To keep your visit, press any other key."
    ),
    "confirmed": gettext_noop("Thank you. Your visit is confirmed. Goodbye."),
    "cancelled": gettext_noop(
        "Your visit is cancelled. To book again, call {practice} at {practice_phone}. Goodbye."
    ),
    "kept": gettext_noop("Your visit was not cancelled. Goodbye."),
    "link_texted": gettext_noop(
        "We have sent you a text message with a link to choose a new time. Goodbye."
    ),
    "transfer": gettext_noop("Please hold while we connect you to {practice}."),
    "no_transfer": gettext_noop(
        "Please call {practice} at {practice_phone} to reschedule. Goodbye."
    ),
    "opted_out": gettext_noop(
        "You will not receive any more automated calls or text messages from {practice}. Goodbye."
    ),
    "reschedule_text": gettext_noop(
        "{first_name}: choose a new time for your visit at {practice} here: {link}"
    ),
    "not_understood": gettext_noop("Sorry, we did not get that."),
    "goodbye": gettext_noop(
        "We did not receive an answer. For questions, call {practice} at {practice_phone}. Goodbye."
    ),
    "unavailable": gettext_noop(
        "This reminder is no longer current. For questions, please call your practice. Goodbye."
    ),
    "voicemail": gettext_noop(
        "Hello, this message is for {first_name}, from {practice}: a reminder of your visit "
        "on {date} at {time}. To confirm or change it, please call {practice_phone}. Goodbye."
    ),
}


def voice_for(language: str) -> Voice:
    return VOICES.get(language, VOICES[Language.ENGLISH])


def say(language: str, key: str, values: dict[str, str]) -> str:
    """The sentence `key` in `language` (English where the catalog has none)."""
    with translation.override(language):
        text = gettext(WORDS[key]).format(**values)
    # A value ending in a period ("6:00 p.m.") before the sentence's own.
    return text.replace("..", ".")


def spoken_phone(phone: str) -> str:
    """A number as it is read out: "+15125550199" → "512, 555, 0199" (pauses, no "plus")."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) == 10:
        return f"{digits[:3]}, {digits[3:6]}, {digits[6:]}"
    return " ".join(digits)


def call_values(appointment, language: str) -> dict[str, str]:
    """The values a call's words are filled with, from the visit (practice and patient
    preloaded); the call-back number is the practice's phone, else its texting number."""
    values = appointment_variables(appointment, language)
    practice = appointment.practice
    values["practice_phone"] = spoken_phone(practice.phone or practice.texting_number)
    return values


def call_summary(appointment, language: str) -> str:
    """What the call says before its menu: stored as the outbox row's text."""
    return say(language, "greeting", call_values(appointment, language))
