"""Numbered questions Careline texts, and booking the time a patient picks by number.

Three kinds of question wait for an answer: "which visit?" (several visits awaiting an
answer; answered in careline.conversations.replies by number, day, date or name), "which new
time?" (the next open times with the same provider, offered when a patient asks to
reschedule) and "another time or cancel?" (after "can't make it"). The
options are frozen when texted so "2" means what the patient saw; a question expires
(CARELINE_REPLY_CHOICE_HOURS) and a newer one replaces it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from careline.conversations import texts
from careline.conversations.models import (
    ChoiceKind,
    ChoiceState,
    InboundAction,
    InboundMessage,
    NumberedChoice,
)
from careline.messaging.models import OutboundMessage
from careline.messaging.outbox import queue_reply, withdraw_planned_notice
from careline.scheduling.appointments import (
    InvalidTransition,
    SlotUnavailable,
    find_open_slots,
    move_appointment,
)
from careline.scheduling.models import Appointment, ChangeSource

log = logging.getLogger(__name__)

TIMES_PER_TEXT = 3
# No point offering a time the patient could not reach after reading the text.
MIN_LEAD = timedelta(hours=1)


@dataclass
class Outcome:
    """What came of a reply, for the inbound message's record."""

    action: str
    reply: OutboundMessage | None = None
    appointment: Appointment | None = None
    # Careline could not finish it: a person should follow up.
    to_staff: bool = False
    note: str = ""


def answer(
    message: InboundMessage, body: str, *, practice_id: int | None, patient_id: int | None
) -> OutboundMessage:
    """Text the patient back from the number they wrote to, ahead of everything else."""
    reply = queue_reply(
        organization_id=message.organization_id,
        to_phone=message.from_phone,
        body=body,
        sender=message.to_phone,
        patient_id=patient_id,
        practice_id=practice_id,
    )
    log.info("Inbound message %s answered with outbound message %s", message.pk, reply.pk)
    return reply


