"""What Careline texts back when it acts on a reply, in English and Spanish.

Short and PHI-minimal like the reminders: the practice, first names, local dates and
times, the provider's display name; never a visit reason.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.urls import Resolver404, resolve

from careline.clinics.models import Practice
from careline.clinics.validators import display_phone
from careline.messaging.rendering import local_date, local_time
from careline.patients.models import Language
from careline.scheduling.models import Appointment

TEXTS = {
    Language.ENGLISH: {
        "confirmed": "{practice}: Thank you, your visit on {when} is confirmed.",
        "confirmed_many": "{practice}: Thank you, these visits are confirmed: {visits}.",
        "cancelled": "{practice}: Your visit on {when} is cancelled. {rebook}",
        "cancelled_many": "{practice}: These visits are cancelled: {visits}. {rebook}",
        "rebook_call": "To book again call {phone}.",
        "rebook_call_or_visit": "To book again call {phone} or visit {link}",
        "rebook_visit": "To book again visit {link}",
        "rebook_none": "To book again, call your clinic.",
        "times": "{practice}: Open times with {provider}: {options}. Reply {numbers} to move "
        "your visit, or MORE for later times.",
        "more_times": "{practice}: Later open times with {provider}: {options}. Reply {numbers} "
        "to move your visit, or MORE for later times.",
        "taken": "{practice}: Sorry, that time was just taken. Open times now: {options}. "
        "Reply {numbers}, or MORE for later times.",
        "no_times": "{practice}: We have no open time with {provider} to offer by text. "
        "Someone from our office will contact you.",
        "no_more_times": "{practice}: There are no later open times with {provider} to offer by "
        "text. Someone from our office will contact you.",
        "moved": "{practice}: Done. Your visit is now on {when} with {provider}.",
        "kept": "{practice}: OK, your visit stays on {when}.",
        "nothing_changed": "{practice}: OK, nothing was changed.",
        "which": "{practice}: Which visit do you mean? {options}.",
        "which_option": "Reply {number} for {first_name} {when}",
        "after_hours": "{practice}: Thanks for your message. Our office is closed; we will answer "
        "{opening}. If this is an emergency, call 911.",
        "after_hours_unknown": "{practice}: Thanks for your message. Our office is closed; we "
        "will answer when it opens. If this is an emergency, call 911.",
        "opening": "on {date} after {time}",
        "urgent": "{practice}: If this is an emergency, call 911 now. Your message was passed to "
        "our staff.",
        "and": "and",
        "or": "or",
    },
    Language.SPANISH: {
        "confirmed": "{practice}: Gracias, su cita del {when} está confirmada.",
        "confirmed_many": "{practice}: Gracias, estas citas están confirmadas: {visits}.",
        "cancelled": "{practice}: Su cita del {when} fue cancelada. {rebook}",
        "cancelled_many": "{practice}: Estas citas fueron canceladas: {visits}. {rebook}",
        "rebook_call": "Para una nueva cita llame al {phone}.",
        "rebook_call_or_visit": "Para una nueva cita llame al {phone} o visite {link}",
        "rebook_visit": "Para una nueva cita visite {link}",
        "rebook_none": "Para una nueva cita, llame a su clínica.",
        "times": "{practice}: Horarios libres con {provider}: {options}. Responda {numbers} para "
        "cambiar su cita, o MAS para horarios más tarde.",
        "more_times": "{practice}: Horarios más tarde con {provider}: {options}. Responda "
        "{numbers} para cambiar su cita, o MAS para horarios más tarde.",
        "taken": "{practice}: Lo sentimos, ese horario se acaba de ocupar. Horarios libres ahora: "
        "{options}. Responda {numbers}, o MAS para horarios más tarde.",
        "no_times": "{practice}: No tenemos horarios libres con {provider} para ofrecer por "
        "mensaje. Alguien de la oficina se comunicará con usted.",
        "no_more_times": "{practice}: No hay horarios más tarde con {provider} para ofrecer por "
        "mensaje. Alguien de la oficina se comunicará con usted.",
        "moved": "{practice}: Listo. Su cita ahora es el {when} con {provider}.",
        "kept": "{practice}: Muy bien, su cita sigue el {when}.",
        "nothing_changed": "{practice}: Muy bien, no se cambió nada.",
        "which": "{practice}: ¿A qué cita se refiere? {options}.",
        "which_option": "Responda {number} para {first_name} {when}",
        "after_hours": "{practice}: Gracias por su mensaje. La oficina está cerrada; le "
        "responderemos {opening}. Si es una emergencia, llame al 911.",
        "after_hours_unknown": "{practice}: Gracias por su mensaje. La oficina está cerrada; le "
        "responderemos cuando abra. Si es una emergencia, llame al 911.",
        "opening": "el {date} después de las {time}",
        "urgent": "{practice}: Si es una emergencia, llame al 911 ahora. Su mensaje se pasó a "
        "nuestro personal.",
        "and": "y",
        "or": "o",
    },
}


def text(language: str, key: str, **values: str) -> str:
    table = TEXTS.get(language, TEXTS[Language.ENGLISH])
    return table[key].format(**values)


def when(moment: datetime, practice: Practice, language: str) -> str:
    """The practice's local date and time: "Tue, Mar 3 at 9:00 AM" or in Spanish
    "martes 3 de marzo a las 9:00 a.m."."""
    date = local_date(moment, practice.zone, language)
    at = "a las" if language == Language.SPANISH else "at"
    return f"{date} {at} {local_time(moment, practice.zone, language)}"


def short_when(moment: datetime, practice: Practice, language: str) -> str:
    """Date and time without "at", for lists of options where every character counts."""
    zone = practice.zone
    return f"{local_date(moment, zone, language)} {local_time(moment, zone, language)}"


def number_list(count: int, language: str) -> str:
    """The option numbers to reply with: 1, 2 or 3 (1, 2 o 3)."""
    numbers = [str(n) for n in range(1, count + 1)]
    if count == 1:
        return "1"
    return f"{', '.join(numbers[:-1])} {text(language, 'or')} {numbers[-1]}"


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


def booking_page(practice: Practice) -> str:
    """The practice's online booking page, or "" when this installation does not serve it."""
    path = f"/book/{practice.code}/"
    try:
        resolve(path)
    except Resolver404:
        return ""
    return f"{settings.CARELINE_BASE_URL}{path}"
