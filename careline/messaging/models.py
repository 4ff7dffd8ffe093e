"""Reminder rules, message templates and the outbox every text goes through."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now

from careline.clinics.models import AppointmentType, Organization, Practice
from careline.clinics.scoping import ScopedQuerySet, practice_or_organization_wide
from careline.messaging.template_syntax import validate_template_body
from careline.patients.models import Language, Patient
from careline.scheduling.models import Appointment

DEFAULT_OFFSETS_MINUTES = [72 * 60, 24 * 60]
SAME_DAY_OFFSET_MINUTES = 2 * 60
MAX_OFFSET_MINUTES = 60 * 24 * 60


class Channel(models.TextChoices):
    SMS = "sms", "Text message"
    EMAIL = "email", "Email"
    VOICE = "voice", "Phone call"


class MessageKind(models.TextChoices):
    REMINDER = "reminder", "Reminder"
    BOOKED = "booked", "Booking notice"
    RESCHEDULED = "rescheduled", "Reschedule notice"
    CANCELLED = "cancelled", "Cancellation notice"
    # An automatic answer to a text the patient just sent (consent keyword confirmation,
    # HELP): it must reach opted-out numbers too and is sent at any hour.
    REPLY = "reply", "Reply to the patient"
    BROADCAST = "broadcast", "Broadcast"


EVENT_KINDS = (MessageKind.BOOKED, MessageKind.RESCHEDULED, MessageKind.CANCELLED)


class Priority(models.IntegerChoices):
    """Lower goes first: a patient waiting for an answer beats a reminder beats a broadcast."""

    REPLY = 0, "Reply"
    EVENT = 10, "Appointment change"
    REMINDER = 20, "Reminder"
    BROADCAST = 30, "Broadcast"


class MessageState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"
    CANCELLED = "cancelled", "Cancelled"


class MessageTemplate(models.Model):
    """An organization's own wording of one kind of planned text in one language, for the
    whole organization, a practice and/or an appointment type. It overrides Careline's
    default, which is in the gettext catalog (careline.messaging.texts). Rows without an
    organization are the defaults migration 0002 stored; rendering no longer reads them."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    practice = models.ForeignKey(
        Practice, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    appointment_type = models.ForeignKey(
        AppointmentType, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=MessageKind.choices)
    language = models.CharField(max_length=8, choices=Language.choices, default=Language.ENGLISH)
    body = models.TextField(
        help_text="Variables: {first_name} {practice} {date} {time} {address} "
        "{practice_phone} {link}. Keep it free of visit reasons."
    )
    active = models.BooleanField(default=True)

    objects = ScopedQuerySet.as_manager()

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return practice_or_organization_wide(practice_ids)

    class Meta:
        ordering = ["kind", "language", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.language})"

    def clean(self) -> None:
        validate_template_body(self.body)
        if self.practice_id and self.practice.organization_id != self.organization_id:
            raise ValidationError({"practice": "The practice belongs to another organization."})


