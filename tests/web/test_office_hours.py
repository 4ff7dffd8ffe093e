"""Office hours per practice, edited on the settings page, decide the after-hours answer a
patient's text gets (signed Twilio webhooks), with the practice's holidays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from careline.clinics.models import OfficeHours, StaffRole
from careline.scheduling.models import Holiday
from tests.conversations.conftest import ALWAYS_OPEN, TOKEN, TwoWay

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CLOSED_ALL_WEEK = "Mon 00:00-00:01"  # never open at a time a test runs, in practice


@pytest.fixture
def twoway(build, settings) -> TwoWay:
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = "https://careline.example.org"
    settings.CARELINE_OFFICE_HOURS = ALWAYS_OPEN
    return TwoWay(build)


def _url(practice) -> str:
    return reverse("messaging_settings:office_hours", args=[practice.pk])


def _signed_in(client, build, org, role, practices):
    client.force_login(build.staff(org, role, practices=practices))
    return client


def _today(twoway) -> int:
    return timezone.now().astimezone(twoway.practice.zone).weekday()


def _week(open_days: set[int], hours: str = "08:00-18:00") -> dict[str, str]:
    return {day: hours if i in open_days else "" for i, day in enumerate(DAYS)}


def test_a_manager_closes_today_and_the_patient_gets_the_after_hours_answer(twoway, build, client):
    manager = _signed_in(client, build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice])
    patient = twoway.patient()
    twoway.text(patient.mobile_phone, "can I get a copy of my records?")
    assert twoway.replies_to(patient.mobile_phone) == []  # default hours: always open

    today = _today(twoway)
    opens_on = (today + 3) % 7  # not today, not yesterday
    response = manager.post(
        _url(twoway.practice), {"action": "hours", **_week({opens_on}, "07:30-12:00")}
    )
    assert response.status_code == 302

    other = twoway.patient()
    twoway.text(other.mobile_phone, "can I get a copy of my records?")
    [answer] = twoway.replies_to(other.mobile_phone)
    assert "office is closed" in answer and "7:30 AM" in answer


def test_a_practice_open_all_week_answers_no_one_automatically_whatever_the_default(
    twoway, build, client, settings
):
    settings.CARELINE_OFFICE_HOURS = CLOSED_ALL_WEEK
    manager = _signed_in(client, build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice])
    patient = twoway.patient()
    twoway.text(patient.mobile_phone, "question about my bill")
    assert len(twoway.replies_to(patient.mobile_phone)) == 1  # the default: closed

    manager.post(_url(twoway.practice), {"action": "hours", **_week(set(range(7)), "00:00-24:00")})
    other = twoway.patient()
    twoway.text(other.mobile_phone, "question about my bill")
    assert twoway.replies_to(other.mobile_phone) == []

    # Back to the default: closed again.
    manager.post(_url(twoway.practice), {"action": "hours", "use_default": "on"})
    assert not OfficeHours.objects.filter(practice=twoway.practice).exists()
    third = twoway.patient()
    twoway.text(third.mobile_phone, "question about my bill")
    assert len(twoway.replies_to(third.mobile_phone)) == 1


def test_a_holiday_added_on_the_page_closes_the_office(twoway, build, client):
    manager = _signed_in(client, build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice])
    manager.post(_url(twoway.practice), {"action": "hours", **_week(set(range(7)), "00:00-24:00")})
    today = timezone.now().astimezone(twoway.practice.zone).date()
    yesterday = today - timedelta(days=1)
    for day in (yesterday, today):
        response = manager.post(
            _url(twoway.practice),
            {"action": "add_holiday", "date": day.isoformat(), "name": "Staff training"},
        )
        assert response.status_code == 302
    page = manager.get(_url(twoway.practice)).content.decode()
    assert "Staff training" in page

    patient = twoway.patient()
    twoway.text(patient.mobile_phone, "can I get a copy of my records?")
    [answer] = twoway.replies_to(patient.mobile_phone)
    assert "office is closed" in answer and "12:00 AM" in answer

    # Removing the holidays opens the office again.
    for holiday in Holiday.objects.filter(practice=twoway.practice):
        manager.post(_url(twoway.practice), {"action": "remove_holiday", "holiday": holiday.pk})
    assert not Holiday.objects.filter(practice=twoway.practice).exists()
    other = twoway.patient()
    twoway.text(other.mobile_phone, "can I get a copy of my records?")
    assert twoway.replies_to(other.mobile_phone) == []


def test_bad_hours_name_the_day_and_store_nothing(twoway, build, client):
    manager = _signed_in(client, build, twoway.org, StaffRole.PRACTICE_MANAGER, [twoway.practice])
    week = _week({0, 1, 2})
    for bad in ("18:00-08:00", "8 to 6", "25:00-26:00"):
        response = manager.post(_url(twoway.practice), {"action": "hours", **week, "tuesday": bad})
        assert response.status_code == 200
        errors = response.context["hours_form"].errors
        assert list(errors) == ["tuesday"], errors
        assert 'role="alert"' in response.content.decode()
    assert not OfficeHours.objects.exists()
    duplicate = {"action": "add_holiday", "date": "2030-12-25", "name": "Christmas"}
    manager.post(_url(twoway.practice), duplicate)
    response = manager.post(_url(twoway.practice), duplicate)
    assert response.status_code == 200 and "date" in response.context["holiday_form"].errors
    response = manager.post(_url(twoway.practice), {"action": "add_holiday", "date": "soon"})
    assert set(response.context["holiday_form"].errors) == {"date", "name"}
    assert Holiday.objects.count() == 1


def test_front_desk_reads_the_hours_and_cannot_change_them(twoway, build, client):
    desk = _signed_in(client, build, twoway.org, StaffRole.FRONT_DESK, [twoway.practice])
    page = desk.get(_url(twoway.practice))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="monday"' not in html and "Your practice manager changes these" in html
    refused = desk.post(_url(twoway.practice), {"action": "hours", **_week({0})})
    assert refused.status_code == 403
    refused = desk.post(
        _url(twoway.practice), {"action": "add_holiday", "date": "2030-12-25", "name": "X"}
    )
    assert refused.status_code == 403
    assert not OfficeHours.objects.exists() and not Holiday.objects.exists()


def test_other_organizations_practices_are_invisible(twoway, build, client):
    elsewhere = build.organization()
    outsider = _signed_in(client, build, elsewhere, StaffRole.ORGANIZATION_ADMIN, [])
    assert outsider.get(_url(twoway.practice)).status_code == 404
    response = outsider.post(_url(twoway.practice), {"action": "hours", **_week({0})})
    assert response.status_code == 404
    assert not OfficeHours.objects.exists()


def test_an_org_admin_edits_any_practice_of_theirs(twoway, build, client):
    second = build.practice(twoway.org, name="Elm Clinic")
    admin = _signed_in(client, build, twoway.org, StaffRole.ORGANIZATION_ADMIN, [])
    response = admin.post(_url(second), {"action": "hours", **_week({5}, "09:00-13:00")})
    assert response.status_code == 302
    row = OfficeHours.objects.get(practice=second)
    assert row.saturday == "09:00-13:00" and row.monday == ""
    assert "Office hours" in admin.get(reverse("messaging_settings:overview")).content.decode()
