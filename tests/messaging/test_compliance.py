import zoneinfo
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from careline.messaging.compliance import DEFER, SEND, SUPPRESS, Facts, SendingHours, decide

CHICAGO = zoneinfo.ZoneInfo("America/Chicago")
HOURS = SendingHours(8, 21)


def reminder(now, **kw):
    visit = kw.pop("visit", now + timedelta(days=1))
    base = dict(
        kind="reminder",
        channel="sms",
        now=now,
        expires_at=visit,
        zone=CHICAGO,
        has_address=True,
        has_appointment=True,
        appointment_status="booked",
        appointment_start=visit,
        visit_start=visit,
        stop_when_confirmed=True,
    )
    base.update(kw)
    return Facts(**base)


NOON = datetime(2025, 6, 10, 17, 0, tzinfo=UTC)  # 12:00 in Chicago


def test_a_plain_reminder_is_sent():
    assert decide(reminder(NOON), hours=HOURS, daily_cap=4).action == SEND


def test_each_reason_not_to_send():
    cases = {
        "opted_out": reminder(NOON, opted_out=True),
        "expired": reminder(NOON, expires_at=NOON),
        "appointment_cancelled": reminder(NOON, appointment_status="cancelled"),
        "appointment_closed": reminder(NOON, appointment_status="fulfilled"),
        "appointment_moved": reminder(NOON, appointment_start=NOON + timedelta(days=2)),
        "visit_started": reminder(
            NOON, visit=NOON - timedelta(minutes=1), expires_at=NOON + timedelta(hours=1)
        ),
        "confirmed": reminder(NOON, appointment_status="confirmed"),
        "frequency_cap": reminder(NOON, sent_to_patient_last_day=4),
        "shared_number": reminder(NOON, number_already_reminded=True),
        "no_address": reminder(NOON, has_address=False),
        "appointment_gone": reminder(NOON, has_appointment=False),
    }
    for reason, facts in cases.items():
        decision = decide(facts, hours=HOURS, daily_cap=4)
        assert (decision.action, decision.reason) == (SUPPRESS, reason), reason


def test_replies_reach_opted_out_numbers_at_night():
    night = datetime(2025, 6, 10, 8, 0, tzinfo=UTC)  # 3:00 in Chicago
    facts = Facts(
        kind="reply", channel="sms", now=night, expires_at=None, zone=CHICAGO,
        has_address=True, opted_out=True, sent_to_patient_last_day=99,
    )  # fmt: skip
    assert decide(facts, hours=HOURS, daily_cap=4).action == SEND


def test_night_reminder_waits_for_8am_local_or_is_dropped_if_the_visit_comes_first():
    night = datetime(2025, 3, 8, 4, 0, tzinfo=UTC)  # Fri 22:00 CST, DST starts Sunday
    decision = decide(reminder(night), hours=HOURS, daily_cap=4)
    assert decision.action == DEFER
    assert decision.defer_until == datetime(2025, 3, 8, 14, 0, tzinfo=UTC)  # Sat 8:00 CST
    sunday_night = datetime(2025, 3, 9, 4, 0, tzinfo=UTC)  # Sat 22:00 CST
    decision = decide(reminder(sunday_night), hours=HOURS, daily_cap=4)
    assert decision.defer_until == datetime(2025, 3, 9, 13, 0, tzinfo=UTC)  # Sun 8:00 CDT
    early_visit = decide(
        reminder(night, visit=datetime(2025, 3, 8, 13, 30, tzinfo=UTC)), hours=HOURS, daily_cap=4
    )
    assert (early_visit.action, early_visit.reason) == (SUPPRESS, "quiet_hours")


zones = st.sampled_from(["America/Chicago", "America/New_York", "America/Los_Angeles"])
moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@given(moments, zones, st.integers(min_value=1, max_value=14 * 24 * 60))
def test_nothing_is_ever_sent_outside_sending_hours(now, zone_name, minutes_to_visit):
    zone = zoneinfo.ZoneInfo(zone_name)
    visit = now + timedelta(minutes=minutes_to_visit)
    decision = decide(reminder(now, visit=visit, zone=zone), hours=HOURS, daily_cap=4)
    local_hour = now.astimezone(zone).hour
    if decision.action == SEND:
        assert 8 <= local_hour < 21
    if decision.action == DEFER:
        opening = decision.defer_until.astimezone(zone)
        assert (opening.hour, opening.minute) == (8, 0)
        assert now < decision.defer_until < visit
        assert decision.defer_until - now <= timedelta(hours=12)
    if decision.action == SUPPRESS:
        assert decision.reason == "quiet_hours" and not 8 <= local_hour < 21
