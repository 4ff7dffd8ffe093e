"""Every page is served with a Content-Security-Policy that forbids inline scripts, handlers
and styles, and every page still works under it in real Chromium: staff pages and their
htmx updates, the login page, a patient's link page, the booking page and the admin."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from careline.clinics.models import StaffRole
from careline.conversations.inbound import receive_sms
from careline.conversations.models import CannedReply, Conversation
from careline.messaging.models import MessageKind, MessageTemplate
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from careline.selfservice.links import issue_manage_link

PASSWORD = "careline-test-pw"
ORG_NUMBER = "+15125550100"
# What each staff page must load under the policy, and a text that shows it rendered.
STAFF_PAGES = {
    "/": "Careline",
    "/inbox/": "Inbox",
    "/schedule/": "Lakeside Family Medicine",
    "/broadcasts/": "Broadcasts",
    "/broadcasts/new/": "Broadcast",
    "/analytics/": "Analytics",
    "/settings/": "Message templates",
    "/simulator/": "Patient phones",
}


def _policy(header: str) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


class Clinic:
    def __init__(self, build):
        self.org = build.organization(name="Lakeside Health", default_sender_number=ORG_NUMBER)
        self.practice = build.practice(self.org, name="Lakeside Family Medicine", code="LFM")
        self.provider = build.provider(self.practice, display_name="Dr. Lee", weekdays=range(7))
        self.visit_type = build.appointment_type(
            self.org, minutes=20, bookable_online=True, patient_facing_name="Office visit"
        )
        self.admin = build.staff(
            self.org,
            StaffRole.ORGANIZATION_ADMIN,
            [self.practice],
            username="orgadmin",
            password=PASSWORD,
        )
        self.patient = build.patient(
            self.org,
            given_name="Rosa",
            mobile_phone="+15125550301",
            home_practice=self.practice,
        )
        day = timezone.now().astimezone(self.practice.zone).date() + timedelta(days=3)
        start = datetime.combine(day, time(10), tzinfo=self.practice.zone)
        self.visit = Appointment.objects.create(
            organization=self.org,
            practice=self.practice,
            provider=self.provider,
            patient=self.patient,
            appointment_type=self.visit_type,
            start=start,
            end=start + timedelta(minutes=20),
            status=AppointmentStatus.BOOKED,
            status_changed_at=timezone.now(),
            status_source=ChangeSource.HL7,
            allow_overlap=True,
        )
        receive_sms(
            from_phone=self.patient.mobile_phone,
            to_phone=ORG_NUMBER,
            body="Can I bring my daughter to the visit?",
            provider_message_id="SMCSP" + "0" * 29,
            received_at=timezone.now(),
        )
        self.conversation = Conversation.objects.get(organization=self.org)
        CannedReply.objects.create(
            organization=self.org, title="Directions", body="Hi {first_name}, we are on Lake Dr."
        )
        self.template = MessageTemplate.objects.create(
            organization=self.org,
            practice=self.practice,
            kind=MessageKind.REMINDER,
            language="en",
            body="{first_name}: reminder of your visit at {practice} on {date}.",
        )


@pytest.fixture
def clinic(build, settings) -> Clinic:
    settings.CARELINE_OFFICE_HOURS = "Mon-Sun 00:00-24:00"
    return Clinic(build)


def test_pages_carry_a_policy_without_unsafe_inline(client, clinic):
    token = issue_manage_link(clinic.visit.pk)
    responses = [client.get("/login/"), client.get(f"/a/{token}"), client.get("/book/LFM/")]
    client.force_login(clinic.admin)
    responses += [client.get("/inbox/"), client.get(f"/inbox/{clinic.conversation.pk}/")]
    for response in responses:
        assert response.status_code in (200, 302), response
        policy = _policy(response["Content-Security-Policy"])
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_page_breaks_the_policy_in_chromium(live_server, page, clinic):
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    # Reported by the browser itself for anything the policy blocked (inline script,
    # handler, style attribute or <style>, eval).
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI"
        " + ' ' + e.sourceFile + ':' + e.lineNumber));"
    )
    url = live_server.url

    def visit(path: str, text: str) -> None:
        response = page.goto(url + path)
        assert response.ok, (path, response.status)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        expect(page.locator("body")).to_contain_text(text)

    # A patient's pages: the link page and online booking.
    visit(f"/a/{issue_manage_link(clinic.visit.pk)}", "Hi Rosa, your visit")
    visit("/book/LFM/", "Lakeside Family Medicine")

    visit("/login/", "Username")
    page.get_by_label("Username").fill("orgadmin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/")
    for path, text in STAFF_PAGES.items():
        visit(path, text)
    visit(f"/patients/{clinic.patient.pk}/", "Rosa")

    # Scripts moved out of the HTML still work: a canned reply fills the reply box...
    visit(f"/inbox/{clinic.conversation.pk}/", "bring my daughter")
    page.get_by_label("Canned reply").select_option(label="Directions")
    expect(page.get_by_label("Message to the patient")).to_have_value("Hi Rosa, we are on Lake Dr.")
    # ...the day view's picker goes to the chosen day...
    visit("/schedule/", "Lakeside Family Medicine")
    day = clinic.visit.start.astimezone(clinic.practice.zone).date().isoformat()
    page.get_by_label("Day", exact=True).fill(day)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(rf"/schedule/{clinic.practice.pk}/{day}/"))
    expect(page.locator("body")).to_contain_text("Rosa")
    # ...and htmx swaps the template preview in as the manager types.
    visit(f"/settings/templates/{clinic.template.pk}/", "Body")
    body = page.get_by_label("Body")
    body.fill("")
    body.press_sequentially("{first_name}, see you on {date}.")
    expect(page.get_by_test_id("preview-text")).to_contain_text("Alexandra, see you on")

    # The Django admin, as a superuser.
    user = get_user_model().objects.get(username="orgadmin")
    user.is_superuser = True
    user.save()
    visit("/admin/", "Careline administration")
    visit("/admin/messaging/messagetemplate/", "message template")
    visit(f"/admin/messaging/messagetemplate/{clinic.template.pk}/change/", "Body")
    visit("/admin/waitlist/waitlistentry/add/", "waitlist entry")

    assert violations == []
