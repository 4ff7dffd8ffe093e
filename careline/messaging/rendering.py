"""Filling message templates: only whitelisted variables, never template code."""

from __future__ import annotations

import re
import string
import zoneinfo
from collections.abc import Mapping
from datetime import datetime

from django.utils import translation
from django.utils.translation import gettext, pgettext_lazy

from careline.clinics.validators import display_phone
from careline.messaging.template_syntax import validate_template_body

# Abbreviated in English ("Tue, Mar 3"); the Spanish catalog spells them out
# ("martes 3 de marzo"), as a text reads better that way and has the room.
WEEKDAYS = [
    pgettext_lazy("weekday in a text", "Mon"),
    pgettext_lazy("weekday in a text", "Tue"),
    pgettext_lazy("weekday in a text", "Wed"),
    pgettext_lazy("weekday in a text", "Thu"),
    pgettext_lazy("weekday in a text", "Fri"),
    pgettext_lazy("weekday in a text", "Sat"),
    pgettext_lazy("weekday in a text", "Sun"),
]
MONTHS = [
    pgettext_lazy("month in a text", "Jan"),
    pgettext_lazy("month in a text", "Feb"),
    pgettext_lazy("month in a text", "Mar"),
    pgettext_lazy("month in a text", "Apr"),
    pgettext_lazy("month in a text", "May"),
    pgettext_lazy("month in a text", "Jun"),
    pgettext_lazy("month in a text", "Jul"),
    pgettext_lazy("month in a text", "Aug"),
    pgettext_lazy("month in a text", "Sep"),
    pgettext_lazy("month in a text", "Oct"),
    pgettext_lazy("month in a text", "Nov"),
    pgettext_lazy("month in a text", "Dec"),
]


# Stands for an empty variable while the text around it is tidied (a private-use
# character, which no template or value contains).
_EMPTY = "\ue000"
# Little words that only lead into the missing value: "at {practice}", "el {date}".
_CONNECTORS = r"(?:at|on|for|in|to|el|la|las|los|al|en|del|de|para|a)"
_TIDY = [
    # "({practice_phone})": empty brackets go.
    (re.compile(rf"[ \t]*\([ \t]*{_EMPTY}[ \t]*\)"), ""),
    # "{first_name}: reminder…" at the start: the value and its separator go.
    (re.compile(rf"^[ \t]*{_EMPTY}[ \t]*[,;:]?[ \t]*"), ""),
    # "{time}, {address}." / "visit {link}" at the end: the value and what joins it go.
    (
        re.compile(
            rf"[ \t]*[,;:]?[ \t]*(?:\b{_CONNECTORS}[ \t]+)*{_EMPTY}(?=[ \t]*(?:[,.;:!?)]|$))"
        ),
        "",
    ),
    # Mid-sentence: the value and the little words leading into it.
    (re.compile(rf"(?:\b{_CONNECTORS}[ \t]+)*{_EMPTY}[ \t]*"), ""),
]


def render_body(body: str, variables: Mapping[str, str]) -> str:
    """Substitute whitelisted variables only; no attribute access, indexing or formats.

    An empty variable (a practice without an address) takes its separator and the little
    words leading into it along, so the text never reads "2:40 PM, ." or "at  on"."""
    validate_template_body(body)
    out = []
    for literal, name, _, _ in string.Formatter().parse(body):
        out.append(literal)
        if name is not None:
            value = str(variables.get(name, "")).strip()
            out.append(value or _EMPTY)
    text = "".join(out)
    if _EMPTY not in text:
        return text
    starts_with_empty = text.lstrip().startswith(_EMPTY)
    for pattern, replacement in _TIDY:
        # Again until nothing changes: "on {date} at {time}." empties from the end.
        while (tidied := pattern.sub(replacement, text)) != text:
            text = tidied
    text = text.replace(_EMPTY, "").strip()
    if starts_with_empty and text:
        text = text[0].upper() + text[1:]
    return text


def local_date(moment: datetime, zone: zoneinfo.ZoneInfo, language: str) -> str:
    """The visit's local date in the patient's language: "Tue, Mar 3", "martes 3 de marzo"."""
    local = moment.astimezone(zone)
    with translation.override(language):
        return gettext("{weekday}, {month} {day}").format(
            weekday=WEEKDAYS[local.weekday()], month=MONTHS[local.month - 1], day=local.day
        )


def local_time(moment: datetime, zone: zoneinfo.ZoneInfo, language: str) -> str:
    """The visit's local time on a 12-hour clock: "2:40 PM", "2:40 p.m."."""
    local = moment.astimezone(zone)
    values = {"hour": local.hour % 12 or 12, "minute": f"{local.minute:02d}"}
    with translation.override(language):
        if local.hour < 12:
            return gettext("{hour}:{minute} AM").format(**values)
        return gettext("{hour}:{minute} PM").format(**values)


def appointment_variables(appointment, language: str, *, link: str = "") -> dict[str, str]:
    """The variables for a message about `appointment` (practice and patient preloaded);
    `link` is the patient's self-service URL, issued by the caller only when the template
    asks for it (careline.selfservice.links)."""
    practice = appointment.practice
    zone = practice.zone
    return {
        "first_name": appointment.patient.given_name,
        "practice": practice.name,
        "date": local_date(appointment.start, zone, language),
        "time": local_time(appointment.start, zone, language),
        "address": practice.address,
        "practice_phone": display_phone(practice.phone),
        "link": link,
    }
