"""Changing a reminder rule re-plans the not-yet-sent reminders of every upcoming visit it
applies to, whichever door changed it (settings page, REST API, Django admin); what was
sent stays. Staff see the planned texts' due times on the patient page, integrators in
GET /api/v1/appointments/<id>/planned-messages. A visit booked inside its last reminder's
window is asked to confirm at once."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.urls import reverse
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.integrations.api_keys import issue_api_key
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageState, OutboundMessage, ReminderRule
from careline.messaging.planning import plan_all_reminders
from careline.scheduling.appointments import book_appointment
from tests.api.conftest import Api


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def local(clinic, days_ahead: int, hour: int = 12) -> datetime:
    day = timezone.now().astimezone(clinic.practice.zone).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time(hour), tzinfo=clinic.practice.zone)


def book(clinic, start, **kw):
    return book_appointment(
        patient=kw.pop("patient", None) or clinic.patient(),
        provider=clinic.provider,
        practice=kw.pop("practice", clinic.practice),
        appointment_type=clinic.visit_type,
        start=start,
        check_working_time=False,
    )


def planned(appointment) -> dict[str, tuple[int, datetime]]:
    """step → (row id, due time) of the visit's scheduled reminders."""
    return {
        m.step_key: (m.pk, m.due_at)
        for m in OutboundMessage.objects.filter(
            appointment=appointment, state=MessageState.SCHEDULED, kind="reminder"
        )
    }


def sent_reminder(clinic):
    """A visit whose 72-hour reminder has gone out (the worker ran at that time)."""
    visit = book(clinic, local(clinic, 5))
    Dispatcher(
        SimulatorGateway(), clock=Clock(visit.start - timedelta(hours=72, minutes=-1))
    ).run_once()
    row = OutboundMessage.objects.get(appointment=visit, step_key="reminder:4320")
    assert row.state == MessageState.DELIVERED
    return visit, row


def snapshot(row) -> tuple:
    row = OutboundMessage.objects.get(pk=row.pk)
    return (row.state, row.step_key, row.due_at, row.sent_at, row.body)


def test_the_settings_page_moves_planned_reminders_and_leaves_sent_ones(client, clinic, build):
    visit = book(clinic, local(clinic, 10))
    before = planned(visit)
    assert set(before) == {"reminder:4320", "reminder:1440"}
    reminded, sent = sent_reminder(clinic)
    sent_before = snapshot(sent)

    client.force_login(build.staff(clinic.org, StaffRole.ORGANIZATION_ADMIN))
    response = client.post(
        reverse("messaging_settings:cadence", args=[clinic.org.id]),
        {"hours_before": "48, 2", "stop_when_confirmed": "on", "send_event_messages": "on"},
    )
    assert response.status_code == 302

    after = planned(visit)
    assert {step: due for step, (_, due) in after.items()} == {
        "reminder:2880": visit.start - timedelta(hours=48),
        "reminder:120": visit.start - timedelta(hours=2),
    }
    # Moved in place: the same rows, not cancelled copies beside new ones.
    assert after["reminder:2880"][0] == before["reminder:4320"][0]
    assert after["reminder:120"][0] == before["reminder:1440"][0]
    assert not OutboundMessage.objects.filter(appointment=visit, state="cancelled").exists()
    # The visit already reminded 72 hours ahead keeps that text and gets the new steps.
    assert snapshot(sent) == sent_before
    assert set(planned(reminded)) == {"reminder:2880", "reminder:120"}
    # Staff see when the planned texts go out, in the practice's time.
    page = client.get(reverse("patients:detail", args=[visit.patient_id])).content.decode()
    due = (visit.start - timedelta(hours=48)).astimezone(clinic.practice.zone)
    assert due.strftime("%b %-d, %Y %-I:%M") in page.split('id="planned-texts"')[1]


