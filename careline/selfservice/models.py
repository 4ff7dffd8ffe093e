"""What patients do on their own: signed links, one-time codes, rate limits.

The waitlist and its offers are careline.waitlist's."""

from __future__ import annotations

from django.db import models

from careline.clinics.models import Practice
from careline.scheduling.models import Appointment


class RateCounter(models.Model):
    """Hits of one rate limit in one fixed window; shared by every process via the database.

    `key` is a keyed hash of the limit's name and subject (a number or an address), so the
    table never holds a phone number."""

    key = models.CharField(max_length=64)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="one_counter_per_window")
        ]
        indexes = [models.Index(fields=["window_start"])]


class OneTimeCode(models.Model):
    """A code texted to prove the booker holds the mobile number; only its hash is kept."""

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="+")
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)


class LinkPurpose(models.TextChoices):
    MANAGE = "manage", "Confirm, cancel or move a visit"
    OFFER = "offer", "Take a waitlist offer"
    # An email's buttons: each does its one thing once.
    CONFIRM = "confirm", "Confirm a visit (from an email)"
    CANCEL = "cancel", "Cancel a visit (from an email)"
    MOVE = "move", "Move a visit (from an email)"
    # An email's unsubscribe link (List-Unsubscribe): stops email to the address the
    # email went to (its outbound message's), in the consent ledger.
    STOP_EMAIL = "stop_email", "Stop emails to an address"


# The purposes that act on one visit (and end when it starts).
VISIT_PURPOSES = (LinkPurpose.MANAGE, LinkPurpose.CONFIRM, LinkPurpose.CANCEL, LinkPurpose.MOVE)


class PatientLink(models.Model):
    """A short random token sent to a patient; the database keeps only its SHA-256.

    A link does one thing (its purpose) for one visit or one offer, expires, and is spent
    by the action that changes the visit (cancel, move, take or pass an offer)."""

    token_hash = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=10, choices=LinkPurpose.choices)
    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    offer = models.ForeignKey(
        "waitlist.WaitlistOffer",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="links",
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    birth_date_failures = models.PositiveSmallIntegerField(default=0)
    # The text (messaging.OutboundMessage) that carries this link. The outbox stores texts
    # with the token redacted, so a (re)send issues a fresh link like this one
    # (careline.selfservice.links.reissue_for_messages). A plain id, as the outbox's own
    # broadcast_id: deleting old texts need not visit the links.
    outbound_message_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        purpose__in=["manage", "confirm", "cancel", "move"],
                        appointment__isnull=False,
                        offer__isnull=True,
                    )
                    | models.Q(purpose="offer", offer__isnull=False)
                    | models.Q(
                        purpose="stop_email", outbound_message_id__isnull=False, offer__isnull=True
                    )
                ),
                name="link_has_its_target",
            )
        ]
