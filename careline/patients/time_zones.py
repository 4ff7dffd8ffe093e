"""Where a patient's phone probably is: the time zones of its area code, so quiet hours
are kept in the patient's time, not only the practice's (messaging.compliance)."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as number_zones

# More zones than this (toll-free and other non-geographic numbers map to every zone of
# the plan) say nothing about where the phone is: the practice's zone is used instead.
MAX_ZONES = 4
UNKNOWN = "Etc/Unknown"


def zones_for_number(phone: str) -> str:
    """The zones of an E.164 number's area code, space-separated ("" when unknown)."""
    if not phone or not phone.startswith("+"):
        return ""
    # North American numbers: the zone data is keyed by at most +1 NPA NXX.
    return _zones(phone[:8] + "0" * 4 if phone.startswith("+1") else phone)


@lru_cache(maxsize=4096)
def _zones(phone: str) -> str:
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ""
    zones = [z for z in number_zones.time_zones_for_number(number) if z != UNKNOWN]
    if not zones or len(zones) > MAX_ZONES:
        return ""
    return " ".join(sorted(zones))
