"""What a message template may contain: the whitelisted variables and nothing else.

Kept apart from careline.messaging.rendering, which reads templates from the database:
the template model validates its own body with this, and must not import its reader.
"""

from __future__ import annotations

import string

from django.core.exceptions import ValidationError

VARIABLES = {
    "first_name": "Patient's first name",
    "practice": "Practice name",
    "date": "Visit date in the practice's time zone",
    "time": "Visit time in the practice's time zone",
    "address": "Practice address",
    "practice_phone": "Practice front-desk number",
    "link": "Link to confirm, cancel or reschedule online",
}

_formatter = string.Formatter()


def _fields(body: str) -> list[tuple[str, str, str | None]]:
    try:
        return [
            (name, spec, conversion)
            for _, name, spec, conversion in _formatter.parse(body)
            if name is not None
        ]
    except ValueError as exc:
        raise ValidationError(
            f"The template has an unmatched brace ({exc}); write {{{{ or }}}} for a literal one.",
            code="template_syntax",
        ) from exc


def validate_template_body(body: str) -> None:
    """Raise ValidationError naming every variable that is not allowed."""
    problems = []
    for name, spec, conversion in _fields(body):
        if name not in VARIABLES:
            problems.append(f"{{{name}}}" if name else "{}")
        elif spec or conversion:
            problems.append(f"{{{name}}} with a format or conversion")
    if problems:
        raise ValidationError(
            f"Unknown template variables: {', '.join(problems)}. "
            f"Allowed: {', '.join('{' + v + '}' for v in VARIABLES)}.",
            code="template_variable",
        )


def template_variables(body: str) -> set[str]:
    """The variable names a (valid) template uses."""
    return {name for name, _, _ in _fields(body)}
