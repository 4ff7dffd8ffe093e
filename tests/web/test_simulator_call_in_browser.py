"""The simulator's ringing phone in real Chromium: a reminder call rings on the simulated
phone with the words it would speak; the patient answers, presses 1 on the keypad, and the
visit shows confirmed on the patient's page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from careline.scheduling.models import AppointmentStatus
from tests.web.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_answer_the_ringing_phone_press_1_and_the_visit_is_confirmed(live_server, page, ringing):
    visit = ringing
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("frontdesk")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.goto(f"{live_server.url}/simulator/")
    phone = page.get_by_role("region", name="Phone +15125550180")
    expect(phone.get_by_text("Ringing")).to_be_visible()
    expect(phone).to_contain_text("Rosa")
    phone.get_by_role("button", name="Answer", exact=True).click()

    call = page.get_by_role("region", name="Call on +15125550180")
    expect(call.get_by_label("What the call says")).to_contain_text("To confirm, press 1")
    call.get_by_label("Keypad").get_by_role("button", name="1", exact=True).click()

    expect(page.get_by_label("What the call says")).to_contain_text("Your visit is confirmed")
    page.goto(f"{live_server.url}/patients/{visit.patient_id}/")
    expect(page.get_by_role("cell", name="Confirmed", exact=True)).to_be_visible()
    expect(page.locator("#reminder-calls")).to_contain_text("Confirmed by phone")
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CONFIRMED
