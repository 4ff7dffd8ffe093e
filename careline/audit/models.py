"""Who looked at or changed which patient's data, and when."""

from django.conf import settings
from django.db import models

from careline.clinics.scoping import ScopedQuerySet


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        VIEW = "view", "Viewed"
        EXPORT = "export", "Exported"
        CHANGE = "change", "Changed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    patient = models.ForeignKey(
        "patients.Patient", on_delete=models.CASCADE, null=True, related_name="audit_events"
    )
    practice = models.ForeignKey(
        "clinics.Practice", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    what = models.CharField(max_length=120, help_text="Which page or export, never patient data")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["patient", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.user} {self.action} patient {self.patient_id} ({self.what})"
