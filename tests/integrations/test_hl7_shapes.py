"""Shapes real feeds send, over a real MLLP connection, checked from the outside.

Each test sends SIU messages the way athena, Allscripts, Epic or a Mirth channel shape
them, then reads the ACK, the patient through FHIR with an API key, and the reminder
texts the worker sends (to whom, to which number, at what hour, in which language).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from careline.integrations.api_keys import issue_api_key
from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.integrations.models import Hl7Message, Hl7MessageState
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import OutboundMessage
from careline.scheduling.models import Appointment
from tests.integrations.fhir.conftest import Fhir
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener(feeds):
    running = start_background_listener()
    yield running
    running.close()


@pytest.fixture
def fhir(feeds) -> Fhir:
    return Fhir(issue_api_key(organization_slug=feeds.organization.slug, name="shapes").plaintext)


def _segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(name + "|")).split("|")


def _msa(ack: str) -> list[str]:
    return _segment(ack, "MSA")


def _visit_day() -> datetime:
    """A day well inside the reminder window, whatever day the suite runs."""
    return (datetime.now(UTC) + timedelta(days=6)).replace(hour=0, minute=0, second=0)


def _dtm(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _patient(fhir: Fhir, mrn: str) -> dict:
    response = fhir.get("Patient", identifier=mrn)
    assert response.status_code == 200, response.content
    entries = response.json().get("entry", [])
    assert len(entries) == 1, entries
    return entries[0]["resource"]


def _phones(resource: dict) -> list[tuple[str, str]]:
    return [
        (t.get("use", ""), t["value"])
        for t in resource.get("telecom", [])
        if t["system"] in ("sms", "phone")
    ]


def _texts(appointment_id: str) -> list[OutboundMessage]:
    """Send every reminder of the visit that is due by an hour before it; what went out."""
    visit = Appointment.objects.get(external_id=appointment_id)
    Dispatcher(
        SimulatorGateway(),
        clock=lambda: visit.start - timedelta(hours=1),
        hours=SendingHours(0, 24),
    ).run_once()
    return list(
        OutboundMessage.objects.filter(appointment=visit, kind="reminder")
        .exclude(body="")
        .order_by("id")
    )


# ---- reused control ids ---------------------------------------------------------------


def test_reused_control_id_with_other_content_is_refused_naming_the_conflict(listener, feeds):
    day = _visit_day()
    first = siu(msg_id="MIRTH-77", appointment_id="R1", start=_dtm(day.replace(hour=9)))
    other = siu(msg_id="MIRTH-77", appointment_id="R2", start=_dtm(day.replace(hour=11)))
    with MllpClient(listener.host, listener.port) as client:
        applied = client.send(first)
        refused = client.send(other)
        # The same message again (a resend after a lost ACK), with LF breaks this time.
        again = client.send(first.replace("\r", "\n"))
    assert _msa(applied)[1:3] == ["AA", "MIRTH-77"]
    assert _msa(refused)[1:3] == ["AR", "MIRTH-77"]
    err = _segment(refused, "ERR")
    assert err[2] == "MSH^1^10" and err[3].startswith("205^")
    assert "already used" in err[8] and "different content" in err[8]
    assert again == applied
    # Nothing of the second message applied; both arrivals kept for staff to see.
    assert list(Appointment.objects.values_list("external_id", flat=True)) == ["R1"]
    assert Hl7Message.objects.filter(state=Hl7MessageState.REJECTED).count() == 1


# ---- applied with a warning ------------------------------------------------------------


def test_no_mobile_is_aa_with_a_warning_and_staff_see_no_mobile(listener, feeds, build, client):
    landline_only = siu(
        msg_id="NOMOB1",
        appointment_id="N1",
        mrn="N100^^^PMSYS^MR",
        phones="(518)555-0111^PRN^PH",
        start=_dtm(_visit_day().replace(hour=10)),
    )
    with MllpClient(listener.host, listener.port) as client_:
        ack = client_.send(landline_only)
    assert _msa(ack)[1] == "AA"
    err = _segment(ack, "ERR")
    assert err[4] == "W" and err[2] == "PID^1^13" and "no mobile number" in err[8]
    visit = Appointment.objects.get(external_id="N1")
    assert Hl7Message.objects.get(control_id="NOMOB1").state == Hl7MessageState.APPLIED
    # Nothing is texted to the landline: the reminder is a call to it instead.
    sent = _texts("N1")
    assert [(m.channel, m.to_address) for m in sent] == [("voice", "+15185550111")]
    staff = build.staff(feeds.organization, practices=[feeds.troy])
    client.force_login(staff)
    page = client.get(f"/patients/{visit.patient_id}/").content.decode()
    assert "no mobile number" in page


# ---- phone shapes ----------------------------------------------------------------------

PHONE_SHAPES = {
    # XTN split into components, mobile in a repeat after the home landline (2.5.1).
    "components": ("^PRN^PH^^1^518^5550111~^PRN^CP^^1^518^5550122", "+15185550122"),
    # Country written +1, area in parentheses, local with a dash, an extension.
    "country-and-extension": ("^PRN^CP^^+1^(303)^555-0143^12", "+13035550143"),
    # XTN-12 unformatted telephone number only (Epic-style 2.5+).
    "xtn-12": ("^PRN^CP^^^^^^^^^3035550144", "+13035550144"),
    # v2.3 bare formatted strings, the mobile one typed CP.
    "v23-bare": ("(303)555-0100~(303)555-0145^^CP", "+13035550145"),
    # CELL as the equipment type, and as the use code (Allscripts/Mirth mappings).
    "cell-equipment": ("303-555-0100^PRN^PH~303.555.0146^PRN^CELL", "+13035550146"),
    "cell-use": ("303-555-0100^PRN^PH~3035550147^CELL", "+13035550147"),
    # A mobile whose components are broken but XTN-1 is whole.
    "xtn1-fallback": ("(303)555-0148^PRN^CP^^^^555", "+13035550148"),
}


@pytest.mark.parametrize("shape", PHONE_SHAPES)
def test_phone_shapes_text_the_mobile_number(listener, feeds, fhir, shape):
    phones, mobile = PHONE_SHAPES[shape]
    start = _visit_day().replace(hour=14)
    message = siu(
        msg_id=f"PH-{shape}", appointment_id="P1", phones=phones, start=_dtm(start), minutes="20"
    )
    with MllpClient(listener.host, listener.port) as client:
        ack = client.send(message)
    assert _msa(ack)[1] == "AA" and "ERR|" not in ack
    assert ("mobile", mobile) in _phones(_patient(fhir, "M500"))
    texts = _texts("P1")
    assert texts and {t.to_address for t in texts} == {mobile}


# ---- languages -------------------------------------------------------------------------

LANGUAGES = {
    "iso-region": ("es-MX", "es"),
    "table-0296": ("SPA", "es"),
    "table-0296-letter": ("S^^HL70296", "es"),
    "coded-triple": ("SPA^Spanish^HL70296", "es"),
    "local-code-with-text": ("99^Espanol^LOCAL", "es"),
    "free-text": ("^Spanish; Castilian", "es"),
    "english": ("ENG^English^ISO639", "en"),
}


@pytest.mark.parametrize("shape", LANGUAGES)
def test_language_shapes(listener, feeds, fhir, shape):
    language, expected = LANGUAGES[shape]
    start = _visit_day().replace(hour=9)
    message = siu(msg_id=f"LG-{shape}", appointment_id="L1", language=language, start=_dtm(start))
    with MllpClient(listener.host, listener.port) as client:
        assert _msa(client.send(message))[1] == "AA"
    resource = _patient(fhir, "M500")
    assert [c["language"]["coding"][0]["code"] for c in resource["communication"]] == [expected]
    texts = _texts("L1")
    assert texts
    # The Spanish reminder says "a.m."; the English one "AM".
    assert all(("9:00 a.m." if expected == "es" else "9:00 AM") in t.body for t in texts)


def test_unknown_language_is_not_silently_english(listener, feeds, fhir, build):
    start = _visit_day().replace(hour=9)
    build.patient(
        feeds.organization,
        mrn="M500",
        identifier_system=feeds.pms.namespace,
        preferred_language="es",
    )
    message = siu(
        msg_id="LG-VIE", appointment_id="L2", language="VIE^Vietnamese^HL70296", start=_dtm(start)
    )
    with MllpClient(listener.host, listener.port) as client:
        ack = client.send(message)
    assert _msa(ack)[1] == "AA"
    err = _segment(ack, "ERR")
    assert err[4] == "W" and err[2] == "PID^1^15" and "Vietnamese (VIE, HL70296)" in err[8]
    stored = Hl7Message.objects.get(control_id="LG-VIE")
    assert "Vietnamese" in stored.error  # what staff see on the message list
    # The language already on file stays; it is not overwritten with English.
    resource = _patient(fhir, "M500")
    assert [c["language"]["coding"][0]["code"] for c in resource["communication"]] == ["es"]


# ---- batches ---------------------------------------------------------------------------


def test_a_batch_in_one_frame_is_taken_message_by_message(listener, feeds):
    day = _visit_day()
    messages = [
        siu(msg_id="B-1", appointment_id="BA1", start=_dtm(day.replace(hour=9))),
        siu(msg_id="B-2", appointment_id="BA2", location="NOWHERE"),
        siu(msg_id="B-3", appointment_id="BA3", mrn="B3^^^PMSYS^MR", phones=""),
    ]
    batch = (
        "FHS|^~\\&|MIRTH|CLINIC|CARELINE|CARELINE|20261201080000||||F-9\r"
        "BHS|^~\\&|MIRTH|CLINIC|CARELINE|CARELINE|20261201080000||||BATCH-42\r"
        + "".join(messages)
        + "BTS|3\rFTS|1\r"
    )
    with MllpClient(listener.host, listener.port) as client:
        ack = client.send(batch)
        again = client.send(batch)
    segments = ack.split("\r")[:-1]
    assert [s[:3] for s in segments if s[:3] in ("FHS", "BHS", "BTS", "FTS", "MSA")] == [
        "FHS",
        "BHS",
        "MSA",
        "MSA",
        "MSA",
        "BTS",
        "FTS",
    ]
    assert _segment(ack, "FHS")[11] == "F-9" and _segment(ack, "BHS")[11] == "BATCH-42"
    acks = [s.split("|")[1:3] for s in segments if s.startswith("MSA|")]
    assert acks == [["AA", "B-1"], ["AE", "B-2"], ["AA", "B-3"]]
    assert _segment(ack, "BTS")[1] == "3"
    assert sorted(Appointment.objects.values_list("external_id", flat=True)) == ["BA1", "BA3"]
    # Resent whole: every message is a duplicate, nothing applied twice.
    assert [s.split("|")[1:3] for s in again.split("\r") if s.startswith("MSA|")] == acks
    assert Hl7Message.objects.count() == 3


def test_a_bare_bhs_batch_from_a_file(feeds, tmp_path, capsys):
    from django.core.management import call_command

    day = _visit_day()
    batch = (
        "BHS|^~\\&|PMSYS|CLINIC\r"
        + siu(msg_id="FB-1", appointment_id="FB1", start=_dtm(day.replace(hour=9)))
        + siu(msg_id="FB-2", appointment_id="FB2", start=_dtm(day.replace(hour=10)))
        + "BTS|2\r"
    )
    path = tmp_path / "batch.hl7"
    path.write_bytes(b"\x0b" + batch.encode() + b"\x1c\r")
    call_command("import-hl7", str(path))
    assert "2 message(s): 2 AA, 0 AE, 0 AR" in capsys.readouterr().out
    assert sorted(Appointment.objects.values_list("external_id", flat=True)) == ["FB1", "FB2"]


# ---- character sets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msh18", "escaped"),
    [
        ("UNICODE UTF-8", r"Mu\XC3B1\oz"),
        ("8859/1", r"Mu\XF1\oz"),
        ("8859/15", r"Mu\XF1\oz"),
        ("", r"Mu\XF1\oz"),  # no MSH-18: Latin-1, as before
    ],
)
def test_hex_escapes_decode_in_the_messages_charset(listener, feeds, fhir, msh18, escaped):
    message = siu(msg_id=f"CS-{msh18 or 'none'}", name=f"{escaped}^Ana")
    if msh18:
        msh, rest = message.split("\r", 1)
        message = f"{msh}||||||{msh18}\r{rest}"
    with MllpClient(listener.host, listener.port) as client:
        assert _msa(client.send(message))[1] == "AA"
    assert _patient(fhir, "M500")["name"][0]["family"] == "Muñoz"
