"""Emails as a patient's mail client receives them: plain text and HTML alternatives, the
visit as an .ics in the practice's zone, a button per answer instead of "Reply C", and a
one-click List-Unsubscribe. Sent by the worker, parsed from the bytes that go over SMTP."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

import icalendar
import pytest
from django.core import mail
from django.utils import timezone

from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageState, OutboundMessage
from careline.messaging.planning import plan_all_reminders
from careline.scheduling.appointments import book_appointment, change_status, move_appointment
from careline.scheduling.models import AppointmentStatus
from careline.selfservice.links import hash_token
from careline.selfservice.models import LinkPurpose, PatientLink
from tests.emails import sent

BASE = "http://127.0.0.1:8000"
# What a text asks and an email must not: email replies are never read.
REPLY_WORDING = re.compile(r"\b(reply|responda|conteste)\b|\bC\b.*\bX\b", re.I)


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def local(clinic, days_ahead: int, hour: int, minute: int = 0) -> datetime:
    day = timezone.now().astimezone(clinic.practice.zone).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time(hour, minute), tzinfo=clinic.practice.zone)


def run_at(at: datetime | None = None) -> None:
    Dispatcher(
        SimulatorGateway(), clock=Clock(at or timezone.now()), hours=SendingHours(0, 24)
    ).run_once()


@pytest.fixture(autouse=True)
def base_url(settings):
    settings.CARELINE_BASE_URL = BASE


def test_a_reminder_email_is_text_and_html_with_answer_links_an_ics_and_one_click_unsubscribe(
    clinic,
):
    patient = clinic.patient(mobile_phone="", email="Rosa.Diaz@example.org", given_name="Rosa")
    visit = clinic.appointment(local(clinic, 5, 9, 30), patient=patient)
    plan_all_reminders()
    run_at(visit.start - timedelta(hours=24) + timedelta(minutes=1))

    (email,) = sent()
    assert email.header("To") == "Rosa.Diaz@example.org"
    assert email.header("Subject") == f"Appointment reminder: {clinic.practice.name}"
    # RFC 2369 / RFC 8058: a URL to unsubscribe, and that it takes a one-click POST.
    (unsubscribe,) = re.findall(r"^<(.+)>$", email.header("List-Unsubscribe"))
    assert re.fullmatch(rf"{BASE}/a/[A-Za-z0-9_-]{{16}}/unsubscribe", unsubscribe)
    assert email.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"

    assert email.text.startswith("Hello Rosa,")
    assert "9:30 AM" in email.text and "9:30 AM" in email.html
    assert not REPLY_WORDING.search(email.text) and not REPLY_WORDING.search(email.html)
    confirm, cancel, move = (
        email.link_labelled(label)
        for label in ("Confirm my visit", "Cancel my visit", "Pick a new time")
    )
    # One single-use link per answer, the same in both parts, and the unsubscribe link.
    assert len({confirm, cancel, move}) == 3
    for path in (confirm, cancel, move):
        assert f'href="{BASE}{path}"' in email.html
    assert unsubscribe in email.text and f'href="{unsubscribe}"' in email.html
    purposes = {
        path: PatientLink.objects.get(token_hash=hash_token(path.split("/")[2])).purpose
        for path in (confirm, cancel, move)
    }
    assert purposes == {
        confirm: LinkPurpose.CONFIRM,
        cancel: LinkPurpose.CANCEL,
        move: LinkPurpose.MOVE,
    }

    # The calendar entry is in the practice's own zone, at the visit's local time.
    assert email.ics_name == "appointment.ics"
    calendar = icalendar.Calendar.from_ical(email.ics)
    (event,) = calendar.walk("VEVENT")
    start = event.decoded("dtstart")
    assert str(start.tzinfo) == "America/Chicago" and start.time() == time(9, 30)
    assert start == visit.start
    assert f"DTSTART;TZID=America/Chicago:{start:%Y%m%d}T093000" in email.ics
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["America/Chicago"]
    assert event["SUMMARY"] == f"Visit at {clinic.practice.name}"
    assert patient.family_name not in email.ics

    # The outbox keeps the text with every link's token redacted, as it does for texts.
    stored = OutboundMessage.objects.get(step_key="reminder:1440")
    assert stored.state == MessageState.SENT
    assert stored.body.startswith("Hello Rosa,") and "/a/[redacted]" in stored.body
    assert not re.search(r"/a/[A-Za-z0-9_-]{16}", stored.body)


def test_a_daylight_saving_visit_keeps_its_local_time_in_the_ics(build):
    org = build.organization()
    practice = build.practice(org, time_zone="America/Denver")
    provider = build.provider(practice, hours=None)
    patient = build.patient(org, home_practice=practice, mobile_phone="", email="a@example.org")
    today = timezone.now().astimezone(practice.zone).date()
    start = datetime.combine(today + timedelta(days=3), time(16, 15), tzinfo=practice.zone)
    book_appointment(
        patient=patient,
        provider=provider,
        practice=practice,
        appointment_type=build.appointment_type(org),
        start=start,
        check_working_time=False,
    )
    run_at()
    (email,) = sent()
    (event,) = icalendar.Calendar.from_ical(email.ics).walk("VEVENT")
    assert event.decoded("dtstart") == start
    assert str(event.decoded("dtstart").tzinfo) == "America/Denver"
    assert f"DTSTART;TZID=America/Denver:{start:%Y%m%d}T161500" in email.ics


def _kinds_of_email(clinic, patient) -> dict[str, object]:
    """A booking notice, a move notice, a cancellation and a reminder, each emailed."""
    start = local(clinic, 6, 10)
    visit = book_appointment(
        patient=patient,
        provider=clinic.provider,
        practice=clinic.practice,
        appointment_type=clinic.visit_type,
        start=start,
        check_working_time=False,
    )
    run_at()
    booked = sent()[-1]
    move_appointment(visit, new_start=start + timedelta(days=1), check_working_time=False)
    run_at()
    moved = sent()[-1]
    reminder_visit = clinic.appointment(local(clinic, 3, 11), patient=patient)
    plan_all_reminders()
    run_at(reminder_visit.start - timedelta(hours=24) + timedelta(minutes=1))
    reminder = sent()[-1]
    change_status(visit, AppointmentStatus.CANCELLED, source="staff")
    run_at()
    cancelled = sent()[-1]
    assert len(mail.outbox) == 4
    return {"booked": booked, "rescheduled": moved, "reminder": reminder, "cancelled": cancelled}


BUTTONS = {
    "en": {
        "reminder": ["Confirm my visit", "Cancel my visit", "Pick a new time"],
        "booked": ["Cancel my visit", "Pick a new time"],
        "rescheduled": ["Confirm my visit", "Cancel my visit", "Pick a new time"],
        "cancelled": [],
    },
    "es": {
        "reminder": ["Confirmar mi cita", "Cancelar mi cita", "Elegir otra hora"],
        "booked": ["Cancelar mi cita", "Elegir otra hora"],
        "rescheduled": ["Confirmar mi cita", "Cancelar mi cita", "Elegir otra hora"],
        "cancelled": [],
    },
}
SUBJECTS = {
    "en": {
        "reminder": "Appointment reminder",
        "booked": "Your appointment is booked",
        "rescheduled": "Your appointment has moved",
        "cancelled": "Your appointment is cancelled",
    },
    "es": {
        "reminder": "Recordatorio de cita",
        "booked": "Su cita está reservada",
        "rescheduled": "Su cita cambió de hora",
        "cancelled": "Su cita fue cancelada",
    },
}


@pytest.mark.parametrize("language", ["en", "es"])
def test_no_kind_of_email_asks_for_a_reply_and_each_has_its_buttons(clinic, language):
    patient = clinic.patient(
        mobile_phone="", email="luis@example.org", given_name="Luis", preferred_language=language
    )
    emails = _kinds_of_email(clinic, patient)
    for kind, email in emails.items():
        assert email.header("Subject") == f"{SUBJECTS[language][kind]}: {clinic.practice.name}"
        assert not REPLY_WORDING.search(email.text), (kind, email.text)
        assert not REPLY_WORDING.search(email.html), (kind, email.html)
        labels = re.findall(r"^([^:\n]+): https?://\S+/a/[A-Za-z0-9_-]{16}$", email.text, re.M)
        assert labels == BUTTONS[language][kind], (kind, email.text)
        assert email.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    cancelled = icalendar.Calendar.from_ical(emails["cancelled"].ics)
    assert cancelled["METHOD"] == "CANCEL"
    assert cancelled.walk("VEVENT")[0]["STATUS"] == "CANCELLED"
    if language == "es":
        reminder = emails["reminder"]
        assert reminder.text.startswith("Hola, Luis:")
        assert "Le recordamos su cita en" in reminder.text
        assert "Cuándo:" in reminder.text and "a.m." in reminder.text
        assert "Para dejar de recibir nuestros correos:" in reminder.text
        assert 'lang="es"' in reminder.html and "Confirmar mi cita</a>" in reminder.html
        event = icalendar.Calendar.from_ical(reminder.ics).walk("VEVENT")[0]
        assert event["SUMMARY"] == f"Cita en {clinic.practice.name}"
