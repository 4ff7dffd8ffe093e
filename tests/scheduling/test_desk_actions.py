"""The front desk acts on visits in the app (day view, patient page): confirm, cancel with a
reason, move with the slot picker, check in, no-show — each undoable for a few minutes,
each recorded and followed by the patient's texts and re-planned reminders."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from careline.audit.models import AuditEvent
from careline.clinics.models import StaffRole
from careline.conversations.inbound import receive_sms
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.patients.consent import record_consent
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import AppointmentStatus, ChangeSource

ORG_NUMBER = "+15125550100"
_sids = itertools.count(1)


class Desk:
    """Oak Clinic (Chicago), Dr. Lee and Dr. Ruiz working 9-17 every day; its front desk, its
    manager, and a second practice of the same organization."""

    def __init__(self, build):
        self.build = build
        self.org = build.organization(default_sender_number=ORG_NUMBER)
        self.practice = build.practice(self.org, time_zone="America/Chicago", name="Oak Clinic")
        self.other = build.practice(self.org, name="Elm Clinic")
        self.lee = build.provider(self.practice, weekdays=range(7), display_name="Dr. Lee")
        self.ruiz = build.provider(self.practice, weekdays=range(7), display_name="Dr. Ruiz")
        self.elm_doctor = build.provider(self.other, weekdays=range(7))
        self.kind = build.appointment_type(self.org, minutes=20)
        self.front_desk = build.staff(self.org, StaffRole.FRONT_DESK, [self.practice])
        self.manager = build.staff(self.org, StaffRole.PRACTICE_MANAGER, [self.practice])
        self.day = (timezone.now().astimezone(self.practice.zone) + timedelta(days=3)).date()

    def at(self, hh: int, mm: int = 0, days: int = 0) -> datetime:
        return datetime.combine(self.day + timedelta(days=days), time(hh, mm), self.practice.zone)

    def visit(self, hh: int, mm: int = 0, provider=None, practice=None, **patient_kw):
        practice = practice or self.practice
        return book_appointment(
            patient=self.build.patient(self.org, **patient_kw),
            provider=provider or self.lee,
            practice=practice,
            appointment_type=self.kind,
            start=self.at(hh, mm),
        )


@pytest.fixture
def desk(build, settings) -> Desk:
    settings.CARELINE_OFFICE_HOURS = "Mon-Sun 00:00-24:00"
    return Desk(build)


def post(client, name: str, appointment, htmx_target: str | None = None, **data):
    headers = {}
    if htmx_target:
        headers = {"HX-Request": "true", "HX-Target": htmx_target}
    return client.post(reverse(name, args=[appointment.id]), data, headers=headers)


def notices(appointment, kind: str) -> dict[str, int]:
    rows = OutboundMessage.objects.filter(appointment=appointment, kind=kind)
    return {
        state: rows.filter(state=state).count()
        for state in set(rows.values_list("state", flat=True))
    }


def send_due_texts() -> None:
    Dispatcher(SimulatorGateway(), hours=SendingHours(0, 24)).run_once()


def test_cancel_needs_a_reason_then_texts_the_patient_and_undo_takes_it_back(client, desk):
    visit = desk.visit(10)
    client.force_login(desk.front_desk)
    refused = post(client, "scheduling:desk_action", visit, f"appt-{visit.id}", action="cancel")
    assert "Say why the visit is cancelled" in refused.content.decode()
    nul = post(
        client,
        "scheduling:desk_action",
        visit,
        f"appt-{visit.id}",
        action="cancel",
        reason="a\x00b",
    )
    assert nul.status_code == 200 and "NUL character" in nul.content.decode()
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    reminders_before = OutboundMessage.objects.filter(
        appointment=visit, kind=MessageKind.REMINDER, state=MessageState.SCHEDULED
    ).count()
    assert reminders_before > 0

    response = post(
        client,
        "scheduling:desk_action",
        visit,
        f"appt-{visit.id}",
        action="cancel",
        reason="Patient called: moving away",
    )
    body = response.content.decode()
    assert response.status_code == 200 and 'data-status="cancelled"' in body
    assert "Undo" in body
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED
    assert visit.status_source == ChangeSource.FRONT_DESK
    event = visit.events.last()
    assert event.changed_by == desk.front_desk and event.to_status == "cancelled"
    assert "moving away" in event.note
    assert AuditEvent.objects.filter(
        user=desk.front_desk, patient=visit.patient, action=AuditEvent.Action.CHANGE
    ).exists()
    # The patient is told, and the reminders stop.
    assert notices(visit, MessageKind.CANCELLED) == {MessageState.SCHEDULED: 1}
    assert not OutboundMessage.objects.filter(
        appointment=visit, kind=MessageKind.REMINDER, state=MessageState.SCHEDULED
    ).exists()

    undone = post(client, "scheduling:desk_undo", visit, f"appt-{visit.id}", event=event.id)
    assert 'data-status="booked"' in undone.content.decode()
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    last = visit.events.last()
    assert (last.from_status, last.to_status) == ("cancelled", "booked")
    assert last.note == f"undo of change #{event.id}" and last.changed_by == desk.front_desk
    # The cancellation notice never leaves; the reminders are planned again.
    assert notices(visit, MessageKind.CANCELLED) == {MessageState.CANCELLED: 1}
    assert (
        OutboundMessage.objects.filter(
            appointment=visit, kind=MessageKind.REMINDER, state=MessageState.SCHEDULED
        ).count()
        == reminders_before
    )
    # An undo is not itself undone, and the old change is no longer the latest.
    again = post(client, "scheduling:desk_undo", visit, f"appt-{visit.id}", event=event.id)
    assert "nothing to undo" in again.content.decode()
    assert visit.events.count() == 3


def test_move_with_the_slot_picker_then_undo_puts_it_back_untold(client, desk):
    visit = desk.visit(10)
    desk.visit(10, 20, given_name="Busy")  # Dr. Lee's 10:20 is taken
    client.force_login(desk.front_desk)
    picker = client.get(
        reverse("scheduling:slot_picker", args=[visit.id]),
        {"from": desk.day.isoformat(), "target": f"#appt-{visit.id}"},
        headers={"HX-Request": "true"},
    )
    html = picker.content.decode()
    values = re.findall(r'name="slot" value="([^"]+)"', html)
    offered = {(datetime.fromisoformat(v.split("|")[0]), int(v.split("|")[1])) for v in values}
    assert (desk.at(10, 40), desk.lee.id) in offered
    assert (desk.at(10, 20), desk.lee.id) not in offered  # taken
    assert (desk.at(10, 20), desk.ruiz.id) in offered
    ruiz_slot = next(v for v in values if v.endswith(f"|{desk.ruiz.id}"))
    assert "Dr. Ruiz" in html and "Dr. Lee" in html

    taken = f"{desk.at(10, 20).isoformat()}|{desk.lee.id}"
    refused = post(
        client, "scheduling:desk_action", visit, f"appt-{visit.id}", action="reschedule", slot=taken
    )
    assert "taken" in refused.content.decode()
    visit.refresh_from_db()
    assert visit.start == desk.at(10)

    moved = post(
        client,
        "scheduling:desk_action",
        visit,
        f"appt-{visit.id}",
        action="reschedule",
        slot=ruiz_slot,
    )
    assert moved.status_code == 200
    visit.refresh_from_db()
    assert visit.provider == desk.ruiz and visit.start != desk.at(10)
    event = visit.events.last()
    assert event.old_start == desk.at(10) and event.old_provider == desk.lee
    assert event.source == ChangeSource.FRONT_DESK
    assert notices(visit, MessageKind.RESCHEDULED) == {MessageState.SCHEDULED: 1}

    post(client, "scheduling:desk_undo", visit, f"appt-{visit.id}", event=event.id)
    visit.refresh_from_db()
    assert (visit.start, visit.provider) == (desk.at(10), desk.lee)
    back = visit.events.last()
    assert back.old_provider == desk.ruiz and back.new_start == desk.at(10)
    # Nothing told the patient of the move, so nothing tells them of the way back.
    assert MessageState.SCHEDULED not in notices(visit, MessageKind.RESCHEDULED)


def test_a_move_the_patient_was_told_of_is_undone_with_a_new_notice(client, desk):
    visit = desk.visit(10)
    client.force_login(desk.front_desk)
    slot = f"{desk.at(11).isoformat()}|{desk.lee.id}"
    post(client, "scheduling:desk_action", visit, action="reschedule", slot=slot)
    send_due_texts()  # the "your visit moved" text leaves
    assert notices(visit, MessageKind.RESCHEDULED) == {MessageState.DELIVERED: 1}
    visit.refresh_from_db()
    post(client, "scheduling:desk_undo", visit)
    visit.refresh_from_db()
    assert visit.start == desk.at(10)
    planned = OutboundMessage.objects.get(
        appointment=visit, kind=MessageKind.RESCHEDULED, state=MessageState.SCHEDULED
    )
    assert planned.visit_start == desk.at(10)


def test_no_show_arrived_confirm_and_the_undo_window(client, desk, monkeypatch):
    visit = desk.visit(9)
    client.force_login(desk.front_desk)
    response = post(client, "scheduling:desk_action", visit, f"appt-{visit.id}", action="noshow")
    assert 'data-status="noshow"' in response.content.decode()
    event = visit.events.last()
    undo = post(client, "scheduling:desk_undo", visit, f"appt-{visit.id}", event=event.id)
    assert 'data-status="booked"' in undo.content.decode()

    post(client, "scheduling:desk_action", visit, f"appt-{visit.id}", action="confirm")
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CONFIRMED and visit.confirmed_at
    again = post(client, "scheduling:desk_action", visit, f"appt-{visit.id}", action="confirm")
    assert "already confirmed" in again.content.decode()

    post(client, "scheduling:desk_action", visit, f"appt-{visit.id}", action="arrived")
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.ARRIVED
    # Six minutes later the check-in stands.
    later = timezone.now() + timedelta(minutes=6)
    monkeypatch.setattr(timezone, "now", lambda: later)
    late = post(client, "scheduling:desk_undo", visit, f"appt-{visit.id}")
    assert "few minutes to undo this change have passed" in late.content.decode()
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.ARRIVED
    assert "Undo" not in late.content.decode()


def test_other_practices_visits_are_not_found_and_a_manager_may_act(client, desk):
    foreign = desk.visit(10, provider=desk.elm_doctor, practice=desk.other)
    client.force_login(desk.front_desk)
    for name, data in (
        ("scheduling:desk_action", {"action": "noshow"}),
        ("scheduling:desk_undo", {}),
    ):
        assert post(client, name, foreign, **data).status_code == 404
    assert client.get(reverse("scheduling:slot_picker", args=[foreign.id])).status_code == 404
    calls = reverse("scheduling:day_calls", args=[desk.other.id, desk.day.isoformat()])
    assert client.get(calls).status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == AppointmentStatus.BOOKED

    own = desk.visit(11)
    client.force_login(desk.manager)
    response = post(client, "scheduling:desk_action", own, action="confirm")
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.status == AppointmentStatus.CONFIRMED
    assert own.status_changed_by == desk.manager


def test_patient_page_offers_the_same_acts(client, desk):
    visit = desk.visit(10)
    client.force_login(desk.front_desk)
    page = client.get(reverse("patients:detail", args=[visit.patient_id])).content.decode()
    assert f'id="actions-{visit.id}"' in page and "Cancel visit" in page and "Move…" in page
    response = post(
        client,
        "scheduling:desk_action",
        visit,
        f"actions-{visit.id}",
        action="cancel",
        reason="Sick",
    )
    body = response.content.decode()
    assert body.startswith('<div class="desk-actions"') and "Cancelled." in body
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED
    # Without htmx the form goes back where it came from.
    page_url = reverse("patients:detail", args=[visit.patient_id])
    response = post(client, "scheduling:desk_undo", visit, next=page_url)
    assert response.status_code == 302 and response["Location"] == page_url
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    # Anywhere else is not followed: back to the visit's day.
    for elsewhere in ("https://evil.example/", "//evil.example/x", "9999-12-31"):
        response = post(client, "scheduling:desk_action", visit, action="confirm", next=elsewhere)
        assert response.status_code == 302 and response["Location"].startswith("/schedule/")


def test_front_desk_changes_are_written_back_to_the_ehr(client, desk):
    from careline.integrations.hl7.writeback import queue
    from careline.integrations.models import Hl7Feed, Hl7OutboundMessage

    Hl7Feed.objects.create(
        organization=desk.org,
        name="PMSYS",
        time_zone="America/Chicago",
        outbound_host="127.0.0.1",
        outbound_port=2575,
    )
    cancelled, moved, confirmed = desk.visit(10), desk.visit(11), desk.visit(12)
    client.force_login(desk.front_desk)
    post(client, "scheduling:desk_action", cancelled, action="cancel", reason="Called in")
    post(client, "scheduling:desk_action", confirmed, action="confirm")
    slot = f"{desk.at(15).isoformat()}|{desk.lee.id}"
    post(client, "scheduling:desk_action", moved, action="reschedule", slot=slot)
    queue.fill_outbox()
    sent = dict(
        Hl7OutboundMessage.objects.filter(event__source=ChangeSource.FRONT_DESK).values_list(
            "appointment_id", "message_type"
        )
    )
    assert sent == {cancelled.id: "S15", confirmed.id: "S14", moved.id: "S13"}


def texts_in(patient, body: str) -> None:
    receive_sms(
        from_phone=patient.mobile_phone,
        to_phone=ORG_NUMBER,
        body=body,
        provider_message_id=f"SMDESK{next(_sids):026d}",
        received_at=timezone.now(),
    )


def test_day_view_shows_each_visits_real_state_and_a_call_list(client, desk):
    texted = desk.visit(9, given_name="Tex")
    asked = desk.visit(9, 20, given_name="Ash")
    send_due_texts()  # their booking texts leave
    untexted = desk.visit(9, 40, given_name="Una")
    confirmed = desk.visit(10, given_name="Con")
    nomobile = desk.visit(10, 20, given_name="Nom", mobile_phone="")
    optedout = desk.visit(10, 40, given_name="Opt", mobile_phone="+15125550777")
    record_consent(
        organization_id=desk.org.id,
        phone="+15125550777",
        opted_out=True,
        source="patient_text",
        detail="STOP",
    )
    client.force_login(desk.front_desk)
    post(client, "scheduling:desk_action", confirmed, action="confirm")
    texts_in(asked.patient, "R")
    url = reverse("scheduling:day", args=[desk.practice.id, desk.day.isoformat()])
    response = client.get(url)
    states = {r.appointment.patient.given_name: r.reply_state for r in response.context["rows"]}
    assert states == {
        "Tex": "texted, no answer",
        "Ash": "asked to reschedule",
        "Una": "not texted yet",
        "Con": "confirmed",
        "Nom": "no mobile",
        "Opt": "opted out",
    }
    calls = [r.appointment.patient.given_name for r in response.context["calls"]]
    assert calls == ["Tex", "Ash", "Nom", "Opt"]
    html = response.content.decode()
    assert f'id="call-{nomobile.id}"' in html and f'id="call-{untexted.id}"' not in html
    # Calling Tex and confirming takes him off the list (which reloads on the row's answer).
    answer = post(client, "scheduling:desk_action", texted, f"appt-{texted.id}", action="confirm")
    assert answer["HX-Trigger"] == "deskChanged"
    calls_url = reverse("scheduling:day_calls", args=[desk.practice.id, desk.day.isoformat()])
    calls = client.get(calls_url, headers={"HX-Request": "true"})
    assert [r.appointment.patient.given_name for r in calls.context["calls"]] == [
        "Ash",
        "Nom",
        "Opt",
    ]
    assert f'id="call-{texted.id}"' not in calls.content.decode()
    assert optedout and untexted


def test_day_view_queries_do_not_grow_with_the_visits(client, desk):
    client.force_login(desk.front_desk)
    url = reverse("scheduling:day", args=[desk.practice.id, desk.day.isoformat()])
    desk.visit(9)
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for i in range(1, 12):
        desk.visit(9 + i // 3, (i % 3) * 20, provider=desk.ruiz)
    post(client, "scheduling:desk_action", desk.visit(16), action="noshow")
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few)


def test_the_slot_picker_offers_nothing_past_the_calendar_it_can_search(client, desk):
    """A typed day far ahead answers "no open times" (not a 500 from date arithmetic
    overflowing near year 9999, where the picker starts from today instead)."""
    visit = desk.visit(10)
    client.force_login(desk.front_desk)

    def offered(far: str) -> list[str]:
        picker = client.get(
            reverse("scheduling:slot_picker", args=[visit.id]),
            {"from": far, "target": f"#appt-{visit.id}"},
            headers={"HX-Request": "true"},
        )
        assert picker.status_code == 200
        return re.findall(r'name="slot" value="([^"]+)"', picker.content.decode())

    assert offered((desk.day + timedelta(days=3 * 366)).isoformat()) == []
    assert offered(desk.day.isoformat())  # the same visit has times nearer
    assert offered("9999-12-31") == offered("")  # not a calendar day: from today


def test_the_call_list_of_a_day_no_schedule_has_is_not_found(client, desk):
    client.force_login(desk.front_desk)
    practice_id = desk.visit(10).practice_id
    for day in ("9999-12-31", "0001-01-01", "2026-13-01"):
        assert client.get(f"/schedule/{practice_id}/{day}/calls/").status_code == 404
    assert client.get(f"/schedule/{practice_id}/{desk.day}/calls/?provider=x").status_code == 400


def test_undoing_a_cancellation_or_confirmation_is_written_back_too(client, desk):
    """The EHR heard of the cancellation (S15) or confirmation (S14): the undo minutes later
    is an S14 that puts the visit back to Booked and says why in SCH-6."""
    from careline.integrations.hl7.writeback import queue
    from careline.integrations.models import Hl7Feed, Hl7OutboundMessage

    Hl7Feed.objects.create(
        organization=desk.org,
        name="PMSYS",
        time_zone="America/Chicago",
        outbound_host="127.0.0.1",
        outbound_port=2575,
    )
    cancelled, confirmed = desk.visit(10), desk.visit(11)
    client.force_login(desk.front_desk)
    post(client, "scheduling:desk_action", cancelled, action="cancel", reason="Called in")
    post(client, "scheduling:desk_action", confirmed, action="confirm")
    post(client, "scheduling:desk_undo", cancelled)
    post(client, "scheduling:desk_undo", confirmed)
    queue.fill_outbox()

    def sch(row) -> list[str]:
        return row.raw.split("\r")[1].split("|")

    sent = {
        visit.id: [
            (row.message_type, sch(row)[6].split("^")[0], sch(row)[25])
            for row in Hl7OutboundMessage.objects.filter(appointment=visit).order_by("id")
        ]
        for visit in (cancelled, confirmed)
    }
    booked, gone = "Booked^Booked^HL70278", "Cancelled^Cancelled^HL70278"
    assert sent == {
        cancelled.id: [("S15", "front_desk", gone), ("S14", "reinstated", booked)],
        confirmed.id: [("S14", "confirmed", booked), ("S14", "unconfirmed", booked)],
    }


def test_a_patient_told_of_the_cancellation_hears_the_visit_is_back_on(client, desk):
    from careline.messaging.planning import sync_reminders

    visit = desk.visit(10, given_name="Rosa")
    client.force_login(desk.front_desk)
    post(client, "scheduling:desk_action", visit, action="cancel", reason="Called in")
    send_due_texts()  # the cancellation text leaves
    assert notices(visit, MessageKind.CANCELLED) == {MessageState.DELIVERED: 1}
    post(client, "scheduling:desk_undo", visit)
    back_on = OutboundMessage.objects.get(
        appointment=visit, kind=MessageKind.BOOKED, state=MessageState.SCHEDULED
    )
    assert back_on.step_key == "reinstated" and back_on.visit_start == desk.at(10)
    send_due_texts()
    back_on.refresh_from_db()
    assert back_on.state == MessageState.DELIVERED
    assert "Rosa" in back_on.body
    # Planned once: another re-plan of the visit adds nothing.
    sync_reminders([visit.id])
    assert OutboundMessage.objects.filter(appointment=visit, step_key="reinstated").count() == 1
