"""The organization's default reminder rule is set two ways, by a manager on the cadence
settings page and by an integration with PUT /api/v1/reminder-rules; the same cadence must
give the same rule either way."""

from __future__ import annotations

import pytest
from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.integrations.api_keys import issue_api_key
from careline.messaging.models import ReminderRule
from tests.api.conftest import Api

RULE_FIELDS = ("offsets_minutes", "channel", "stop_when_confirmed", "send_event_messages", "active")


def _by_page(client, build, hours_before: str, *, existing: dict | None = None) -> ReminderRule:
    org = build.organization()
    if existing is not None:
        ReminderRule.objects.create(organization=org, **existing)
    client.force_login(build.staff(org, StaffRole.ORGANIZATION_ADMIN, practices=[]))
    response = client.post(
        reverse("messaging_settings:cadence", args=[org.id]),
        {"hours_before": hours_before, "stop_when_confirmed": "on", "send_event_messages": "on"},
    )
    assert response.status_code == 302, response.content
    return ReminderRule.objects.get(organization=org, practice=None, appointment_type=None)


def _by_api(build, offsets_minutes: list[int], *, existing: dict | None = None) -> ReminderRule:
    org = build.organization()
    if existing is not None:
        ReminderRule.objects.create(organization=org, **existing)
    api = Api(issue_api_key(organization_slug=org.slug, name="EHR").plaintext)
    response = api.put("reminder-rules", {"offsets_minutes": offsets_minutes})
    assert response.status_code == 200, response.content
    return ReminderRule.objects.get(organization=org, practice=None, appointment_type=None)


def _fields(rule: ReminderRule) -> dict:
    return {name: getattr(rule, name) for name in RULE_FIELDS}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "hours_before,offsets_minutes,existing",
    [
        ("72, 24", [4320, 1440], None),
        # The same three reminders written in another order.
        ("2, 72, 24", [120, 4320, 1440], None),
        # An organization-wide rule switched off in the admin: saving a cadence turns it on.
        ("48", [2880], {"offsets_minutes": [60], "active": False}),
    ],
)
def test_page_and_api_make_the_same_default_rule(
    client, build, hours_before, offsets_minutes, existing
):
    by_page = _by_page(client, build, hours_before, existing=existing)
    by_api = _by_api(build, offsets_minutes, existing=existing)
    assert _fields(by_page) == _fields(by_api)
