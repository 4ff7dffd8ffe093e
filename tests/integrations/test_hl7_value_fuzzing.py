"""Property-based: timestamps, durations and ids of every odd shape never get "internal error".

Starting from a valid SIU, one to three timestamp, duration or id fields are replaced
with values shaped like the ones that used to break the door (year 9999, Unicode digits,
twenty-digit numbers, month 13, half a minute, negative lengths, very long ids). Every
answer is AA, AE or AR with a named error; an AA is really applied, and a refusal that
applied nothing left nothing behind.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.integrations.hl7.parsing import parse_siu, to_datetime
from careline.integrations.hl7.receiving import receive_message
from careline.integrations.models import Hl7Message
from careline.patients.models import Patient
from careline.scheduling.models import Appointment
from tests.integrations.messages import siu
from tests.integrations.test_hl7_bad_values import set_field

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_ids = itertools.count(1)

DIGIT_SETS = [
    "0123456789",
    "٠١٢٣٤٥٦٧٨٩",
    "۰۱۲۳۴۵۶۷۸۹",
    "０１２３４５６７８９",
    "⁰¹²³⁴⁵⁶⁷⁸⁹",
    "०१२३४५६७८९",
]


def _in_digits(text: str, digits: str) -> str:
    return text.translate(str.maketrans("0123456789", digits))


def _digit_mix(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """ASCII most of the time; else all digits, or one, from another script."""
    return st.one_of(
        base,
        st.tuples(base, st.sampled_from(DIGIT_SETS)).map(lambda t: _in_digits(*t)),
        st.tuples(base, st.integers(0, 30), st.sampled_from("²³¹٣۳３")).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :] if t[0] else t[2]
        ),
    )


_two = st.integers(0, 99).map(lambda n: f"{n:02d}")
timestamps = _digit_mix(
    st.tuples(
        st.sampled_from([0, 1, 1899, 1900, 2026, 2027, 2199, 2200, 9999]).map(lambda y: f"{y:04d}"),
        st.one_of(st.sampled_from(["01", "12", "02"]), _two),
        st.one_of(st.sampled_from(["01", "28", "29", "30", "31"]), _two),
        st.one_of(st.sampled_from(["00", "09", "23"]), _two),
        st.one_of(st.sampled_from(["00", "30", "59"]), _two),
        st.one_of(st.just(""), _two, _two.map(lambda s: s + ".1234")),
        st.one_of(
            st.just(""),
            st.tuples(st.sampled_from("+-"), st.integers(0, 9999)).map(
                lambda t: f"{t[0]}{t[1]:04d}"
            ),
        ),
    ).map("".join)
)
durations = _digit_mix(
    st.one_of(
        st.integers(-(10**25), 10**25).map(str),
        st.sampled_from(["0", "0.5", "0.01", "1", "59", "60", "1440", "1441", "1e400", "-0"]),
        st.from_regex(r"[SMHDW]?\d{1,12}(\.\d{1,8})?", fullmatch=True),
    )
)
units = st.sampled_from(["min", "minutes", "s", "h", "d", "", "weeks", "M"])
ids = st.one_of(
    _digit_mix(st.integers(0, 10**30).map(str)),
    st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40),
    st.integers(60, 300).map(lambda n: "9" * n),
)
# (segment, field, component) of each kind of value
TIMESTAMP_FIELDS = [("MSH", 7, 0), ("SCH", 11, 4), ("SCH", 11, 5), ("TQ1", 7, 0), ("AIS", 4, 0)]
DURATION_FIELDS = [("SCH", 9, 0), ("TQ1", 6, 1), ("AIS", 7, 0), ("SCH", 11, 3)]
UNIT_FIELDS = [("SCH", 10, 0), ("AIS", 8, 0)]
ID_FIELDS = [("MSH", 10, 0), ("SCH", 2, 0), ("SCH", 1, 0), ("PID", 3, 1), ("AIP", 3, 1)]

mutations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(TIMESTAMP_FIELDS), timestamps),
        st.tuples(st.sampled_from(DURATION_FIELDS), durations),
        st.tuples(st.sampled_from(UNIT_FIELDS), units),
        st.tuples(st.sampled_from(ID_FIELDS), ids),
    ),
    min_size=1,
    max_size=3,
)


def _escape(value: str) -> str:
    # The value must stay inside its field; HL7 escapes make delimiters text.
    for char, code in (("\\", "E"), ("|", "F"), ("^", "S"), ("~", "R"), ("&", "T")):
        value = value.replace(char, f"\\{code}\\")
    return value.replace("\r", " ").replace("\n", " ")


@pytest.mark.django_db
@FUZZ
@given(changes=mutations)
def test_odd_timestamps_durations_and_ids_never_get_internal_error(feeds, changes):
    n = next(_ids)
    message = siu(msg_id=f"FZ{n}", appointment_id=f"FZ{n}", mrn=f"FZ{n}^^^PMSYS^MR")
    for (segment, field, component), value in changes:
        message = set_field(message, segment, field, _escape(value), component)
    appointments, patients = Appointment.objects.count(), Patient.objects.count()
    existing = set(Appointment.objects.values_list("external_id", flat=True))

    receipt = receive_message(message)

    assert receipt.ack_code in ("AA", "AE", "AR")
    assert "internal error" not in receipt.reason.lower()
    assert "|207^" not in receipt.ack and "&207&" not in receipt.ack and "^207&" not in receipt.ack
    if receipt.duplicate:
        return
    stored = Hl7Message.objects.get(pk=receipt.message_id)
    if receipt.ack_code == "AA":
        visit = Appointment.objects.get(pk=stored.appointment_id)
        siu_message = parse_siu(message)
        assert visit.external_id == siu_message.appointment_id
        assert 1899 <= visit.start.year <= 2200
        assert timedelta(minutes=1) <= visit.end - visit.start <= timedelta(days=1)
        if visit.external_id not in existing:
            assert visit.start == to_datetime(siu_message.start, feeds.pms.zone, "start")
    elif stored.appointment_id is None:
        assert Appointment.objects.count() == appointments
        assert Patient.objects.count() == patients
        if receipt.ack_code == "AE":
            # A value the message carried: the ACK says where.
            err = next(s for s in receipt.ack.split("\r") if s.startswith("ERR|"))
            if "|102^" in err:
                assert err.split("|")[2]
