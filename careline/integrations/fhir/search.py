"""FHIR search parameter parsing: dates with prefixes and partial precision, tokens, references."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from django.db.models import Q
from django.utils import timezone

from careline.integrations.fhir.errors import FhirError

MAX_PK = 2**63 - 1
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_OFFSET = 2**31

# Result-shaping parameters every search accepts; anything else must be a declared parameter
# so a misspelled filter is an error rather than a silently unfiltered result.
COMMON_PARAMETERS = {
    "_count",
    "_offset",
    "_format",
    "_pretty",
    "_summary",
    "_total",
    "_totalMethod",
    # The change feed: _sort=_lastUpdated pages by (meta.lastUpdated, id); _cursor is the
    # key a Bundle's next link carries.
    "_sort",
    "_cursor",
}

# ASCII digits only (re.ASCII): Python's \d and int() also read "٣" and other scripts' digits.
DATE_PATTERN = re.compile(
    r"^(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?"
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,6})?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$",
    re.ASCII,
)
# Search dates are refused outside these years: far enough from Python's years 1 and 9999
# that prefixes, time zones and ap's margin (a tenth of the distance from now) never
# overflow, and wide enough for any birth date or visit.
FIRST_SEARCH_YEAR, LAST_SEARCH_YEAR = 1000, 8999


def is_ascii_number(value: str) -> bool:
    """Only 0-9: str.isdigit() also takes "²" (which int() then refuses) and "٣"."""
    return value.isascii() and value.isdigit()


def parse_pk(value: str) -> int | None:
    """A database id from a FHIR id, or None when it cannot be one of ours."""
    value = value.strip()
    if not is_ascii_number(value) or len(value) > 19:
        return None
    number = int(value)
    return number if 0 < number <= MAX_PK else None


def reference_pk(value: str, resource_type: str) -> int | None:
    """The id in `Type/123`, `123` or `https://…/Type/123`; None if it names something else."""
    value = value.strip()
    if "/" in value:
        parts = value.rstrip("/").split("/")
        if len(parts) < 2 or parts[-2] != resource_type:
            return None
        value = parts[-1]
    return parse_pk(value)


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system
    code: str | None  # None: any code in the system


def parse_token(raw: str) -> Token:
    if "|" not in raw:
        return Token(None, raw)
    system, _, code = raw.partition("|")
    return Token(system, code or None)


def _zone_from_offset(text: str) -> tzinfo:
    if text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone.get_fixed_timezone(sign * (hours * 60 + minutes))


def date_range(raw: str, zone: tzinfo) -> tuple[str, datetime, datetime]:
    """(prefix, start, end) of a FHIR date search value: the half-open range it denotes.

    A value without a time zone is read in `zone`, so `2025-03-10` at a practice means that
    practice's calendar day.
    """
    match = DATE_PATTERN.match(raw.strip())
    if not match:
        raise FhirError(
            400,
            f"'{raw}' is not a FHIR date search value: use an optional prefix "
            "(eq, ne, gt, lt, ge, le, sa, eb, ap) and YYYY, YYYY-MM, YYYY-MM-DD or "
            "YYYY-MM-DDThh:mm[:ss][Z|+hh:mm], e.g. ge2025-03-01.",
        )
    g = match.groupdict()
    if not FIRST_SEARCH_YEAR <= int(g["year"]) <= LAST_SEARCH_YEAR:
        raise FhirError(
            400,
            f"'{raw}': search dates must be in the years {FIRST_SEARCH_YEAR} to "
            f"{LAST_SEARCH_YEAR}.",
            code="value",
        )
    try:
        tz = _zone_from_offset(g["tz"]) if g["tz"] else zone
        year = int(g["year"])
        if g["month"] is None:
            start = datetime(year, 1, 1, tzinfo=tz)
            end = datetime(year + 1, 1, 1, tzinfo=tz)
        elif g["day"] is None:
            month = int(g["month"])
            start = datetime(year, month, 1, tzinfo=tz)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
        elif g["hour"] is None:
            start = datetime(year, int(g["month"]), int(g["day"]), tzinfo=tz)
            end = start + timedelta(days=1)
        else:
            second = int(g["second"] or 0)
            micro = int((g["fraction"] or ".0")[1:].ljust(6, "0"))
            start = datetime(
                year,
                int(g["month"]),
                int(g["day"]),
                int(g["hour"]),
                int(g["minute"]),
                second,
                micro,
                tzinfo=tz,
            )
            if g["fraction"]:
                precision = timedelta(microseconds=10 ** (6 - len(g["fraction"][1:])))
            elif g["second"]:
                precision = timedelta(seconds=1)
            else:
                precision = timedelta(minutes=1)
            end = start + precision
    except (ValueError, OverflowError) as exc:
        raise FhirError(400, f"'{raw}' is not a real date or time: {exc}.") from exc
    return g["prefix"] or "eq", start, end


def date_q(field: str, raw: str, zone: tzinfo, *, as_date: bool = False) -> Q:
    """FHIR date search semantics for a field holding a point in time (or a calendar date)."""
    prefix, start, end = date_range(raw, zone)
    if prefix == "ap":
        # "Approximately": within 10% of the distance from now, at least a day either side.
        margin = max(abs(timezone.now() - start) / 10, timedelta(days=1))
        start, end = start - margin, end + margin
    lo: date | datetime = start
    hi: date | datetime = end
    if as_date:
        # Widen to whole days: a time within a day still denotes that day.
        lo = start.date()
        hi = (end - timedelta(microseconds=1)).date() + timedelta(days=1)
    in_range = Q(**{f"{field}__gte": lo, f"{field}__lt": hi})
    return {
        "eq": in_range,
        "ne": ~in_range,
        "gt": Q(**{f"{field}__gte": hi}),
        "sa": Q(**{f"{field}__gte": hi}),
        "ge": Q(**{f"{field}__gte": lo}),
        "lt": Q(**{f"{field}__lt": lo}),
        "eb": Q(**{f"{field}__lt": lo}),
        "le": Q(**{f"{field}__lt": hi}),
        "ap": in_range,
    }[prefix]


@contextmanager
def search_parameter(name: str) -> Iterator[None]:
    """An error raised while reading the search parameter `name` names it (the
    OperationOutcome's expression), so the caller knows which value to fix."""
    try:
        yield
    except FhirError as exc:
        if not exc.expression:
            exc.expression = [name]
        raise


def any_of(values: str, build) -> Q:
    """Comma-separated values of one parameter are ORed, as FHIR specifies."""
    q = Q(pk__in=[])
    for value in values.split(","):
        q |= build(value)
    return q


def page_size(raw: str | None) -> int:
    """The page size asked for, at most MAX_PAGE_SIZE (FHIR lets a server return fewer)."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not is_ascii_number(raw) or len(raw) > 10 or int(raw) > MAX_OFFSET:
        raise FhirError(
            400,
            f"_count must be a whole number from 0 to {MAX_OFFSET} (pages hold at most "
            f"{MAX_PAGE_SIZE}), got '{raw}'.",
            code="value",
            expression=["_count"],
        )
    return min(int(raw), MAX_PAGE_SIZE)


def page_offset(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not is_ascii_number(raw) or len(raw) > 10 or int(raw) > MAX_OFFSET:
        raise FhirError(
            400,
            f"_offset must be a whole number from 0 to {MAX_OFFSET}, got '{raw}'.",
            code="value",
            expression=["_offset"],
        )
    return int(raw)


# The first key of a change feed (before any stored time).
FEED_START = (datetime(1, 1, 2, tzinfo=UTC), 0)


def sort_by_last_updated(values: list[str], versioned: bool, resource_type: str) -> bool:
    """Whether `_sort` asks for the change-feed order; 400 for any other order."""
    wanted = [key.strip() for value in values for key in value.split(",") if key.strip()]
    if not wanted:
        return False
    if wanted == ["_lastUpdated"] and versioned:
        return True
    raise FhirError(
        400,
        f"_sort={','.join(wanted)} is not supported for {resource_type}: "
        + (
            "only _sort=_lastUpdated (oldest change first)."
            if versioned
            else "results come in a fixed order."
        ),
        code="not-supported",
        expression=["_sort"],
    )


def page_cursor(raw: str | None, read_key: Callable[[str], Any] = parse_pk) -> tuple[datetime, Any]:
    """The (last_updated, key) after which a change-feed page starts: `_cursor` from a next
    link, or the feed's start. `read_key` reads the key (an id, by default), None when it
    is not one."""
    if not raw:
        return FEED_START
    stamp, _, pk = raw.partition("|")
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        at = None
    key = read_key(pk)
    if at is None or at.tzinfo is None or key is None:
        raise FhirError(
            400,
            f"_cursor '{raw[:80]}' is not one this server wrote; follow the Bundle's next link.",
            expression=["_cursor"],
        )
    return at, key
