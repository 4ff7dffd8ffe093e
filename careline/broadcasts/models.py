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
    recipients = models.PositiveIntegerField(default=0)
    excluded = models.JSONField(default=dict)
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
