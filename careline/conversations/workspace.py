"""What the inbox screens show: presence warnings, canned replies, the list's previews,
counts per queue, search and response-time clock, and the patient beside the thread."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.db.models import Count, F, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from careline.conversations.models import (
    CannedReply,
    Conversation,
    ConversationPresence,
    ConversationReply,
    ConversationState,
    InboundMessage,
    Queue,
)
from careline.conversations.response_limits import Limits, default_minutes
from careline.messaging.models import Channel, MessageKind, OutboundMessage
from careline.patients.models import Patient, PhoneConsent
from careline.scheduling.models import Appointment, AppointmentStatus

# Someone whose screen refreshed the conversation this recently is "on it".
PRESENCE_WINDOW = timedelta(seconds=30)
# ...and someone whose keyboard was busy this recently "is replying".
TYPING_WINDOW = timedelta(seconds=10)


def others_answering(conversation: Conversation, user: AbstractBaseUser) -> list[str]:
    """Record that `user` has the conversation open; name the colleagues who also do."""
    now = timezone.now()
    ConversationPresence.objects.update_or_create(
        conversation=conversation, user=user, defaults={"seen_at": now}
    )
    return list(
        ConversationPresence.objects.filter(
            conversation=conversation, seen_at__gte=now - PRESENCE_WINDOW
        )
        .exclude(user=user)
        .order_by("user__username")
        .values_list("user__username", flat=True)
    )


def typing(conversation: Conversation, user: AbstractBaseUser) -> None:
    """`user` is typing a reply in the conversation right now."""
    now = timezone.now()
    ConversationPresence.objects.update_or_create(
        conversation=conversation, user=user, defaults={"seen_at": now, "typing_at": now}
    )


def others_typing(conversation: Conversation, user: AbstractBaseUser) -> list[str]:
    """Colleagues who typed in this conversation's reply box in the last few seconds."""
    return list(
        ConversationPresence.objects.filter(
            conversation=conversation, typing_at__gte=timezone.now() - TYPING_WINDOW
        )
        .exclude(user=user)
        .order_by("user__username")
        .values_list("user__username", flat=True)
    )


def canned_replies_for(conversation: Conversation) -> list[tuple[str, str]]:
    """(title, text with the patient's first name and practice filled in): the practice's
    own and the organization-wide ones, in the patient's language when the patient is known."""
    first_name = conversation.patient.given_name if conversation.patient_id else ""
    practice = conversation.practice.name if conversation.practice_id else ""
    replies = CannedReply.objects.filter(organization_id=conversation.organization_id).filter(
        Q(practice__isnull=True) | Q(practice_id=conversation.practice_id)
    )
    known = conversation.patient_id is not None
    if known:
        replies = replies.filter(language=conversation.patient.preferred_language)
    return [
        (
            r.title if known else f"{r.title} ({r.language.upper()})",
            r.body.replace("{first_name}", first_name or "there").replace("{practice}", practice),
        )
        for r in replies
    ]


# --- the inbox list: preview, counts per queue, search, response-time clock ----------------

_DIGITS = re.compile(r"\D")


def _unanswered_since() -> Subquery:
    """The conversation's oldest patient text no staff reply came after (None: all answered)."""
    since = (
        InboundMessage.objects.filter(conversation_id=OuterRef("pk"))
        .filter(
            Q(received_at__gt=OuterRef("last_staff_reply_at"))
            | Q(conversation__last_staff_reply_at__isnull=True)
        )
        .order_by("received_at", "id")
        .values("received_at")[:1]
    )
    return Subquery(since)


