"""Texts patients send in, stored before they are read, with what Careline made of them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from careline.clinics.models import Organization, Practice
from careline.clinics.scoping import ScopedQuerySet, practice_or_organization_wide
from careline.messaging.models import OutboundMessage
from careline.patients.models import Language, Patient
from careline.scheduling.models import Appointment


class InboundIntent(models.TextChoices):
    OPT_OUT = "opt_out", "Opt-out (stop texting)"
    OPT_IN = "opt_in", "Opt-in (START)"
    HELP = "help", "Help request"
    CONFIRM = "confirm", "Confirm the visit"
    CANCEL = "cancel", "Cancel the visit"
    RESCHEDULE = "reschedule", "Move the visit"
    CHOOSE_OPTION = "choose_option", "Picked a numbered option"
    MORE_OPTIONS = "more_options", "Asked for other times"
    DECLINE = "decline", "Said no to an offer"
    UNCLEAR = "unclear", "Not clear: for a person"
    # Texts stored before replies were read; no longer written.
    UNHANDLED = "unhandled", "Not handled automatically"
    UNKNOWN_NUMBER = "unknown_number", "Sent to a number no organization texts from"


class InboundAction(models.TextChoices):
    NONE = "none", "Nothing"
    OPTED_OUT = "opted_out", "Opted the number out"
    OPTED_IN = "opted_in", "Opted the number back in"
    ANSWERED_HELP = "answered_help", "Sent the help text"
    CONFIRMED = "confirmed", "Confirmed the visit"
    CANCELLED = "cancelled", "Cancelled the visit"
    OFFERED_TIMES = "offered_times", "Offered open times"
    RESCHEDULED = "rescheduled", "Moved the visit"
    KEPT = "kept", "Kept the visit as it was"
    ASKED_WHICH = "asked_which", "Asked which visit was meant"
    ASKED_CANCEL_OR_MOVE = "asked_cancel_or_move", "Asked: another time or cancel?"
    WAITLIST = "waitlist", "Answered a waitlist offer"
    TO_INBOX = "to_inbox", "Passed to the staff inbox"


class InboundMessage(models.Model):
    """One text from a patient's phone. The row is written first, as it arrived; the
    interpretation fields are filled in afterwards so staff can see why Careline acted."""

    provider_message_id = models.CharField(
        max_length=64,
        unique=True,
        help_text="The provider's id (Twilio MessageSid); a retried webhook finds its row.",
    )
    from_phone = models.CharField(max_length=64)
    to_phone = models.CharField(max_length=64)
    body = models.TextField(blank=True)
    received_at = models.DateTimeField()

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    practice = models.ForeignKey(
        Practice, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    patients = models.ManyToManyField(
        Patient,
        blank=True,
        related_name="inbound_messages",
        help_text="Patients with this mobile number (families share numbers).",
    )
    intent = models.CharField(max_length=20, choices=InboundIntent.choices, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    action_taken = models.CharField(max_length=20, choices=InboundAction.choices, blank=True)
    note = models.CharField(max_length=300, blank=True)
    reply = models.ForeignKey(
        OutboundMessage,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The automatic answer queued in the outbox, if any.",
    )
    interpreted_at = models.DateTimeField(null=True, blank=True)
    appointment = models.ForeignKey(
        Appointment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The visit the reply was taken to be about.",
    )
    conversation = models.ForeignKey(
        "Conversation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        help_text="The inbox conversation it was passed to, if any.",
    )
    # FHIR Communication's meta.versionId and meta.lastUpdated. A text belongs to no
    # organization (and is no Communication) until the worker reads it: reading it is its
    # first version (conversations.inbound stamps it).
    version = models.PositiveIntegerField(default=1, db_default=1)
    last_updated = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The Communication change feed: _lastUpdated sorted by (last_updated, id).
            models.Index(fields=["organization", "last_updated", "id"], name="inbound_change_feed"),
            models.Index(fields=["organization", "from_phone", "received_at"]),
            models.Index(fields=["intent", "received_at"]),
            # The worker's queue: texts the webhook stored and no one has read yet.
            models.Index(
                fields=["id"],
                condition=models.Q(interpreted_at__isnull=True),
                name="conversations_inbound_waiting",
            ),
        ]

    def __str__(self) -> str:
        return f"Inbound text {self.pk} ({self.intent or 'not read yet'})"

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return practice_or_organization_wide(practice_ids)


class Queue(models.TextChoices):
    """Inbox queues; the values are careline.conversations.routing's queue names."""

    SCHEDULING = "scheduling", "Scheduling"
    BILLING = "billing", "Billing"
    REFILLS = "refills", "Prescriptions and refills"
    CLINICAL = "clinical", "Clinical"
    RECORDS = "records", "Records"
    GENERAL = "general", "General"


class ConversationState(models.TextChoices):
    OPEN = "open", "Open"
    ASSIGNED = "assigned", "Assigned"
    WAITING = "waiting", "Waiting on the patient"
    CLOSED = "closed", "Closed"