def open_choice(organization_id: int, phone: str, now: datetime) -> NumberedChoice | None:
    """The question this number was asked last and has not answered, locked for answering."""
    return (
        NumberedChoice.objects.select_for_update()
        .filter(
            organization_id=organization_id,
            phone=phone,
            state=ChoiceState.OPEN,
            expires_at__gt=now,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def close_choice(choice: NumberedChoice, state: str, now: datetime) -> None:
    choice.state, choice.answered_at = state, now
    choice.save(update_fields=["state", "answered_at"])


def _new_choice(
    message: InboundMessage,
    kind: str,
    options: list,
    text: OutboundMessage,
    *,
    intent: str = "",
    appointment: Appointment | None = None,
) -> NumberedChoice:
    now = timezone.now()
    NumberedChoice.objects.filter(
        organization_id=message.organization_id, phone=message.from_phone, state=ChoiceState.OPEN
    ).update(state=ChoiceState.REPLACED, answered_at=now)
    return NumberedChoice.objects.create(
        organization_id=message.organization_id,
        phone=message.from_phone,
        kind=kind,
        intent=intent,
        appointment=appointment,
        options=options,
        asked_by=message,
        text=text,
        created_at=now,
        expires_at=now + timedelta(hours=settings.CARELINE_REPLY_CHOICE_HOURS),
    )


def ask_which_visit(
    message: InboundMessage, visits: list[Appointment], intent: str, language: str
) -> Outcome:
    """Text "Which visit? 1) Tue, Dec 8 9:00 AM Dr. Lee 2) Fri, Dec 11 2:30 PM Dr. Ruiz -
    reply 1 or 2" (with first names on a family number; never the visit's reason)."""
    visits = sorted(visits, key=lambda v: (v.start, v.pk))
    practice = visits[0].practice
    family = len({v.patient_id for v in visits}) > 1
    options = " ".join(
        texts.text(
            language,
            "which_option_named" if family else "which_option",
            number=str(n),
            first_name=v.patient.given_name,
            when=texts.short_when(v.start, v.practice, language),
            provider=v.provider.display_name,
        )
        for n, v in enumerate(visits, start=1)
    )
    body = texts.text(
        language,
        "which",
        practice=practice.name,
        options=options,
        numbers=texts.number_list(len(visits), language),
    )
    reply = answer(message, body, practice_id=practice.pk, patient_id=None)
    _new_choice(message, ChoiceKind.VISIT, [v.pk for v in visits], reply, intent=intent)
    return Outcome(InboundAction.ASKED_WHICH, reply)


def ask_cancel_or_move(
    message: InboundMessage,
    appointment: Appointment,
    language: str,
    *,
    wording: str = "cancel_or_move",
) -> Outcome:
    """ "Can't make it": offer another time (R) or cancelling (X), and wait for the answer;
    the visit stays booked until the patient says which."""
    practice = appointment.practice
    body = texts.text(
        language,
        wording,
        practice=practice.name,
        when=texts.when(appointment.start, practice, language),
    )
    reply = answer(message, body, practice_id=practice.pk, patient_id=appointment.patient_id)
    _new_choice(message, ChoiceKind.CANCEL_OR_MOVE, [], reply, appointment=appointment)
    return Outcome(InboundAction.ASKED_CANCEL_OR_MOVE, reply, appointment)


def offer_times(
    message: InboundMessage,
    appointment: Appointment,
    language: str,
    *,
    after: datetime | None = None,
    wording: str = "times",
) -> Outcome:
    """Text the next open times with the visit's provider, numbered, and wait for the pick.
    With none to offer, the patient is told someone will contact them."""
    practice, provider = appointment.practice, appointment.provider
    earliest = timezone.now() + MIN_LEAD
    minutes = int((appointment.end - appointment.start).total_seconds() // 60)
    slots = find_open_slots(
        practice=practice,
        duration_minutes=minutes,
        after=max(earliest, after) if after else earliest,
        providers=[provider],
        count=TIMES_PER_TEXT,
    )
    values = {"practice": practice.name, "provider": provider.display_name}
    if not slots:
        body = texts.text(language, "no_more_times" if after else "no_times", **values)
        reply = answer(message, body, practice_id=practice.pk, patient_id=appointment.patient_id)
        return Outcome(
            InboundAction.TO_INBOX,
            reply,
            appointment,
            to_staff=True,
            note="No open time to offer by text.",
        )
    options = " ".join(
        f"{n}) {texts.short_when(s.start, practice, language)}" for n, s in enumerate(slots, 1)
    )
    body = texts.text(
        language,
        wording,
        options=options,
        numbers=texts.number_list(len(slots), language),
        **values,
    )
    reply = answer(message, body, practice_id=practice.pk, patient_id=appointment.patient_id)
    _new_choice(
        message,
        ChoiceKind.SLOT,
        [{"start": s.start.isoformat(), "provider": s.provider_id} for s in slots],
        reply,
        appointment=appointment,
    )
    return Outcome(InboundAction.OFFERED_TIMES, reply, appointment)


def later_times(message: InboundMessage, choice: NumberedChoice, language: str) -> Outcome:
    """ "MORE": the next open times after the last one offered."""
    last = max(datetime.fromisoformat(o["start"]) for o in choice.options)
    return offer_times(
        message, _visit(choice), language, after=last + timedelta(minutes=1), wording="more_times"
    )


def book_time(
    message: InboundMessage, choice: NumberedChoice, option: int, language: str
) -> Outcome:
    """Move the visit to the picked time, atomically; a time taken meanwhile gets an
    apology and fresh options."""
    now = timezone.now()
    picked = choice.options[option - 1]
    start = datetime.fromisoformat(picked["start"])
    appointment = _visit(choice)
    # Staff gave the visit to another provider since: the offered times were someone else's.
    stale = picked["provider"] != appointment.provider_id
    if stale or start < now + MIN_LEAD:
        close_choice(choice, ChoiceState.REPLACED, now)
        return offer_times(message, appointment, language, wording="taken")
    try:
        moved = move_appointment(appointment, new_start=start, source=ChangeSource.PATIENT_TEXT)
    except SlotUnavailable:
        log.info("Numbered choice %s: option %s was taken meanwhile", choice.pk, option)
        close_choice(choice, ChoiceState.REPLACED, now)
        return offer_times(message, appointment, language, wording="taken")
    except InvalidTransition:
        close_choice(choice, ChoiceState.ANSWERED, now)
        return Outcome(
            InboundAction.TO_INBOX,
            appointment=appointment,
            to_staff=True,
            note="Picked a new time, but the visit can no longer be moved.",
        )
    close_choice(choice, ChoiceState.ANSWERED, now)
    withdraw_planned_notice(moved.pk, "rescheduled")
    body = texts.text(
        language,
        "moved",
        practice=moved.practice.name,
        when=texts.when(moved.start, moved.practice, language),
        provider=moved.provider.display_name,
    )
    reply = answer(message, body, practice_id=moved.practice_id, patient_id=moved.patient_id)
    return Outcome(InboundAction.RESCHEDULED, reply, moved)


def keep_visit(message: InboundMessage, choice: NumberedChoice, language: str) -> Outcome:
    """ "No thanks": the offered times are dropped and the visit stays."""
    close_choice(choice, ChoiceState.DECLINED, timezone.now())
    appointment = _visit(choice)
    body = texts.text(
        language,
        "kept",
        practice=appointment.practice.name,
        when=texts.when(appointment.start, appointment.practice, language),
    )
    reply = answer(
        message, body, practice_id=appointment.practice_id, patient_id=appointment.patient_id
    )
    return Outcome(InboundAction.KEPT, reply, appointment)


def _visit(choice: NumberedChoice) -> Appointment:
    return Appointment.objects.select_related("practice", "provider", "patient").get(
        pk=choice.appointment_id
    )
