"""A practice's office hours: the one writer of `OfficeHours`, and the week they describe.

A day is "HH:MM-HH:MM" in the practice's local time ("24:00" closes at midnight) or blank
for closed. A practice with no row of its own keeps the installation's default,
CARELINE_OFFICE_HOURS, so existing installations behave as before.
"""

from __future__ import annotations

import re
from datetime import time

from django.core.exceptions import ValidationError

from careline.clinics.models import OfficeHours, Practice

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# (opens, closes) local time; closes None means midnight. None for a closed day.
Span = tuple[time, time | None]
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_span(value: str) -> Span | None:
    """ "08:00-18:00" → (08:00, 18:00); "" → None (closed). Raises ValidationError."""
    if not value.strip():
        return None
    found = _SPAN.match(value)
    if not found:
        raise ValidationError("Write the hours as 08:00-18:00, or leave the day empty if closed.")
    oh, om, ch, cm = (int(n) for n in found.groups())
    if oh > 23 or om > 59 or ch > 24 or cm > 59 or (ch == 24 and cm):
        raise ValidationError(f"{value.strip()} is not a time of day.")
    opens = time(oh, om)
    closes = None if ch == 24 else time(ch, cm)
    if closes is not None and closes <= opens:
        raise ValidationError("The office closes before it opens.")
    return opens, closes


_DAY_NAMES = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_WEEK_PART = re.compile(
    r"^\s*(?P<days>[a-z]{3}(?:\s*-\s*[a-z]{3})?(?:\s*,\s*[a-z]{3}(?:\s*-\s*[a-z]{3})?)*)\s+"
    r"(?P<hours>\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2})\s*$"
)


def parse_week(value: str) -> tuple[Span | None, ...]:
    """ "Mon-Fri 08:00-18:00", "Mon-Thu,Sat 09:00-13:00; Fri 08:00-12:00" (parts joined by
    ";", a later part overriding an earlier one's day) → each weekday's span, Monday first;
    days not named are closed. Raises ValidationError saying what is wrong."""
    days: list[Span | None] = [None] * 7
    parts = [p for p in value.lower().split(";") if p.strip()]
    if not parts:
        raise ValidationError("Write the hours like 'Mon-Fri 08:00-18:00'.")
    for part in parts:
        found = _WEEK_PART.match(part)
        if not found:
            raise ValidationError(
                f"'{part.strip()}' does not look like 'Mon-Fri 08:00-18:00' "
                "(weekdays as Mon, Tue, … Sun; parts joined by ';')."
            )
        span = parse_span(found["hours"])
        for run in found["days"].split(","):
            ends = [e.strip() for e in run.split("-")]
            unknown = [e for e in ends if e not in _DAY_NAMES]
            if unknown:
                raise ValidationError(f"'{unknown[0]}' is not a weekday (Mon, Tue, … Sun).")
            first, last = _DAY_NAMES[ends[0]], _DAY_NAMES[ends[-1]]
            for d in range(first, last + 1 if last >= first else last + 8):
                days[d % 7] = span
    return tuple(days)


def format_span(span: Span | None) -> str:
    if span is None:
        return ""
    opens, closes = span
    return f"{opens:%H:%M}-{closes:%H:%M}" if closes is not None else f"{opens:%H:%M}-24:00"


def practice_week(practice: Practice | None) -> tuple[Span | None, ...] | None:
    """The practice's own week, Monday first; None when it keeps the default."""
    if practice is None:
        return None
    row = OfficeHours.objects.filter(practice=practice).first()
    if row is None:
        return None
    return tuple(parse_span(getattr(row, day)) for day in WEEKDAYS)


def save_office_hours(practice: Practice, days: dict[str, str]) -> OfficeHours:
    """Give the practice its own hours: `days` maps each weekday name to "08:00-18:00" or
    "" (closed). Raises ValidationError naming the day; nothing is stored then."""
    errors: dict[str, list[str]] = {}
    values = {}
    for day in WEEKDAYS:
        try:
            values[day] = format_span(parse_span(days.get(day, "")))
        except ValidationError as exc:
            errors[day] = exc.messages
    if errors:
        raise ValidationError(errors)
    row, _ = OfficeHours.objects.update_or_create(practice=practice, defaults=values)
    return row


def use_default_hours(practice: Practice) -> None:
    """Back to the installation's default hours (CARELINE_OFFICE_HOURS)."""
    OfficeHours.objects.filter(practice=practice).delete()


def save_week(practice: Practice, week: tuple[Span | None, ...]) -> OfficeHours:
    """Give the practice these hours (`parse_week`'s result), Monday first."""
    return save_office_hours(
        practice, {day: format_span(span) for day, span in zip(WEEKDAYS, week, strict=True)}
    )
