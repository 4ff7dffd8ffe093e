"""A 9:00 visit means 9:00 on the practice's wall clock, whatever the season."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from careline.scheduling.appointments import book_appointment, find_open_slots
from careline.scheduling.models import Appointment

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    "zone_name, day, expected_utc_hour",
    [
        # 2026-03-08 is the spring-forward Sunday; the Friday before and Monday after differ.
        ("America/Chicago", date(2026, 3, 6), 15),  # CST, UTC-6
        ("America/Chicago", date(2026, 3, 9), 14),  # CDT, UTC-5
        ("America/New_York", date(2026, 3, 6), 14),  # EST, UTC-5
        ("America/New_York", date(2026, 3, 9), 13),  # EDT, UTC-4
        # 2026-11-01 falls back.
        ("America/Chicago", date(2026, 10, 30), 14),
        ("America/Chicago", date(2026, 11, 2), 15),
        ("America/New_York", date(2026, 10, 30), 13),
        ("America/New_York", date(2026, 11, 2), 14),
    ],
)
def test_nine_oclock_is_stored_in_utc_and_shown_locally(build, zone_name, day, expected_utc_hour):
    practice = build.practice(time_zone=zone_name)
    provider = build.provider(practice, weekdays=range(7))
    kind = build.appointment_type(practice.organization, minutes=20)
    patient = build.patient(practice.organization)
    start = datetime.combine(day, time(9), tzinfo=ZoneInfo(zone_name))

    booked = book_appointment(
        patient=patient, provider=provider, practice=practice, appointment_type=kind, start=start
    )

    stored = Appointment.objects.get(pk=booked.pk)
    assert stored.start.astimezone(UTC).hour == expected_utc_hour
    assert stored.local_start.hour == 9 and stored.local_start.minute == 0
    assert stored.local_start.date() == day


def test_chicago_and_new_york_nine_are_an_hour_apart(build):
    org = build.organization()
    chicago = build.practice(org, time_zone="America/Chicago")
    new_york = build.practice(org, time_zone="America/New_York")
    kind = build.appointment_type(org)
    day = date(2026, 11, 2)
    starts = []
    for practice in (chicago, new_york):
        provider = build.provider(practice)
        appt = book_appointment(
            patient=build.patient(org),
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=datetime.combine(day, time(9), tzinfo=practice.zone),
        )
        starts.append(appt.start)
    assert starts[0] - starts[1] == timedelta(hours=1)


def test_slot_search_follows_the_wall_clock_across_dst(build):
    practice = build.practice(time_zone="America/Chicago")
    provider = build.provider(practice, hours=(time(9), time(9, 20)), weekdays=range(7))
    # From Saturday before spring-forward: the 9:00 slots of Sat, Sun and Mon.
    after = datetime(2026, 3, 7, 0, 0, tzinfo=CHICAGO)
    slots = find_open_slots(
        practice=practice, providers=[provider], duration_minutes=20, after=after, count=3
    )
    local = [s.start.astimezone(CHICAGO) for s in slots]
    assert [(t.day, t.hour, t.minute) for t in local] == [(7, 9, 0), (8, 9, 0), (9, 9, 0)]
    utc_hours = [s.start.astimezone(UTC).hour for s in slots]
    assert utc_hours == [15, 14, 14]
