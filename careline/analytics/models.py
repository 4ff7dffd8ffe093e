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


class Experiment(models.Model):
    """A measured change to reminders: a random share of visits has a step withheld.

    Withholding every reminder is a holdout (do reminders work here?); withholding one step
    compares two cadences (does the 72-hour reminder add anything to the 24-hour one?).
    """

    ALL_STEPS = "all"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(
        "clinics.Practice",
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


class ExperimentAssignment(models.Model):
    """Which arm a visit fell in; written once, when the visit is first planned."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.CASCADE, related_name="+"
    )
    arm = models.CharField(max_length=10, choices=ExperimentArm.choices)
    # The step planning must skip for this visit ('' in the control arm).
    withheld_step = models.CharField(max_length=40, blank=True)
    assigned_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "appointment"], name="one_arm_per_visit_and_experiment"
            )
        ]
        indexes = [models.Index(fields=["appointment", "withheld_step"])]

    def __str__(self) -> str:
        return f"{self.appointment_id} in {self.arm}"
