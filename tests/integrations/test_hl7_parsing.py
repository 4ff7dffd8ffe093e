"""Reading SIU messages: where each feed puts what, escapes, repeats, breaks, versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from careline.integrations.hl7.ack import build_ack, escape
from careline.integrations.hl7.parsing import (
    BadValue,
    MessageRejected,
    parse_siu,
    to_datetime,
    to_duration,
)
from tests.integrations.conftest import sample
from tests.integrations.messages import siu

NY = ZoneInfo("America/New_York")


def test_athena_style_s12_start_only_in_sch_11_and_provider_in_aig():
    msg = parse_siu(sample("01-s12-new-athena-style.hl7"))
    assert msg.header.version == "2.3.1"
    assert (msg.header.trigger, msg.appointment_id) == ("S12", "880101")
    assert msg.start == "20261203093000"
    assert msg.duration == ("20", "minutes")
    assert [p.code for p in msg.providers] == ["dchen"]
    assert [loc.code for loc in msg.locations] == ["7"]
    assert msg.service.code == "FU20"
    # PID-13 repeats: the CP repetition is the mobile one, not the first.
    mobile = [p for p in msg.patient.phones if p.equipment == "CP"]
    # Components (XTN-5/6/7) first, XTN-1 as sent after them.
    assert [p.alternatives for p in mobile] == [("+15185550143", "(518)555-0143")]
    assert msg.patient.language == "spa"
    assert msg.patient.identifiers[0].value == "40021"


def test_allscripts_style_prefers_filler_id_and_aip_over_aig():
    msg = parse_siu(sample("02-s13-reschedule-allscripts-style.hl7"))
    assert (msg.placer_id, msg.filler_id, msg.appointment_id) == ("5521", "77120", "77120")
    assert msg.providers[0].code == "NPATEL1"
    assert (msg.providers[0].family_name, msg.providers[0].given_name) == ("Patel", "Nisha")
    assert msg.start == "20261204141500" and msg.end == "20261204143000"
    # An e-mail rides in PID-13 as a NET/X.400 repetition.
    assert any(p.email == "d.okafor@example.org" for p in msg.patient.phones)


def test_filler_status_and_s15_noshow():
    msg = parse_siu(sample("05-s15-noshow-athena-style.hl7"))
    assert (msg.header.trigger, msg.filler_status) == ("S15", "NOSHOW")


def test_missing_optional_segments():
    msg = parse_siu(sample("07-s17-delete-entered-in-error.hl7"))
    assert msg.providers == [] and msg.locations == [] and msg.service is None
    assert msg.start == "20261206090000-0500"


@pytest.mark.parametrize("separator", ["\r", "\r\n", "\n"])
def test_segment_breaks(separator):
    msg = parse_siu(siu(separator=separator, appointment_id="X1"))
    assert msg.appointment_id == "X1"
    assert msg.patient.family_name == "Lopez"
    assert msg.locations[0].code == "TROYMAIN"


def test_escape_sequences_are_undone():
    msg = parse_siu(
        siu(
            name=r"O\T\Brien\F\Smith^Ana\S\Maria",
            service=r"NP30^NEW \E\ PATIENT\R\30",
        )
    )
    assert msg.patient.family_name == "O&Brien|Smith"
    assert msg.patient.given_name == "Ana^Maria"
    assert msg.service.name == "NEW \\ PATIENT~30"


def test_z_segments_and_unknown_segments_are_ignored_in_any_order():
    text = siu(
        order=("AIP", "AIL", "PID", "AIS", "SCH"),
        extra=("ZSC|1|custom^stuff|~~~", "NTE|1||free text|"),
    )
    msg = parse_siu(text)
    assert msg.appointment_id == "A100"
    assert msg.providers[0].code == "LWONG"
    assert msg.service.code == "NP30"


def test_start_from_tq1_when_sch_11_is_empty():
    text = siu(start="20261210093000-0500")
    text = text.replace("^^30^20261210093000-0500", "")
    text = text.replace("TQ1|1||||||20261210093000-0500", "TQ1|1|||||30^min|20261210100000-0500")
    msg = parse_siu(text)
    # TQ1-7 wins over the AIS/AIP start times, and TQ1-6 gives the length.
    assert msg.start == "20261210100000-0500"
    assert msg.duration == ("30", "min")


def test_start_from_ais_when_no_sch_11_or_tq1():
    text = siu(order=("SCH", "PID", "AIS", "AIL", "AIP"), start="202612100930")
    text = text.replace("^^30^202612100930", "")
    text = text.replace("AIP|1|A|LWONG^Wong^Lena^^^Dr.|D||202612100930", "AIP|1|A|LWONG|D||2027")
    assert parse_siu(text).start == "202612100930"


def test_start_from_aig_athena_style():
    text = sample("01-s12-new-athena-style.hl7").replace("^^^20261203093000", "")
    text = text.replace("AIL|||7^NORTH ALBANY FAMILY MED|||20261203093000|||20|minutes", "AIL|||7")
    assert "AIL|||7\r" in text
    assert parse_siu(text).start == "20261203093000"


def test_removed_resources_come_last():
    text = siu(
        order=("SCH", "PID", "AIL", "AIP"),
        extra=("AIP|2|D|OLDDOC^Old^Doc",),
    ).replace("AIP|1|A|LWONG", "AIP|1|D|LWONG")
    text = text.replace("AIP|2|D|OLDDOC", "AIP|2|A|NEWDOC")
    assert [p.code for p in parse_siu(text).providers] == ["NEWDOC", "LWONG"]


def test_repeated_pid3_identifiers_kept_with_type_and_authority():
    msg = parse_siu(siu(mrn="123-45-6789^^^SSA^SS~M77^^^PMSYS^MR"))
    assert [(i.value, i.authority, i.type_code) for i in msg.patient.identifiers] == [
        ("123-45-6789", "SSA", "SS"),
        ("M77", "PMSYS", "MR"),
    ]


def test_versions_23_and_251_read_the_same():
    old = parse_siu(siu(version="2.3", appointment_id="V1"))
    new = parse_siu(siu(version="2.5.1", appointment_id="V1"))
    assert old.header.version == "2.3" and new.header.version == "2.5.1"
    assert (old.start, old.providers, old.locations) == (new.start, new.providers, new.locations)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "does not start with an MSH"),
        ("hello world", "does not start with an MSH"),
        ("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5.1\rPID|1", "SIU scheduling messages only"),
        ("MSH|^~\\&|A|B|C|D|20260101||SIU^S99|1|P|2.5.1\rSCH||1", "S99 is not supported"),
        ("MSH|^~\\&|A|B|C|D|20260101||SIU^S12|1|P|2.5.1\rPID|1", "no SCH segment"),
        ("MSH|^~\\&|A|B|C|D|20260101||SIU^S12|1|P|2.5.1\rSCH|||", "no id"),
    ],
)
def test_rejections_say_why(text, reason):
    with pytest.raises(MessageRejected) as exc:
        parse_siu(text)
    assert reason in exc.value.reason


def test_timestamps_with_and_without_offset():
    assert to_datetime("20261204141500-0500", NY, "x").astimezone(UTC) == datetime(
        2026, 12, 4, 19, 15, tzinfo=UTC
    )
    # Without an offset: the feed's zone, including daylight saving time.
    assert to_datetime("20260704091500", NY, "x").astimezone(UTC) == datetime(
        2026, 7, 4, 13, 15, tzinfo=UTC
    )
    with pytest.raises(BadValue, match="not an HL7 date/time"):
        to_datetime("tomorrow", NY, "Start time")


@pytest.mark.parametrize(
    "quantity, units, minutes",
    [("15", "min", 15), ("20", "minutes", 20), ("15", "m", 15), ("1", "h", 60), ("M45", "", 45)],
)
def test_durations(quantity, units, minutes):
    assert to_duration(quantity, units, "d") == timedelta(minutes=minutes)


def test_bad_duration_unit():
    with pytest.raises(BadValue, match="unit 'fortnights'"):
        to_duration("2", "fortnights", "Duration")


def test_ack_escapes_reason_and_follows_version():
    old = parse_siu(siu(version="2.3"))
    new = parse_siu(siu(version="2.5.1"))
    reason = "Unknown location 'A|B^C'"
    ack_old = build_ack("AE", old.header, reason=reason, error_code="103", ack_control_id="K1")
    ack_new = build_ack("AE", new.header, reason=reason, error_code="103", ack_control_id="K2")
    assert f"MSA|AE|{old.header.control_id}|{escape(reason)}" in ack_old
    assert "ERR|^^^103&Table value not found&HL70357" in ack_old
    assert "ERR|||103^Table value not found^HL70357|E||||" in ack_new
    assert "A\\F\\B\\S\\C" in ack_new
    assert ack_new.startswith("MSH|^~\\&|CARELINE|CARELINE|PMSYS|CLINIC|")
    assert "|ACK^S12^ACK|K2|P|2.5.1\r" in ack_new
