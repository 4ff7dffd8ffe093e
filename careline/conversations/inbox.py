"""The staff inbox: conversations with a phone number, and what staff do with them.

A text Careline does not act on (unclear, hedged, a question, anything about billing or
refills...) opens or continues the number's Conversation, in the queue `route_message`
picks and the patient's practice. Outside office hours the patient gets one automatic
answer per closed stretch saying when someone will answer and to call 911 in an
emergency; a text naming a possible emergency gets the 911 text at any hour.

Conversation states: open -> assigned -> waiting (on the patient, after a staff reply)
-> closed; any new text from the patient reopens it. The functions at the bottom
(`assign`, `staff_reply`, `add_note`, `close`, `reopen`, `mark_read`) are what the inbox
screens call; they check that the staff member may see the conversation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.utils import timezone

from careline.clinics.models import Practice
from careline.clinics.office_hours import Span, parse_week, practice_week
from careline.conversations import texts
from careline.conversations.models import (
    CannedReply,
    Conversation,
    ConversationNote,
    ConversationReply,
    ConversationState,
    InboundAction,
    InboundMessage,
    Queue,
)
from careline.conversations.routing import GENERAL, SCHEDULING, route_message
from careline.messaging.models import MessageKind, OutboundMessage
from careline.messaging.outbox import queue_reply
from careline.messaging.rendering import local_date, local_time
from careline.patients.models import Language, Patient, PhoneConsent
from careline.scheduling.models import Appointment, Holiday

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from careline.conversations.understanding import Interpretation

log = logging.getLogger(__name__)

# For a text no practice can be found for, as the dispatcher does.
FALLBACK_ZONE = ZoneInfo("America/New_York")
MAX_REPLY_CHARACTERS = 1600  # Twilio's limit for one message body
# Reply texts that concern a visit go to scheduling even without a scheduling word in them.
_VISIT_INTENTS = {"confirm", "cancel", "reschedule", "choose_option", "more_options", "decline"}


class InboxError(Exception):
    """A staff action that cannot be done; the message says why, for the person."""


# --- office hours ------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficeHours:
    """When someone reads the inbox: each weekday's [opens, closes) local time (Monday
    first; None for a closed day), not on the practice's holidays. `closes` None means
    midnight."""

    days: tuple[Span | None, ...]

    @classmethod
    def uniform(cls, weekdays: frozenset[int], opens: time, closes: time | None) -> OfficeHours:
        return cls(tuple((opens, closes) if d in weekdays else None for d in range(7)))

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(d for d, span in enumerate(self.days) if span is not None)

    @property
    def closes(self) -> time | None:
        """The first open day's closing time (the same every day in the default hours)."""
        return next((span[1] for span in self.days if span is not None), None)

    def _day_bounds(self, day, zone) -> tuple[datetime, datetime]:
        opens, closes = self.days[day.weekday()]
        start = datetime.combine(day, opens, tzinfo=zone)
        end = (
            datetime.combine(day, closes, tzinfo=zone)
            if closes is not None
            else datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        )
        return start, end

    def _workdays(self, practice: Practice | None, first, last) -> list:
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        closed = set()
        if practice is not None:
            closed = set(
                Holiday.objects.filter(practice=practice, date__range=(first, last)).values_list(
                    "date", flat=True
                )
            )
        return [d for d in days if d.weekday() in self.weekdays and d not in closed]

    def is_open(self, moment: datetime, practice: Practice | None) -> bool:
        zone = _zone(practice)
        day = moment.astimezone(zone).date()
        for workday in self._workdays(practice, day - timedelta(days=1), day):
            opens, closes = self._day_bounds(workday, zone)
            if opens <= moment < closes:
                return True
        return False

    def next_opening(self, moment: datetime, practice: Practice | None) -> datetime | None:
        zone = _zone(practice)
        day = moment.astimezone(zone).date()
        for workday in self._workdays(practice, day, day + timedelta(days=14)):
            opens, _ = self._day_bounds(workday, zone)
            if opens > moment:
                return opens
        return None

    def last_closing(self, moment: datetime, practice: Practice | None) -> datetime | None:
        zone = _zone(practice)
        day = moment.astimezone(zone).date()
        for workday in reversed(self._workdays(practice, day - timedelta(days=14), day)):
            _, closes = self._day_bounds(workday, zone)
            if closes <= moment:
                return closes
        return None


def _zone(practice: Practice | None) -> ZoneInfo:
    return practice.zone if practice is not None else FALLBACK_ZONE


