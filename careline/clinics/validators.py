"""Validation of the values people type in: time zones, phone numbers, ids and dates.

Every staff page, booking page and import reads ids and dates through the helpers here, so
that odd input ("²", "٣", an id beyond the database's integers, year 9999) gets an
error naming the field instead of an exception deep in a query or in date arithmetic."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime

import phonenumbers
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

# Ids are 64-bit (BigAutoField) on SQLite and PostgreSQL; a larger number makes the
# database driver raise OverflowError instead of finding nothing.
MAX_ID = 2**63 - 1
# The dates Careline computes with. Pages step a day or a week from a date, the slot search
# a quarter and the planner 60 days back; near year 1 or 9999 that leaves the calendar.
FIRST_DATE = date(1900, 1, 1)
LAST_DATE = date(2999, 12, 31)


def parse_id(value: object) -> int | None:
    """The database id written in `value` (ASCII digits only), or None when it is not one.

    str.isdigit() is True for "²" (int() refuses it) and int() reads "٣" as 3; an id is
    only ever written with 0-9 by our pages."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


def validate_calendar_date(value: date | datetime) -> None:
    day = value.date() if isinstance(value, datetime) else value
    if not FIRST_DATE <= day <= LAST_DATE:
        raise ValidationError(
            f"Enter a date between {FIRST_DATE.year} and {LAST_DATE.year}.",
            code="date_out_of_range",
        )


def calendar_date(text: str | None) -> date | None:
    """A YYYY-MM-DD date from a URL or query string, None when absent, malformed or out of
    range."""
    if not text or not text.isascii():
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if FIRST_DATE <= day <= LAST_DATE else None


def query_id(params, name: str) -> int | None:
    """The id in query or form parameter `name`; None when absent or blank, ValidationError
    naming the parameter when it is something else."""
    text = params.get(name, "")
    if not text:
        return None
    number = parse_id(text)
    if number is None:
        raise ValidationError(f"{name}: not an id from the list.", code="invalid_id")
    return number


def query_date(params, name: str) -> date | None:
    """The YYYY-MM-DD date in parameter `name`; None when absent or blank, ValidationError
    naming the parameter when it is not a date Careline can compute with."""
    text = params.get(name, "")
    if not text:
        return None
    day = calendar_date(text)
    if day is None:
        raise ValidationError(
            f"{name}: enter a date YYYY-MM-DD between {FIRST_DATE.year} and {LAST_DATE.year}.",
            code="invalid_date",
        )
    return day


class IdField(forms.IntegerField):
    """A database id: ASCII digits, at least 1, within the database's integers."""

    default_error_messages = {"invalid": "Choose one from the list."}

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        kwargs.setdefault("widget", forms.HiddenInput)
        super().__init__(**kwargs)

    def to_python(self, value):
        if value in self.empty_values:
            return None
        number = parse_id(value)
        if number is None:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return number


class CalendarDateField(forms.DateField):
    """A date within FIRST_DATE..LAST_DATE."""

    default_validators = [validate_calendar_date]


class CalendarDateTimeField(forms.DateTimeField):
    """A date and time within FIRST_DATE..LAST_DATE."""

    default_validators = [validate_calendar_date]


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValidationError(
            f"'{value}' is not an IANA time zone (for example America/Chicago).",
            code="invalid_time_zone",
        ) from exc


def normalize_phone(raw: str, region: str | None = None) -> str:
    """Return the number in E.164 (+15125550123) or raise ValidationError saying why."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError("A phone number is required.", code="phone_missing")
    region = region or settings.CARELINE_DEFAULT_REGION
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            f"'{text}' is not a phone number: {exc}", code="phone_unparseable"
        ) from exc
    if not phonenumbers.is_possible_number(number):
        raise ValidationError(
            f"'{text}' has the wrong number of digits for a phone number.",
            code="phone_impossible",
        )
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            f"'{text}' is not a valid phone number in any numbering plan.",
            code="phone_invalid",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def display_phone(e164: str) -> str:
    if not e164:
        return ""
    number = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


class ModelIdsChoiceField(forms.ModelMultipleChoiceField):
    """ModelMultipleChoiceField that refuses a value that is not an id before querying:
    Django's own lets an id beyond 64 bits reach the driver (OverflowError, a 500)."""

    def _check_values(self, value):
        if not isinstance(value, list | tuple):
            raise ValidationError(self.error_messages["invalid_list"], code="invalid_list")
        for pk in value:
            if parse_id(pk) is None:
                raise ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": pk},
                )
        return super()._check_values(value)
