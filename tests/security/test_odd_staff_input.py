"""Staff pages answer odd ids, dates and numbers with a 400 or a form error naming the
field, never a 500: year 9999 and year 1, "²" (isdigit() but not int()), "٣", ids beyond
64 bits, NUL bytes, inf/nan, RTL marks."""

from __future__ import annotations

import pytest

from careline.broadcasts.models import Broadcast
from careline.clinics.models import StaffRole
from careline.conversations.models import ConversationNote
from careline.messaging.models import MessageTemplate, OutboundMessage, ReminderRule
from tests.security.test_authorization_matrix import two_practices  # noqa: F401 (fixture)

ODD = [
    "9999-12-31",
    "0001-01-01",
    "²",
    "٣",
    "9" * 25,
    "-1",
    "\x00",
    "9" * 5000,
    "nan",
    "inf",
    "1e308",
    "\u202e1",
]


@pytest.fixture
def admin(client, build, two_practices):  # noqa: F811
    org, objects = two_practices
    user = build.staff(org, StaffRole.ORGANIZATION_ADMIN, practices=[objects["a"]["practice"]])
    client.force_login(user)
    client.raise_request_exception = False
    return client, org, objects["a"]


@pytest.mark.parametrize("value", ODD)
def test_odd_query_values_are_a_400_naming_the_parameter(admin, value):
    client, org, a = admin
    day = f"/schedule/{a['practice'].id}/2026-12-02/"
    for url, name in [
        (day, "provider"),
        ("/inbox/", "practice"),
        ("/analytics/", "practice"),
        ("/analytics/", "from"),
        ("/analytics/", "to"),
    ]:
        response = client.get(url, {name: value})
        if value in ("٣",) and name in ("from", "to"):
            assert response.status_code == 400
        assert response.status_code in (200, 400), (url, name, response.status_code)
        if response.status_code == 400:
            assert response.content.decode().startswith(f"{name}:")
    csv = client.get("/analytics/", {"to": value, "format": "csv", "table": "engagement"})
    assert csv.status_code in (200, 400)


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "²", "9" * 25, "\x00"])
def test_odd_days_in_the_day_view_url_are_not_found(admin, value):
    client, org, a = admin
    from urllib.parse import quote

    response = client.get(f"/schedule/{a['practice'].id}/{quote(value)}/")
    assert response.status_code == 404


@pytest.mark.parametrize("value", ["²", "9" * 25])
def test_an_odd_provider_filter_used_to_be_a_500(admin, value):
    client, org, a = admin
    response = client.get(f"/schedule/{a['practice'].id}/2026-12-02/", {"provider": value})
    assert response.status_code == 400 and b"provider" in response.content


@pytest.mark.parametrize("value", ODD)
def test_odd_form_values_are_form_errors_and_store_nothing(admin, value):
    client, org, a = admin
    before = (
        MessageTemplate.objects.count(),
        ReminderRule.objects.count(),
        Broadcast.objects.count(),
        OutboundMessage.objects.count(),
        ConversationNote.objects.count(),
    )
    posts = [
        (f"/inbox/{a['conversation'].id}/assign/", {"to": value}),
        (
            "/settings/templates/new/",
            {
                "practice": value,
                "kind": "reminder",
                "language": "en",
                "body": "hi",
                "action": "preview",
            },
        ),
        (
            "/settings/templates/new/",
            {"practice": value, "kind": "reminder", "language": value, "body": value},
        ),
        (f"/settings/cadence/{org.id}/", {"hours_before": value}),
        (
            "/analytics/experiments/",
            {
                "name": "x",
                "practice": a["practice"].id,
                "withheld_step": f"reminder:{value}",
                "share_percent": "10",
            },
        ),
        (
            "/broadcasts/new/",
            {
                "name": "x",
                "practices": a["practice"].id,
                "body_en": "hi",
                "appointments_from": value,
                "appointments_to": value,
                "seen_since": value,
                "send_at": value,
                "action": "send",
            },
        ),
        (
            "/broadcasts/new/",
            {
                "name": "x",
                "practices": value,
                "providers": value,
                "appointment_types": value,
                "body_en": "hi",
                "action": "send",
            },
        ),
    ]
    for url, data in posts:
        response = client.post(url, data)
        assert response.status_code in (200, 302), (url, data, response.status_code)
    note = client.post(f"/inbox/{a['conversation'].id}/note/", {"body": value})
    assert note.status_code == 302
    after = (
        MessageTemplate.objects.count(),
        ReminderRule.objects.count(),
        Broadcast.objects.count(),
        OutboundMessage.objects.count(),
        ConversationNote.objects.count(),
    )
    # Only a note of plain text may be saved; nothing else from these odd values.
    assert after[:4] == before[:4]
    assert after[4] - before[4] == (0 if "\x00" in value else 1)


def test_a_broadcast_in_year_9999_is_a_form_error(admin):
    client, org, a = admin
    before = Broadcast.objects.count()
    response = client.post(
        "/broadcasts/new/",
        {
            "name": "x",
            "practices": a["practice"].id,
            "body_en": "hi",
            "send_at": "9999-12-31 23:00",
            "action": "send",
        },
    )
    assert response.status_code == 200 and "Enter a date between" in response.content.decode()
    assert Broadcast.objects.count() == before


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "99999999999999999999"])
def test_a_cadence_beyond_sixty_days_is_a_form_error(admin, value):
    client, org, a = admin
    response = client.post(f"/settings/cadence/{org.id}/", {"hours_before": value})
    assert (
        response.status_code == 200 and "between 1 minute and 60 days" in response.content.decode()
    )
    assert not ReminderRule.objects.exists()