@lru_cache(maxsize=8)
def parse_office_hours(value: str) -> OfficeHours:
    """ "Mon-Fri 08:00-18:00", "Mon-Thu,Sat 09:00-13:00", "Mon-Sun 00:00-24:00"."""
    try:
        return OfficeHours(parse_week(value))
    except ValidationError as exc:
        raise ImproperlyConfigured(
            f"CARELINE_OFFICE_HOURS must look like 'Mon-Fri 08:00-18:00': {exc.messages[0]}"
        ) from exc


def office_hours(practice: Practice | None = None) -> OfficeHours:
    """The practice's own hours (settings page), else the installation's default."""
    week = practice_week(practice)
    if week is not None:
        return OfficeHours(week)
    return parse_office_hours(settings.CARELINE_OFFICE_HOURS)


# --- texts that go to staff ----------------------------------------------------------------


@dataclass
class Handoff:
    """What is known about a text passed to the inbox."""

    practice: Practice | None = None
    patient: Patient | None = None
    appointment: Appointment | None = None
    language: str = "en"
    # The patient already got an answer to this text (e.g. "someone will contact you").
    answered: bool = False
    opted_out: bool = False


def pass_to_staff(
    message: InboundMessage, interpretation: Interpretation | None, handoff: Handoff
) -> Conversation:
    """Open or continue the number's conversation with this text, in the right queue, and
    send the after-hours or emergency answer it calls for."""
    routing = route_message(message.body)
    urgent = routing.urgent or (interpretation is not None and "emergency" in interpretation.reason)
    if urgent or routing.confidence > 0:
        queue = routing.queue
    elif handoff.appointment is not None or (
        interpretation is not None and interpretation.intent in _VISIT_INTENTS
    ):
        queue = SCHEDULING
    else:
        queue = GENERAL
    conversation = _thread_for(message, handoff, queue, urgent=urgent)
    now = message.received_at
    message.conversation = conversation
    message.action_taken = InboundAction.TO_INBOX
    if urgent:
        # Safety first: also to a number that opted out, as the answer to its own text.
        _auto_answer(message, conversation, handoff, "urgent")
    elif not handoff.answered and not handoff.opted_out:
        hours = office_hours(handoff.practice)
        if not hours.is_open(now, handoff.practice):
            closed_since = hours.last_closing(now, handoff.practice)
            already = conversation.after_hours_reply_at is not None and (
                closed_since is None or conversation.after_hours_reply_at >= closed_since
            )
            if not already:
                _auto_answer(message, conversation, handoff, "after_hours")
    log.info("Inbound message %s passed to conversation %s", message.pk, conversation.pk)
    return conversation


def _thread_for(
    message: InboundMessage, handoff: Handoff, queue: str, *, urgent: bool = False
) -> Conversation:
    """The number's conversation with this text added: created, or reopened (unread, back in
    its queue) when it was closed. Every text from a patient that staff must see comes here."""
    now = message.received_at
    conversation = (
        Conversation.objects.select_for_update()
        .filter(organization_id=message.organization_id, phone=message.from_phone)
        .order_by("-last_patient_message_at", "-id")
        .first()
    )
    if conversation is None:
        conversation = Conversation(
            organization_id=message.organization_id,
            phone=message.from_phone,
            created_at=now,
            state=ConversationState.OPEN,
        )
    if conversation.pk is None or conversation.state == ConversationState.CLOSED:
        # A new topic: file it where this text belongs, and time the answer afresh.
        conversation.queue = queue
        conversation.practice = handoff.practice
        conversation.patient = handoff.patient
        conversation.closed_at = None
        conversation.opened_at = now
        conversation.first_staff_reply_at = None
    if conversation.state in (ConversationState.CLOSED, ConversationState.WAITING):
        conversation.state = (
            ConversationState.ASSIGNED if conversation.assigned_to_id else ConversationState.OPEN
        )
    if conversation.practice_id is None and handoff.practice is not None:
        conversation.practice = handoff.practice
    if urgent:
        conversation.urgent = True
        conversation.queue = Queue.CLINICAL
    conversation.unread_count += 1
    conversation.last_patient_message_at = max(now, conversation.last_patient_message_at or now)
    conversation.save()
    message.conversation = conversation
    return conversation


def flag_for_staff(message: InboundMessage, handoff: Handoff, note: str) -> Conversation:
    """Put a text Careline did act on in front of staff anyway, with a note saying what a
    person should follow up ("replied CANCEL to a reminder - visit still booked")."""
    conversation = _thread_for(message, handoff, SCHEDULING)
    ConversationNote.objects.create(
        conversation=conversation, author=None, body=note, created_at=message.received_at
    )
    log.info("Inbound message %s flagged in conversation %s", message.pk, conversation.pk)
    return conversation


