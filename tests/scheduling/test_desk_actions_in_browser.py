"""A front-desk morning in real Chromium: the inbox, where a patient's question is answered
with a canned reply; the day view, which shows where each visit stands and who to phone;
the desk moves a visit with the slot picker, marks a no-show and takes it back, and works
the call list. Screenshots: docs/screenshots/dayview-*.png (refreshed with
CARELINE_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import itertools
import os
import re
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from careline.clinics.models import StaffRole
from careline.conversations.inbound import receive_sms
from careline.conversations.inbox import save_canned_reply
from careline.conversations.models import Conversation
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageKind, OutboundMessage
from careline.patients.consent import record_consent
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from tests.browser import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ORG_NUMBER = "+15125550100"
PASSWORD = "careline-test-pw"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
_sids = itertools.count(1)


class Morning:
    """Lakeside Family Medicine (Chicago), Dr. Lee and Dr. Patel; tomorrow's first visits."""

    def __init__(self, build):
        self.build = build
        self.org = build.organization(name="Lakeside Health", default_sender_number=ORG_NUMBER)
        self.practice = build.practice(
            self.org, name="Lakeside Family Medicine", time_zone="America/Chicago"
        )
        self.lee = build.provider(self.practice, display_name="Dr. Lee", weekdays=range(7))
        self.patel = build.provider(self.practice, display_name="Dr. Patel", weekdays=range(7))
        self.kind = build.appointment_type(self.org, minutes=20, patient_facing_name="Follow-up")
        build.staff(
            self.org, StaffRole.FRONT_DESK, [self.practice], username="frontdesk", password=PASSWORD
        )
        self.day = (timezone.now().astimezone(self.practice.zone) + timedelta(days=1)).date()

    def at(self, hh: int, mm: int = 0) -> datetime:
        return datetime.combine(self.day, time(hh, mm), self.practice.zone)

    def visit(self, name: str, phone: str, provider, hh: int, mm: int = 0) -> Appointment:
        given, family = name.split()
        patient = self.build.patient(
            self.org, given_name=given, family_name=family, mobile_phone=phone
        )
        return book_appointment(
            patient=patient,
            provider=provider,
            practice=self.practice,
            appointment_type=self.kind,
            start=self.at(hh, mm),
        )


@pytest.fixture
def morning(build, settings) -> Morning:
    settings.CARELINE_OFFICE_HOURS = "Mon-Sun 00:00-24:00"
    settings.CARELINE_SENDING_HOURS_START = 0
    settings.CARELINE_SENDING_HOURS_END = 24
    return Morning(build)


