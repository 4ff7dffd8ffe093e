"""HL7 times without an offset are wall-clock times at the visit's practice.

The reminder text must show the hour the EHR sent, whatever the feed's own zone, the
practice's zone or the daylight-saving calendar; a local time that does not exist (the
clocks spring forward over it) is refused naming the field, never shifted by an hour.
"""

from __future__ import annotations

import itertools
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.integrations.hl7.receiving import receive_message
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import OutboundMessage
from careline.scheduling.models import Appointment
from tests.integrations.messages import siu

ZONES = [
    "America/Denver",
    "America/New_York",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/St_Johns",  # half-hour offset, with daylight saving
    "Pacific/Honolulu",
    "Europe/London",
    "Australia/Lord_Howe",  # a half-hour daylight-saving shift
    "Asia/Kolkata",
]
_ids = itertools.count(1000)


def _expected_time(local: datetime) -> str:
    """The English reminder's "{date} at {time}", computed from the wall clock alone."""
    hour = local.hour % 12 or 12
    return (
        f"{local:%b} {local.day} at {hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
    )


def _exists(local: datetime, zone: zoneinfo.ZoneInfo) -> bool:
    aware = local.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local


def _reminders(appointment: Appointment) -> list[OutboundMessage]:
    Dispatcher(
        SimulatorGateway(),
        clock=lambda: appointment.start - timedelta(hours=1),
        hours=SendingHours(0, 24),
    ).run_once()
    return list(
        OutboundMessage.objects.filter(appointment=appointment, kind="reminder").exclude(body="")
    )


def _transition_wall_times(name: str, year: int) -> list[datetime]:
    """Local wall-clock times around each of the zone's offset changes in `year`."""
    zone = zoneinfo.ZoneInfo(name)
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year == year:
        nxt = moment + timedelta(hours=1)
        if nxt.astimezone(zone).utcoffset() != offset:
            offset = nxt.astimezone(zone).utcoffset()
            before = (nxt - timedelta(hours=1)).astimezone(zone).replace(tzinfo=None)
            found += [before + timedelta(minutes=m) for m in range(0, 151, 15)]
        moment = nxt
    return found


_YEAR = datetime.now(UTC).year + 1
_EDGES = {name: _transition_wall_times(name, _YEAR) for name in ZONES}


@st.composite
def zone_and_local_time(draw):
    name = draw(st.sampled_from(ZONES))
    start = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=3)
    anywhere = st.datetimes(min_value=start, max_value=start + timedelta(days=500)).map(
        lambda d: d.replace(second=0, microsecond=0)
    )
    edges = _EDGES[name]
    local = draw(st.one_of(st.sampled_from(edges), anywhere) if edges else anywhere)
    return name, local


@pytest.mark.django_db
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=zone_and_local_time())
def test_reminder_shows_the_wall_clock_time_the_ehr_sent(feeds, case):
    name, local = case
    zone = zoneinfo.ZoneInfo(name)
    feeds.troy.time_zone = name
    feeds.troy.save()
    n = next(_ids)
    receipt = receive_message(
        siu(
            msg_id=f"TZ{n}",
            appointment_id=f"TZ{n}",
            mrn=f"TZ{n}^^^PMSYS^MR",
            phones=f"^PRN^CP^^1^518^555{n:04d}",
            start=local.strftime("%Y%m%d%H%M%S"),
            minutes="20",
        )
    )
    if not _exists(local, zone):
        # Spring forward: refused, naming the field, rather than texted an hour off.
        assert receipt.ack_code == "AE", receipt.reason
        assert "does not exist" in receipt.reason and "|SCH^1^11^1^4|" in receipt.ack
        assert not Appointment.objects.filter(external_id=f"TZ{n}").exists()
        return
    assert receipt.ack_code == "AA", receipt.reason
    visit = Appointment.objects.get(external_id=f"TZ{n}")
    assert visit.start.astimezone(zone).replace(tzinfo=None) == local
    texts = _reminders(visit)
    assert texts
    for text in texts:
        assert _expected_time(local) in text.body, text.body


@pytest.mark.django_db(transaction=True)
def test_a_denver_visit_at_nine_is_texted_as_nine_over_mllp(feeds, build):
    denver = build.practice(feeds.organization, code="DEN", time_zone="America/Denver")
    feeds.pms.location_map = {**feeds.pms.location_map, "DENVER-WEST": "DEN"}
    feeds.pms.save()  # the feed's own zone stays America/New_York
    day = (datetime.now(UTC) + timedelta(days=5)).date()
    nine = datetime(day.year, day.month, day.day, 9, 0)
    running = start_background_listener()
    try:
        with MllpClient(running.host, running.port) as client:
            ack = client.send(
                siu(
                    msg_id="DEN1",
                    appointment_id="DEN1",
                    location="DENVER-WEST",
                    start=nine.strftime("%Y%m%d%H%M%S"),
                )
            )
            # A time the clocks skip: refused, naming the field.
            gap = client.send(
                siu(
                    msg_id="DEN2",
                    appointment_id="DEN2",
                    location="DENVER-WEST",
                    start="20270314023000",  # Denver springs forward at 02:00
                )
            )
    finally:
        running.close()
    assert "MSA|AA|DEN1" in ack
    visit = Appointment.objects.get(external_id="DEN1")
    assert visit.practice == denver
    assert visit.start.astimezone(zoneinfo.ZoneInfo("America/Denver")).hour == 9
    texts = _reminders(visit)
    assert texts and all(_expected_time(nine) in t.body for t in texts)
    assert "MSA|AE|DEN2" in gap and "SCH^1^11^1^4" in gap and "does not exist" in gap
    assert not Appointment.objects.filter(external_id="DEN2").exists()


def test_pv1_location_decides_the_zone_when_there_is_no_ail(feeds, build, db):
    build.practice(feeds.organization, code="DEN", time_zone="America/Denver")
    feeds.pms.location_map = {**feeds.pms.location_map, "DENVER-WEST": "DEN"}
    feeds.pms.save()
    message = siu(msg_id="PV1", appointment_id="PV1", location="", start="20270115090000")
    receipt = receive_message(message.replace("RGS|1|A", "PV1|1|O|DENVER-WEST^^^DEN CLINIC"))
    assert receipt.ack_code == "AA", receipt.reason
    visit = Appointment.objects.get(external_id="PV1")
    assert visit.practice.code == "DEN"
    assert visit.start == datetime(2027, 1, 15, 16, 0, tzinfo=UTC)  # 09:00 MST
