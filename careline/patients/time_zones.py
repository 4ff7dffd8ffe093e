"""Where a patient probably is: their address's state, else the time zones of their
number's area code, so quiet hours are kept in the patient's time, not only the
practice's (messaging.compliance)."""

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


# Each US state's (and territory's) principal zone: where most of its people live. A few
# states span two zones (the Florida panhandle, western Texas, northern Idaho…); their
# principal zone is used, not the ZIP code's, which is close enough for quiet hours.
_EASTERN, _CENTRAL = "America/New_York", "America/Chicago"
_MOUNTAIN, _PACIFIC = "America/Denver", "America/Los_Angeles"
STATE_ZONES = {
    "AL": _CENTRAL, "AK": "America/Anchorage", "AZ": "America/Phoenix", "AR": _CENTRAL,
    "CA": _PACIFIC, "CO": _MOUNTAIN, "CT": _EASTERN, "DE": _EASTERN, "DC": _EASTERN,
    "FL": _EASTERN, "GA": _EASTERN, "HI": "Pacific/Honolulu", "ID": "America/Boise",
    "IL": _CENTRAL, "IN": "America/Indiana/Indianapolis", "IA": _CENTRAL, "KS": _CENTRAL,
    "KY": _EASTERN, "LA": _CENTRAL, "ME": _EASTERN, "MD": _EASTERN, "MA": _EASTERN,
    "MI": "America/Detroit", "MN": _CENTRAL, "MS": _CENTRAL, "MO": _CENTRAL,
    "MT": _MOUNTAIN, "NE": _CENTRAL, "NV": _PACIFIC, "NH": _EASTERN, "NJ": _EASTERN,
    "NM": _MOUNTAIN, "NY": _EASTERN, "NC": _EASTERN, "ND": _CENTRAL, "OH": _EASTERN,
    "OK": _CENTRAL, "OR": _PACIFIC, "PA": _EASTERN, "RI": _EASTERN, "SC": _EASTERN,
    "SD": _CENTRAL, "TN": _CENTRAL, "TX": _CENTRAL, "UT": _MOUNTAIN, "VT": _EASTERN,
    "VA": _EASTERN, "WA": _PACIFIC, "WV": _EASTERN, "WI": _CENTRAL, "WY": _MOUNTAIN,
    "PR": "America/Puerto_Rico", "VI": "America/St_Thomas", "GU": "Pacific/Guam",
    "AS": "Pacific/Pago_Pago", "MP": "Pacific/Saipan",
}  # fmt: skip
_STATE_NAMES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "washington dc": "DC", "washington d.c.": "DC", "florida": "FL", "georgia": "GA",
    "hawaii": "HI", "idaho": "ID", "illinois": "IL", "indiana": "IN", "iowa": "IA",
    "kansas": "KS", "kentucky": "KY", "louisiana": "LA", "maine": "ME", "maryland": "MD",
    "massachusetts": "MA", "michigan": "MI", "minnesota": "MN", "mississippi": "MS",
    "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY",
    "north carolina": "NC", "north dakota": "ND", "ohio": "OH", "oklahoma": "OK",
    "oregon": "OR", "pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC",
    "south dakota": "SD", "tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT",
    "virginia": "VA", "washington": "WA", "west virginia": "WV", "wisconsin": "WI",
    "wyoming": "WY", "puerto rico": "PR", "virgin islands": "VI", "guam": "GU",
    "american samoa": "AS", "northern mariana islands": "MP",
}  # fmt: skip
# How feeds write the United States in an address (blank: a US feed leaves it out).
_US = frozenset(
    {"", "us", "usa", "u.s.", "u.s.a.", "united states", "united states of america", "840"}
)


def zone_for_state(state: str, country: str = "") -> str:
    """The principal zone of a US state or territory (code or name), "" when unknown."""
    if " ".join(country.lower().split()) not in _US:
        return ""
    text = " ".join(state.lower().split())
    code = text.upper() if len(text) == 2 else _STATE_NAMES.get(text, "")
    return STATE_ZONES.get(code, "")


def zones_for_patient(state: str, country: str, phone: str) -> str:
    """Where the patient is: their address's state when known (a number keeps its area
    code when its owner moves), else their number's area code."""
    return zone_for_state(state, country) or zones_for_number(phone)
