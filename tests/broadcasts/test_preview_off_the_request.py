"""A large audience is counted by the worker, never in the web request: the compose page
answers at once with "Counting…", polls, and shows the worker's count; a broadcast sent to
it is recorded uncounted and the worker counts it before queueing (issue 21)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from careline.broadcasts.models import Broadcast, BroadcastPreview
from careline.clinics.models import StaffRole
from careline.messaging.models import OutboundMessage
from careline.patients.consent import record_consent


def _worker() -> None:
    call_command("worker", "--once", stdout=io.StringIO())


@pytest.fixture
def clinic(build, settings):
    settings.CARELINE_SENDING_HOURS_START = 0
    settings.CARELINE_SENDING_HOURS_END = 24
    # "Large" from four patients on, so the test needs no 10^5 of them.
    settings.CARELINE_BROADCAST_INLINE_COUNT = 3
    org = build.organization()
    practice = build.practice(org, name="North Clinic")
    for n in range(4):
        build.patient(org, home_practice=practice, mobile_phone=f"+1512555080{n}")
    build.patient(org, home_practice=practice, mobile_phone="+15125550803")  # family
    build.patient(org, home_practice=practice, mobile_phone="")
    record_consent(
        organization_id=org.id,
        phone="+15125550800",
        opted_out=True,
        source="patient_text",
        detail="STOP",
    )
    manager = build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[practice])
    return org, practice, manager


def _form(practice, action: str) -> dict:
    return {
        "name": "Closed Friday",
        "practices": [practice.id],
        "body_en": "{first_name}, {practice} is closed Friday.",
        "action": action,
    }


def _counted_audience(queries) -> bool:
    """Whether a query read the opt-out ledger: the count's exclusions do, the bound
    the request checks does not."""
    return any("patients_phoneconsent" in q["sql"] for q in queries)


def test_the_page_answers_counting_and_shows_the_workers_count(client, clinic):
    _, practice, manager = clinic
    client.force_login(manager)
    with CaptureQueriesContext(connection) as queries:
        page = client.post(
            reverse("broadcasts:compose"), _form(practice, "preview"), HTTP_HX_REQUEST="true"
        )
    assert page.status_code == 200
    assert not _counted_audience(queries.captured_queries)
    body = page.content.decode()
    assert page.context["preview"] is None
    assert "Counting the audience" in body and 'hx-trigger="every 1s"' in body
    assert "Maria, North Clinic is closed Friday." in body  # the samples need no count
    record = BroadcastPreview.objects.get()
    poll = reverse("broadcasts:preview_count", args=[record.id])
    assert poll in body
    # Asking again while composing (every change posts) reuses the waiting count.
    client.post(reverse("broadcasts:compose"), _form(practice, "preview"), HTTP_HX_REQUEST="true")
    assert BroadcastPreview.objects.count() == 1
    waiting = client.get(poll, HTTP_HX_REQUEST="true")
    assert "Counting the audience" in waiting.content.decode()

    _worker()
    shown = client.get(poll, HTTP_HX_REQUEST="true")
    html = shown.content.decode()
    assert shown.context["preview"].reach == 3  # four numbers, one opted out
    assert '<strong data-testid="reach">3</strong>' in html
    assert "every 1s" not in html  # counted: the page stops polling
    assert shown.context["preview"].excluded == {
        "opted out": 1,
        "no mobile number": 1,
        "shares a number with another recipient": 1,
    }

    # The count is what the send reaches.
    client.post(reverse("broadcasts:compose"), _form(practice, "send"))
    _worker()
    broadcast = Broadcast.objects.get()
    assert broadcast.recipients == 3
    assert OutboundMessage.objects.filter(broadcast_id=broadcast.id).count() == 3


def test_a_large_send_is_recorded_uncounted_and_the_worker_counts_it(client, clinic):
    _, practice, manager = clinic
    client.force_login(manager)
    with CaptureQueriesContext(connection) as queries:
        sent = client.post(reverse("broadcasts:compose"), _form(practice, "send"))
    assert sent.status_code == 302
    assert not _counted_audience(queries.captured_queries)
    broadcast = Broadcast.objects.get()
    assert broadcast.recipients is None and broadcast.excluded == {}
    page = client.get(reverse("broadcasts:detail", args=[broadcast.id]))
    assert "its audience is being counted" in page.content.decode()
    listing = client.get(reverse("broadcasts:list")).content.decode()
    assert "counting…" in listing

    _worker()
    # The page's poll shows the count.
    polled = client.get(reverse("broadcasts:detail", args=[broadcast.id]), HTTP_HX_REQUEST="true")
    assert "to 3 patients" in polled.content.decode()
    broadcast.refresh_from_db()
    assert broadcast.recipients == 3
    assert broadcast.excluded == {
        "opted out": 1,
        "no mobile number": 1,
        "shares a number with another recipient": 1,
    }
    assert OutboundMessage.objects.filter(broadcast_id=broadcast.id).count() == 3
    page = client.get(reverse("broadcasts:detail", args=[broadcast.id])).content.decode()
    assert "to 3 patients" in page and "opted out 1" in page


def test_a_small_audience_is_still_counted_in_the_request(client, clinic, settings):
    _, practice, manager = clinic
    settings.CARELINE_BROADCAST_INLINE_COUNT = 100
    client.force_login(manager)
    page = client.post(reverse("broadcasts:compose"), _form(practice, "preview"))
    assert page.context["preview"].reach == 3
    assert not BroadcastPreview.objects.exists()


def test_the_count_is_seen_only_by_senders_who_see_its_practices(client, build, clinic):
    org, practice, manager = clinic
    client.force_login(manager)
    client.post(reverse("broadcasts:compose"), _form(practice, "preview"))
    poll = reverse("broadcasts:preview_count", args=[BroadcastPreview.objects.get().id])
    elsewhere = build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[build.practice(org)])
    client.force_login(elsewhere)
    assert client.get(poll).status_code == 404
    client.force_login(build.staff(org, StaffRole.FRONT_DESK, practices=[practice]))
    assert client.get(poll).status_code == 403
    client.force_login(build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[practice]))
    assert client.get(poll).status_code == 200
