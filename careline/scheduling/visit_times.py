"""Which visit times Careline accepts from any door (booking pages, links, CSV).

The reminder planner subtracts up to 60 days from a visit's start and the slot search adds
a quarter to a day; a visit in year 9999 (or year 1) makes that date arithmetic overflow
in the shared worker, so such a time is refused where it is typed in, not stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

# History older than this is no use for reminders or reports.
EARLIEST_VISIT = datetime(1900, 1, 1, tzinfo=UTC)
# Nobody books ten years ahead; a later year is a typo (2062 for 2026) or an attack.
MAX_YEARS_AHEAD = 10
# The longest visit a feed may describe (an all-day procedure).
MAX_VISIT_MINUTES = 24 * 60


def latest_visit(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(days=366 * MAX_YEARS_AHEAD)


def check_visit_start(start: datetime, *, now: datetime | None = None) -> None:
    """ValidationError unless `start` (timezone-aware) lies between 1900 and ten years
    from now."""
    if start.tzinfo is None:
        raise ValidationError("The visit time needs a time zone.", code="visit_naive")
    try:
        in_range = EARLIEST_VISIT <= start <= latest_visit(now)
    except OverflowError:  # an offset that pushes year 1 or 9999 off the calendar
        in_range = False
    if not in_range:
        raise ValidationError(
            f"The visit must be between {EARLIEST_VISIT.year} and "
            f"{MAX_YEARS_AHEAD} years from now.",
            code="visit_out_of_range",
        )


def acceptable_visit_start(start: datetime | None, *, now: datetime | None = None) -> bool:
    if start is None:
        return False
    try:
        check_visit_start(start, now=now)
    except ValidationError:
        return False
    return True
