"""What Careline texts back when it acts on a reply, in the patient's language.

Short and PHI-minimal like the reminders: the practice, first names, local dates and
times, the provider's display name; never a visit reason.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.urls import Resolver404, resolve
from django.utils import translation
from django.utils.translation import gettext, gettext_noop, pgettext

from careline.clinics.models import Practice
from careline.clinics.validators import display_phone
from careline.messaging.rendering import local_date, local_time
from careline.scheduling.models import Appointment

# Keys name the situation; each text is its English wording, which is also its msgid in
# the gettext catalog (careline/locale), where the translations live.
TEXTS = {
    # Answers to the consent keywords (STOP, START, HELP and their Spanish words), which
    # carriers require to name the sender and how to opt out or back in.
    "opt_out": gettext_noop(
        "{name}: You are unsubscribed and will receive no more texts from this number. "
        "Reply START to resubscribe."
    ),
    "opt_in": gettext_noop(
        "{name}: You are subscribed again to appointment texts. Msg & data rates may apply. "
        "Reply HELP for help, STOP to opt out."
    ),
    "help": gettext_noop(
        "{name}: appointment texts. {contact} Msg & data rates may apply. Reply STOP to opt out."
    ),
    "help_call": gettext_noop("For help call {phone}."),
    "help_no_phone": gettext_noop("For help, call your clinic."),
    "confirmed": gettext_noop("{practice}: Thank you, your visit on {when} is confirmed."),
    "confirmed_many": gettext_noop("{practice}: Thank you, these visits are confirmed: {visits}."),
    "cancelled": gettext_noop("{practice}: Your visit on {when} is cancelled. {rebook}"),
    "cancelled_many": gettext_noop("{practice}: These visits are cancelled: {visits}. {rebook}"),
    "rebook_call": gettext_noop("To book again call {phone}."),
    "rebook_call_or_visit": gettext_noop("To book again call {phone} or visit {link}"),
    "rebook_visit": gettext_noop("To book again visit {link}"),
    "rebook_none": gettext_noop("To book again, call your clinic."),
    "times": gettext_noop(
        "{practice}: Open times with {provider}: {options}. Reply {numbers} to move your visit, "
        "or MORE for later times."
    ),
    "more_times": gettext_noop(
        "{practice}: Later open times with {provider}: {options}. Reply {numbers} to move your "
        "visit, or MORE for later times."
    ),
    "taken": gettext_noop(
        "{practice}: Sorry, that time was just taken. Open times now: {options}. Reply "
        "{numbers}, or MORE for later times."
    ),
    "no_times": gettext_noop(
        "{practice}: We have no open time with {provider} to offer by text. Someone from our "
        "office will contact you."
    ),
    "no_more_times": gettext_noop(
        "{practice}: There are no later open times with {provider} to offer by text. Someone "
        "from our office will contact you."
    ),
    "moved": gettext_noop("{practice}: Done. Your visit is now on {when} with {provider}."),
    "kept": gettext_noop("{practice}: OK, your visit stays on {when}."),
    "nothing_changed": gettext_noop("{practice}: OK, nothing was changed."),
    "which": gettext_noop("{practice}: Which visit? {options} - reply {numbers}."),
    "which_option": gettext_noop("{number}) {when} {provider}"),
    "which_option_named": gettext_noop("{number}) {first_name} {when} {provider}"),
    # "Can't make it": a choice, never a cancellation by itself.
    "cancel_or_move": gettext_noop(
        "{practice}: Sorry you can't make it on {when}. Reply R for other times, or X to "
        "cancel the visit."
    ),
    "cancel_or_move_asked": gettext_noop(
        "{practice}: Your visit on {when} is still booked. Reply X to cancel it, or R for "
        "other times. Someone from our office will also answer your message."
    ),
    # The one confirmation a bare CANCEL gets (it opts out): the visits it did not cancel.
    "opt_out_visit_kept": gettext_noop(
        "{name}: You are unsubscribed and will receive no more texts from this number. Your "
        "visit on {when} is still booked. {how} Reply START to resubscribe."
    ),
    "opt_out_visits_kept": gettext_noop(
        "{name}: You are unsubscribed and will receive no more texts from this number. Your "
        "visits are still booked: {visits}. {how} Reply START to resubscribe."
    ),
    "to_cancel_call": gettext_noop("To cancel a visit call {phone}."),
    "to_cancel_none": gettext_noop("To cancel a visit, call your clinic."),
    "after_hours": gettext_noop(
        "{practice}: Thanks for your message. Our office is closed; we will answer {opening}. If "
        "this is an emergency, call 911."
    ),
    "after_hours_unknown": gettext_noop(
        "{practice}: Thanks for your message. Our office is closed; we will answer when it "
        "opens. If this is an emergency, call 911."
    ),
    "opening": gettext_noop("on {date} after {time}"),
    "urgent": gettext_noop(
        "{practice}: If this is an emergency, call 911 now. If you are thinking about suicide "
        "or harming yourself, call or text 988. Your message was passed to our staff."
    ),
}


def text(language: str, key: str, **values: str) -> str:
    """The text `key` in the patient's language (English where the catalog has none)."""
    with translation.override(language):
        return gettext(TEXTS[key]).format(**values)


def when(moment: datetime, practice: Practice, language: str) -> str:
    """The practice's local date and time: "Tue, Mar 3 at 9:00 AM" or in Spanish
    "martes 3 de marzo a las 9:00 a.m."."""
    zone = practice.zone
    date, time = local_date(moment, zone, language), local_time(moment, zone, language)
    with translation.override(language):
        return pgettext("a visit's date and time", "{date} at {time}").format(date=date, time=time)


def short_when(moment: datetime, practice: Practice, language: str) -> str:
    """Date and time without "at", for lists of options where every character counts."""
    zone = practice.zone
    return f"{local_date(moment, zone, language)} {local_time(moment, zone, language)}"


def number_list(count: int, language: str) -> str:
    """The option numbers to reply with: 1, 2 or 3 (1, 2 o 3)."""
    numbers = [str(n) for n in range(1, count + 1)]
    if count == 1:
        return "1"
    with translation.override(language):
        last = pgettext("the last of the numbers to reply with", "or {number}")
    return f"{', '.join(numbers[:-1])} {last.format(number=numbers[-1])}"


def visit_list(visits: list[Appointment], language: str) -> str:
    return ", ".join(
        f"{v.patient.given_name} {short_when(v.start, v.practice, language)}" for v in visits
    )


def rebook(practice: Practice, language: str) -> str:
    """How to book again: the front desk's number and, where online booking is served,
    its page."""
    phone = display_phone(practice.phone) if practice.phone else ""
    link = booking_page(practice)
    if phone and link:
        return text(language, "rebook_call_or_visit", phone=phone, link=link)
    if phone:
        return text(language, "rebook_call", phone=phone)
    if link:
        return text(language, "rebook_visit", link=link)
    return text(language, "rebook_none")


def how_to_cancel(practice: Practice, language: str) -> str:
    """How to cancel a visit now that texts are off: the front desk's number."""
    if practice.phone:
        return text(language, "to_cancel_call", phone=display_phone(practice.phone))
    return text(language, "to_cancel_none")


def booking_page(practice: Practice) -> str:
    """The practice's online booking page, or "" when this installation does not serve it."""
    path = f"/book/{practice.code}/"
    try:
        resolve(path)
    except Resolver404:
        return ""
    return f"{settings.CARELINE_BASE_URL}{path}"
