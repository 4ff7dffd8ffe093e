"""The dates a practice is closed: the one writer of `Holiday`. No bookable slots on them,
and a patient's text gets the after-hours answer (conversations.inbox)."""

from __future__ import annotations

from datetime import date

from django.core.exceptions import ValidationError

from careline.clinics.models import Practice
from careline.scheduling.models import Holiday


def add_holiday(practice: Practice, day: date, name: str) -> Holiday:
    """Close the practice on `day`. Raises ValidationError naming the field."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Say what the day is (e.g. Thanksgiving)."})
    if len(name) > 120:
        raise ValidationError({"name": "At most 120 characters."})
    if Holiday.objects.filter(practice=practice, date=day).exists():
        raise ValidationError({"date": f"{practice.name} is already closed on {day:%Y-%m-%d}."})
    return Holiday.objects.create(practice=practice, date=day, name=name)


def remove_holiday(practice: Practice, holiday_id: int) -> bool:
    deleted, _ = Holiday.objects.filter(practice=practice, pk=holiday_id).delete()
    return bool(deleted)
