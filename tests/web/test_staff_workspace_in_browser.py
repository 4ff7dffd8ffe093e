"""The staff workspace in real Chromium: the front desk answers a patient from the inbox and
marks a no-show in the day view; a manager sends a broadcast to one provider's Thursday
patients and edits a reminder template. Texts go out through the simulator gateway and are
read off the /simulator/ patient-phone page, as a person would read them."""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime, time, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from careline.broadcasts.sending import queue_broadcasts
from careline.clinics.models import StaffRole
from careline.conversations.inbound import receive_sms
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageKind, MessageTemplate
from careline.patients.consent import record_consent
from careline.patients.models import ConsentSource, Language
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from tests.browser import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ORG_NUMBER = "+15125550100"
PASSWORD = "careline-test-pw"
# Polls run every 5 s; give one full cycle plus the request time.
POLL_TIMEOUT_MS = 8_000
_message_ids = itertools.count(1)


class Clinic:
    """Lakeside Health: a family practice in Austin (Dr. Lee, Dr. Patel) and a cardiology
    practice whose conversations the family practice's front desk must never see."""

    def __init__(self, build):
        self.build = build
        self.org = build.organization(name="Lakeside Health", default_sender_number=ORG_NUMBER)
        self.practice = build.practice(
            self.org, name="Lakeside Family Medicine", code="LFM", address="2100 Lake Dr, Austin"
        )
        self.cardiology = build.practice(self.org, name="Hillcrest Cardiology", code="HCC")
        self.lee = build.provider(self.practice, display_name="Dr. Lee", weekdays=range(7))
        self.patel = build.provider(self.practice, display_name="Dr. Patel", weekdays=range(7))
        self.follow_up = build.appointment_type(
            self.org, minutes=20, name="Follow-up", patient_facing_name="Follow-up visit"
        )
        self.physical = build.appointment_type(
            self.org, minutes=40, name="Annual physical", patient_facing_name="Annual physical"
        )
        self.desk = build.staff(
            self.org, StaffRole.FRONT_DESK, [self.practice], username="frontdesk", password=PASSWORD
        )
        self.manager = build.staff(
            self.org,
            StaffRole.PRACTICE_MANAGER,
            [self.practice],
            username="manager",
            password=PASSWORD,
        )

    def patient(self, name: str, phone: str = "", language: str = Language.ENGLISH, practice=None):
        given, family = name.split(" ", 1)
        return self.build.patient(
            self.org,
            given_name=given,
            family_name=family,
            mobile_phone=phone,
            preferred_language=language,
            home_practice=practice or self.practice,
        )

    def today(self) -> date:
        return timezone.now().astimezone(self.practice.zone).date()

    def visit(self, patient, provider, day: date, hh_mm: str, **kw) -> Appointment:
        """A visit as the EHR feed writes it (no reminders planned: the phones stay quiet)."""
        hour, minute = map(int, hh_mm.split(":"))
        start = datetime.combine(day, time(hour, minute), tzinfo=self.practice.zone)
        kind = kw.pop("appointment_type", self.follow_up)
        status = kw.pop("status", AppointmentStatus.BOOKED)
        return Appointment.objects.create(
            organization=self.org,
            practice=self.practice,
            provider=provider,
            patient=patient,
            appointment_type=kind,
            start=start,
            end=start + timedelta(minutes=kind.duration_minutes),
            status=status,
            confirmed_at=timezone.now() if status == AppointmentStatus.CONFIRMED else None,
            status_changed_at=timezone.now(),
            status_source=ChangeSource.HL7,
            allow_overlap=True,
        )

    def opt_out(self, patient) -> None:
        record_consent(
            organization_id=self.org.id,
            phone=patient.mobile_phone,
            opted_out=True,
            source=ConsentSource.PATIENT_TEXT,
        )

    def texts_in(self, patient, body: str, minutes_ago: int = 0) -> None:
        """A patient's text to the practice's number, through the one inbound path."""
        receive_sms(
            from_phone=patient.mobile_phone,
            to_phone=ORG_NUMBER,
            body=body,
            provider_message_id=f"SMBROWSER{next(_message_ids):024d}",
            received_at=timezone.now() - timedelta(minutes=minutes_ago),
        )


@pytest.fixture
def clinic(build, settings) -> Clinic:
    # Tests run at any hour: no after-hours auto-replies, no quiet-hours deferral.
    settings.CARELINE_OFFICE_HOURS = "Mon-Sun 00:00-24:00"
    settings.CARELINE_SENDING_HOURS_START = 0
    settings.CARELINE_SENDING_HOURS_END = 24
    return Clinic(build)