class ReminderRule(models.Model):
    """When reminders go out before a visit. The most specific active rule wins:
    practice + appointment type, then appointment type, then practice, then organization."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="reminder_rules"
    )
    practice = models.ForeignKey(
        Practice, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    appointment_type = models.ForeignKey(
        AppointmentType, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    offsets_minutes = models.JSONField(
        default=list,
        blank=True,
        help_text="Minutes before the visit, e.g. [4320, 1440, 120] for 3 days, 1 day, 2 hours. "
        "Empty: no reminders.",
    )
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.SMS)
    stop_when_confirmed = models.BooleanField(
        default=True, help_text="No further reminders once the patient confirmed."
    )
    send_event_messages = models.BooleanField(
        default=True, help_text="Also text when a visit is booked, moved or cancelled."
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return practice_or_organization_wide(practice_ids)

    class Meta:
        ordering = ["organization", "practice", "appointment_type", "id"]

    def __str__(self) -> str:
        return f"Reminder rule {self.pk} ({self.offsets_minutes})"

    def clean(self) -> None:
        offsets = self.offsets_minutes
        if not isinstance(offsets, list) or not all(
            isinstance(o, int) and not isinstance(o, bool) for o in offsets
        ):
            raise ValidationError({"offsets_minutes": "Give a list of whole minutes."})
        if any(o <= 0 or o > MAX_OFFSET_MINUTES for o in offsets):
            raise ValidationError(
                {"offsets_minutes": "Each offset must be between 1 minute and 60 days."}
            )
        if len(set(offsets)) != len(offsets):
            raise ValidationError({"offsets_minutes": "Each offset may appear only once."})
        for field in ("practice", "appointment_type"):
            related = getattr(self, field)
            if related is not None and related.organization_id != self.organization_id:
                raise ValidationError({field: "It belongs to another organization."})


class OutboundMessage(models.Model):
    """The outbox: a message is a row before it is a send.

    Planned messages (reminders, appointment notices) are inserted set-based with an empty
    body; the worker renders the body when it claims the row, from the appointment and
    patient as they are then (a corrected name or address is used), and stores it before
    calling the provider so a crashed send is reconciled against the exact text.
    Replies and broadcasts are created with their body.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(
        Practice, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # No single-column indexes on patient and appointment: outbox_patient_sent and
    # outbox_appointment_step lead with them, and every index costs each of the two
    # updates a message goes through on its way out.
    patient = models.ForeignKey(
        Patient, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    appointment = models.ForeignKey(
        Appointment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
    )
    broadcast_id = models.BigIntegerField(null=True, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.SMS)
    to_address = models.CharField(max_length=254, blank=True)
    sender = models.CharField(max_length=64, blank=True)
    body = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=MessageKind.choices)
    # Which planned step this row is, e.g. "reminder:1440" or "booked"; with the visit
    # start it was planned for, it makes re-planning idempotent.
    step_key = models.CharField(max_length=40, blank=True)
    visit_start = models.DateTimeField(null=True, blank=True)
    stop_when_confirmed = models.BooleanField(default=False)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.REMINDER)
    due_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(
        max_length=12, choices=MessageState.choices, default=MessageState.SCHEDULED
    )
    reason = models.CharField(
        max_length=40, blank=True, help_text="Why it was suppressed or cancelled."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker took it for sending (its lease)."
    )
    provider_message_id = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=20, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    segments = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="Delivered, undelivered, failed, suppressed or cancelled."
    )
    # FHIR Communication's meta.versionId and meta.lastUpdated: bumped, in the same
    # statement, by every write of messaging.outbox that changes what Communication shows
    # (not a worker's lease or a put-off due time). No past versions are kept.
    version = models.PositiveIntegerField(default=1, db_default=1)
    last_updated = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            # Exactly one live message per appointment, step and visit time: planning twice
            # adds nothing. Cancelled rows stay as history and do not block a new plan
            # (a visit moved back to its first time gets its reminders again).
            models.UniqueConstraint(
                fields=["appointment", "step_key", "visit_start"],
                condition=~models.Q(state="cancelled") & models.Q(appointment__isnull=False),
                name="one_message_per_appointment_step",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "priority", "due_at"], name="outbox_claim_order"),
            models.Index(fields=["patient", "sent_at"], name="outbox_patient_sent"),
            models.Index(fields=["to_address", "visit_start"], name="outbox_number_visit"),
            models.Index(fields=["appointment", "step_key"], name="outbox_appointment_step"),
            # Status callbacks look a message up by the provider's id; a plain index, as
            # db_index would add a second, pattern-matching one on PostgreSQL.
            models.Index(fields=["provider_message_id"], name="outbox_provider_message"),
            # The Communication change feed: _lastUpdated sorted by (last_updated, id), and
            # the newest stamp of an organization (versions.change_stamp).
            models.Index(fields=["organization", "last_updated", "id"], name="outbox_change_feed"),
        ]

    def __str__(self) -> str:
        return f"Message {self.pk} ({self.kind}, {self.state})"


class SimulatedPhoneMessage(models.Model):
    """A text as it arrived on a simulated patient phone (the simulator gateway)."""

    outbound_message = models.OneToOneField(
        OutboundMessage, on_delete=models.CASCADE, related_name="simulated_delivery"
    )
    to = models.CharField(max_length=254, db_index=True)
    sender = models.CharField(max_length=64, blank=True)
    body = models.TextField()
    received_at = models.DateTimeField()
    # A real phone would show a second copy; the simulator counts them so tests can
    # prove there never is one.
    duplicate_sends = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["received_at", "id"]


class CallOutcome(models.TextChoices):
    """What came of a reminder call, as the patient answered it (blank: no answer yet)."""

    CONFIRMED = "confirmed", "Confirmed by phone"
    CANCELLED = "cancelled", "Cancelled by phone"
    KEPT = "kept", "Cancellation not confirmed"
    LINK_TEXTED = "link_texted", "Reschedule link texted"
    TRANSFERRED = "transferred", "Put through to the practice"
    OPTED_OUT = "opted_out", "Asked for no more automated calls"
    NO_ANSWER_GIVEN = "no_answer_given", "No key pressed"
    VOICEMAIL = "voicemail", "Voicemail left"


