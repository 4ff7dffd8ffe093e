"""Texts patients send in, stored before they are read, with what Careline made of them."""

from __future__ import annotations

from django.db import models

from careline.clinics.models import Organization, Practice
from careline.clinics.scoping import ScopedQuerySet
from careline.messaging.models import OutboundMessage
from careline.patients.models import Patient


class InboundIntent(models.TextChoices):
    OPT_OUT = "opt_out", "Opt-out (stop texting)"
    OPT_IN = "opt_in", "Opt-in (START)"
    HELP = "help", "Help request"
    # Left for reply understanding and the staff inbox.
    UNHANDLED = "unhandled", "Not handled automatically"
    UNKNOWN_NUMBER = "unknown_number", "Sent to a number no organization texts from"


class InboundAction(models.TextChoices):
    NONE = "none", "Nothing"
    OPTED_OUT = "opted_out", "Opted the number out"
    OPTED_IN = "opted_in", "Opted the number back in"
    ANSWERED_HELP = "answered_help", "Sent the help text"


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

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "from_phone", "received_at"]),
            models.Index(fields=["intent", "received_at"]),
        ]

    def __str__(self) -> str:
        return f"Inbound text {self.pk} ({self.intent or 'not read yet'})"

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        # A text not tied to one practice belongs to everyone in its organization.
        return models.Q(practice_id__in=practice_ids) | models.Q(
            practice__isnull=True,
            organization_id__in=Practice.objects.filter(id__in=practice_ids).values(
                "organization_id"
            ),
        )
