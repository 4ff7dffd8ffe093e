"""Every figure on a small hand-built dataset whose answers we know."""

from datetime import date, datetime, time, timedelta

import pytest
from django.urls import reverse

from careline.analytics.metrics import appointment_metrics, before_and_after
from careline.analytics.statistics import compare_rates, wilson_interval
from careline.clinics.models import StaffRole
from careline.scheduling.appointments import book_appointment, change_status, move_appointment
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource

MONDAY = date(2026, 10, 5)


@pytest.fixture
def clinic(build):
    practice = build.practice(time_zone="America/New_York", name="Maple Clinic")
    provider_a = build.provider(practice, display_name="Dr. Ames", weekdays=range(7))
    provider_b = build.provider(practice, display_name="Dr. Bell", weekdays=range(7))
    kind = build.appointment_type(practice.organization, minutes=20)
    return practice, provider_a, provider_b, kind


def _book(build, practice, provider, kind, day, hh, mm=0):
    return book_appointment(
        patient=build.patient(practice.organization),
        provider=provider,
        practice=practice,
        appointment_type=kind,
        start=datetime.combine(day, time(hh, mm), tzinfo=practice.zone),
        check_working_time=False,
    )


def test_rates_by_provider_match_hand_counts(build, clinic):
    practice, ames, bell, kind = clinic
    # Dr. Ames: 4 due (1 no-show), 1 late cancellation by text, 1 confirmed by text.
    a = [_book(build, practice, ames, kind, MONDAY, 9, 20 * i) for i in range(3)]
    a += [_book(build, practice, ames, kind, MONDAY, 10, 20 * i) for i in range(3)]
    change_status(a[0], AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    for appt in a[:3]:
        change_status(appt, AppointmentStatus.FULFILLED, source=ChangeSource.STAFF)
    change_status(a[3], AppointmentStatus.NO_SHOW, source=ChangeSource.STAFF)
    late = a[4].start - timedelta(hours=2)
    change_status(a[4], AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_TEXT, at=late)
    # a[5] stays booked (future-like, not due).
    # Dr. Bell: 2 due, both no-shows; one early cancellation by staff; one entered in error.
    b = [_book(build, practice, bell, kind, MONDAY, 9, 20 * i) for i in range(3)]
    b.append(_book(build, practice, bell, kind, MONDAY, 13))
    change_status(b[0], AppointmentStatus.NO_SHOW, source=ChangeSource.STAFF)
    change_status(b[1], AppointmentStatus.NO_SHOW, source=ChangeSource.STAFF)
    early = b[2].start - timedelta(days=3)
    change_status(b[2], AppointmentStatus.CANCELLED, source=ChangeSource.STAFF, at=early)
    change_status(b[3], AppointmentStatus.ENTERED_IN_ERROR, source=ChangeSource.HL7)

    rows = {r.label: r for r in appointment_metrics(Appointment.objects.all(), group_by="provider")}

    assert rows["Dr. Ames"].appointments == 6
    assert rows["Dr. Ames"].due == 4
    assert rows["Dr. Ames"].no_show_rate == pytest.approx(0.25)
    assert rows["Dr. Ames"].late_cancellations == 1
    assert rows["Dr. Ames"].late_cancellation_rate == pytest.approx(1 / 6)
    assert rows["Dr. Ames"].confirmation_rate == pytest.approx(1 / 6)
    assert rows["Dr. Ames"].calls_avoided == 2  # one confirmation + one cancellation by text
    assert rows["Dr. Bell"].appointments == 3  # entered-in-error excluded
    assert rows["Dr. Bell"].no_show_rate == pytest.approx(1.0)
    assert rows["Dr. Bell"].late_cancellations == 0
    assert rows["Dr. Bell"].calls_avoided == 0


def test_reschedule_by_text_counts_as_a_call_avoided_and_weeks_group(build, clinic):
    practice, ames, _, kind = clinic
    first = _book(build, practice, ames, kind, MONDAY, 9)
    _book(build, practice, ames, kind, MONDAY + timedelta(days=7), 9)
    move_appointment(
        first,
        new_start=first.start + timedelta(hours=3),
        source=ChangeSource.PATIENT_TEXT,
        check_working_time=False,
    )
    rows = appointment_metrics(Appointment.objects.all(), group_by="week")
    assert [r.label for r in rows] == ["Week of 2026-10-05", "Week of 2026-10-12"]
    assert [r.appointments for r in rows] == [1, 1]
    assert [r.calls_avoided for r in rows] == [1, 0]


def test_unknown_grouping_is_a_clear_error(db):
    with pytest.raises(ValueError, match="choose one of"):
        appointment_metrics(Appointment.objects.all(), group_by="zodiac")


def test_wilson_and_newcomb_intervals_match_published_values():
    # Newcomb (1998), Table II example: 56/70 vs 48/80 → difference 0.2, CI 0.0524 to 0.3339.
    result = compare_rates(48, 80, 56, 70)
    assert result.difference == pytest.approx(0.2)
    assert result.difference_low == pytest.approx(0.0524, abs=5e-4)
    assert result.difference_high == pytest.approx(0.3339, abs=5e-4)
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(0.2775, abs=5e-4)


def test_before_and_after_go_live(build, clinic):
    practice, ames, _, kind = clinic
    practice.go_live_date = MONDAY
    practice.save()
    before, after = MONDAY - timedelta(days=10), MONDAY + timedelta(days=10)
    for day, no_shows, total in ((before, 8, 40), (after, 3, 40)):
        for i in range(total):
            appt = _book(
                build,
                practice,
                ames,
                kind,
                day + timedelta(days=i // 20),
                8 + (i % 20) // 3,
                20 * (i % 3),
            )
            status = AppointmentStatus.NO_SHOW if i < no_shows else AppointmentStatus.FULFILLED
            change_status(appt, status, source=ChangeSource.STAFF)
    [result] = before_and_after([practice])
    assert (result.before_no_shows, result.before_due) == (8, 40)
    assert (result.after_no_shows, result.after_due) == (3, 40)
    assert result.comparison.difference == pytest.approx(-0.125)
    assert result.comparison.difference_low < -0.125 < result.comparison.difference_high
    assert result.comparison.enough_data


def test_dashboard_is_scoped_and_exports_csv(client, build, clinic):
    practice, ames, _, kind = clinic
    other = build.practice(practice.organization, name="Other Clinic")
    other_provider = build.provider(other)
    _book(build, practice, ames, kind, MONDAY, 9)
    _book(build, other, other_provider, kind, MONDAY, 9)
    user = build.staff(practice.organization, StaffRole.PRACTICE_MANAGER, practices=[practice])
    client.force_login(user)
    response = client.get(reverse("analytics:dashboard"), {"group_by": "practice"})
    assert [r.label for r in response.context["rows"]] == ["Maple Clinic"]
    csv_response = client.get(
        reverse("analytics:dashboard"), {"group_by": "practice", "format": "csv"}
    )
    lines = csv_response.content.decode().strip().splitlines()
    assert lines[0].startswith("Group,Appointments,Due,No-shows")
    assert lines[1].startswith("Maple Clinic,1,0,0")
    assert len(lines) == 2
