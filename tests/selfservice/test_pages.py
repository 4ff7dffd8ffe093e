"""The patient pages through Django's test client: booking steps, links, refusals, Spanish."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.utils import timezone

from careline.messaging.models import OutboundMessage
from careline.patients.models import Patient
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import (
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    ChangeSource,
)
from careline.selfservice.links import issue_manage_link, manage_link_url
from careline.selfservice.models import PatientLink
from careline.waitlist import entries, offers
from careline.waitlist.models import WaitlistEntry, WaitlistSource
from tests.selfservice.conftest import texted_token

PRIVATE = ("Maria", "Garcia", "1980-05-17", "5125550400", "+15125550400")


def _book_url(clinic, step=""):
    return f"/book/{clinic.org.slug}/{clinic.practice.code}/{step}"


def _identity(**kw):
    data = {
        "given_name": "Maria",
        "family_name": "Garcia",
        "birth_date": "1980-05-17",
        "mobile": "(512) 555-0400",
        "language": "en",
    }
    data.update(kw)
    return data


def _code(phone="+15125550400") -> str:
    body = OutboundMessage.objects.filter(to_address=phone).latest("id").body
    return re.search(r"\b(\d{6})\b", body).group(1)


def _assert_no_patient_data(response):
    location = response.get("Location", "")
    assert not any(value in location for value in PRIVATE), location


def test_short_url_finds_the_practice_and_unknown_is_a_friendly_404(client, clinic):
    response = client.get(f"/book/{clinic.practice.code}/")
    assert response.status_code == 302 and response["Location"] == _book_url(clinic)
    missing = client.get("/book/NOPE/")
    assert missing.status_code == 404 and b"could not find that practice" in missing.content


def test_book_end_to_end_with_a_texted_code(client, clinic):
    page = client.get(
        _book_url(clinic),
        {"visit_type": clinic.visit_type.pk, "provider": "any", "day": clinic.monday},
    )
    assert page.status_code == 200
    assert "9:00 AM" in page.content.decode()
    start = clinic.at(clinic.monday, 9, 20).isoformat()

    chosen = client.post(
        _book_url(clinic, "choose/"),
        {"visit_type": clinic.visit_type.pk, "provider": clinic.provider.pk, "start": start},
    )
    assert chosen.status_code == 302 and chosen["Location"].endswith("/details/")
    sent = client.post(_book_url(clinic, "details/"), _identity())
    _assert_no_patient_data(sent)
    assert sent["Location"].endswith("/verify/")
    wrong = client.post(_book_url(clinic, "verify/"), {"code": "000000"})
    if _code() != "000000":
        assert b"not right" in wrong.content
    done = client.post(_book_url(clinic, "verify/"), {"code": _code()})
    _assert_no_patient_data(done)
    assert done["Location"].endswith("/done/")

    appointment = Appointment.objects.get(patient__family_name="Garcia")
    assert appointment.start == clinic.at(clinic.monday, 9, 20)
    assert appointment.status_source == ChangeSource.ONLINE_BOOKING
    summary = client.get(done["Location"]).content.decode()
    assert "You are booked" in summary and "Dr. Lee" in summary
    ics = client.get(_book_url(clinic, "done/visit.ics"))
    assert ics["Content-Type"] == "text/calendar"
    assert b"DTSTART" in ics.content and b"Lakeside Family Medicine" in ics.content
    assert b"Garcia" not in ics.content


def test_a_returning_patient_books_without_a_duplicate_record(client, clinic):
    existing = clinic.patient(given_name="MARIA", family_name="garcia", mobile_phone="+15125550400")
    client.post(
        _book_url(clinic, "choose/"),
        {
            "visit_type": clinic.visit_type.pk,
            "provider": clinic.provider.pk,
            "start": clinic.at(clinic.monday, 10).isoformat(),
        },
    )
    client.post(_book_url(clinic, "details/"), _identity())
    client.post(_book_url(clinic, "verify/"), {"code": _code()})
    assert Patient.objects.filter(organization=clinic.org).count() == 1
    assert Appointment.objects.get().patient == existing


def test_a_slot_taken_meanwhile_says_so_and_offers_the_next_ones(client, clinic):
    start = clinic.at(clinic.monday, 11)
    client.post(
        _book_url(clinic, "choose/"),
        {
            "visit_type": clinic.visit_type.pk,
            "provider": clinic.provider.pk,
            "start": start.isoformat(),
        },
    )
    client.post(_book_url(clinic, "details/"), _identity())
    book_appointment(
        patient=clinic.patient(),
        provider=clinic.provider,
        practice=clinic.practice,
        appointment_type=clinic.visit_type,
        start=start,
    )
    taken = client.post(_book_url(clinic, "verify/"), {"code": _code()})
    assert taken.status_code == 409
    html = taken.content.decode()
    assert "just taken" in html and "11:20 AM" in html
    # Verified already: picking a next time books at once, no second code.
    again = client.post(
        _book_url(clinic, "choose/"),
        {
            "visit_type": clinic.visit_type.pk,
            "provider": clinic.provider.pk,
            "start": clinic.at(clinic.monday, 11, 20).isoformat(),
        },
    )
    assert again["Location"].endswith("/done/")
    replies = OutboundMessage.objects.filter(to_address="+15125550400", kind="reply")
    assert replies.count() == 2  # one code, one confirmation


def test_code_requests_are_slowed_down(client, clinic):
    client.post(
        _book_url(clinic, "choose/"),
        {
            "visit_type": clinic.visit_type.pk,
            "provider": clinic.provider.pk,
            "start": clinic.at(clinic.monday, 10).isoformat(),
        },
    )
    statuses = [client.post(_book_url(clinic, "details/"), _identity()).status_code for _ in "1234"]
    assert statuses == [302, 302, 302, 429]


def test_joining_the_waitlist_from_the_booking_page(client, clinic):
    form = {
        "visit_type": clinic.visit_type.pk,
        "provider": clinic.provider.pk,
        "earliest": clinic.monday,
        "latest": clinic.monday + timedelta(days=4),
    }
    assert client.post(_book_url(clinic, "waitlist/"), form)["Location"].endswith("/details/")
    client.post(_book_url(clinic, "details/"), _identity())
    done = client.post(_book_url(clinic, "verify/"), {"code": _code()})
    assert "on the waitlist" in client.get(done["Location"]).content.decode()
    entry = WaitlistEntry.objects.get()
    assert entry.provider == clinic.provider and entry.source == "online"
    assert entry.latest_date == clinic.monday + timedelta(days=4)


def _visit_link(clinic, **kw):
    patient = clinic.patient(given_name="Rosa", family_name="Delgado", **kw)
    appointment = clinic.appointment(clinic.at(clinic.monday, 14), patient=patient)
    return appointment, issue_manage_link(appointment.pk)


def test_link_shows_the_minimum_and_details_only_after_the_birth_date(client, clinic):
    appointment, token = _visit_link(clinic)
    html = client.get(f"/a/{token}").content.decode()
    assert "Rosa" in html and "Lakeside Family Medicine" in html and "2:00 PM" in html
    assert "Delgado" not in html and "Dr. Lee" not in html and "Office visit" not in html
    assert "google.com/maps/search" in html and 'rel="noreferrer' in html

    wrong = client.post(f"/a/{token}/details", {"birth_date": "1999-01-01"})
    assert wrong.status_code == 403 and "Delgado" not in wrong.content.decode()
    right = client.post(f"/a/{token}/details", {"birth_date": "1980-05-17"}).content.decode()
    assert "Delgado" in right and "Dr. Lee" in right and "Office visit" in right


def test_birth_date_guessing_spends_the_link(client, clinic):
    _, token = _visit_link(clinic)
    for _ in range(4):
        assert client.post(f"/a/{token}/details", {"birth_date": "1999-01-01"}).status_code == 403
    assert client.post(f"/a/{token}/details", {"birth_date": "1999-01-02"}).status_code == 410
    assert client.get(f"/a/{token}").status_code == 410


def test_confirm_then_cancel_from_a_link_then_the_link_is_spent(client, clinic):
    appointment, token = _visit_link(clinic)
    confirmed = client.post(f"/a/{token}/confirm")
    assert "is confirmed" in confirmed.content.decode()
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert appointment.status_source == ChangeSource.PATIENT_LINK

    assert "Cancel this visit?" in client.get(f"/a/{token}/cancel").content.decode()
    assert client.post(f"/a/{token}/cancel").status_code == 200
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    reused = client.get(f"/a/{token}")
    assert reused.status_code == 410 and "already used" in reused.content.decode()


def test_reschedule_from_a_link_moves_the_visit_and_gives_a_new_link(client, clinic):
    appointment, token = _visit_link(clinic)
    page = client.get(f"/a/{token}/move", {"day": clinic.monday + timedelta(days=1)})
    assert "9:00 AM" in page.content.decode()
    new_start = clinic.at(clinic.monday + timedelta(days=1), 9)
    moved = client.post(
        f"/a/{token}/move", {"start": new_start.isoformat(), "provider": clinic.provider.pk}
    )
    assert moved.status_code == 302 and moved["Location"].endswith("?moved=1")
    appointment.refresh_from_db()
    assert appointment.start == new_start
    assert "has been moved" in client.get(moved["Location"]).content.decode()
    assert client.get(f"/a/{token}").status_code == 410


def test_tampered_expired_and_past_links_are_refused_kindly(client, clinic):
    appointment, token = _visit_link(clinic)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client.get(f"/a/{tampered}").status_code == 404
    assert client.get("/a/short").status_code == 404
    PatientLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client.get(f"/a/{token}")
    assert expired.status_code == 410 and "expired" in expired.content.decode()

    past = clinic.appointment(timezone.now() - timedelta(hours=1))
    assert client.get(f"/a/{issue_manage_link(past.pk)}").status_code == 410


def test_reminder_links_are_short_and_stored_only_hashed(clinic):
    appointment, _ = _visit_link(clinic)
    url = manage_link_url(appointment.pk)
    token = url.rsplit("/a/", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", token)
    assert not PatientLink.objects.filter(token_hash__contains=token).exists()
    assert manage_link_url(appointment.pk) != url


def test_guessing_links_from_one_address_is_slowed_down(client, clinic):
    statuses = {client.get(f"/a/{'x' * 15}{n % 10}").status_code for n in range(21)}
    assert statuses == {404, 429}


def test_pages_speak_the_patients_language_and_switch(client, clinic):
    _, token = _visit_link(clinic, preferred_language="es")
    html = client.get(f"/a/{token}").content.decode()
    assert "Confirmar" in html and "lunes" in html and 'lang="es"' in html
    client.post("/selfservice/language/", {"language": "en", "next": f"/a/{token}"})
    assert "Pick a new time" in client.get(f"/a/{token}").content.decode()


@pytest.mark.parametrize("language", ["es"])
def test_booking_page_in_spanish(client, clinic, language):
    client.post("/selfservice/language/", {"language": language, "next": "/"})
    html = client.get(_book_url(clinic)).content.decode()
    assert "Reserve una cita en" in html and "Tipo de visita" in html


def test_birth_date_in_the_future_is_a_clear_error(client, clinic):
    client.post(
        _book_url(clinic, "choose/"),
        {
            "visit_type": clinic.visit_type.pk,
            "provider": clinic.provider.pk,
            "start": clinic.at(clinic.monday, 10).isoformat(),
        },
    )
    future = (date.today() + timedelta(days=3)).isoformat()
    response = client.post(_book_url(clinic, "details/"), _identity(birth_date=future, mobile="12"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "real date of birth" in html and "valid mobile number" in html


def test_each_link_does_only_its_own_job(client, clinic, always_sending):
    appointment, manage_token = _visit_link(clinic)
    assert client.post(f"/a/{manage_token}/answer", {"answer": "take"}).status_code == 404
    entries.join_waitlist(
        patient=clinic.patient(),
        practice=clinic.practice,
        appointment_type=clinic.visit_type,
        earliest=clinic.monday,
        latest=clinic.monday,
        source=WaitlistSource.STAFF,
    )
    freed = clinic.appointment(clinic.at(clinic.monday, 16))
    freed.status = AppointmentStatus.CANCELLED
    freed.save()
    AppointmentEvent.objects.create(
        appointment=freed,
        from_status="booked",
        to_status="cancelled",
        source=ChangeSource.STAFF,
        occurred_at=timezone.now(),
    )
    offers.run_due()
    offer = OutboundMessage.objects.filter(body__contains="Reply YES").get()
    offer_token = texted_token(offer.to_address, "Reply YES")
    assert client.post(f"/a/{offer_token}/confirm").status_code == 404
    assert client.post(f"/a/{offer_token}/cancel").status_code == 404
    assert "An earlier time opened" in client.get(f"/a/{offer_token}").content.decode()
    assert client.post(f"/a/{offer_token}/answer", {"answer": "pass"}).status_code == 409
    assert client.get(f"/a/{offer_token}").status_code == 410
