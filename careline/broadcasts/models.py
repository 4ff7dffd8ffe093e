"""One message from staff to many patients: 'office closed, your visit moves to telehealth'."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from careline.clinics.models import Organization, Practice
from careline.clinics.scoping import ScopedQuerySet


class Broadcast(models.Model):
    class State(models.TextChoices):
        # Recorded by the page; the worker has not queued its texts yet.
        QUEUED = "queued", "Queued"
        # Its texts are in the outbox and going out (the page shows "Sent (n of N)").
        SENDING = "sending", "Sending"
        # Nothing of it is left to send.
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # The audience never reaches beyond these practices (those the sender could see).
    practices = models.ManyToManyField(Practice, related_name="broadcasts")
    name = models.CharField(max_length=120)
    body_en = models.TextField()
    body_es = models.TextField(blank=True)
    audience = models.JSONField(default=dict, help_text="The filters used, for the record.")
    send_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    # None until counted: a large audience is counted by the worker, not by the request.
    recipients = models.PositiveIntegerField(null=True, blank=True, default=None)
    excluded = models.JSONField(default=dict)
    # While the worker queues its texts, chunk by chunk in short transactions: the highest
    # patient id queued so far (0 before the first chunk); None once all are queued.
    queued_through = models.BigIntegerField(null=True, blank=True, default=None)
    queue_progressed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        # Visible only when every practice it went to is one of the viewer's.
        through = cls.practices.through.objects
        return ~models.Q(
            id__in=through.exclude(practice_id__in=practice_ids).values("broadcast_id")
        ) & models.Q(id__in=through.values("broadcast_id"))


class BroadcastPreview(models.Model):
    """An audience count asked for by the compose page and counted by the worker: a large
    practice group's count takes seconds, which no web request may spend (issue 21)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # The audience and sending time as counted (sending.Audience.as_record() + send_at).
    audience = models.JSONField()
    send_at = models.DateTimeField(null=True, blank=True)
    # Same audience and time, same key: repeated asks while composing share one count.
    key = models.CharField(max_length=64)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, related_name="+"
    )
    requested_at = models.DateTimeField()
    counted_at = models.DateTimeField(null=True, blank=True)
    # sending.Preview's fields once counted.
    result = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["key", "requested_at"], name="broadcast_preview_key"),
            models.Index(
                fields=["requested_at"],
                name="broadcast_preview_waiting",
                condition=models.Q(counted_at__isnull=True),
            ),
        ]
