"""Bad timestamps, durations and ids: AE naming the field (ERR-2), never "internal error".

Each message here used to be answered AE "Internal error while applying the message"
(OverflowError, ValueError), or worse AA with a visit the reminder planner could not use
(year 9999, 30 seconds, Arabic-Indic digits read as a date).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.integrations.hl7.receiving import receive_message
from careline.integrations.models import Hl7Message
from careline.patients.models import Patient
from careline.scheduling.models import Appointment
from tests.integrations.messages import siu


def set_field(message: str, segment: str, field: int, value: str, component: int = 0) -> str:
    """The message with one field (or one component of it) replaced, all else unchanged."""
    out = []
    for line in message.split("\r"):
        parts = line.split("|")
        if parts[0] == segment:
            # MSH-1 is the field separator itself, so MSH field n is at index n - 1.
            index = field - 1 if segment == "MSH" else field
            parts += [""] * (index + 1 - len(parts))
            if component:
                comps = parts[index].split("^")
                comps += [""] * (component - len(comps))
                comps[component - 1] = value
                parts[index] = "^".join(comps)
            else:
                parts[index] = value
        out.append("|".join(parts))
    return "\r".join(out)


def _only_in_ais(start: str = "", minutes: str = "") -> str:
    """A message whose start and duration come from AIS alone (SCH-11, TQ1, AIP empty)."""
    message = siu(order=("SCH", "PID", "RGS", "AIS", "AIL", "AIP"))
    message = set_field(message, "SCH", 11, "")
    message = set_field(message, "SCH", 9, "")
    message = set_field(message, "SCH", 10, "")
    message = set_field(message, "AIP", 6, "")
    message = set_field(message, "AIP", 9, "")
    if start:
        message = set_field(message, "AIS", 4, start)
    if minutes:
        message = set_field(message, "AIS", 7, minutes)
    return message


def _segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(name + "|")).split("|")


CASES = [
    # (message, ERR-2 location, words in ERR-8)
    (siu(start="99991231230000"), "SCH^1^11^1^4", "year 9999"),
    (siu(start="99991231000000"), "SCH^1^11^1^4", "year 9999"),
    (siu(start="00010101000000"), "SCH^1^11^1^4", "year 1 "),
    (_only_in_ais(start="99990101090000"), "AIS^1^4", "year 9999"),
    # TQ1-7 is the start when SCH-11.4 is empty.
    (
        set_field(set_field(siu(), "SCH", 11, ""), "TQ1", 7, "99990101090000"),
        "TQ1^1^7",
        "year 9999",
    ),
    (siu(start="2026121²093000"), "SCH^1^11^1^4", "ASCII digits"),
    (siu(start="٢٠٢٦١٢١٠٠٩٣٠٠٠"), "SCH^1^11^1^4", "ASCII digits"),
    (siu(start="20261310093000"), "SCH^1^11^1^4", "month 13"),
    (siu(start="20261232093000"), "SCH^1^11^1^4", "day 32"),
    (siu(start="20260230093000"), "SCH^1^11^1^4", "not in that month"),
    (siu(start="20261210253000"), "SCH^1^11^1^4", "hour 25"),
    (siu(start="20261210096100"), "SCH^1^11^1^4", "minute 61"),
    (siu(start="20261210093000+9999"), "SCH^1^11^1^4", "offset +9999"),
    (set_field(siu(), "SCH", 11, "20261210083000", 5), "SCH^1^11^1^5", "end before it starts"),
    (siu(minutes="99999999999999999999"), "SCH^1^9", "too large"),
    (siu(minutes="9999999999"), "SCH^1^9", "too large"),
    (siu(minutes="1441"), "SCH^1^9", "longer than 24 hours"),
    (siu(minutes="3²"), "SCH^1^9", "ASCII digits"),
    (siu(minutes="٣٠"), "SCH^1^9", "ASCII digits"),
    (siu(minutes="0.5"), "SCH^1^9", "shorter than a minute"),
    (siu(minutes="-5"), "SCH^1^9", "negative"),
    (siu(minutes="0"), "SCH^1^9", "positive"),
    (_only_in_ais(minutes="-15"), "AIS^1^7", "negative"),
    (siu(appointment_id="A" * 121), "SCH^1^2", "longer than 120"),
    (siu(mrn="M" * 65 + "^^^PMSYS^MR"), "PID^1^3", "longer than 64"),
    (siu(provider="P" * 81 + "^Wong^Lena"), "AIP^1^3", "longer than 80"),
]


@pytest.mark.parametrize("message, location, words", CASES)
def test_bad_value_is_ae_naming_the_field_and_nothing_is_stored(feeds, message, location, words):
    patients = Patient.objects.count()
    receipt = receive_message(message)
    assert receipt.ack_code == "AE", receipt.reason
    err = _segment(receipt.ack, "ERR")
    assert err[2] == location
    assert err[3].startswith("102^Data type error")
    assert words in err[8] and "Internal error" not in err[8]
    assert not Appointment.objects.exists()
    assert Patient.objects.count() == patients
    stored = Hl7Message.objects.get()
    assert stored.appointment_id is None and stored.ack == receipt.ack


def test_version_23_puts_the_location_in_err_1(feeds):
    receipt = receive_message(siu(version="2.3", start="99991231230000"))
    assert _segment(receipt.ack, "ERR")[1] == "SCH^1^11^102&Data type error&HL70357"


def test_long_control_id_is_refused_naming_msh_10(feeds):
    receipt = receive_message(siu(msg_id="C" * 200))
    assert receipt.ack_code == "AR"
    assert _segment(receipt.ack, "ERR")[2] == "MSH^1^10"
    assert Hl7Message.objects.get().control_id == ""


def test_unusable_message_time_is_named_and_the_arrival_time_used(feeds):
    receipt = receive_message(siu(sent="99991231235959", appointment_id="SENT"))
    assert receipt.ack_code == "AE"
    assert _segment(receipt.ack, "ERR")[2] == "MSH^1^7"
    assert "year 9999" in receipt.reason
    visit = Appointment.objects.get(external_id="SENT")
    # A later message can still change it: the visit is not stamped as sent in 9999.
    assert visit.external_updated_at.year < 9999
    later = receive_message(siu("S15", appointment_id="SENT", sent="20261202080000"))
    assert later.ack_code == "AA"


@pytest.mark.django_db(transaction=True)
def test_over_mllp_the_ack_names_the_field(feeds):
    listener = start_background_listener()
    try:
        with MllpClient(listener.host, listener.port, timeout=10) as client:
            ack = client.send(siu(msg_id="Y9999", start="99991231230000"))
            good = client.send(siu(msg_id="GOOD", appointment_id="GOOD"))
    finally:
        listener.close()
    assert _segment(ack, "MSA")[1:3] == ["AE", "Y9999"]
    assert _segment(ack, "ERR")[2] == "SCH^1^11^1^4"
    assert _segment(good, "MSA")[1] == "AA"


def test_the_widest_accepted_visits_are_ones_the_worker_can_plan(feeds):
    """The edges of what HL7 accepts go through reminder planning and the worker."""
    edges = [
        ("EARLY", "19000101000000+0000", "1"),
        ("LATE", "21991230235800-0000", str(24 * 60)),
        ("SOON", "20261210093000", "1"),
    ]
    for external_id, start, minutes in edges:
        receipt = receive_message(siu(appointment_id=external_id, start=start, minutes=minutes))
        assert receipt.ack_code == "AA", receipt.reason
    late = Appointment.objects.get(external_id="LATE")
    assert late.start == datetime(2199, 12, 30, 23, 58, tzinfo=UTC)
    assert late.end - late.start == timedelta(days=1)
    call_command("worker", "--once")