def continue_thread(message: InboundMessage, handoff: Handoff) -> Conversation | None:
    """Add a text Careline answered by itself to the number's conversation, reopening it,
    when the text more likely continues that conversation than answers a reminder: staff
    or the patient wrote there after the last text that asked about a visit."""
    conversation = (
        Conversation.objects.select_for_update()
        .filter(organization_id=message.organization_id, phone=message.from_phone)
        .order_by("-last_patient_message_at", "-id")
        .first()
    )
    if conversation is None:
        return None
    activity = [
        t
        for t in (
            conversation.last_patient_message_at,
            conversation.last_staff_reply_at,
            conversation.closed_at,
        )
        if t is not None
    ]
    asked_at = (
        OutboundMessage.objects.filter(
            organization_id=message.organization_id,
            to_address=message.from_phone,
            kind__in=(MessageKind.REMINDER, MessageKind.BOOKED, MessageKind.RESCHEDULED),
            sent_at__isnull=False,
        )
        .order_by("-sent_at")
        .values_list("sent_at", flat=True)
        .first()
    )
    if asked_at is not None and max(activity) < asked_at:
        return None
    return _thread_for(message, handoff, conversation.queue)


def _auto_answer(
    message: InboundMessage, conversation: Conversation, handoff: Handoff, kind: str
) -> None:
    practice = handoff.practice
    name = practice.name if practice else message.organization.name
    language = handoff.language
    if kind == "urgent":
        body = texts.text(language, "urgent", practice=name)
    else:
        opening = office_hours(practice).next_opening(message.received_at, practice)
        if opening is None or practice is None:
            body = texts.text(language, "after_hours_unknown", practice=name)
        else:
            body = texts.text(
                language,
                "after_hours",
                practice=name,
                opening=texts.text(
                    language,
                    "opening",
                    date=local_date(opening, practice.zone, language),
                    time=local_time(opening, practice.zone, language),
                ),
            )
        conversation.after_hours_reply_at = message.received_at
        conversation.save(update_fields=["after_hours_reply_at", "updated_at"])
    reply = queue_reply(
        organization_id=message.organization_id,
        to_phone=message.from_phone,
        body=body,
        sender=message.to_phone,
        patient_id=handoff.patient.pk if handoff.patient else None,
        practice_id=practice.pk if practice else None,
    )
    ConversationReply.objects.create(
        conversation=conversation, message=reply, author=None, created_at=reply.created_at
    )
    message.reply = message.reply or reply


# --- what staff do -------------------------------------------------------------------------


def _locked(conversation: Conversation, user: AbstractBaseUser | None) -> Conversation:
    """The conversation, row-locked, after checking `user` (when given) may see it."""
    rows = Conversation.objects.select_for_update().filter(pk=conversation.pk)
    if (
        user is not None
        and not Conversation.objects.visible_to(user).filter(pk=conversation.pk).exists()
    ):
        raise InboxError("You cannot see this conversation.")
    current = rows.first()
    if current is None:
        raise InboxError("This conversation no longer exists.")
    return current


def assign(
    conversation: Conversation,
    to: AbstractBaseUser | str,
    *,
    by: AbstractBaseUser | None = None,
) -> Conversation:
    """Give the conversation to a person (who must be able to see it), or put it back in a
    queue for anyone in that queue to pick up."""
    with transaction.atomic():
        current = _locked(conversation, by)
        if isinstance(to, str):
            if to not in Queue.values:
                raise InboxError(f"Unknown queue {to!r}; choose one of {', '.join(Queue.values)}.")
            current.queue = to
            current.assigned_to = None
            if current.state == ConversationState.ASSIGNED:
                current.state = ConversationState.OPEN
        else:
            if not Conversation.objects.visible_to(to).filter(pk=current.pk).exists():
                raise InboxError(f"{to} cannot see this practice's conversations.")
            current.assigned_to = to
            if current.state == ConversationState.OPEN:
                current.state = ConversationState.ASSIGNED
        current.save()
    return current


def staff_reply(conversation: Conversation, user: AbstractBaseUser, body: str) -> ConversationReply:
    """Text the patient from the number they wrote to, through the outbox."""
    body = (body or "").strip()
    if not body:
        raise InboxError("Type a reply first.")
    if len(body) > MAX_REPLY_CHARACTERS:
        raise InboxError(f"A text can be at most {MAX_REPLY_CHARACTERS} characters long.")
    with transaction.atomic():
        current = _locked(conversation, user)
        # Replies skip the dispatcher's opt-out check (a STOP must get its confirmation),
        # so staff answers are held to it here.
        if PhoneConsent.objects.filter(
            organization_id=current.organization_id, phone=current.phone, opted_out=True
        ).exists():
            raise InboxError("This number opted out of texts. Call the patient instead.")
        sender = _sender(current)
        message = queue_reply(
            organization_id=current.organization_id,
            to_phone=current.phone,
            body=body,
            sender=sender,
            patient_id=current.patient_id,
            practice_id=current.practice_id,
        )
        reply = ConversationReply.objects.create(
            conversation=current, message=message, author=user, created_at=message.created_at
        )
        now = message.created_at
        current.first_staff_reply_at = current.first_staff_reply_at or now
        current.last_staff_reply_at = now
        current.unread_count = 0
        if current.state != ConversationState.CLOSED:
            current.state = ConversationState.WAITING
        if current.assigned_to_id is None:
            current.assigned_to = user
        current.save()
    log.info("Staff reply %s queued in conversation %s", message.pk, current.pk)
    return reply


