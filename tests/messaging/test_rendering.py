import re
import zoneinfo
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from careline.messaging.models import MessageTemplate
from careline.messaging.rendering import (
    local_date,
    local_time,
    render_body,
    validate_template_body,
)
from careline.messaging.texts import find_template

CHICAGO = zoneinfo.ZoneInfo("America/Chicago")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
CARRIER_KEYWORD_REQUEST = re.compile(
    r"\b(reply|text|send|responda|env[ií]e)\s+(stop|cancel|end|quit|unsubscribe|cancelar)\b",
    re.IGNORECASE,
)


def test_only_whitelisted_variables_are_substituted():
    assert render_body("Hi {first_name}, {{C}}", {"first_name": "Ana"}) == "Hi Ana, {C}"
    for bad in ["{first_name.__class__}", "{first_name[0]}", "{diagnosis}", "{time!r}", "{x:>9}"]:
        with pytest.raises(ValidationError):
            render_body(bad, {"first_name": "Ana"})
    with pytest.raises(ValidationError, match="unmatched brace"):
        validate_template_body("Hi {first_name")


def test_values_are_not_reinterpreted_as_templates():
    assert render_body("{first_name}", {"first_name": "{practice}"}) == "{practice}"


@pytest.mark.parametrize(
    "utc, zone, expected_date, expected_time",
    [
        # Chicago, spring forward 2025-03-09 02:00 CST -> 03:00 CDT
        (datetime(2025, 3, 9, 7, 30, tzinfo=UTC), CHICAGO, "Sun, Mar 9", "1:30 AM"),
        (datetime(2025, 3, 9, 8, 30, tzinfo=UTC), CHICAGO, "Sun, Mar 9", "3:30 AM"),
        (datetime(2025, 3, 10, 14, 0, tzinfo=UTC), CHICAGO, "Mon, Mar 10", "9:00 AM"),
        (datetime(2025, 3, 7, 15, 0, tzinfo=UTC), CHICAGO, "Fri, Mar 7", "9:00 AM"),
        # New York, fall back 2025-11-02 02:00 EDT -> 01:00 EST: 1:30 happens twice
        (datetime(2025, 11, 2, 5, 30, tzinfo=UTC), NEW_YORK, "Sun, Nov 2", "1:30 AM"),
        (datetime(2025, 11, 2, 6, 30, tzinfo=UTC), NEW_YORK, "Sun, Nov 2", "1:30 AM"),
        (datetime(2025, 11, 3, 14, 0, tzinfo=UTC), NEW_YORK, "Mon, Nov 3", "9:00 AM"),
        (datetime(2025, 10, 31, 13, 0, tzinfo=UTC), NEW_YORK, "Fri, Oct 31", "9:00 AM"),
        # A UTC date that is still the previous evening locally
        (datetime(2025, 11, 4, 2, 15, tzinfo=UTC), CHICAGO, "Mon, Nov 3", "8:15 PM"),
    ],
)
def test_local_date_and_time_across_dst(utc, zone, expected_date, expected_time):
    assert local_date(utc, zone, "en") == expected_date
    assert local_time(utc, zone, "en") == expected_time


def test_spanish_date_and_time():
    moment = datetime(2025, 3, 10, 19, 5, tzinfo=UTC)
    assert local_date(moment, CHICAGO, "es") == "lunes 10 de marzo"
    assert local_time(moment, CHICAGO, "es") == "2:05 p.m."


@pytest.mark.django_db
def test_default_templates_are_phi_minimal_and_avoid_carrier_keywords():
    defaults = MessageTemplate.objects.filter(organization__isnull=True)
    assert {(t.kind, t.language) for t in defaults} >= {
        (k, lang)
        for k in ("reminder", "booked", "rescheduled", "cancelled")
        for lang in ("en", "es")
    }
    for template in defaults:
        validate_template_body(template.body)
        # A one-word STOP/CANCEL reply is an opt-out; no template may ask for one.
        assert not CARRIER_KEYWORD_REQUEST.search(template.body)
        assert "{first_name}" in template.body and "{date}" in template.body
    reminder = defaults.get(kind="reminder", language="en").body
    assert "Reply C to confirm, X to cancel, R to reschedule" in reminder


def test_most_specific_template_wins(build):
    org = build.organization()
    practice = build.practice(org)
    other = build.practice(org)
    MessageTemplate.objects.create(organization=org, kind="reminder", body="org {first_name}")
    MessageTemplate.objects.create(
        organization=org, practice=practice, kind="reminder", body="practice {first_name}"
    )
    MessageTemplate.objects.create(organization=org, kind="reminder", language="es", body="es")

    def pick(practice_id, language):
        return find_template(
            organization_id=org.id,
            practice_id=practice_id,
            appointment_type_id=None,
            kind="reminder",
            language=language,
        ).body

    assert pick(practice.id, "en") == "practice {first_name}"
    assert pick(other.id, "en") == "org {first_name}"
    assert pick(other.id, "es") == "es"
    other_org = build.organization()
    assert (
        "Reply C to confirm"
        in find_template(
            organization_id=other_org.id,
            practice_id=None,
            appointment_type_id=None,
            kind="reminder",
            language="en",
        ).body
    )
