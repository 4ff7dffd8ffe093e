"""A patient on a phone-sized Chromium: books with a texted code, moves and cancels from a
reminder link, joins the waitlist and takes an offer. Codes and links are read from the
simulator's patient-phone page, as a person would read them from their phone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client

from careline.clinics.models import Organization
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import SimulatedPhoneMessage
from careline.scheduling.appointments import change_status
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from careline.selfservice.links import manage_link_url
from careline.waitlist.models import SlotOpening, WaitlistEntry
from tests.conftest import ClinicBuilder

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("always_sending", "links_to_live_server"),
]


@pytest.fixture
def links_to_live_server(live_server, settings):
    settings.CARELINE_BASE_URL = live_server.url


def _phone_inbox(page, live_server, pattern: str) -> str:
    """Send what is due through the simulator and read the newest match off /simulator/."""
    Dispatcher(SimulatorGateway()).run_once()
    # The simulator is for the organization's staff: read it signed in as one of them.
    newest = SimulatedPhoneMessage.objects.select_related("outbound_message").last()
    organization = Organization.objects.get(pk=newest.outbound_message.organization_id)
    staff = ClinicBuilder().staff(organization)
    client = Client()
    client.force_login(staff)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    context = page.context.browser.new_context()
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    inbox = context.new_page()
    inbox.goto(f"{live_server.url}/simulator/")
    found = re.findall(pattern, inbox.locator("body").inner_text())
    context.close()
    assert found, f"no text matching {pattern} on the simulator page"
    return found[-1]


def _identify(page, live_server):
    page.get_by_label("First name").fill("Maria")
    page.get_by_label("Last name").fill("Garcia")
    page.get_by_label("Date of birth").fill("1980-05-17")
    page.get_by_label("Mobile number").fill("(512) 555-0400")
    page.get_by_role("button", name="Text me a code").click()
    code = _phone_inbox(page, live_server, r"booking code is (\d{6})")
    page.get_by_label("Code from the text").fill(code)
    page.get_by_role("button", name="Confirm", exact=True).click()


def test_patient_books_a_visit_on_a_phone(live_server, phone_page, clinic):
    page = phone_page
    page.goto(f"{live_server.url}/book/{clinic.practice.code}/")
    page.get_by_label("Type of visit").select_option(label="Office visit")
    page.get_by_label("Day").fill(clinic.monday.isoformat())
    page.get_by_role("button", name="Show open times").click()
    page.get_by_role("button", name=re.compile(r"9:20 AM, Dr\. Lee")).click()
    assert "Maria" not in page.url
    _identify(page, live_server)

    page.get_by_role("heading", name="You are booked").wait_for()
    assert "Dr. Lee" in page.locator("main").inner_text()
    assert page.get_by_role("link", name="Add to calendar").is_visible()
    appointment = Appointment.objects.get(patient__family_name="Garcia")
    assert appointment.start == clinic.at(clinic.monday, 9, 20)
    assert appointment.status_source == ChangeSource.ONLINE_BOOKING
    assert "/a/" in _phone_inbox(page, live_server, r"you are booked for .*/a/\S+")


def test_patient_moves_then_cancels_from_a_reminder_link(live_server, phone_page, clinic):
    page = phone_page
    patient = clinic.patient(given_name="Rosa", family_name="Delgado")
    appointment = clinic.appointment(clinic.at(clinic.monday, 14), patient=patient)
    link = manage_link_url(appointment.pk)

    page.goto(link)
    assert "Hi Rosa" in page.locator("h1").inner_text()
    page.get_by_role("link", name="Pick a new time").click()
    page.get_by_label("Day").fill((clinic.monday + timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Show open times").click()
    page.get_by_role("button", name=re.compile(r"10:00 AM")).click()
    page.get_by_text("Your visit has been moved.").wait_for()
    appointment.refresh_from_db()
    assert appointment.start == clinic.at(clinic.monday + timedelta(days=1), 10)

    page.get_by_role("link", name="Cancel visit").click()
    page.get_by_role("button", name="Yes, cancel my visit").click()
    page.get_by_role("heading", name="Your visit is cancelled").wait_for()
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    assert appointment.status_source == ChangeSource.PATIENT_LINK

    page.goto(link)
    assert page.get_by_role("heading").first.inner_text() == "This link was already used"


def test_patient_joins_the_waitlist_and_takes_an_offer(live_server, phone_page, clinic):
    page = phone_page
    page.goto(f"{live_server.url}/book/{clinic.practice.code}/")
    page.get_by_label("Type of visit").select_option(label="Office visit")
    page.get_by_label("Day").fill((clinic.monday - timedelta(days=2)).isoformat())  # Saturday
    page.get_by_role("button", name="Show open times").click()
    page.get_by_text("No open times on that day.").wait_for()
    page.get_by_role("link", name="Join the waitlist").click()
    page.get_by_label("First day you can come").fill(clinic.monday.isoformat())
    page.get_by_label("Last day you can come").fill((clinic.monday + timedelta(3)).isoformat())
    page.get_by_role("button", name="Continue").click()
    _identify(page, live_server)
    page.get_by_role("heading", name="You are on the waitlist").wait_for()
    assert WaitlistEntry.objects.get().patient.family_name == "Garcia"

    someone_else = clinic.appointment(clinic.at(clinic.monday, 14, 40))
    change_status(someone_else, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_TEXT)
    offer_link = _phone_inbox(page, live_server, r"Reply YES to take .*?(http\S+/a/[\w-]{16})")
    page.goto(offer_link)
    assert "2:40 PM" in page.locator("main").inner_text()
    page.get_by_role("button", name="Take this time").click()
    page.get_by_role("heading", name="It's yours!").wait_for()
    assert SlotOpening.objects.get().state == SlotOpening.State.FILLED
    assert Appointment.objects.get(patient__family_name="Garcia").start == clinic.at(
        clinic.monday, 14, 40
    )
