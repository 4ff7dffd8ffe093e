"""Filling message templates: only whitelisted variables, never template code."""

from __future__ import annotations

import string
import zoneinfo
from collections.abc import Mapping
from datetime import datetime

from django.db.models import Q

from careline.clinics.validators import display_phone
from careline.messaging.models import MessageTemplate
from careline.messaging.template_syntax import validate_template_body

EN_WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
EN_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
ES_WEEKDAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
ES_MONTHS = (
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
).split()


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
    local = moment.astimezone(zone)
    if language == "es":
        return f"{ES_WEEKDAYS[local.weekday()]} {local.day} de {ES_MONTHS[local.month - 1]}"
    return f"{EN_WEEKDAYS[local.weekday()]}, {EN_MONTHS[local.month - 1]} {local.day}"


def local_time(moment: datetime, zone: zoneinfo.ZoneInfo, language: str) -> str:
    local = moment.astimezone(zone)
    hour = local.hour % 12 or 12
    if language == "es":
        return f"{hour}:{local.minute:02d} {'a.m.' if local.hour < 12 else 'p.m.'}"
    return f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


def appointment_variables(appointment, language: str, *, link: str = "") -> dict[str, str]:
    """The variables for a message about `appointment` (practice and patient preloaded);
    `link` is the patient's self-service URL, issued by the caller only when the template
    asks for it (careline.messaging.visit_links)."""
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


def find_template(
    *,
    organization_id: int,
    practice_id: int | None,
    appointment_type_id: int | None,
    kind: str,
    language: str,
):
    """The most specific active template; Careline's default when the clinic has none,
    English when none exists in the patient's language."""
    candidates = list(
        MessageTemplate.objects.filter(
            Q(organization_id=organization_id) | Q(organization__isnull=True),
            Q(practice_id=practice_id) | Q(practice__isnull=True),
            Q(appointment_type_id=appointment_type_id) | Q(appointment_type__isnull=True),
            kind=kind,
            language__in=[language, "en"],
            active=True,
        )
    )

    def specificity(t) -> tuple:
        return (
            t.language == language,
            t.organization_id is not None,
            t.appointment_type_id is not None,
            t.practice_id is not None,
            t.id,
        )

    best = max(candidates, key=specificity, default=None)
    if best is None:
        # The shipped defaults live in code too, so a database emptied of them (a test
        # flush, a careless delete) still says something sensible.
        from careline.messaging.default_texts import DEFAULTS

        body = DEFAULTS.get((kind, language)) or DEFAULTS.get((kind, "en"))
        if body:
            best = MessageTemplate(kind=kind, language=language, body=body)
    return best
