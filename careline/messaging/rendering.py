"""Filling message templates: only whitelisted variables, never template code."""

from __future__ import annotations

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


def render_body(body: str, variables: Mapping[str, str]) -> str:
    """Substitute whitelisted variables only; no attribute access, indexing or formats."""
    validate_template_body(body)
    out = []
    for literal, name, _, _ in string.Formatter().parse(body):
        out.append(literal)
        if name is not None:
            out.append(str(variables.get(name, "")))
    return "".join(out)


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
