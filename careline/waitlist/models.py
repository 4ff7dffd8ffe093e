"""The waitlist: patients waiting for an earlier time, times that came free, and the offers
of those times.

The tables keep the names they had when the waitlist was part of self-service
(`selfservice_*`): the models moved, the data did not.
"""

from __future__ import annotations

from django.db import models

from careline.clinics.models import AppointmentType, Organization, Practice, Provider
from careline.clinics.scoping import ScopedQuerySet
from careline.patients.models import Patient
from careline.scheduling.models import Appointment, AppointmentEvent


class WaitlistSource(models.TextChoices):
    ONLINE = "online", "Booking page"
    TEXT = "text", "Text message"
    STAFF = "staff", "Staff"


class WaitlistEntry(models.Model):
    """A patient waiting for an earlier time at a practice (optionally with one provider)."""

    class Closed(models.TextChoices):
        FILLED = "filled", "Got a slot"
        PATIENT = "patient", "Left the waitlist"
        STAFF = "staff", "Removed by staff"
        REPLACED = "replaced", "Replaced by a newer request"
        MERGED = "merged", "Merged with the patient's other record"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="waitlist")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="waitlist_entries")
    provider = models.ForeignKey(
        Provider,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Blank: any provider at the practice.",
    )
    appointment_type = models.ForeignKey(
        AppointmentType, on_delete=models.CASCADE, related_name="+"
    )
    appointment = models.ForeignKey(
        Appointment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The later visit to move earlier; blank books a new visit.",
    )
    earliest_date = models.DateField(help_text="First local day the patient can come.")
    latest_date = models.DateField(help_text="Last local day the patient can come.")
    source = models.CharField(max_length=10, choices=WaitlistSource.choices)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.CharField(max_length=10, choices=Closed.choices, blank=True)

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"

    class Meta:
        db_table = "selfservice_waitlistentry"
        verbose_name_plural = "waitlist entries"
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(latest_date__gte=models.F("earliest_date")),
                name="waitlist_range_ordered",
            )
        ]
        indexes = [models.Index(fields=["practice", "active", "earliest_date"])]

    def __str__(self) -> str:
        return f"Waitlist entry {self.pk}"


class SlotOpening(models.Model):
    """A booked time that became free and what became of it; analytics counts `filled`."""

    class State(models.TextChoices):
        OPEN = "open", "Waiting to be offered"
        OFFERING = "offering", "Offered"
        FILLED = "filled", "Filled from the waitlist"
        UNFILLED = "unfilled", "Nobody took it"
        WITHDRAWN = "withdrawn", "Taken otherwise or too late"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    freed_by = models.OneToOneField(
        AppointmentEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    batches_sent = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    filled_appointment = models.ForeignKey(
        Appointment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"

    class Meta:
        db_table = "selfservice_slotopening"
        indexes = [
            models.Index(fields=["state", "start"]),
            models.Index(fields=["practice", "closed_at"]),
        ]

    def __str__(self) -> str:
        return f"Slot opening {self.pk} ({self.state})"


class WaitlistOffer(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Waiting for an answer"
        ACCEPTED = "accepted", "Taken"
        DECLINED = "declined", "Passed"
        EXPIRED = "expired", "Expired"
        GONE = "gone", "Filled by someone else"

    opening = models.ForeignKey(SlotOpening, on_delete=models.CASCADE, related_name="offers")
    entry = models.ForeignKey(WaitlistEntry, on_delete=models.CASCADE, related_name="offers")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    phone = models.CharField(max_length=20)
    batch = models.PositiveSmallIntegerField()
    sent_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "selfservice_waitlistoffer"
        constraints = [
            models.UniqueConstraint(fields=["opening", "entry"], name="one_offer_per_entry")
        ]
        indexes = [
            models.Index(fields=["phone", "state", "sent_at"]),
            models.Index(fields=["state", "expires_at"]),
        ]


class FreedSlotCursor(models.Model):
    """How far the appointment history has been read for freed times (one row)."""

    last_event_id = models.BigIntegerField(default=0)

    class Meta:
        db_table = "selfservice_freedslotcursor"
