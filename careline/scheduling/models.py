"""Appointments and the working time they fit into."""

from __future__ import annotations

from datetime import time

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from careline.clinics.models import AppointmentType, Organization, Practice, Provider
from careline.clinics.scoping import ScopedQuerySet
from careline.patients.models import Patient


class AppointmentStatus(models.TextChoices):
    BOOKED = "booked", "Booked"
    CONFIRMED = "confirmed", "Confirmed"
    ARRIVED = "arrived", "Arrived"
    FULFILLED = "fulfilled", "Fulfilled"
    CANCELLED = "cancelled", "Cancelled"
    NO_SHOW = "noshow", "No-show"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


# Statuses in which an appointment holds its time on the provider's calendar.
OCCUPYING_STATUSES = (
    AppointmentStatus.BOOKED,
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.ARRIVED,
    AppointmentStatus.FULFILLED,
    AppointmentStatus.NO_SHOW,
)
# Statuses from which a reminder still makes sense.
UPCOMING_STATUSES = (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED)


class ChangeSource(models.TextChoices):
    STAFF = "staff", "Staff"
    # Staff acting on a visit in Careline's own pages or REST API (the day view, the
    # patient page): unlike other staff edits, the EHR hears of these (write-back).
    FRONT_DESK = "front_desk", "Front desk in Careline"
    PATIENT_TEXT = "patient_text", "Patient text"
    PATIENT_LINK = "patient_link", "Patient link"
    ONLINE_BOOKING = "online_booking", "Online booking"
    HL7 = "hl7", "HL7 feed"
    FHIR = "fhir", "FHIR API"
    CSV = "csv", "CSV import"
    SYSTEM = "system", "Careline"
    DEMO = "demo", "Demo data"


class Appointment(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    practice = models.ForeignKey(Practice, on_delete=models.PROTECT, related_name="appointments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="appointments")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="appointments")
    appointment_type = models.ForeignKey(
        AppointmentType, on_delete=models.PROTECT, related_name="appointments"
    )
    start = models.DateTimeField(help_text="UTC")
    end = models.DateTimeField(help_text="UTC")
    status = models.CharField(
        max_length=20, choices=AppointmentStatus.choices, default=AppointmentStatus.BOOKED
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField()
    status_source = models.CharField(max_length=20, choices=ChangeSource.choices)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The EHR is the source of truth for its own calendar and may overbook; only
    # appointments booked through Careline are held to "one patient per provider-time".
    allow_overlap = models.BooleanField(default=False)
    # Whose id external_id is: an identifier system (HL7 EI namespace or universal id, a
    # feed's namespace, FHIR Identifier.system, a CSV import's --source).
    external_system = models.CharField(max_length=255, blank=True)
    external_id = models.CharField(max_length=120, blank=True)
    # Time of the newest feed message applied, so an older one never rolls state back.
    external_updated_at = models.DateTimeField(null=True, blank=True)
    # Set by the organization's no-show model (careline train-noshow / score-noshow).
    noshow_risk = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # FHIR's meta.versionId and meta.lastUpdated: bumped by every change, whatever the door
    # (scheduling.appointments stamps them); each version is kept in AppointmentVersion.
    version = models.PositiveIntegerField(default=1, db_default=1)
    last_updated = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"

    class Meta:
        ordering = ["start"]
        indexes = [
            # The change feed: _lastUpdated searches sorted by (last_updated, id).
            models.Index(fields=["organization", "last_updated", "id"]),
            models.Index(fields=["practice", "start"]),
            models.Index(fields=["provider", "start"]),
            models.Index(fields=["patient", "start"]),
            models.Index(fields=["status", "start"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="end_after_start"
            ),
            # Portable half of the double-booking guarantee (PostgreSQL adds an exclusion
            # constraint over overlapping ranges in migration 0002).
            models.UniqueConstraint(
                fields=["provider", "start"],
                condition=models.Q(
                    allow_overlap=False,
                    status__in=["booked", "confirmed", "arrived", "fulfilled", "noshow"],
                ),
                name="one_booking_per_provider_start",
            ),
            models.UniqueConstraint(
                fields=["organization", "external_system", "external_id"],
                condition=~models.Q(external_id=""),
                name="appointment_external_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"Appointment {self.pk} at {self.start:%Y-%m-%d %H:%M} UTC"

    @property
    def local_start(self):
        return self.start.astimezone(self.practice.zone)


class AppointmentEvent(models.Model):
    """History of an appointment: what changed, who or what changed it, when."""

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    old_start = models.DateTimeField(null=True, blank=True)
    new_start = models.DateTimeField(null=True, blank=True)
    # The provider a move took the visit from, when it changed (so an undo can go back).
    old_provider = models.ForeignKey(
        Provider, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=20, choices=ChangeSource.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField()

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "appointment__practice"

    class Meta:
        ordering = ["occurred_at", "id"]


class AppointmentVersion(models.Model):
    """One version of an appointment as it was stored (FHIR vread and _history): the row's
    fields at that version, written in the same transaction as the change."""

    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="versions", db_index=False
    )
    version = models.PositiveIntegerField()
    last_updated = models.DateTimeField()
    fields = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "version"], name="appointment_version_unique"
            )
        ]


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class WorkingHours(models.Model):
    """A provider's recurring hours at one practice, in the practice's local time."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="working_hours")
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="working_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    start_time = models.TimeField()
    end_time = models.TimeField()

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"

    class Meta:
        verbose_name_plural = "working hours"
        ordering = ["provider", "weekday", "start_time"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end_time__gt=models.F("start_time")),
                name="hours_end_after_start",
            )
        ]


class RecurringBreak(models.Model):
    """A weekly break (lunch, admin time) in the practice's local time."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="breaks")
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="breaks")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    start_time = models.TimeField()
    end_time = models.TimeField()
    label = models.CharField(max_length=80, default="Break")

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"


class BlockedPeriod(models.Model):
    """One-off unavailability: a provider's vacation, or the whole practice when no provider."""

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="blocked_periods")
    provider = models.ForeignKey(
        Provider, on_delete=models.CASCADE, null=True, blank=True, related_name="blocked_periods"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=120, blank=True)

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"


class Holiday(models.Model):
    """A local date on which the practice is closed."""

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=120)

    objects = ScopedQuerySet.as_manager()
    practice_lookup = "practice"

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["practice", "date"], name="one_holiday_per_day")
        ]


def replace_working_hours(provider: Provider, practice: Practice, week) -> bool:
    """The provider's weekly hours at the practice become `week` (Monday first: an
    (opens, closes) span or None; closes None is midnight, kept as 23:59). Returns whether
    anything changed, so scripts can run twice."""
    wanted = {
        (day, span[0], span[1] or time(23, 59)) for day, span in enumerate(week) if span is not None
    }
    rows = WorkingHours.objects.filter(provider=provider, practice=practice)
    if set(rows.values_list("weekday", "start_time", "end_time")) == wanted:
        return False
    rows.delete()
    WorkingHours.objects.bulk_create(
        WorkingHours(provider=provider, practice=practice, weekday=d, start_time=s, end_time=e)
        for d, s, e in sorted(wanted)
    )
    return True