@pytest.fixture
def tablet_page(chromium, request):
    context = chromium.new_context(
        viewport={"width": 820, "height": 1180}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def run_worker() -> None:
    """What `careline worker --once` does, at any hour of the day: queue recorded
    broadcasts' texts, then send what is due."""
    queue_broadcasts()
    Dispatcher(SimulatorGateway(), hours=SendingHours(0, 24)).run_once()


def sign_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # Each role lands on its own home (front desk: the day view; manager: analytics).
    page.wait_for_url(lambda url: "/login/" not in url)


def phones_on_simulator(page, live_server) -> dict[str, str]:
    """Every phone on the patient-phones page and the texts it shows."""
    page.goto(f"{live_server.url}/simulator/")
    if "/login/" in page.url:  # the simulator is for signed-in staff
        sign_in(page, live_server, "frontdesk")
        page.goto(f"{live_server.url}/simulator/")
    phones = {}
    for section in page.locator("section.phone").all():
        number = section.get_by_role("heading").inner_text().strip()
        phones[number] = section.locator("ol.texts").inner_text()
    return phones


def keep_marker(page) -> None:
    """A flag that only survives if the page is never reloaded."""
    page.evaluate("window.__notReloaded = true")


def was_not_reloaded(page) -> bool:
    return page.evaluate("window.__notReloaded === true")


def busy_inbox(clinic: Clinic) -> dict[str, object]:
    """A realistic morning: patients of both practices writing in."""
    people = {
        "rosa": clinic.patient("Rosa Delgado", "+15125550301"),
        "james": clinic.patient("James Carter", "+15125550302"),
        "mei": clinic.patient("Mei Chen", "+15125550303"),
        "walt": clinic.patient("Walter Brooks", "+15125550304"),
        "hank": clinic.patient("Hank Miller", "+15125550309", practice=clinic.cardiology),
    }
    clinic.texts_in(
        people["james"], "Can you send a refill of my lisinopril to the CVS on 5th?", 47
    )
    clinic.texts_in(people["mei"], "Why was I billed $80 for my last visit?", 22)
    clinic.texts_in(people["walt"], "I have chest pain since this morning, what should I do?", 4)
    clinic.texts_in(people["hank"], "Could I get a copy of my echo results?", 15)
    return people


def test_front_desk_answers_a_patient_and_the_answer_reaches_the_phone(
    live_server, page, phone_page, clinic, request
):
    people = busy_inbox(clinic)
    rosa = people["rosa"]
    clinic.texts_in(rosa, "Do you take Aetna? My insurance changed in January.", 9)

    sign_in(page, live_server, "frontdesk")
    page.get_by_role("navigation").get_by_role("link", name="Inbox").click()
    rows = page.locator("#inbox-rows")
    rosa_row = rows.locator("tr", has_text="Rosa Delgado")
    assert "1 new" in rosa_row.inner_text()
    assert "Lakeside Family Medicine" in rosa_row.inner_text()
    assert "Hank Miller" not in rows.inner_text()  # a cardiology patient
    assert "urgent" in rows.locator("tr", has_text="Walter Brooks").inner_text()
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-list.png"), full_page=True)

    rosa_row.get_by_role("link", name="Rosa Delgado").click()
    thread = page.get_by_role("list", name="Messages")
    assert "Do you take Aetna?" in thread.inner_text()
    page.get_by_label("Message to the patient").fill(
        "Hi Rosa, yes, we take Aetna. Please bring your new card to your next visit."
    )
    page.get_by_role("button", name="Send text").click()
    assert "Reply queued" in page.locator(".messages").inner_text()
    assert "we take Aetna" in thread.inner_text()

    run_worker()
    phones = phones_on_simulator(phone_page, live_server)
    answered = [number for number, texts in phones.items() if "we take Aetna" in texts]
    assert answered == [rosa.mobile_phone]
    assert "Hi Rosa, yes, we take Aetna." in phones[rosa.mobile_phone]
    assert f"from {ORG_NUMBER}" in phones[rosa.mobile_phone]

    # Rosa answers from her phone; the open conversation shows it without a reload.
    keep_marker(page)
    rosas_phone = phone_page.get_by_role("region", name=f"Phone {rosa.mobile_phone}")
    rosas_phone.get_by_label("Reply as this patient").fill("Great, thank you!")
    rosas_phone.get_by_role("button", name="Send").click()
    assert "Reply sent." in phone_page.locator(".messages").inner_text()
    thread.get_by_text("Great, thank you!").wait_for(timeout=POLL_TIMEOUT_MS)
    assert was_not_reloaded(page)


def test_front_desk_marks_a_no_show_in_the_day_view(live_server, page, clinic):
    today = clinic.today()
    maria = clinic.patient("Maria Lopez", "+15125550311")
    james = clinic.patient("James Carter", "+15125550312")
    aisha = clinic.patient("Aisha Khan", "+15125550313")
    omar = clinic.patient("Omar Haddad", "+15125550314")
    nora = clinic.patient("Nora Bell")
    wei = clinic.patient("Wei Chen", "+15125550316")
    luis = clinic.patient("Luis Ortega", "+15125550317", Language.SPANISH)
    clinic.opt_out(omar)
    clinic.visit(maria, clinic.lee, today, "8:30", status=AppointmentStatus.CONFIRMED)
    no_show = clinic.visit(james, clinic.lee, today, "9:00")
    clinic.visit(aisha, clinic.lee, today, "9:20", status=AppointmentStatus.ARRIVED)
    clinic.visit(omar, clinic.lee, today, "10:00", appointment_type=clinic.physical)
    clinic.visit(nora, clinic.patel, today, "10:40")
    clinic.visit(wei, clinic.patel, today, "11:00", status=AppointmentStatus.CONFIRMED)
    clinic.visit(luis, clinic.patel, today, "14:00", status=AppointmentStatus.CANCELLED)

    sign_in(page, live_server, "frontdesk")
    page.get_by_role("navigation").get_by_role("link", name="Day view").click()
    page.wait_for_url(re.compile(rf"/schedule/{clinic.practice.id}/{today.isoformat()}/$"))
    day = page.locator("table.day")
    assert "7 appointments" in day.locator("caption").inner_text()

    def row(name: str):
        return day.locator("tbody tr", has_text=name)

    assert row("Maria Lopez").locator("td.reply").inner_text() == "confirmed"
    assert row("Omar Haddad").locator("td.reply").inner_text() == "opted out"
    assert row("Nora Bell").locator("td.reply").inner_text() == "no mobile"
    assert row("Luis Ortega").locator("td.reply").inner_text() == "cancelled"

    keep_marker(page)
    page.get_by_role("button", name="Mark James no-show").click()
    james_row = page.locator(f"#appt-{no_show.id}")
    james_row.locator("td.status", has_text="No-show").wait_for()
    assert was_not_reloaded(page)
    assert james_row.get_attribute("data-status") == "noshow"
    assert james_row.get_by_role("button", name="Mark James arrived").is_visible()
    assert james_row.get_by_role("button", name="Mark James no-show").count() == 0
    assert row("Aisha Khan").locator("td.status").inner_text() == "Arrived"

    no_show.refresh_from_db()
    assert no_show.status == AppointmentStatus.NO_SHOW
    assert no_show.status_source == ChangeSource.FRONT_DESK
    assert no_show.status_changed_by_id == clinic.desk.id


def next_thursday(today: date) -> date:
    return today + timedelta(days=(3 - today.weekday()) % 7 or 7)


def test_manager_broadcasts_to_one_providers_thursday_patients(
    live_server, page, phone_page, clinic, request
):
    thursday = next_thursday(clinic.today())
    ana = clinic.patient("Ana Silva", "+15125550321")
    luis = clinic.patient("Luis Ortega", "+15125550322", Language.SPANISH)
    omar = clinic.patient("Omar Haddad", "+15125550323")
    nora = clinic.patient("Nora Bell")
    ben = clinic.patient("Ben Wright", "+15125550325")
    carla = clinic.patient("Carla Mendes", "+15125550326")
    grace = clinic.patient("Grace Kim", "+15125550327")
    clinic.opt_out(omar)
    for patient, at in [(ana, "9:00"), (luis, "9:40"), (omar, "10:20"), (nora, "11:00")]:
        clinic.visit(patient, clinic.lee, thursday, at)
    clinic.visit(grace, clinic.lee, thursday, "11:40", status=AppointmentStatus.CANCELLED)
    clinic.visit(ben, clinic.lee, thursday + timedelta(days=1), "9:00")  # Friday
    clinic.visit(carla, clinic.patel, thursday, "9:00")  # another provider

    sign_in(page, live_server, "manager")
    page.get_by_role("navigation").get_by_role("link", name="Broadcasts").click()
    page.get_by_role("link", name="New broadcast").click()
    keep_marker(page)
    page.get_by_label("Practices").select_option(label="Lakeside Family Medicine")
    page.get_by_label("Providers").select_option(label="Dr. Lee")
    page.get_by_label("Booked from").fill(thursday.isoformat())
    page.get_by_label("Booked through").fill(thursday.isoformat())
    page.get_by_label("Name (for staff)").fill("Dr. Lee Thursday to telehealth")
    page.get_by_label("Text (English)").fill(
        "Hi {first_name}, Dr. Lee's Thursday clinic at {practice} moves to telehealth. "
        "We will text you a video link. Reply R to reschedule."
    )
    page.get_by_label("Text (Spanish)").fill(
        "Hola {first_name}: la consulta del jueves del Dr. Lee en {practice} será por video. "
        "Le enviaremos el enlace. Responda R para cambiar la cita."
    )
    page.keyboard.press("Tab")  # leaving the field is a change: the preview follows
    preview = page.locator("#preview")
    expect(preview).to_contain_text("Hola María: la consulta del jueves del Dr. Lee")
    expect(preview.get_by_test_id("reach")).to_have_text("2")
    excluded = preview.locator("ul.excluded")
    expect(excluded).to_contain_text("opted out: 1")
    expect(excluded).to_contain_text("no mobile number: 1")
    expect(preview).to_contain_text("Hi Maria, Dr. Lee's Thursday clinic at Lakeside Family")
    assert was_not_reloaded(page)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-preview.png"), full_page=True)

    page.get_by_role("button", name="Send broadcast").click()
    page.wait_for_url(re.compile(r"/broadcasts/\d+/$"))
    assert "Queued for 2 patients." in page.locator(".messages").inner_text()

    run_worker()
    delivered = page.locator('#progress td[data-state="Delivered"]')
    expect(delivered).to_have_text("2", timeout=POLL_TIMEOUT_MS)  # the report polls
    phones = phones_on_simulator(phone_page, live_server)
    assert set(phones) == {ana.mobile_phone, luis.mobile_phone}
    assert "Hi Ana, Dr. Lee's Thursday clinic" in phones[ana.mobile_phone]
    assert "Hola Luis: la consulta del jueves" in phones[luis.mobile_phone]


def test_manager_edits_a_template_and_the_preview_follows_the_typing(
    live_server, page, clinic, request
):
    template = MessageTemplate.objects.create(
        organization=clinic.org,
        practice=clinic.practice,
        kind=MessageKind.REMINDER,
        language=Language.ENGLISH,
        body="{first_name}: reminder of your visit at {practice} on {date} at {time}. "
        "Reply C to confirm, X to cancel, R to reschedule. {link}",
    )

    sign_in(page, live_server, "manager")
    page.get_by_role("navigation").get_by_role("link", name="Settings").click()
    templates = page.locator("section", has=page.get_by_role("heading", name="Message templates"))
    templates.get_by_role("row", name=re.compile("Lakeside Family Medicine")).get_by_role(
        "link", name="Edit"
    ).click()
    preview = page.get_by_test_id("preview-text")
    segments = page.get_by_test_id("segments")
    expect(preview).to_contain_text("Alexandra: reminder of your visit at Lakeside Family")
    expect(segments).to_contain_text("2 segments")  # the link makes it long
    keep_marker(page)

    body = page.get_by_label("Body")
    body.fill("")
    body.press_sequentially("{first_name}, see you at {practice} on {date}. Reply C to confirm.")
    expect(preview).to_have_text(
        re.compile(r"^Alexandra, see you at Lakeside Family Medicine on .+\. Reply C to confirm\.$")
    )
    expect(segments).to_contain_text("1 segment ·")
    template.refresh_from_db()
    assert template.body.startswith("{first_name}: reminder")  # previewing never saves

    body.press_sequentially(" {doctor}")
    error = page.locator("#template-preview").get_by_role("alert")
    expect(error).to_contain_text("Unknown template variables: {doctor}")
    for _ in " {doctor}":
        body.press("Backspace")
    body.press_sequentially(" Questions? Call {practice_phone}. Visit details: {link}")
    expect(preview).to_contain_text("Questions? Call (512) 555-0199. Visit details: http")
    expect(segments).to_contain_text("2 segments")
    assert was_not_reloaded(page)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-preview.png"), full_page=True)

    page.get_by_role("button", name="Save template").click()
    assert "Template saved" in page.locator(".messages").inner_text()
    template.refresh_from_db()
    assert template.body == (
        "{first_name}, see you at {practice} on {date}. Reply C to confirm."
        " Questions? Call {practice_phone}. Visit details: {link}"
    )


def test_new_inbox_messages_appear_without_a_reload_on_a_tablet(live_server, tablet_page, clinic):
    page = tablet_page
    people = busy_inbox(clinic)
    peter = clinic.patient("Peter Novak", "+15125550331")

    sign_in(page, live_server, "frontdesk")
    page.get_by_role("navigation").get_by_role("link", name="Inbox").click()
    rows = page.locator("#inbox-rows")
    assert rows.locator("tr", has_text="James Carter").is_visible()
    assert "Peter Novak" not in rows.inner_text()
    keep_marker(page)

    clinic.texts_in(peter, "Is there parking at the Lake Dr office?")
    clinic.texts_in(people["hank"], "Also, can I move my stress test?")
    peter_row = rows.locator("tr", has_text="Peter Novak")
    peter_row.wait_for(timeout=POLL_TIMEOUT_MS)
    assert was_not_reloaded(page)
    assert "1 new" in peter_row.inner_text()
    assert "Hank Miller" not in rows.inner_text()
