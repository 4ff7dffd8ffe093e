"""Texts Careline sends from self-service, in the patient's language (Django i18n)."""

from __future__ import annotations

from django.utils import translation
from django.utils.translation import gettext as _

from careline.messaging.outbox import queue_reply, withdraw_planned_notice
from careline.messaging.rendering import local_date, local_time
from careline.scheduling.models import Appointment
from careline.selfservice import links


def when(moment, practice, language: str) -> dict[str, str]:
    zone = practice.zone
    return {"date": local_date(moment, zone, language), "time": local_time(moment, zone, language)}


def send_code(*, practice, phone: str, code: str, language: str) -> None:
    with translation.override(language):
        body = _(
            "%(practice)s: your booking code is %(code)s. It expires in 10 minutes. "
            "Do not share it."
        ) % {"practice": practice.name, "code": code}
    queue_reply(
        organization_id=practice.organization_id,
        to_phone=phone,
        body=body,
        sender=practice.texting_number,
        practice_id=practice.pk,
    )


def confirm_booking(appointment: Appointment, link: str) -> None:
    """Text the booking now, in place of the planned 'booked' notice (which could wait
    for sending hours): the patient is looking at the page and expects it."""
    patient, practice = appointment.patient, appointment.practice
    language = patient.preferred_language
    with translation.override(language):
        body = _(
            "%(practice)s: you are booked for %(date)s at %(time)s with %(provider)s. "
            "Confirm, cancel or change: %(link)s"
        ) % {
            "practice": practice.name,
            "provider": appointment.provider.display_name,
            "link": link,
            **when(appointment.start, practice, language),
        }
    withdraw_planned_notice(appointment.pk, "booked", "rescheduled")
    queue_reply(
        organization_id=practice.organization_id,
        to_phone=patient.mobile_phone,
        body=body,
        sender=practice.texting_number,
        patient_id=patient.pk,
        practice_id=practice.pk,
    )


def offer(offer, opening, link: str) -> None:
    """'Reply YES to take Thu 2:40 PM with Dr. Lee': the whole offer in one text."""
    practice = opening.practice
    language = offer.patient.preferred_language
    minutes = max(1, int((offer.expires_at - offer.sent_at).total_seconds() // 60))
    with translation.override(language):
        body = _(
            "%(practice)s: an earlier visit opened. Reply YES to take %(date)s %(time)s with "
            "%(provider)s, or NO to pass. Or tap %(link)s (open %(minutes)s min)."
        ) % {
            "practice": practice.name,
            "provider": opening.provider.display_name,
            "link": link,
            "minutes": minutes,
            **when(opening.start, practice, language),
        }
    queue_reply(
        organization_id=practice.organization_id,
        to_phone=offer.phone,
        body=body,
        sender=practice.texting_number,
        patient_id=offer.patient_id,
        practice_id=practice.pk,
    )


def offer_answer(result: str, opening, language: str, appointment=None) -> str:
    """What we tell a patient who answered an offer (by text or on the offer page)."""
    practice = opening.practice
    with translation.override(language):
        if result == "won":
            return _(
                "You are booked for %(date)s at %(time)s with %(provider)s at %(practice)s. "
                "Details: %(link)s"
            ) % {
                "practice": practice.name,
                "provider": opening.provider.display_name,
                "link": links.manage_link_url(appointment.pk),
                **when(appointment.start, practice, language),
            }
        if result == "gone":
            return _(
                "Sorry, that time was just taken by someone else. You stay on the waitlist "
                "and we will text you if another time opens."
            )
        if result == "busy":
            return _(
                "You already have a visit at that time, so we did not book this one. "
                "You stay on the waitlist."
            )
        if result == "declined":
            return _("OK, we will keep you on the waitlist.")
        return _(
            "Sorry, that offer has ended. You stay on the waitlist and we will text you "
            "if another time opens."
        )