def with_preview(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Each conversation with its last patient text (`preview`) and the oldest unanswered
    one's time (`waiting_since`), in the same query as the list."""
    last_text = (
        InboundMessage.objects.filter(conversation_id=OuterRef("pk"))
        .order_by("-received_at", "-id")
        .values("body")[:1]
    )
    return conversations.annotate(preview=Subquery(last_text), waiting_since=_unanswered_since())


# The shortest fragment a trigram index can find (PostgreSQL's pg_trgm and SQLite's FTS5
# trigram tokenizer alike); a shorter one is looked for by reading the rows.
TRIGRAM = 3


def search(conversations: QuerySet[Conversation], text: str) -> QuerySet[Conversation]:
    """Conversations whose patient's name, phone number or any text (sent or received)
    contains `text`, case-insensitively; digits also match a phone written any way
    ("(737) 555-1234"). Each part is an indexed look-up (migration 0007: pg_trgm GIN
    indexes on PostgreSQL, FTS5 trigram tables on SQLite) whose conversation ids the
    list then keeps, rather than a scan of every text of every conversation."""
    text = text.strip()
    if not text:
        return conversations
    found = Q(patient_id__in=_patients_named(text)) | Q(pk__in=_received_containing(text))
    found |= Q(pk__in=_replies_containing(text))
    digits = _DIGITS.sub("", text)
    if len(digits) >= 4:
        if _sqlite_fts():
            found |= Q(pk__in=_fts_rowids("conversations_conversation_phone_fts", _phrase(digits)))
        else:
            found |= Q(phone__contains=digits)
    return conversations.filter(found)


def _sqlite_fts() -> bool:
    return connection.vendor == "sqlite"


def _phrase(text: str) -> str:
    """`text` as one FTS5 phrase: with the trigram tokenizer, "a substring of the row"."""
    return '"' + text.replace('"', '""') + '"'


def _fts_rowids(table: str, match: str) -> RawSQL:
    return RawSQL(f"SELECT rowid FROM {table} WHERE {table} MATCH %s", [match])


def _patients_named(text: str) -> QuerySet[Patient]:
    """Patients whose given or family name contains `text`, or whose two names contain
    its two words ("rosa veg")."""
    words = text.split()
    if _sqlite_fts() and all(len(w) >= TRIGRAM for w in words):
        # One trigram table over "given family": each word anywhere in the full name.
        match = " AND ".join(_phrase(w) for w in words)
        return Patient.objects.filter(pk__in=_fts_rowids("patients_patient_name_fts", match))
    named = Q(given_name__icontains=text) | Q(family_name__icontains=text)
    if len(words) == 2:
        first, last = words
        named |= Q(given_name__icontains=first, family_name__icontains=last)
    return Patient.objects.filter(named).values("pk")


def _received_containing(text: str) -> QuerySet[InboundMessage]:
    texts = InboundMessage.objects.filter(conversation__isnull=False)
    if _sqlite_fts() and len(text) >= TRIGRAM:
        texts = texts.filter(
            pk__in=_fts_rowids("conversations_inboundmessage_body_fts", _phrase(text))
        )
    else:
        texts = texts.filter(body__icontains=text)
    return texts.values("conversation_id")


def _replies_containing(text: str) -> QuerySet[ConversationReply]:
    """Conversations' texts to the patient (the outbox's replies: only they are indexed)."""
    if _sqlite_fts() and len(text) >= TRIGRAM:
        sent = OutboundMessage.objects.filter(
            pk__in=_fts_rowids("messaging_outboundmessage_reply_body_fts", _phrase(text))
        )
    else:
        # kind = 'reply' is the predicate of PostgreSQL's partial trigram index.
        sent = OutboundMessage.objects.filter(kind=MessageKind.REPLY, body__icontains=text)
    return ConversationReply.objects.filter(message__in=sent.values("pk")).values("conversation_id")


def looks_like_a_name(text: str) -> bool:
    """A search that may be for a patient (letters, not a number) - read access to record."""
    return any(c.isalpha() for c in text)


@dataclass(frozen=True)
class QueueCount:
    queue: str
    label: str
    conversations: int
    unread: int
    oldest_waiting: datetime | None
    sla: timedelta  # the limit of the practice whose text waits longest
    overdue: bool  # some text waited longer than its practice's limit for the queue

    @property
    def sla_minutes(self) -> int:
        return int(self.sla.total_seconds() // 60)


def queue_counts(conversations: QuerySet[Conversation], limits: Limits) -> list[QueueCount]:
    """Per queue: conversations not closed, their unread texts and the oldest unanswered
    text, against each practice's own response-time limit - two grouped queries, whatever
    the number of conversations."""
    active = conversations.exclude(state=ConversationState.CLOSED)
    counts = {
        row["queue"]: row
        for row in active.order_by()
        .values("queue")
        .annotate(n=Count("id"), unread=Sum("unread_count"))
    }
    waiting = (
        InboundMessage.objects.filter(conversation__in=active.values("pk"))
        .filter(
            Q(received_at__gt=F("conversation__last_staff_reply_at"))
            | Q(conversation__last_staff_reply_at__isnull=True)
        )
        .order_by()
        .values_list(
            "conversation__queue", "conversation__organization_id", "conversation__practice_id"
        )
        .annotate(oldest=Min("received_at"))
    )
    now = timezone.now()
    oldest: dict[str, tuple[datetime, timedelta]] = {}
    overdue: set[str] = set()
    for queue, org_id, practice_id, since in waiting:
        limit = limits.limit(org_id, practice_id, queue)
        if now - since > limit:
            overdue.add(queue)
        if queue not in oldest or since < oldest[queue][0]:
            oldest[queue] = (since, limit)
    return [
        QueueCount(
            value,
            label,
            counts.get(value, {}).get("n", 0),
            counts.get(value, {}).get("unread") or 0,
            oldest[value][0] if value in oldest else None,
            oldest[value][1] if value in oldest else timedelta(minutes=default_minutes(value)),
            value in overdue,
        )
        for value, label in Queue.choices
    ]


# --- the patient beside the thread ---------------------------------------------------------

TIMELINE_LENGTH = 100
UPCOMING_STATUSES = (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    direction: str  # "in" (from the patient) | "out" (to the patient)
    body: str
    what: str  # the kind of text (reminder, reply...) or what Careline understood
    status: str = ""


@dataclass
class PatientContext:
    patient: Patient | None
    language: str
    consent: PhoneConsent | None
    next_visits: list[Appointment]
    timeline: list[TimelineEntry]


def patient_context(conversation: Conversation, user: AbstractBaseUser) -> PatientContext:
    """What the front desk needs beside the thread: the patient's next visits, texting
    consent and language, and every text sent to or received from the number (newest
    first), as far as `user` may see them - a fixed number of queries."""
    patient = conversation.patient
    phones = {conversation.phone}
    if patient is not None and patient.mobile_phone:
        phones.add(patient.mobile_phone)
    consent = (
        PhoneConsent.objects.filter(organization_id=conversation.organization_id, phone__in=phones)
        .order_by("-changed_at")
        .first()
    )
    visits: list[Appointment] = []
    if patient is not None:
        visits = list(
            Appointment.objects.visible_to(user)
            .filter(patient=patient, start__gte=timezone.now(), status__in=UPCOMING_STATUSES)
            .select_related("practice", "provider", "appointment_type")
            .order_by("start")[:5]
        )
    received = (
        InboundMessage.objects.visible_to(user)
        .filter(organization_id=conversation.organization_id, from_phone__in=phones)
        .order_by("-received_at", "-id")[:TIMELINE_LENGTH]
    )
    sent = (
        OutboundMessage.objects.visible_to(user)
        .filter(
            organization_id=conversation.organization_id,
            channel=Channel.SMS,
            to_address__in=phones,
        )
        .exclude(body="")
        .order_by("-created_at", "-id")[:TIMELINE_LENGTH]
    )
    entries = [
        TimelineEntry(
            m.received_at,
            "in",
            m.body,
            m.get_intent_display() if m.intent else "",
            m.get_action_taken_display() if m.action_taken else "",
        )
        for m in received
    ] + [
        TimelineEntry(
            m.sent_at or m.created_at, "out", m.body, m.get_kind_display(), m.get_state_display()
        )
        for m in sent
    ]
    entries.sort(key=lambda e: e.at, reverse=True)
    return PatientContext(
        patient=patient,
        language=patient.language_for_staff if patient else "",
        consent=consent,
        next_visits=visits,
        timeline=entries[:TIMELINE_LENGTH],
    )
