"""Property tests of the rules for automated calls: calling hours (8:00-21:00 in every zone
the patient may be in) across zones and daylight-saving changes, the limits of one
automated message a day and three a week, and the same-day retry of a busy line."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from careline.messaging.compliance import (
    CALLING_HOURS,
    DEFER,
    SEND,
    SUPPRESS,
    Facts,
    SendingHours,
    call_retry_time,
    decide,
)
from careline.messaging.models import Channel, MessageKind
from careline.scheduling.models import AppointmentStatus

ZONES = [
    zoneinfo.ZoneInfo(name)
    for name in (
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",  # no daylight saving
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
        "America/Puerto_Rico",
        "America/Indiana/Knox",
    )
]
# The instants clocks changed in 2026 and 2027 (second Sunday of March, first of November,
# 2:00 local): the hours around them are where a wrong offset shows.
DST_CHANGES = [
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2027, 3, 14, 7, tzinfo=UTC),
    datetime(2027, 11, 7, 6, tzinfo=UTC),
]

any_moment = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
near_a_change = st.builds(
    lambda change, shift: change + shift,
    st.sampled_from(DST_CHANGES),
    st.timedeltas(min_value=timedelta(hours=-30), max_value=timedelta(hours=30)),
)
moments = st.one_of(any_moment, near_a_change)
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(tuple)


def call_facts(now: datetime, zones, *, day: int = 0, week: int = 0) -> Facts:
    visit = now + timedelta(days=3)
    return Facts(
        kind=MessageKind.REMINDER,
        channel=Channel.VOICE,
        now=now,
        expires_at=visit,
        zone=zones[0],
        has_address=True,
        patient_zones=zones,
        has_appointment=True,
        appointment_status=AppointmentStatus.BOOKED,
        appointment_start=visit,
        visit_start=visit,
        reached_last_day=day,
        reached_last_week=week,
    )


def in_hours(moment: datetime, zone) -> bool:
    return 8 <= moment.astimezone(zone).hour < 21


def decide_call(facts: Facts):
    return decide(facts, hours=SendingHours(0, 24), daily_cap=99, call_hours=CALLING_HOURS)


@given(now=moments, zones=zone_sets)
def test_a_call_starts_only_within_calling_hours_everywhere(now, zones):
    decision = decide_call(call_facts(now, zones))

    if decision.action == SEND:
        assert all(in_hours(now, z) for z in zones)
    else:
        assert not all(in_hours(now, z) for z in zones)
    if decision.action == DEFER:
        # Put off to a moment in hours everywhere (US zones' hours overlap), never earlier.
        assert decision.defer_until > now
        assert all(in_hours(decision.defer_until, z) for z in zones)
        assert decide_call(call_facts(decision.defer_until, zones)).action == SEND


@given(now=moments, zone=st.sampled_from(ZONES))
def test_in_one_zone_a_deferred_call_goes_at_eight_local(now, zone):
    decision = decide_call(call_facts(now, (zone,)))

    if decision.action == DEFER:
        local = decision.defer_until.astimezone(zone)
        assert (local.hour, local.minute) == (8, 0)
        assert decide_call(call_facts(decision.defer_until, (zone,))).action == SEND


@given(
    now=moments,
    zones=zone_sets,
    day=st.integers(min_value=0, max_value=5),
    week=st.integers(min_value=0, max_value=9),
)
def test_at_most_one_automated_message_a_day_and_three_a_week(now, zones, day, week):
    week = max(week, day)  # what reached them today reached them this week
    decision = decide_call(call_facts(now, zones, day=day, week=week))

    if day >= 1 or week >= 3:
        assert decision.action != SEND
        if all(in_hours(now, z) for z in zones):
            assert decision.action == SUPPRESS
    elif all(in_hours(now, z) for z in zones):
        assert decision.action == SEND


@given(
    now=moments,
    zones=zone_sets,
    minutes=st.integers(min_value=1, max_value=24 * 60),
)
def test_a_busy_line_is_retried_the_same_day_within_hours_or_not_at_all(now, zones, minutes):
    at = call_retry_time(now, zones, CALLING_HOURS, timedelta(minutes=minutes))

    if at is not None:
        assert at == now + timedelta(minutes=minutes)
        assert all(in_hours(at, z) for z in zones)
        assert all(at.astimezone(z).date() == now.astimezone(z).date() for z in zones)
    elif all(in_hours(now + timedelta(minutes=minutes), z) for z in zones):
        # Only a retry that would fall on another local day is dropped while in hours.
        later = now + timedelta(minutes=minutes)
        assert any(later.astimezone(z).date() != now.astimezone(z).date() for z in zones)
