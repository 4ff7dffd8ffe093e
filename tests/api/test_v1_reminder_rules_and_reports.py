"""The organization's default reminder cadence, and the reports, over the API."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from careline.messaging.models import ReminderRule
from careline.scheduling.appointments import book_appointment, change_status
from careline.scheduling.models import AppointmentStatus, ChangeSource
from tests.api.conftest import error


def test_without_a_rule_the_built_in_cadence_is_shown(api):
    body = api.get("reminder-rules").json()
    assert body["default"]["id"] is None
    assert body["default"]["offsets_minutes"] == [4320, 1440]
    assert body["overrides"] == []


def test_put_replaces_the_default_and_leaves_overrides_alone(build, org, api, practice):
    override = ReminderRule.objects.create(
        organization=org, practice=practice, offsets_minutes=[60]
    )
    other_org_rule = ReminderRule.objects.create(
        organization=build.organization(), offsets_minutes=[30]
    )
    response = api.put(
        "reminder-rules", {"offsets_minutes": [2880, 120], "stop_when_confirmed": False}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["default"]["offsets_minutes"] == [2880, 120]
    assert body["default"]["stop_when_confirmed"] is False
    assert body["default"]["channel"] == "sms" and body["default"]["send_event_messages"] is True
    assert [r["id"] for r in body["overrides"]] == [override.pk]
    rule = ReminderRule.objects.get(organization=org, practice__isnull=True)
    assert rule.offsets_minutes == [2880, 120] and rule.stop_when_confirmed is False
    # A second PUT updates the same row, and omitted fields go back to their defaults.
    api.put("reminder-rules", {"offsets_minutes": [], "channel": "email"})
    rule.refresh_from_db()
    assert rule.offsets_minutes == [] and rule.channel == "email" and rule.stop_when_confirmed
    assert ReminderRule.objects.filter(organization=org, practice__isnull=True).count() == 1
    other_org_rule.refresh_from_db()
    assert other_org_rule.offsets_minutes == [30]


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({}, "offsets_minutes", "is required"),
        ({"offsets_minutes": [1440, 1440]}, "offsets_minutes", "only once"),
        ({"offsets_minutes": [0]}, "offsets_minutes", "between 1 minute and 60 days"),
        ({"offsets_minutes": [2**70]}, "offsets_minutes", "between 1 minute and 60 days"),
        ({"offsets_minutes": [1.5]}, "offsets_minutes", "whole minutes"),
        ({"offsets_minutes": "1440"}, "offsets_minutes", "whole minutes"),
        ({"offsets_minutes": [60], "channel": "fax"}, "channel", "must be one of"),
        ({"offsets_minutes": [60], "active": "yes"}, "active", "true or false"),
        ({"offsets_minutes": [60], "practice_id": 3}, "practice_id", "not a field"),
    ],
)
def test_invalid_cadences_are_422_and_nothing_is_saved(api, body, field, message):
    response = api.put("reminder-rules", body)
    assert response.status_code == 422, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]
    assert not ReminderRule.objects.exists()


MONDAY = date(2026, 10, 5)


@pytest.fixture
def visits(build, org, practice):
    """Oak Clinic: 3 visits on Monday the 5th (1 no-show, 1 fulfilled, 1 confirmed by text),
    1 fulfilled visit the next Monday; and a no-show in another organization."""
    provider = build.provider(practice, display_name="Dr. Ames", weekdays=range(7))
    kind = build.appointment_type(org)

    def book(day, hour, organization_practice=practice, who=provider, what=kind):
        return book_appointment(
            patient=build.patient(organization_practice.organization),
            provider=who,
            practice=organization_practice,
            appointment_type=what,
            start=datetime.combine(day, time(hour), tzinfo=organization_practice.zone),
            check_working_time=False,
        )

    a, b, c = book(MONDAY, 9), book(MONDAY, 10), book(MONDAY, 11)
    d = book(MONDAY + timedelta(days=7), 9)
    change_status(a, AppointmentStatus.NO_SHOW, source=ChangeSource.STAFF)
    change_status(b, AppointmentStatus.FULFILLED, source=ChangeSource.STAFF)
    change_status(c, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    change_status(d, AppointmentStatus.FULFILLED, source=ChangeSource.STAFF)
    elsewhere = build.practice()
    other = book(
        MONDAY,
        9,
        elsewhere,
        build.provider(elsewhere),
        build.appointment_type(elsewhere.organization),
    )
    change_status(other, AppointmentStatus.NO_SHOW, source=ChangeSource.STAFF)
    return provider


def test_appointment_report_by_practice_counts_only_the_keys_organization(api, practice, visits):
    response = api.get("reports/appointments")
    assert response.status_code == 200, response.content
    [row] = response.json()["data"]
    assert row["key"] == practice.pk and row["label"] == "Oak Clinic"
    assert (row["appointments"], row["due"], row["no_shows"], row["confirmed"]) == (4, 3, 1, 1)
    assert row["no_show_rate"] == pytest.approx(1 / 3)
    assert row["calls_avoided"] == 1


def test_appointment_report_by_week_with_an_inclusive_to_date(api, visits):
    response = api.get("reports/appointments", group_by="week", **{"from": "2026-10-05"})
    rows = response.json()["data"]
    assert [(r["key"], r["appointments"]) for r in rows] == [("2026-10-05", 3), ("2026-10-12", 1)]
    assert rows[0]["label"] == "Week of 2026-10-05"
    # `to` includes the whole day: the Monday the 12th visit (13:00 UTC) is in.
    only = api.get("reports/appointments", group_by="week", to="2026-10-12").json()["data"]
    assert [r["appointments"] for r in only] == [3, 1]
    before = api.get("reports/appointments", group_by="week", to="2026-10-11").json()["data"]
    assert [r["appointments"] for r in before] == [3]


def test_appointment_report_by_provider_and_practice_filter(build, org, api, practice, visits):
    rows = api.get("reports/appointments", group_by="provider").json()["data"]
    assert [(r["key"], r["label"]) for r in rows] == [(visits.pk, "Dr. Ames")]
    empty = build.practice(org)
    assert api.get("reports/appointments", practice=empty.pk).json()["data"] == []


@pytest.mark.parametrize(
    "params,message",
    [
        ({"group_by": "day"}, "'group_by' must be one of practice, provider"),
        ({"from": "2026-13-01"}, "'from' must be a date YYYY-MM-DD"),
        ({"from": "20261001"}, "'from' must be a date YYYY-MM-DD"),
        ({"to": "9999-12-31"}, "between 1900 and 2999"),
        ({"from": "2026-10-02", "to": "2026-10-01"}, "'from' must not be after 'to'"),
        ({"practice": "-1"}, "'practice' must be a positive whole number"),
    ],
)
def test_bad_report_parameters_are_400(api, params, message):
    response = api.get("reports/appointments", **params)
    assert response.status_code == 400
    assert message in error(response)["message"]


def test_before_after_compares_around_the_go_live_date(build, org, api, practice, visits):
    practice.go_live_date = MONDAY + timedelta(days=1)
    practice.save()
    build.practice(org, name="No go-live")  # left out: nothing to compare
    response = api.get("reports/before-after", window_days="30")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["window_days"] == 30
    [result] = body["data"]
    assert result["practice"] == {"id": practice.pk, "name": "Oak Clinic"}
    assert result["go_live"] == "2026-10-06"
    assert result["before"] == {"due": 2, "no_shows": 1, "no_show_rate": 0.5}
    assert result["after"] == {"due": 1, "no_shows": 0, "no_show_rate": 0.0}
    assert result["difference"] == pytest.approx(-0.5)
    low, high = result["difference_95ci"]
    assert low < -0.5 < high and result["enough_data"] is False


@pytest.mark.parametrize("window", ["0", "3651", "ten", "1e3"])
def test_before_after_window_must_be_sensible(api, window):
    response = api.get("reports/before-after", window_days=window)
    assert response.status_code == 400
    assert "'window_days' must be a whole number from 1 to 3650" in error(response)["message"]
