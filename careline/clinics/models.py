"""Who provides care where: organizations, practices, providers, visit types, staff."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.functions import Now

from careline.clinics.scoping import ScopedQuerySet, StaffRole
from careline.clinics.validators import normalize_phone, validate_time_zone
from careline.versions import stamp


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    default_sender_number = models.CharField(
        max_length=20,
        blank=True,
        help_text="E.164 number texts come from when a practice has none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(
            id__in=Practice.objects.filter(id__in=practice_ids).values("organization_id")
        )

    def clean(self) -> None:
        if self.default_sender_number:
            self.default_sender_number = normalize_phone(self.default_sender_number)


class Practice(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="practices"
    )
    name = models.CharField(max_length=200)
    code = models.CharField(
        max_length=40, help_text="Short code used by feeds and links, unique in the organization."
    )
    phone = models.CharField(max_length=20, blank=True, help_text="Front-desk number, E.164.")
    address = models.CharField(max_length=300, blank=True)
    time_zone = models.CharField(
        max_length=64, default="America/New_York", validators=[validate_time_zone]
    )
    sender_number = models.CharField(
        max_length=20,
        blank=True,
        help_text="Number texts come from (E.164); blank: organization's.",
    )
    go_live_date = models.DateField(null=True, blank=True)
    # FHIR Location's meta.versionId and meta.lastUpdated (the change feed), stamped by
    # `save` on every change, whichever door made it.
    version = models.PositiveIntegerField(default=1, db_default=1, editable=False)
    last_updated = models.DateTimeField(db_default=Now(), editable=False)

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "id"

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "code"], name="practice_code_unique")
        ]
        indexes = [models.Index(fields=["organization", "last_updated", "id"])]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def texting_number(self) -> str:
        return self.sender_number or self.organization.default_sender_number

    def save(self, *args, **kwargs) -> None:
        # This model is its table's one writer: every save is the practice's next version.
        with transaction.atomic():
            stamp(self)
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = [*update_fields, "version", "last_updated"]
            super().save(*args, **kwargs)

    def clean(self) -> None:
        errors = {}
        for field in ("phone", "sender_number"):
            value = getattr(self, field)
            if value:
                try:
                    setattr(self, field, normalize_phone(value))
                except ValidationError as exc:
                    errors[field] = exc.messages
        if errors:
            raise ValidationError(errors)


class Provider(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="providers"
    )
    practices = models.ManyToManyField(Practice, related_name="providers", blank=True)
    display_name = models.CharField(max_length=200, help_text="As patients see it: 'Dr. Lee'.")
    family_name = models.CharField(max_length=100, blank=True)
    given_name = models.CharField(max_length=100, blank=True)
    npi = models.CharField("NPI", max_length=10, blank=True)
    active = models.BooleanField(default=True)
    # FHIR Practitioner's (and its Schedules') meta.versionId and meta.lastUpdated, stamped
    # by clinics.directory on every change, including where the provider works.
    version = models.PositiveIntegerField(default=1, db_default=1, editable=False)
    last_updated = models.DateTimeField(db_default=Now(), editable=False)

    objects = ScopedQuerySet.as_manager()

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(
            id__in=Provider.practices.through.objects.filter(practice_id__in=practice_ids).values(
                "provider_id"
            )
        )

    class Meta:
        ordering = ["display_name"]
        indexes = [models.Index(fields=["organization", "last_updated", "id"])]

    def __str__(self) -> str:
        return self.display_name


class _OrganizationWide(models.Model):
    """A row that belongs to the whole organization: seen by staff of any of its practices."""

    objects = ScopedQuerySet.as_manager()

    class Meta:
        abstract = True

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(
            organization_id__in=Practice.objects.filter(id__in=practice_ids).values(
                "organization_id"
            )
        )


class AppointmentType(_OrganizationWide):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="appointment_types"
    )
    code = models.CharField(max_length=40)
    name = models.CharField(max_length=120, help_text="Internal name, may be clinical.")
    patient_facing_name = models.CharField(
        max_length=120, help_text="What the patient sees in texts and pages, PHI-minimal."
    )
    duration_minutes = models.PositiveIntegerField(default=20)
    bookable_online = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "code"], name="appointment_type_code_unique"
            )
        ]

    def __str__(self) -> str:
        return self.name


class StaffMembership(_OrganizationWide):
    """A staff user's role in an organization; practice-level roles list their practices."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="staff")
    role = models.CharField(max_length=20, choices=StaffRole.choices)
    practices = models.ManyToManyField(Practice, blank=True, related_name="staff_memberships")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.organization}"


class SenderNumber(models.Model):
    """A texting number and the one organization it belongs to.

    Replies to a number reach the organization that claimed it, so the database holds each
    number once: a second organization cannot claim it (careline.clinics.numbers).
    """

    phone = models.CharField(max_length=20, unique=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="sender_numbers"
    )
    claimed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["phone"]

    def __str__(self) -> str:
        return f"{self.phone} ({self.organization})"


class OfficeHours(models.Model):
    """A practice's own office hours, local time: when someone reads the inbox, so when a
    patient's text gets the after-hours answer. Each day is "08:00-18:00" or blank (closed).
    A practice without a row keeps CARELINE_OFFICE_HOURS. Written by clinics.office_hours;
    the dates it is closed are the practice's holidays (scheduling.holidays)."""

    practice = models.OneToOneField(Practice, on_delete=models.CASCADE, related_name="office_hours")
    monday = models.CharField(max_length=11, blank=True)
    tuesday = models.CharField(max_length=11, blank=True)
    wednesday = models.CharField(max_length=11, blank=True)
    thursday = models.CharField(max_length=11, blank=True)
    friday = models.CharField(max_length=11, blank=True)
    saturday = models.CharField(max_length=11, blank=True)
    sunday = models.CharField(max_length=11, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "office hours"

    def __str__(self) -> str:
        return f"Office hours of {self.practice}"