def _sender(conversation: Conversation) -> str:
    """The number the patient last wrote to, so the answer lands in the same thread."""
    last_to = (
        InboundMessage.objects.filter(conversation=conversation)
        .order_by("-received_at", "-id")
        .values_list("to_phone", flat=True)
        .first()
    )
    if last_to:
        return last_to
    if conversation.practice is not None:
        return conversation.practice.texting_number
    return conversation.organization.default_sender_number


def add_note(conversation: Conversation, user: AbstractBaseUser, body: str) -> ConversationNote:
    """An internal note for colleagues; never texted."""
    body = (body or "").strip()
    if not body:
        raise InboxError("Type a note first.")
    with transaction.atomic():
        current = _locked(conversation, user)
        note = ConversationNote.objects.create(
            conversation=current, author=user, body=body, created_at=timezone.now()
        )
        current.save(update_fields=["updated_at"])
    return note


def close(conversation: Conversation, user: AbstractBaseUser | None = None) -> Conversation:
    with transaction.atomic():
        current = _locked(conversation, user)
        if current.state != ConversationState.CLOSED:
            current.state = ConversationState.CLOSED
            current.closed_at = timezone.now()
            current.unread_count = 0
            current.save()
    return current


def reopen(conversation: Conversation, user: AbstractBaseUser | None = None) -> Conversation:
    with transaction.atomic():
        current = _locked(conversation, user)
        if current.state == ConversationState.CLOSED:
            current.state = (
                ConversationState.ASSIGNED if current.assigned_to_id else ConversationState.OPEN
            )
            current.closed_at = None
            current.save()
    return current


def mark_read(conversation: Conversation, user: AbstractBaseUser) -> Conversation:
    with transaction.atomic():
        current = _locked(conversation, user)
        if current.unread_count:
            current.unread_count = 0
            current.save(update_fields=["unread_count", "updated_at"])
    return current


# --- canned replies ------------------------------------------------------------------------

MAX_CANNED_TITLE = 80


def move_conversations_to_patient(prior_patient_id: int, survivor_id: int) -> int:
    """An EHR merged two records of one person (ADT^A40): the prior record's threads are
    the survivor's from now on."""
    return Conversation.objects.filter(patient_id=prior_patient_id).update(patient_id=survivor_id)


def save_canned_reply(
    organization_id: int,
    practice: Practice | None,
    *,
    title: str,
    body: str,
    language: str,
    reply: CannedReply | None = None,
) -> CannedReply:
    """Add (or change) a ready answer of one practice, or of every practice of the
    organization (`practice` None); the message names the field."""
    title, body = (title or "").strip(), (body or "").strip()
    if not title:
        raise InboxError("title: give the reply a short title.")
    if len(title) > MAX_CANNED_TITLE:
        raise InboxError(f"title: at most {MAX_CANNED_TITLE} characters.")
    if not body:
        raise InboxError("body: type the text of the reply.")
    if len(body) > MAX_REPLY_CHARACTERS:
        raise InboxError(f"body: a text can be at most {MAX_REPLY_CHARACTERS} characters long.")
    if "\x00" in title + body:
        raise InboxError("body: the text contains a NUL character.")
    if language not in Language.values:
        raise InboxError(f"language: choose one of {', '.join(Language.values)}.")
    if practice is not None and practice.organization_id != organization_id:
        raise InboxError("practice: choose one of the organization's practices.")
    if reply is None:
        return CannedReply.objects.create(
            organization_id=organization_id,
            practice=practice,
            title=title,
            body=body,
            language=language,
        )
    if reply.organization_id != organization_id:
        raise InboxError("practice: a reply stays in its organization.")
    reply.practice, reply.title, reply.body, reply.language = practice, title, body, language
    reply.save(update_fields=["practice", "title", "body", "language"])
    return reply


def delete_canned_reply(reply: CannedReply) -> None:
    CannedReply.objects.filter(pk=reply.pk).delete()
