"""Validation of the values clinics type in: time zones and phone numbers."""

from __future__ import annotations

import zoneinfo

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError


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
