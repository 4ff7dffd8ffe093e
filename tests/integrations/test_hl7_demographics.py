"""Demographics from HL7 feeds, over a real MLLP connection, checked from the outside:
every phone number kept with its use, "no mobile" shown, an unknown language kept as
received, ADT A08/A31 updates applied, and the address's state deciding the hours a
patient may be texted."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest

from careline.integrations.api_keys import issue_api_key
from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import MessageState, OutboundMessage, SimulatedPhoneMessage
from careline.patients.models import Patient
from careline.scheduling.models import Appointment
from tests.integrations.fhir.conftest import Fhir
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
LOS_ANGELES = zoneinfo.ZoneInfo("America/Los_Angeles")


@pytest.fixture
def listener(feeds):
    running = start_background_listener()
    yield running
    running.close()


@pytest.fixture
def fhir(feeds) -> Fhir:
    return Fhir(issue_api_key(organization_slug=feeds.organization.slug, name="demo").plaintext)


def adt(
    trigger: str,
    msg_id: str,
    *,
    mrn: str = "M700^^^PMSYS^MR",
    name: str = "Nguyen^Linh",
    birth: str = "19750214",
    address: str = "",
    phones: str = "",
    work_phones: str = "",
    language: str = "",
    location: str = "",
) -> str:
    segments = [
        f"MSH|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201080000||ADT^{trigger}^ADT_A01|"
        f"{msg_id}|P|2.5.1",
        f"EVN|{trigger}|20261201080000",
        f"PID|1||{mrn}||{name}||{birth}|F|||{address}||{phones}|{work_phones}|{language}",
    ]
    if location:
        segments.append(f"PV1|1|O|{location}")
    return "\r".join(segments) + "\r"


def _segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(name + "|")).split("|")


def _send(listener, message: str) -> str:
    with MllpClient(listener.host, listener.port) as client:
        return client.send(message)


def _patient(fhir: Fhir, mrn: str) -> dict:
    response = fhir.get("Patient", identifier=mrn)
    assert response.status_code == 200, response.content
    entries = response.json().get("entry", [])
    assert len(entries) == 1, entries
    return entries[0]["resource"]


def _telecom(resource: dict) -> list[tuple[str, str, str]]:
    return sorted((t["system"], t.get("use", ""), t["value"]) for t in resource["telecom"])


def _dtm(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _page(client, build, feeds, patient_id: int) -> str:
    client.force_login(build.staff(feeds.organization, practices=[feeds.troy, feeds.albany]))
    return client.get(f"/patients/{patient_id}/").content.decode()


# ---- every number with its use -------------------------------------------------------


def test_every_number_is_kept_with_its_use_and_the_mobile_one_is_texted(
    listener, feeds, fhir, build, client
):
    start = (datetime.now(UTC) + timedelta(days=6)).replace(hour=15, minute=0, second=0)
    message = siu(
        msg_id="PH-ALL",
        appointment_id="PA1",
        mrn="M600^^^PMSYS^MR",
        phones="^PRN^PH^^1^518^5550101~^ORN^CP^^1^518^5550102~^PRN^FX^^1^518^5550103",
        start=_dtm(start),
    )
    # PID-14, the business number, with an extension.
    message = message.replace("^1^518^5550103||", "^1^518^5550103|^WPN^PH^^1^518^5550104^22|")
    ack = _send(listener, message)
    assert _segment(ack, "MSA")[1] == "AA" and "ERR|" not in ack
    resource = _patient(fhir, "M600")
    assert _telecom(resource) == [
        ("fax", "home", "+15185550103"),
        ("phone", "home", "+15185550101"),
        ("phone", "work", "+15185550104 ext. 22"),
        ("sms", "mobile", "+15185550102"),
    ]
    visit = Appointment.objects.get(external_id="PA1")
    page = _page(client, build, feeds, visit.patient_id)
    assert "+15185550101 (home)" in page
    assert "+15185550102 (mobile, texted)" in page
    assert "+15185550103 (home, fax)" in page
    assert "no mobile number to text" not in page


def test_a_patient_without_a_mobile_shows_their_numbers_and_no_mobile_to_text(
    listener, feeds, fhir, build, client
):
    start = (datetime.now(UTC) + timedelta(days=6)).replace(hour=15, minute=0, second=0)
    ack = _send(
        listener,
        siu(
            msg_id="NOMOB-2",
            appointment_id="NM1",
            mrn="M601^^^PMSYS^MR",
            phones="(518)555-0111^PRN^PH~^WPN^PH^^1^518^5550112",
            start=_dtm(start),
        ),
    )
    assert _segment(ack, "MSA")[1] == "AA"
    assert _segment(ack, "ERR")[4] == "W"
    assert _telecom(_patient(fhir, "M601")) == [
        ("phone", "home", "+15185550111"),
        ("phone", "work", "+15185550112"),
    ]
    page = _page(client, build, feeds, Appointment.objects.get(external_id="NM1").patient_id)
    assert "no mobile number to text" in page
    assert "+15185550111 (home)" in page and "+15185550112 (work)" in page


# ---- a language Careline does not text in ----------------------------------------------


def test_an_unknown_language_is_kept_as_received_and_shown_to_staff(
    listener, feeds, fhir, build, client
):
    start = (datetime.now(UTC) + timedelta(days=6)).replace(hour=15, minute=0, second=0)
    ack = _send(
        listener,
        siu(
            msg_id="LG-TGL",
            appointment_id="TG1",
            mrn="M602^^^PMSYS^MR",
            language="TGL^Tagalog^HL70296",
            start=_dtm(start),
        ),
    )
    assert _segment(ack, "MSA")[1] == "AA"
    resource = _patient(fhir, "M602")
    (communication,) = resource["communication"]
    assert communication["language"]["coding"][0]["code"] == "en"
    assert communication["extension"][0]["valueString"] == "Tagalog (TGL, HL70296)"
    page = _page(client, build, feeds, Appointment.objects.get(external_id="TG1").patient_id)
    assert "Language received: Tagalog (TGL, HL70296) — texts in English" in page

    # A later message in a language Careline texts in replaces it.
    _send(
        listener,
        siu(
            msg_id="LG-SPA",
            appointment_id="TG1",
            mrn="M602^^^PMSYS^MR",
            language="SPA^Spanish^HL70296",
            start=_dtm(start),
        ),
    )
    (communication,) = _patient(fhir, "M602")["communication"]
    assert communication["language"]["coding"][0]["code"] == "es"
    assert "extension" not in communication


# ---- ADT A08 / A31 -------------------------------------------------------------------


def test_a08_updates_the_patient_pid3_names(listener, feeds, fhir, build, client):
    start = (datetime.now(UTC) + timedelta(days=6)).replace(hour=15, minute=0, second=0)
    _send(
        listener,
        siu(msg_id="BOOK-7", appointment_id="U1", mrn="M700^^^PMSYS^MR", start=_dtm(start)),
    )
    before = _patient(fhir, "M700")
    ack = _send(
        listener,
        adt(
            "A08",
            "UPD-1",
            name="Lopez-Nguyen^Ana^Maria",
            birth="19800102",
            address="12 Elm St^Apt 4^Sacramento^CA^95814^USA^H",
            phones="^PRN^PH^^1^916^5550130~^PRN^CP^^1^916^5550131",
            language="spa^Spanish",
        ),
    )
    msa = _segment(ack, "MSA")
    assert msa[1:3] == ["AA", "UPD-1"] and "ERR|" not in ack
    after = _patient(fhir, "M700")
    assert after["id"] == before["id"]
    assert after["name"][0]["family"] == "Lopez-Nguyen"
    assert after["birthDate"] == "1980-01-02"
    assert _telecom(after) == [("phone", "home", "+19165550130"), ("sms", "mobile", "+19165550131")]
    assert after["communication"][0]["language"]["coding"][0]["code"] == "es"
    assert after["address"] == [
        {
            "use": "home",
            "line": ["12 Elm St, Apt 4"],
            "city": "Sacramento",
            "state": "CA",
            "postalCode": "95814",
            "country": "USA",
        }
    ]
    page = _page(client, build, feeds, int(after["id"]))
    assert "12 Elm St, Apt 4, Sacramento, CA 95814, USA" in page
    assert "America/Los_Angeles" in page
    # The visit's reminders now go to the new mobile number.
    assert Appointment.objects.get(external_id="U1").patient.mobile_phone == "+19165550131"


def test_a31_for_a_patient_careline_does_not_know_creates_them(listener, feeds, fhir):
    ack = _send(
        listener,
        adt(
            "A31",
            "NEW-1",
            mrn="M701^^^PMSYS^MR",
            phones="(518)555-0140^PRN^PH",
            location="TROYMAIN",
        ),
    )
    assert _segment(ack, "MSA")[1:3] == ["AA", "NEW-1"]
    err = _segment(ack, "ERR")
    assert err[4] == "W" and "no mobile number" in err[8]  # applied; nothing to text
    created = _patient(fhir, "M701")
    assert created["name"][0]["family"] == "Nguyen"
    assert _telecom(created) == [("phone", "home", "+15185550140")]
    # The practice PV1-3 maps to is their home practice: its staff see them.
    assert Patient.objects.get(mrn="M701").home_practice_id == feeds.troy.id


def test_an_adt_update_with_a_bad_birth_date_is_refused_naming_the_field(listener, feeds, fhir):
    _send(listener, adt("A31", "NEW-2", mrn="M702^^^PMSYS^MR"))
    ack = _send(listener, adt("A08", "UPD-2", mrn="M702^^^PMSYS^MR", birth="19801340"))
    assert _segment(ack, "MSA")[1] == "AE"
    assert _segment(ack, "ERR")[2] == "PID^1^7"
    assert _patient(fhir, "M702")["birthDate"] == "1975-02-14"


def test_other_adt_events_are_still_refused(listener, feeds):
    ack = _send(listener, adt("A04", "REG-1", mrn="M703^^^PMSYS^MR"))
    assert _segment(ack, "MSA")[1] == "AR"
    assert "A08/A31" in _segment(ack, "ERR")[8]


# ---- the address's zone for quiet hours ----------------------------------------------


def test_a_colorado_number_with_a_california_address_is_not_texted_before_8_pacific(
    listener, feeds
):
    day = datetime.now(NEW_YORK).date() + timedelta(days=5)
    visit = datetime.combine(day, time(10), tzinfo=NEW_YORK)  # 7:00 Pacific, 8:00 Denver
    ack = _send(
        listener,
        siu(
            msg_id="ZONE-1",
            appointment_id="Z1",
            mrn="M704^^^PMSYS^MR",
            phones="^PRN^CP^^1^303^5550150",
            start=_dtm(visit),
        ).replace("|F|||||", "|F|||1 Bay St^^San Diego^CA^92101^^H||"),
    )
    assert _segment(ack, "MSA")[1] == "AA"
    appointment = Appointment.objects.get(external_id="Z1")
    assert appointment.patient.time_zones == "America/Los_Angeles"
    reminder = OutboundMessage.objects.get(appointment=appointment, step_key="reminder:1440")

    at = visit - timedelta(days=1) + timedelta(minutes=1)  # 8:01 Denver, 7:01 Pacific
    Dispatcher(SimulatorGateway(), clock=lambda: at).run_once()
    reminder.refresh_from_db()
    assert SimulatedPhoneMessage.objects.filter(to="+13035550150").count() == 0
    assert reminder.state == MessageState.SCHEDULED
    assert reminder.due_at == datetime.combine(day - timedelta(days=1), time(8), LOS_ANGELES)
    Dispatcher(SimulatorGateway(), clock=lambda: reminder.due_at).run_once()
    assert SimulatedPhoneMessage.objects.filter(to="+13035550150").count() == 1