def shot(page, name: str) -> None:
    """Into tests/screenshots/; with CARELINE_DOCS_SCREENSHOTS=1 also refresh the copy in
    docs/screenshots/ (committed, shown in the docs), so a plain test run leaves the
    tree clean."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
    if os.environ.get("CARELINE_DOCS_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS_SCREENSHOTS / name), full_page=True)


def test_front_desk_morning_answers_the_inbox_moves_a_visit_undoes_a_no_show_and_works_the_call_list(  # noqa: E501
    live_server, page, morning
):
    m = morning
    maria = m.visit("Maria Lopez", "+15125550311", m.lee, 9)
    nora = m.visit("Nora Bell", "+15125550315", m.patel, 10)
    Dispatcher(SimulatorGateway(), hours=SendingHours(0, 24)).run_once()  # booking texts leave
    james = m.visit("James Carter", "", m.lee, 9, 20)
    omar = m.visit("Omar Haddad", "+15125550314", m.lee, 9, 40)
    wei = m.visit("Wei Chen", "+15125550316", m.lee, 10, 20)
    record_consent(
        organization_id=m.org.id, phone="+15125550314", opted_out=True, source="patient_text"
    )
    receive_sms(
        from_phone="+15125550315",
        to_phone=ORG_NUMBER,
        body="R",
        provider_message_id=f"SMMORNING{next(_sids):023d}",
        received_at=timezone.now(),
    )

    save_canned_reply(
        m.org.id,
        m.practice,
        title="Parking",
        body="Hi {first_name}, free parking is behind {practice}, entrance on Oak St.",
        language="en",
    )
    receive_sms(
        from_phone="+15125550316",
        to_phone=ORG_NUMBER,
        body="Hi, is there somewhere to park near the clinic?",
        provider_message_id=f"SMMORNING{next(_sids):023d}",
        received_at=timezone.now(),
    )

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("frontdesk")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()

    # First the inbox: Wei asked about parking; the canned answer is one pick away.
    page.get_by_role("navigation").get_by_role("link", name="Inbox").click()
    wei_row = page.locator("#inbox-rows tr", has_text="Wei Chen")
    expect(wei_row.locator(".preview")).to_contain_text("somewhere to park")
    wei_row.get_by_role("link", name="Wei Chen").click()
    page.get_by_label("Canned reply").select_option(label="Parking")
    answer = "Hi Wei, free parking is behind Lakeside Family Medicine, entrance on Oak St."
    expect(page.get_by_label("Message to the patient")).to_have_value(answer)
    shot(page, "inbox-canned-reply.png")
    page.get_by_role("button", name="Send text").click()
    page.wait_for_load_state()
    sent = OutboundMessage.objects.filter(kind=MessageKind.REPLY, to_address="+15125550316")
    assert list(sent.values_list("body", flat=True)) == [answer]
    assert Conversation.objects.get(phone="+15125550316").assigned_to is not None

    page.goto(f"{live_server.url}/schedule/{m.practice.id}/{m.day.isoformat()}/")
    day = page.locator("table.day")

    def row(appointment: Appointment):
        return page.locator(f"#appt-{appointment.id}")

    assert row(maria).locator("td.reply").inner_text() == "texted, no answer"
    assert row(james).locator("td.reply").inner_text() == "no mobile"
    assert row(omar).locator("td.reply").inner_text() == "opted out"
    assert row(nora).locator("td.reply").inner_text() == "asked to reschedule"
    assert row(wei).locator("td.reply").inner_text() == "not texted yet"
    calls = page.locator("#calls li")
    assert [c.get_attribute("id") for c in calls.all()] == [
        f"call-{v.id}" for v in (maria, james, omar, nora)
    ]
    shot(page, "dayview-call-list.png")

    # Nora asked to move: the slot picker offers open times from the day chosen.
    row(nora).get_by_role("link", name="Move…").click()
    picker = row(nora).locator("[data-slot-picker]")
    picker.get_by_label("Open times from").fill(m.day.isoformat())
    picker.get_by_role("button", name="Find").click()
    choice = picker.get_by_label(re.compile(r"11:00 AM · Dr\. Patel"))
    choice.check()
    shot(page, "dayview-slot-picker.png")
    picker.get_by_role("button", name="Move visit").click()
    expect(row(nora).locator("td").first).to_have_text("11:00 AM")
    nora.refresh_from_db()
    assert (nora.start, nora.provider) == (m.at(11), m.patel)
    assert nora.status_source == ChangeSource.FRONT_DESK
    page.locator(f"#call-{nora.id}").wait_for(state="detached")

    # James did not come: no-show, then he walks in after all — undo.
    row(james).get_by_role("button", name="Mark James no-show").click()
    row(james).locator("td.status", has_text="No-show").wait_for()
    undo = row(james).get_by_role("button", name=re.compile("Undo"))
    assert undo.is_visible()
    shot(page, "dayview-undo.png")
    james.refresh_from_db()
    assert james.status == AppointmentStatus.NO_SHOW
    undo.click()
    row(james).locator("td.status", has_text="Booked").wait_for()
    james.refresh_from_db()
    assert james.status == AppointmentStatus.BOOKED
    assert james.events.last().note.startswith("undo of change #")

    # The call list: Maria confirms on the phone; Omar cancels.
    page.locator(f"#call-{maria.id}").get_by_role("link", name="Maria Lopez").click()
    row(maria).get_by_role("button", name="Confirm Maria").click()
    row(maria).locator("td.reply", has_text="confirmed").wait_for()
    page.locator(f"#call-{maria.id}").wait_for(state="detached")
    row(omar).locator("summary", has_text="Cancel…").click()
    row(omar).get_by_label("Reason").fill("Patient called: moving away")
    row(omar).get_by_role("button", name="Cancel visit").click()
    row(omar).locator("td.status", has_text="Cancelled").wait_for()
    page.locator(f"#call-{omar.id}").wait_for(state="detached")
    assert page.locator("[data-call-count]").inner_text() == "1"
    assert [c.get_attribute("id") for c in calls.all()] == [f"call-{james.id}"]
    shot(page, "dayview-call-list-worked.png")
    omar.refresh_from_db()
    assert omar.status == AppointmentStatus.CANCELLED
    assert "moving away" in omar.events.last().note
    assert day.is_visible()
