"""'Next 3 open 20-minute slots with Dr. X or anyone at practice Y after Tuesday 9:00 local'."""

from datetime import date, datetime, time, timedelta

import pytest

from careline.scheduling.appointments import (
    SlotUnavailable,
    book_appointment,
    change_status,
    find_open_slots,
    move_appointment,
)
from careline.scheduling.models import (
    AppointmentStatus,
    BlockedPeriod,
    Holiday,
    RecurringBreak,
)

TUESDAY = date(2026, 12, 1)


@pytest.fixture
def clinic(build):
    practice = build.practice(time_zone="America/New_York")
    lee = build.provider(practice, display_name="Dr. Lee")
    kind = build.appointment_type(practice.organization, minutes=20)
    return practice, lee, kind


def local(practice, day, hh, mm=0):
    return datetime.combine(day, time(hh, mm), tzinfo=practice.zone)


def starts(practice, slots):
    return [s.start.astimezone(practice.zone).strftime("%a %H:%M") for s in slots]


def test_first_three_slots_of_an_empty_day(clinic):
    practice, lee, kind = clinic
    slots = find_open_slots(
        practice=practice, providers=[lee], duration_minutes=20, after=local(practice, TUESDAY, 9)
    )
    assert starts(practice, slots) == ["Tue 09:00", "Tue 09:20", "Tue 09:40"]
    assert all(s.end - s.start == timedelta(minutes=20) for s in slots)


def test_booked_time_break_and_blocked_period_are_skipped(build, clinic):
    practice, lee, kind = clinic
    book_appointment(
        patient=build.patient(practice.organization),
        provider=lee,
        practice=practice,
        appointment_type=kind,
        start=local(practice, TUESDAY, 9),
    )
    RecurringBreak.objects.create(
        provider=lee, practice=practice, weekday=1, start_time=time(9, 40), end_time=time(10, 30)
    )
    BlockedPeriod.objects.create(
        practice=practice,
        provider=lee,
        start=local(practice, TUESDAY, 10, 30),
        end=local(practice, TUESDAY, 11, 5),
    )
    slots = find_open_slots(
        practice=practice,
        providers=[lee],
        duration_minutes=20,
        after=local(practice, TUESDAY, 9),
        count=4,
    )
    # 9:20 is free; then the break to 10:30, the block to 11:05, after which the grid
    # restarts right where the blocked time ends.
    assert starts(practice, slots) == ["Tue 09:20", "Tue 11:05", "Tue 11:25", "Tue 11:45"]


def test_cancelled_visit_frees_its_time(build, clinic):
    practice, lee, kind = clinic
    appt = book_appointment(
        patient=build.patient(practice.organization),
        provider=lee,
        practice=practice,
        appointment_type=kind,
        start=local(practice, TUESDAY, 9),
    )
    first = find_open_slots(
        practice=practice,
        providers=[lee],
        duration_minutes=20,
        after=local(practice, TUESDAY, 9),
        count=1,
    )
    assert starts(practice, first) == ["Tue 09:20"]
    change_status(appt, AppointmentStatus.CANCELLED, source="staff")
    again = find_open_slots(
        practice=practice,
        providers=[lee],
        duration_minutes=20,
        after=local(practice, TUESDAY, 9),
        count=1,
    )
    assert starts(practice, again) == ["Tue 09:00"]


def test_holiday_and_weekend_roll_over_to_the_next_working_day(clinic):
    practice, lee, kind = clinic
    friday = TUESDAY + timedelta(days=3)
    Holiday.objects.create(practice=practice, date=friday, name="Closed")
    slots = find_open_slots(
        practice=practice,
        providers=[lee],
        duration_minutes=20,
        after=local(practice, TUESDAY + timedelta(days=2), 16, 30),
    )
    # The 20-minute grid from 9:00 puts Thursday's last slot at 16:40 (ends 17:00);
    # Friday is a holiday and the weekend is off.
    assert starts(practice, slots) == ["Thu 16:40", "Mon 09:00", "Mon 09:20"]


def test_anyone_at_the_practice_merges_providers_by_time(build, clinic):
    practice, lee, kind = clinic
    early = build.provider(practice, display_name="Dr. Early", hours=(time(8), time(8, 40)))
    slots = find_open_slots(
        practice=practice, duration_minutes=20, after=local(practice, TUESDAY, 8), count=3
    )
    assert starts(practice, slots) == ["Tue 08:00", "Tue 08:20", "Tue 09:00"]
    assert [s.provider_id for s in slots] == [early.id, early.id, lee.id]


def test_booking_outside_hours_or_on_taken_time_is_refused(build, clinic):
    practice, lee, kind = clinic
    patient = build.patient(practice.organization)
    with pytest.raises(SlotUnavailable, match="working hours"):
        book_appointment(
            patient=patient,
            provider=lee,
            practice=practice,
            appointment_type=kind,
            start=local(practice, TUESDAY, 7),
        )
    book_appointment(
        patient=patient,
        provider=lee,
        practice=practice,
        appointment_type=kind,
        start=local(practice, TUESDAY, 9),
    )
    with pytest.raises(SlotUnavailable, match="taken"):
        # Overlaps the 9:00–9:20 visit without sharing its start.
        book_appointment(
            patient=build.patient(practice.organization),
            provider=lee,
            practice=practice,
            appointment_type=kind,
            start=local(practice, TUESDAY, 9, 10),
        )


def test_moving_frees_the_old_time_and_records_history(build, clinic):
    practice, lee, kind = clinic
    appt = book_appointment(
        patient=build.patient(practice.organization),
        provider=lee,
        practice=practice,
        appointment_type=kind,
        start=local(practice, TUESDAY, 9),
    )
    change_status(appt, AppointmentStatus.CONFIRMED, source="patient_text")
    moved = move_appointment(appt, new_start=local(practice, TUESDAY, 14), source="patient_text")
    assert moved.status == AppointmentStatus.BOOKED  # needs a fresh confirmation
    assert moved.start == local(practice, TUESDAY, 14)
    history = list(moved.events.values_list("to_status", "note"))
    assert history == [("booked", ""), ("confirmed", ""), ("booked", "rescheduled")]
    slots = find_open_slots(
        practice=practice,
        providers=[lee],
        duration_minutes=20,
        after=local(practice, TUESDAY, 9),
        count=1,
    )
    assert starts(practice, slots) == ["Tue 09:00"]
