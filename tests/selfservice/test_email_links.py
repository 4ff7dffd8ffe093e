"""An email's buttons and its unsubscribe link, followed as a patient (or their mail
provider) would: each button opens a page that asks once more, its answer changes the
visit the way a text reply does (event, re-planning, FHIR), and works once; the
unsubscribe link stops email to that address in the consent ledger, and texts go on."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client

from careline.integrations.api_keys import issue_api_key
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageState, OutboundMessage, SimulatedPhoneMessage
from careline.messaging.planning import plan_all_reminders
from careline.patients.models import ConsentEvent, PhoneConsent
from careline.scheduling.models import AppointmentEvent, AppointmentStatus, ChangeSource
from tests.api.conftest import Api
from tests.emails import sent
from tests.integrations.fhir.conftest import Fhir


class Clock:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


def run_at(at) -> None:
    Dispatcher(SimulatorGateway(), clock=Clock(at), hours=SendingHours(0, 24)).run_once()


def emailed_visit(clinic, *, language: str = "en", mobile_phone: str = ""):
    """A visit whose 72-hour reminder was emailed; its 24-hour one is still planned."""
    patient = clinic.patient(
        mobile_phone=mobile_phone,
        email="Rosa.Diaz@example.org",
        given_name="Rosa",
        preferred_language=language,
    )
    visit = clinic.appointment(clinic.at(clinic.monday, 10), patient=patient)
    plan_all_reminders()
    run_at(visit.start - timedelta(hours=72) + timedelta(minutes=1))
    return visit, sent()[-1]


def patient_event(visit, to_status: str) -> AppointmentEvent:
    return AppointmentEvent.objects.get(
        appointment=visit, to_status=to_status, source=ChangeSource.PATIENT_LINK
    )


def test_the_confirm_button_asks_once_then_confirms_like_a_text_reply_and_works_once(
    client, clinic
):
    visit, email = emailed_visit(clinic)
    confirm = email.link_labelled("Confirm my visit")

    # Opening the link (a mail scanner does too) only asks.
    page = client.get(confirm)
    assert page.status_code == 200 and "Confirm this visit?" in page.content.decode()
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.BOOKED
    assert not AppointmentEvent.objects.filter(appointment=visit, to_status="confirmed").exists()

    done = client.post(f"{confirm}/confirm")
    assert done.status_code == 200 and "Your visit is confirmed" in done.content.decode()
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CONFIRMED
    assert visit.status_source == ChangeSource.PATIENT_LINK
    # The change is recorded for the write-back and the analytics, and re-plans: the
    # 24-hour reminder stops once the visit is confirmed.
    assert patient_event(visit, "confirmed").from_status == "booked"
    later = OutboundMessage.objects.get(appointment=visit, step_key="reminder:1440")
    assert later.state == MessageState.CANCELLED
    fhir = Fhir(issue_api_key(organization_slug=clinic.org.slug, name="EHR").plaintext)
    resource = fhir.get(f"Appointment/{visit.pk}").json()
    assert resource["status"] == "booked"
    (patient,) = [
        p for p in resource["participant"] if p["actor"]["reference"].startswith("Patient/")
    ]
    assert patient["status"] == "accepted"

    # Once: the link is spent.
    again = client.post(f"{confirm}/confirm")
    assert again.status_code == 410 and "already used" in again.content.decode()
    assert client.get(confirm).status_code == 410

    # The email's cancel button still works, once, and asks first.
    cancel = email.link_labelled("Cancel my visit")
    asked = client.get(cancel).content.decode()
    assert "Cancel this visit?" in asked and "No, keep it" not in asked
    assert client.post(cancel).status_code == 200
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED
    assert patient_event(visit, "cancelled").from_status == "confirmed"
    resource = fhir.get(f"Appointment/{visit.pk}").json()
    assert resource["status"] == "cancelled"
    assert client.post(cancel).status_code == 410


def test_the_move_button_shows_open_times_moves_the_visit_once(client, clinic):
    visit, email = emailed_visit(clinic)
    move = email.link_labelled("Pick a new time")
    tuesday = clinic.monday + timedelta(days=1)
    page = client.get(move, {"day": tuesday.isoformat()})
    assert page.status_code == 200 and "9:00 AM" in page.content.decode()
    visit.refresh_from_db()
    assert visit.start == clinic.at(clinic.monday, 10)

    new_start = clinic.at(tuesday, 9)
    moved = client.post(
        f"{move}/move", {"start": new_start.isoformat(), "provider": clinic.provider.pk}
    )
    assert moved.status_code == 302 and moved["Location"].endswith("?moved=1")
    visit.refresh_from_db()
    assert visit.start == new_start
    event = AppointmentEvent.objects.get(appointment=visit, source=ChangeSource.PATIENT_LINK)
    assert event.new_start == new_start
    # The reminders follow the visit to its new time.
    planned = OutboundMessage.objects.get(
        appointment=visit, step_key="reminder:1440", state=MessageState.SCHEDULED
    )
    assert planned.due_at == new_start - timedelta(hours=24)
    assert client.get(move).status_code == 410
    # The other buttons of the email still answer for the visit, now at its new time.
    assert (
        "Confirm this visit?"
        in client.get(email.link_labelled("Confirm my visit")).content.decode()
    )


def test_unsubscribing_stops_email_to_that_address_and_texts_go_on(clinic):
    api = Api(issue_api_key(organization_slug=clinic.org.slug, name="EHR").plaintext)
    api.put(
        "reminder-rules",
        {"offsets_minutes": [4320, 1440, 120], "channel": "email", "stop_when_confirmed": True},
    )
    visit, email = emailed_visit(clinic, mobile_phone="+15125550142")
    assert email.header("To") == "Rosa.Diaz@example.org"
    (url,) = [email.header("List-Unsubscribe").strip("<>")]
    path = urlsplit(url).path

    # The mail provider's one-click POST (RFC 8058): no page, no cookie, no CSRF token.
    provider = Client(enforce_csrf_checks=True)
    page = provider.get(path)
    assert page.status_code == 200 and "Stop emails from us?" in page.content.decode()
    assert not ConsentEvent.objects.exists()
    done = provider.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert done.status_code == 200
    assert "You will get no more emails from us" in done.content.decode()
    (event,) = ConsentEvent.objects.all()
    assert (event.channel, event.phone, event.kind, event.source) == (
        "email",
        "rosa.diaz@example.org",
        "opt_out",
        "email_link",
    )
    assert event.organization_id == clinic.org.pk and event.detail == "one-click unsubscribe"
    # Again (a provider retries, the patient clicks too): nothing more to record.
    assert provider.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert ConsentEvent.objects.count() == 1

    # The next reminder is not emailed...
    before = len(sent())
    run_at(visit.start - timedelta(hours=24) + timedelta(minutes=1))
    assert len(sent()) == before
    next_one = OutboundMessage.objects.get(appointment=visit, step_key="reminder:1440")
    assert (next_one.state, next_one.reason) == (MessageState.SUPPRESSED, "opted_out")
    # ...while the patient's number may still be texted.
    assert not PhoneConsent.objects.filter(phone="+15125550142", opted_out=True).exists()
    api.put(
        "reminder-rules",
        {"offsets_minutes": [4320, 1440, 120], "channel": "sms", "stop_when_confirmed": True},
    )
    run_at(visit.start - timedelta(hours=2) + timedelta(minutes=1))
    assert SimulatedPhoneMessage.objects.filter(to="+15125550142").count() == 1
    assert len(sent()) == before


def test_staff_see_the_email_opt_out_on_the_patient_page(client, clinic):
    visit, email = emailed_visit(clinic)
    client.post(urlsplit(email.header("List-Unsubscribe").strip("<>")).path)
    client.force_login(clinic.build.staff(clinic.org, practices=[clinic.practice]))
    page = client.get(f"/patients/{visit.patient_id}/").content.decode()
    assert "opted out of email</strong> (Unsubscribe link in an email" in page
    assert "Opted out of email (Unsubscribe link in an email: unsubscribe page)" in page


def test_the_unsubscribe_page_asks_before_it_stops_anything(client, clinic):
    _, email = emailed_visit(clinic)
    path = urlsplit(email.header("List-Unsubscribe").strip("<>")).path
    for _ in range(2):
        assert client.get(path).status_code == 200
        assert client.head(path).status_code == 200
    assert not ConsentEvent.objects.exists()
    assert client.post(path).status_code == 200
    assert ConsentEvent.objects.get().detail == "unsubscribe page"


@pytest.mark.parametrize("kind", ["tampered", "button"])
def test_only_an_unsubscribe_link_unsubscribes(client, clinic, kind):
    _, email = emailed_visit(clinic)
    path = urlsplit(email.header("List-Unsubscribe").strip("<>")).path
    if kind == "tampered":
        token = path.split("/")[2]
        path = path.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    else:
        path = email.link_labelled("Confirm my visit") + "/unsubscribe"
    assert client.post(path).status_code == 404
    assert not ConsentEvent.objects.exists()


def test_a_spanish_patient_reads_the_link_pages_in_spanish(client, clinic):
    _, email = emailed_visit(clinic, language="es")
    assert (
        "¿Confirmar esta cita?"
        in client.get(email.link_labelled("Confirmar mi cita")).content.decode()
    )
    path = urlsplit(email.header("List-Unsubscribe").strip("<>")).path
    assert "¿Dejar de recibir nuestros correos?" in client.get(path).content.decode()
    assert "No recibirá más correos" in client.post(path).content.decode()
