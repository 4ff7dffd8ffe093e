"""API keys: how integrations (EHRs, engines, apps) prove which organization they act for."""

from __future__ import annotations

from django.db import models

from careline.clinics.models import Organization


class ApiKey(models.Model):
    """A bearer key scoped to one organization; only a hash of its secret is kept."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'Epic interface'.")
    # Public part of the key, shown in lists and logs so a key can be told apart and revoked.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64, help_text="SHA-256 of the key's secret part.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["organization", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