class Conversation(models.Model):
    """A thread in the staff inbox with one phone number: the texts Careline did not act on,
    and the staff's answers. Any new text from the number reopens it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(
        Practice,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        help_text="Blank when the text could not be tied to one practice.",
    )
    patient = models.ForeignKey(
        Patient,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        help_text="Blank for an unknown number or a family number shared by several patients.",
    )
    phone = models.CharField(max_length=64)
    queue = models.CharField(max_length=20, choices=Queue.choices, default=Queue.GENERAL)
    state = models.CharField(
        max_length=10, choices=ConversationState.choices, default=ConversationState.OPEN
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    urgent = models.BooleanField(
        default=False, help_text="A text named a possible emergency (the patient was told 911)."
    )
    unread_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    opened_at = models.DateTimeField(
        default=timezone.now,
        help_text="When the patient opened it, or last reopened it after it was closed.",
    )
    last_patient_message_at = models.DateTimeField()
    first_staff_reply_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="First staff answer since opened_at: the response time is the difference.",
    )
    last_staff_reply_at = models.DateTimeField(null=True, blank=True)
    after_hours_reply_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last after-hours auto-reply was queued."
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-last_patient_message_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "phone"]),
            models.Index(fields=["practice", "state", "queue", "last_patient_message_at"]),
            models.Index(fields=["assigned_to", "state"]),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.state}, {self.queue})"

    @property
    def unread(self) -> bool:
        return self.unread_count > 0

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return practice_or_organization_wide(practice_ids)


class _InConversation(models.Model):
    """A row of a conversation's thread: staff see it when they see the conversation."""

    objects = ScopedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(
            conversation__in=Conversation.objects.filter(
                practice_or_organization_wide(practice_ids)
            )
        )


class ConversationNote(_InConversation):
    """Staff's internal note on a conversation; never texted."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    body = models.TextField()
    created_at = models.DateTimeField()


class ConversationReply(_InConversation):
    """A text Careline sent in a conversation: a staff answer, or an automatic one
    (after-hours, emergency) when `author` is blank. The text itself is in the outbox."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="replies")
    message = models.OneToOneField(OutboundMessage, on_delete=models.CASCADE, related_name="+")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()


class ChoiceKind(models.TextChoices):
    VISIT = "visit", "Which visit"
    SLOT = "slot", "Which new time"
    CANCEL_OR_MOVE = "cancel_or_move", "Another time or cancel"


class ChoiceState(models.TextChoices):
    OPEN = "open", "Waiting for the number"
    ANSWERED = "answered", "Answered"
    REPLACED = "replaced", "Replaced by a newer question"
    DECLINED = "declined", "Patient said no"


class NumberedChoice(models.Model):
    """A numbered list Careline texted and the answer it waits for: "Reply 1 for Ana ...,
    2 for Ben ..." (which visit) or "1) Tue 9:00 2) ..." (open times to move a visit to).

    The options are frozen when texted, so "2" means what the patient saw. Past
    `expires_at` the choice is ignored and a new reply is read from scratch."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    phone = models.CharField(max_length=64)
    kind = models.CharField(max_length=20, choices=ChoiceKind.choices)
    # Which visit: what the patient asked to do with the visit they pick.
    intent = models.CharField(max_length=20, blank=True)
    # Which new time, another time or cancel: the visit in question.
    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # Which visit: appointment ids. Which new time: {"start": ISO UTC, "provider": id}.
    options = models.JSONField(default=list)
    asked_by = models.ForeignKey(
        InboundMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    text = models.ForeignKey(
        OutboundMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(max_length=10, choices=ChoiceState.choices, default=ChoiceState.OPEN)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "phone", "state", "expires_at"])]

    def __str__(self) -> str:
        return f"Numbered choice {self.pk} ({self.kind}, {self.state})"


class CannedReply(models.Model):
    """A ready answer staff pick in the inbox; {first_name} and {practice} are filled in."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(
        Practice,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Blank: for every practice of the organization.",
    )
    title = models.CharField(max_length=80)
    body = models.TextField()
    # Offered for patients who read this language (all of them when the patient is unknown).
    language = models.CharField(
        max_length=8, choices=Language.choices, default=Language.ENGLISH, db_default="en"
    )

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return self.title

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return practice_or_organization_wide(practice_ids)


class ConversationPresence(models.Model):
    """Who has a conversation open right now, so two people don't answer at once."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField()
    # When the person last typed in the reply box: "Ana is replying" for the others.
    typing_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "user"], name="one_presence_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} on conversation {self.conversation_id}"


# A response-time limit is at least a minute and at most a week: past a week a text is not
# "waiting for an answer" any more, it is lost.
MAX_RESPONSE_MINUTES = 7 * 24 * 60


class QueueResponseLimit(models.Model):
    """How long a patient's text may wait for an answer in one inbox queue before the clock
    turns red: the organization's limit (practice blank), or a practice's own, which wins.
    A queue with neither keeps Careline's default (conversations.response_limits)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(
        Practice,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Blank: the organization's limit, for practices without their own.",
    )
    queue = models.CharField(max_length=20, choices=Queue.choices)
    minutes = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "practice", "queue"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "queue"],
                condition=models.Q(practice__isnull=True),
                name="one_organization_limit_per_queue",
            ),
            models.UniqueConstraint(
                fields=["practice", "queue"],
                condition=models.Q(practice__isnull=False),
                name="one_practice_limit_per_queue",
            ),
            models.CheckConstraint(
                condition=models.Q(minutes__gte=1, minutes__lte=MAX_RESPONSE_MINUTES),
                name="response_limit_a_minute_to_a_week",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.queue}: {self.minutes} min"

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return practice_or_organization_wide(practice_ids)
