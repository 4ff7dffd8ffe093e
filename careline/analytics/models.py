from django.db import models

from careline.clinics.models import Organization


class NoShowModel(models.Model):
    """A no-show risk model fitted on one organization's own history.

    Stored as plain coefficients (no pickles): scoring is a dot product anyone can audit.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    trained_at = models.DateTimeField(auto_now_add=True)
    feature_names = models.JSONField()
    coefficients = models.JSONField()
    intercept = models.FloatField()
    # Scaling applied before the coefficients: (x - mean) / scale per feature.
    means = models.JSONField()
    scales = models.JSONField()
    report = models.JSONField(help_text="AUC, Brier score and calibration, model vs baseline.")

    class Meta:
        ordering = ["-trained_at"]

    def __str__(self) -> str:
        return f"No-show model of {self.organization} ({self.trained_at:%Y-%m-%d})"
