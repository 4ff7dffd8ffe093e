"""A broadcast is recorded by the page and sent by the worker: its page shows
Queued → Sending → Sent (n of N) → Done; a date filter means the practice's local days."""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from careline.broadcasts.models import Broadcast
from careline.clinics.models import StaffRole
from careline.messaging.models import MessageState, OutboundMessage
from careline.scheduling.appointments import book_appointment


def _worker(*args: str) -> None:
    call_command("worker", "--once", *args, stdout=io.StringIO())


def _state(client, broadcast: Broadcast) -> str:
    page = client.get(reverse("broadcasts:detail", args=[broadcast.id]))
    assert page.status_code == 200
    return page.context["progress"]


@pytest.fixture
def clinic(build, settings):
    settings.CARELINE_SENDING_HOURS_START = 0  # any time of day the suite runs
    settings.CARELINE_SENDING_HOURS_END = 24
    org = build.organization()
    practice = build.practice(org, name="North Clinic")
    for n in range(3):
        build.patient(org, home_practice=practice, mobile_phone=f"+1512555070{n}")
    manager = build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[practice])
    return practice, manager


def _send(client, practice, **extra) -> Broadcast:
    form = {
        "name": "Closed Friday",
        "practices": [practice.id],
        "body_en": "{practice} is closed Friday.",
        "action": "send",
        **extra,
    }
    response = client.post(reverse("broadcasts:compose"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    return Broadcast.objects.get(name="Closed Friday")


def test_queued_then_sending_then_sent_n_of_n_then_done(client, clinic):
    practice, manager = clinic
    client.force_login(manager)
    broadcast = _send(client, practice)
    # The request recorded it and queued no text: that is the worker's work.
    assert not OutboundMessage.objects.filter(broadcast_id=broadcast.id).exists()
    assert _state(client, broadcast) == "Queued"
    _worker()  # queues its three texts and sends them
    texts = OutboundMessage.objects.filter(broadcast_id=broadcast.id)
    assert texts.count() == 3
    # As if the third were still waiting (e.g. for its patient's morning).
    third = texts.order_by("id").last()
    texts.filter(id=third.id).update(
        state=MessageState.SCHEDULED, due_at=timezone.now() + timedelta(hours=1)
    )
    page = client.get(reverse("broadcasts:detail", args=[broadcast.id]), HTTP_HX_REQUEST="true")
    assert "Sent (2 of 3)" in page.content.decode()
    assert 'hx-trigger="every 2s"' in page.content.decode()  # the page keeps polling
    _worker()
    assert _state(client, broadcast) == "Sent (2 of 3)"  # not Done while one waits
    texts.filter(id=third.id).update(due_at=timezone.now())
    _worker()  # the third goes out
    assert _state(client, broadcast) == "Sent (3 of 3)"
    _worker()  # nothing left to send
    assert _state(client, broadcast) == "Done"
    page = client.get(reverse("broadcasts:detail", args=[broadcast.id]), HTTP_HX_REQUEST="true")
    assert "every 2s" not in page.content.decode()  # the page stops polling
    assert Broadcast.objects.get(id=broadcast.id).state == Broadcast.State.DONE


def test_sending_until_its_time_and_a_cancel_before_the_worker_queues_nothing(client, clinic):
    practice, manager = clinic
    client.force_login(manager)
    later = timezone.localtime(timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    broadcast = _send(client, practice, send_at=later)
    _worker()
    assert _state(client, broadcast) == "Sending"
    rows = OutboundMessage.objects.filter(broadcast_id=broadcast.id)
    assert set(rows.values_list("state", flat=True)) == {MessageState.SCHEDULED}
    client.post(reverse("broadcasts:cancel", args=[broadcast.id]))
    assert _state(client, broadcast) == "Cancelled"
    assert set(rows.values_list("state", flat=True)) == {MessageState.CANCELLED}

    Broadcast.objects.filter(id=broadcast.id).delete()
    second = _send(client, practice)
    client.post(reverse("broadcasts:cancel", args=[second.id]))
    _worker()
    assert not OutboundMessage.objects.filter(broadcast_id=second.id).exists()
    assert _state(client, second) == "Cancelled"


def test_a_date_filter_means_the_practices_local_days_across_midnight_utc(build, client):
    org = build.organization()
    # The admin's clock is New York's (their first practice); the visits are in Denver.
    build.practice(org, name="Hudson Clinic", time_zone="America/New_York")
    denver = build.practice(org, name="Denver Clinic", time_zone="America/Denver")
    doctor = build.provider(denver, hours=(time(6), time(23, 59)), weekdays=range(7))
    kind = build.appointment_type(org)
    admin = build.staff(org, StaffRole.ORGANIZATION_ADMIN)
    day = timezone.localdate() + timedelta(days=14)
    # 10:30 p.m. in Denver: already the next day in UTC and in New York.
    late = build.patient(org, home_practice=denver, given_name="Late")
    start = datetime.combine(day, time(22, 30), tzinfo=denver.zone)
    assert start.astimezone(timezone.get_fixed_timezone(0)).date() == day + timedelta(days=1)
    book_appointment(
        patient=late, provider=doctor, practice=denver, appointment_type=kind, start=start
    )
    # 6:30 a.m. the next morning in Denver.
    early = build.patient(org, home_practice=denver, given_name="Early")
    book_appointment(
        patient=early,
        provider=doctor,
        practice=denver,
        appointment_type=kind,
        start=datetime.combine(day + timedelta(days=1), time(6, 30), tzinfo=denver.zone),
    )
    client.force_login(admin)

    def reach(on: date) -> int:
        form = {
            "name": "Snow day",
            "practices": [denver.id],
            "appointments_from": on.isoformat(),
            "appointments_to": on.isoformat(),
            "body_en": "{practice} opens late.",
            "action": "preview",
        }
        response = client.post(reverse("broadcasts:compose"), form)
        assert response.status_code == 200
        return response.context["preview"].reach

    assert reach(day) == 1  # Late's evening visit, on Denver's calendar day
    assert reach(day + timedelta(days=1)) == 1  # Early's morning visit only, not Late's
    assert reach(day + timedelta(days=2)) == 0


def test_queueing_cut_short_resumes_from_its_cursor_without_a_second_text(client, clinic):
    practice, manager = clinic
    client.force_login(manager)
    broadcast = _send(client, practice)
    _worker()
    _worker()  # queued, sent, done
    texts = OutboundMessage.objects.filter(broadcast_id=broadcast.id)
    patients = sorted(texts.values_list("patient_id", flat=True))
    assert len(patients) == 3
    # As a worker that stopped after queueing the first recipient's chunk leaves it.
    texts.filter(patient_id__gt=patients[0]).delete()
    stopped = timezone.now() - timedelta(minutes=5)
    Broadcast.objects.filter(id=broadcast.id).update(
        state=Broadcast.State.SENDING, queued_through=patients[0], queue_progressed_at=stopped
    )
    # A worker that is still at it (progress just now) is left alone.
    Broadcast.objects.filter(id=broadcast.id).update(queue_progressed_at=timezone.now())
    _worker()
    assert sorted(texts.values_list("patient_id", flat=True)) == patients[:1]
    assert _state(client, broadcast) != "Done"  # not Done while texts are still to queue
    Broadcast.objects.filter(id=broadcast.id).update(queue_progressed_at=stopped)
    _worker()
    assert sorted(texts.values_list("patient_id", flat=True)) == patients
    _worker()
    assert _state(client, broadcast) == "Done"
    assert Broadcast.objects.get(id=broadcast.id).recipients == 3