def test_the_rest_api_re_plans_and_shows_the_due_times(clinic):
    api = Api(issue_api_key(organization_slug=clinic.org.slug, name="EHR").plaintext)
    visit = book(clinic, local(clinic, 10))
    reminded, sent = sent_reminder(clinic)
    sent_before = snapshot(sent)
    before = planned(visit)

    response = api.put("reminder-rules", {"offsets_minutes": [2880]})
    assert response.status_code == 200, response.content

    shown = api.get(f"appointments/{visit.pk}/planned-messages").json()["data"]
    reminders = [m for m in shown if m["kind"] == "reminder"]
    assert [(m["step"], m["id"]) for m in reminders] == [
        ("reminder:2880", before["reminder:4320"][0])
    ]
    assert datetime.fromisoformat(reminders[0]["due_at"]) == visit.start - timedelta(hours=48)
    dropped = OutboundMessage.objects.get(pk=before["reminder:1440"][0])
    assert (dropped.state, dropped.reason) == ("cancelled", "rule_changed")
    assert snapshot(sent) == sent_before
    assert set(planned(reminded)) == {"reminder:2880"}


def test_the_admin_re_plans_the_visits_of_a_practice_rule_and_its_removal(client, clinic, build):
    other_practice = build.practice(clinic.org, time_zone="America/Chicago")
    visit = book(clinic, local(clinic, 10))
    elsewhere = book(clinic, local(clinic, 10, 15), practice=other_practice)
    client.force_login(build.staff(clinic.org, StaffRole.ORGANIZATION_ADMIN))

    response = client.post(
        "/admin/messaging/reminderrule/add/",
        {
            "organization": clinic.org.id,
            "practice": clinic.practice.id,
            "offsets_minutes": "[60]",
            "channel": "sms",
            "stop_when_confirmed": "on",
            "send_event_messages": "on",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert {s: due for s, (_, due) in planned(visit).items()} == {
        "reminder:60": visit.start - timedelta(hours=1)
    }
    assert set(planned(elsewhere)) == {"reminder:4320", "reminder:1440"}

    rule = ReminderRule.objects.get(practice=clinic.practice)
    response = client.post(f"/admin/messaging/reminderrule/{rule.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert {s: due for s, (_, due) in planned(visit).items()} == {
        "reminder:4320": visit.start - timedelta(hours=72),
        "reminder:1440": visit.start - timedelta(hours=24),
    }


def test_switching_stop_when_confirmed_and_channel_reaches_planned_rows(clinic):
    api = Api(issue_api_key(organization_slug=clinic.org.slug, name="EHR").plaintext)
    patient = clinic.patient(email="ana@example.org")
    visit = book(clinic, local(clinic, 10), patient=patient)
    api.put(
        "reminder-rules",
        {"offsets_minutes": [4320, 1440], "channel": "email", "stop_when_confirmed": False},
    )
    rows = OutboundMessage.objects.filter(appointment=visit, kind="reminder", state="scheduled")
    assert {(m.channel, m.to_address, m.stop_when_confirmed) for m in rows} == {
        ("email", "ana@example.org", False)
    }


def test_a_visit_booked_inside_the_last_window_is_asked_to_confirm_once(clinic, settings):
    settings.CARELINE_SENDING_HOURS_START, settings.CARELINE_SENDING_HOURS_END = 0, 24
    patient = clinic.patient(given_name="Rosa")
    start = timezone.now() + timedelta(hours=20)
    visit = book(clinic, start, patient=patient)
    rows = OutboundMessage.objects.filter(appointment=visit).exclude(state="cancelled")
    assert [(m.kind, m.step_key) for m in rows] == [("reminder", "reminder:1440")]
    assert rows[0].due_at <= timezone.now() and rows[0].expires_at == start
    Dispatcher(SimulatorGateway(), clock=Clock(timezone.now() + timedelta(minutes=1))).run_once()
    row = OutboundMessage.objects.get(appointment=visit)
    assert row.state == MessageState.DELIVERED, (row.state, row.reason)
    assert "Reply C to confirm" in row.body
    # Re-planning adds nothing: the patient was asked once.
    plan_all_reminders()
    book_again = OutboundMessage.objects.filter(appointment=visit).exclude(state="cancelled")
    assert book_again.count() == 1


def test_a_visit_booked_ahead_still_gets_the_booking_notice(clinic):
    visit = book(clinic, local(clinic, 10))
    steps = set(
        OutboundMessage.objects.filter(appointment=visit).values_list("step_key", flat=True)
    )
    assert steps == {"booked", "reminder:4320", "reminder:1440"}