class VoiceCall(models.Model):
    """One automated call of the outbox (an OutboundMessage with channel voice): the
    unguessable token its webhook URLs carry, what Twilio reported and what the patient
    pressed. Written by careline.messaging.calls only."""

    outbound_message = models.OneToOneField(
        OutboundMessage, on_delete=models.CASCADE, related_name="call"
    )
    # The only key in the URLs Twilio calls back: no ids, numbers or names in them.
    token = models.CharField(max_length=64, unique=True)
    call_sid = models.CharField(max_length=64, blank=True)
    # Twilio's last CallStatus (queued, ringing, in-progress, completed, busy, ...).
    status = models.CharField(max_length=20, blank=True)
    answered_by = models.CharField(max_length=30, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=CallOutcome.choices, blank=True)
    # The menu's state between two key presses: "" (the main menu) or "cancel" (asked to
    # press 1 to confirm a cancellation); `prompts` counts menus played without an answer.
    awaiting = models.CharField(max_length=10, blank=True)
    prompts = models.PositiveSmallIntegerField(default=0)
    digits = models.CharField(max_length=20, blank=True, help_text="Keys pressed, in order.")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["call_sid"], name="voicecall_sid")]

    def __str__(self) -> str:
        return f"Call {self.pk} ({self.status or 'placed'})"


class Experiment(models.Model):
    """A measured change to reminders: a random share of visits has a step withheld.

    Withholding every reminder is a holdout (do reminders work here?); withholding one step
    compares two cadences (does the 72-hour reminder add anything to the 24-hour one?).
    """

    ALL_STEPS = "all"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(
        Practice,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Blank: every practice of the organization.",
    )
    name = models.CharField(max_length=120)
    withheld_step = models.CharField(
        max_length=40,
        default=ALL_STEPS,
        help_text="'all' for a holdout, or a reminder step such as 'reminder:4320'.",
    )
    share_basis_points = models.PositiveIntegerField(
        help_text="Share of visits in the withheld arm, in 1/10000 (1000 = 10%)."
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        # The table kept its name when the model moved here from analytics.
        db_table = "analytics_experiment"
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(share_basis_points__gt=0, share_basis_points__lt=10000),
                name="experiment_share_between_0_and_1",
            )
        ]

    def __str__(self) -> str:
        return self.name


class ExperimentArm(models.TextChoices):
    CONTROL = "control", "Usual reminders"
    WITHHELD = "withheld", "Step withheld"


class PatientAssignment(models.Model):
    """A patient's arm in an experiment: drawn once, when one of their visits first became
    eligible, and kept for every later visit of theirs in that experiment."""

    experiment = models.ForeignKey(
        Experiment, on_delete=models.CASCADE, related_name="patient_assignments"
    )
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    # 0..9999, the patient's hash bucket (careline.messaging.experiments.bucket_of): kept so
    # anyone can check the arm against the experiment's share.
    bucket = models.PositiveSmallIntegerField()
    arm = models.CharField(max_length=10, choices=ExperimentArm.choices)
    assigned_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "patient"], name="one_arm_per_patient_and_experiment"
            )
        ]

    def __str__(self) -> str:
        return f"Patient {self.patient_id} in {self.arm}"


class ExperimentAssignment(models.Model):
    """A visit in an experiment, with its patient's arm; written once, when the visit is first
    planned while eligible."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="+")
    arm = models.CharField(max_length=10, choices=ExperimentArm.choices)
    # The step planning must skip for this visit ('' in the control arm).
    withheld_step = models.CharField(max_length=40, blank=True)
    assigned_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_experimentassignment"
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "appointment"], name="one_arm_per_visit_and_experiment"
            )
        ]
        indexes = [models.Index(fields=["appointment", "withheld_step"])]

    def __str__(self) -> str:
        return f"{self.appointment_id} in {self.arm}"


class RiskTouchPolicy(models.Model):
    """A practice's (or the whole organization's) extra touch for visits the no-show model
    rates at or above `threshold`: a randomized share gets one more reminder, the rest
    none, so the touch's effect is measured rather than assumed."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(
        Practice,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Blank: every practice of the organization.",
    )
    threshold = models.FloatField(help_text="No-show risk (0–1) from which a visit is high-risk.")
    touch_basis_points = models.PositiveIntegerField(
        default=5000, help_text="Share of high-risk visits that get the touch, in 1/10000."
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(threshold__gt=0, threshold__lt=1),
                name="risk_touch_threshold_between_0_and_1",
            ),
            models.CheckConstraint(
                condition=models.Q(touch_basis_points__gt=0, touch_basis_points__lt=10000),
                name="risk_touch_share_between_0_and_1",
            ),
        ]

    def __str__(self) -> str:
        return f"extra touch from risk {self.threshold:.0%}"


class TouchArm(models.TextChoices):
    TOUCH = "touch", "Extra touch"
    NO_TOUCH = "no_touch", "No extra touch"


class RiskTouch(models.Model):
    """A high-risk visit's arm, decided once: when it was first scored at or after its
    decision time (careline.messaging.touches)."""

    policy = models.ForeignKey(RiskTouchPolicy, on_delete=models.CASCADE, related_name="touches")
    appointment = models.OneToOneField(Appointment, on_delete=models.CASCADE, related_name="+")
    arm = models.CharField(max_length=10, choices=TouchArm.choices)
    risk = models.FloatField()
    decided_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.appointment_id} in {self.arm}"
