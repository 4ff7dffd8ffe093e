"""Odd input on the patient pages (year 9999, "²", ids beyond 64 bits, NUL bytes) gets the
page with a clear error, never a 500; and moving a visit into a taken time says so."""

from __future__ import annotations

from datetime import timedelta

import pytest

from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import Appointment
from careline.selfservice.links import issue_manage_link

ODD = ["9999-12-31", "0001-01-01", "²", "٣", "9" * 25, "-1", "\x00", "9" * 5000, "\u202e1", ""]
ODD_STARTS = [
    "9999-12-31T23:59:00+00:00",
    "9999-12-31T23:00:00-06:00",
    "0001-01-01T00:00:00+05:00",
    "2026-12-07T09:00:00",  # no offset
    "２０２６-12-07T09:00:00+00:00",
    "\x00",
]


@pytest.fixture
def lenient(client):
    client.raise_request_exception = False
    return client


def _book(clinic, step=""):
    return f"/book/{clinic.org.slug}/{clinic.practice.code}/{step}"


def _link(clinic):
    patient = clinic.patient(given_name="Rosa", family_name="Delgado")
    appointment = clinic.appointment(clinic.at(clinic.monday, 14), patient=patient)
    return appointment, issue_manage_link(appointment.pk)


def test_moving_into_a_taken_time_says_so_instead_of_a_500(lenient, clinic):
    appointment, token = _link(clinic)
    taken = clinic.at(clinic.monday + timedelta(days=1), 9)
    book_appointment(
        patient=clinic.patient(),
        provider=clinic.provider,
        practice=clinic.practice,
        appointment_type=clinic.visit_type,
        start=taken,
    )
    response = lenient.post(
        f"/a/{token}/move", {"start": taken.isoformat(), "provider": clinic.provider.pk}
    )
    assert response.status_code == 409
    assert "just taken" in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.start == clinic.at(clinic.monday, 14)


@pytest.mark.parametrize("value", ODD)
def test_odd_days_and_ids_on_the_booking_page(lenient, clinic, value):
    search = lenient.get(_book(clinic), {"visit_type": value, "provider": value, "day": value})
    assert search.status_code == 200
    with_type = lenient.get(
        _book(clinic), {"visit_type": clinic.visit_type.pk, "provider": "any", "day": value}
    )
    assert with_type.status_code == 200
    if value:
        assert "Enter a valid date" in with_type.content.decode()
    waitlist = lenient.post(
        _book(clinic, "waitlist/"),
        {"visit_type": clinic.visit_type.pk, "provider": value, "earliest": value, "latest": value},
    )
    assert waitlist.status_code == 200
    chosen = lenient.post(
        _book(clinic, "choose/"), {"visit_type": value, "provider": value, "start": value}
    )
    assert chosen.status_code in (302, 404)


def test_year_9999_is_refused_as_a_waitlist_day(lenient, clinic):
    page = lenient.post(
        _book(clinic, "waitlist/"),
        {
            "visit_type": clinic.visit_type.pk,
            "provider": "any",
            "earliest": "9999-12-30",
            "latest": "9999-12-31",
        },
    )
    assert page.status_code == 200 and "Enter a valid date" in page.content.decode()


@pytest.mark.parametrize("start", ODD_STARTS)
def test_a_tampered_start_books_nothing(lenient, clinic, start):
    chosen = lenient.post(
        _book(clinic, "choose/"),
        {"visit_type": clinic.visit_type.pk, "provider": clinic.provider.pk, "start": start},
    )
    assert chosen.status_code == 302 and chosen["Location"] == _book(clinic)
    assert not Appointment.objects.exists()


@pytest.mark.parametrize("value", ODD + ODD_STARTS)
def test_odd_values_on_a_visit_link(lenient, clinic, value):
    appointment, token = _link(clinic)
    assert lenient.get(f"/a/{token}/move", {"day": value}).status_code == 200
    moved = lenient.post(f"/a/{token}/move", {"start": value, "provider": value})
    assert moved.status_code == 409 and "Choose one of the times shown" in moved.content.decode()
    details = lenient.post(f"/a/{token}/details", {"birth_date": value})
    assert details.status_code in (403, 410)
    appointment.refresh_from_db()
    assert appointment.start == clinic.at(clinic.monday, 14)


def test_a_start_ten_years_ahead_is_refused_on_a_link(lenient, clinic):
    appointment, token = _link(clinic)
    far = clinic.at(clinic.monday + timedelta(days=366 * 11), 9)
    moved = lenient.post(
        f"/a/{token}/move", {"start": far.isoformat(), "provider": clinic.provider.pk}
    )
    assert moved.status_code == 409
    appointment.refresh_from_db()
    assert appointment.start == clinic.at(clinic.monday, 14)


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "²", "\x00"])
def test_odd_identity_is_a_form_error(lenient, clinic, value):
    lenient.post(
        _book(clinic, "choose/"),
        {
            "visit_type": clinic.visit_type.pk,
            "provider": clinic.provider.pk,
            "start": clinic.at(clinic.monday, 10).isoformat(),
        },
    )
    response = lenient.post(
        _book(clinic, "details/"),
        {
            "given_name": value,
            "family_name": value,
            "birth_date": value,
            "mobile": value,
            "language": value,
        },
    )
    assert response.status_code == 200
    code = lenient.post(_book(clinic, "verify/"), {"code": value})
    assert code.status_code in (200, 302)
