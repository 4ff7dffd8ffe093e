"""Whose MRN is it? Patients are (identifier system, value), from every door.

Two EHR feeds over real MLLP both use MRN 12345 for different people; an Epic-shaped FHIR
client syncs its patient twice; an EHR merges two records (ADT^A40). Checked from the
outside: ACKs, the FHIR view of the patients, and the reminder texts the worker sends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from careline.integrations.api_keys import issue_api_key
from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.models import OutboundMessage
from careline.scheduling.models import Appointment
from careline.waitlist.entries import join_waitlist
from careline.waitlist.models import WaitlistEntry
from tests.integrations.fhir.conftest import Fhir
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)

EHRNET = "urn:careline:capital-health:EHRNET"
PMSYS = "urn:careline:capital-health:PMSYS"
EPIC_EPI = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0"
EPIC_MRN = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"


@pytest.fixture
def listener(feeds):
    running = start_background_listener()
    yield running
    running.close()


@pytest.fixture
def fhir(feeds) -> Fhir:
    return Fhir(issue_api_key(organization_slug=feeds.organization.slug, name="epic").plaintext)


def _day() -> datetime:
    return (datetime.now(UTC) + timedelta(days=6)).replace(hour=0, minute=0, second=0)


def _dtm(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _later(hour: int) -> str:
    return _dtm((_day() + timedelta(days=2)).replace(hour=hour))


def _segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(name + "|")).split("|")


def _ehrnet(appointment_id: str, mrn: str, name: str, mobile: str, **kw) -> str:
    kw.setdefault("start", _dtm(_day().replace(hour=14)))
    return siu(
        sending_app="EHRNET",
        appointment_id=appointment_id,
        mrn=mrn,
        name=name,
        phones=f"^ORN^CP^^1^{mobile[:3]}^{mobile[3:]}",
        location="ALB",
        **kw,
    )


def _pmsys(appointment_id: str, mrn: str, name: str, mobile: str, **kw) -> str:
    kw.setdefault("start", _dtm(_day().replace(hour=15)))
    return siu(
        appointment_id=appointment_id,
        mrn=mrn,
        name=name,
        phones=f"^ORN^CP^^1^{mobile[:3]}^{mobile[3:]}",
        **kw,
    )


def _send(listener, *messages: str) -> list[str]:
    with MllpClient(listener.host, listener.port) as client:
        return [client.send(m) for m in messages]


def _search(fhir: Fhir, identifier: str) -> list[dict]:
    response = fhir.get("Patient", identifier=identifier)
    assert response.status_code == 200, response.content
    return [e["resource"] for e in response.json().get("entry", [])]


def _identifiers(resource: dict) -> set[tuple[str, str]]:
    return {(i["system"], i["value"]) for i in resource.get("identifier", [])}


def _texts(appointment_id: str) -> list[OutboundMessage]:
    """Send the visit's reminders due by an hour before it; what went out."""
    visit = Appointment.objects.get(external_id=appointment_id)
    Dispatcher(
        SimulatorGateway(),
        clock=lambda: visit.start - timedelta(hours=1),
        hours=SendingHours(0, 24),
    ).run_once()
    return list(OutboundMessage.objects.filter(appointment=visit, kind="reminder").exclude(body=""))


def _epic_patient(phone: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"use": "usual", "type": {"text": "EPI"}, "system": EPIC_EPI, "value": "E4410"},
            {"use": "usual", "type": {"text": "MRN"}, "system": EPIC_MRN, "value": "12345"},
            {"type": {"text": "CEID"}, "system": "urn:oid:1.2.840.114350.1.1", "value": "XQ9"},
        ],
        "name": [{"use": "official", "family": "Tran", "given": ["Minh"]}],
        "telecom": [{"system": "phone", "use": "mobile", "value": phone}],
    }


def test_two_feeds_and_an_epic_client_with_mrn_12345_are_three_people(listener, feeds, fhir):
    acks = _send(
        listener,
        _ehrnet("E1", "12345", "Rivera^Elena", "5185550142"),
        _pmsys("P1", "12345^^^PMSYS^MR", "Okafor^Daniel", "5185550177"),
        # Each system's next message about its own 12345 finds its own patient (visits
        # on another day: same-day visits of one number share their reminders).
        _ehrnet("E2", "12345", "Rivera^Elena", "5185550142", start=_later(14)),
        _pmsys("P2", "12345", "Okafor^Daniel", "5185550177", start=_later(15)),
    )
    assert [_segment(a, "MSA")[1] for a in acks] == ["AA"] * 4

    # Epic syncs its patient (also MRN 12345, in its own OID) twice: one patient.
    condition = {"If-None-Exist": f"identifier={EPIC_EPI}|E4410"}
    first = fhir.post("Patient", _epic_patient("303-555-0143"), headers=condition)
    again = fhir.post("Patient", _epic_patient("303-555-0143"), headers=condition)
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert first.json()["id"] == again.json()["id"]
    # The next sync is a conditional update by its MRN: the same patient, updated.
    updated = fhir.client.put(
        f"/fhir/R4/Patient?identifier={EPIC_MRN}|12345",
        _json(_epic_patient("303-555-0199")),
        content_type="application/fhir+json",
        headers=fhir._headers(),
    )
    assert updated.status_code == 200 and updated.json()["id"] == first.json()["id"]

    everyone = _search(fhir, "12345")
    assert sorted(p["name"][0]["family"] for p in everyone) == ["Okafor", "Rivera", "Tran"]
    [rivera] = _search(fhir, f"{EHRNET}|12345")
    [okafor] = _search(fhir, f"{PMSYS}|12345")
    [tran] = _search(fhir, f"{EPIC_EPI}|E4410")
    assert rivera["name"][0]["family"] == "Rivera" and okafor["name"][0]["family"] == "Okafor"
    assert _identifiers(rivera) == {(EHRNET, "12345")}
    assert _identifiers(okafor) == {(PMSYS, "12345")}
    # Every identifier Epic sent is kept and returned, with its type text.
    assert _identifiers(tran) == {
        (EPIC_EPI, "E4410"),
        (EPIC_MRN, "12345"),
        ("urn:oid:1.2.840.114350.1.1", "XQ9"),
    }
    assert {i["type"]["text"] for i in tran["identifier"]} == {"EPI", "MRN", "CEID"}
    assert tran["telecom"][0]["value"] == "+13035550199"

    # Another client's conditional update with its own system creates its own patient.
    other = fhir.client.put(
        "/fhir/R4/Patient?identifier=urn:oid:2.16.840.1.999|12345",
        _json(
            {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.840.1.999", "value": "12345"}],
                "name": [{"family": "Other", "given": ["Pat"]}],
            }
        ),
        content_type="application/fhir+json",
        headers=fhir._headers(),
    )
    assert other.status_code == 201, other.content
    assert len(_search(fhir, "12345")) == 4
    assert [p["name"][0]["family"] for p in _search(fhir, f"{EHRNET}|12345")] == ["Rivera"]

    # Each person's reminders go to their own number.
    assert {t.to_address for t in _texts("E1")} == {"+15185550142"}
    assert {t.to_address for t in _texts("P1")} == {"+15185550177"}


def test_identifiers_naming_two_patients_are_refused_and_nothing_applied(listener, feeds, fhir):
    _send(listener, _pmsys("P1", "12345^^^PMSYS^MR", "Okafor^Daniel", "5185550177"))
    assert fhir.post("Patient", _epic_patient("303-555-0143")).status_code == 201
    # PMSYS's 12345 and Epic's MRN (an ISO OID in CX-4) are two different people here.
    clash = _pmsys(
        "P9",
        "12345^^^PMSYS^MR~12345^^^EPIC&1.2.840.114350.1.13.0.1.7.5.737384.14&ISO^MR",
        "Okafor^Daniel",
        "5185550177",
    )
    [ack] = _send(listener, clash)
    assert _segment(ack, "MSA")[1] == "AE"
    err = _segment(ack, "ERR")
    text = err[8].replace("\\F\\", "|")  # HL7's escape of the field separator
    assert err[2] == "PID^1^3"
    assert f"{PMSYS}|12345" in text and f"{EPIC_MRN}|12345" in text
    assert not Appointment.objects.filter(external_id="P9").exists()
    [okafor] = _search(fhir, f"{PMSYS}|12345")
    assert _identifiers(okafor) == {(PMSYS, "12345")}


def test_an_oid_in_cx4_finds_the_fhir_patient_and_keeps_every_identifier(listener, feeds, fhir):
    created = fhir.post("Patient", _epic_patient("303-555-0143"))
    assert created.status_code == 201
    message = _pmsys(
        "P3",
        "E4410^^^EPIC&1.2.840.114350.1.13.0.1.7.5.737384.0&ISO^PI~88^^^PMSYS^MR",
        "Tran^Minh",
        "3035550143",
    )
    [ack] = _send(listener, message)
    assert _segment(ack, "MSA")[1] == "AA", ack
    [tran] = _search(fhir, f"{PMSYS}|88")
    assert tran["id"] == created.json()["id"]
    assert {(EPIC_EPI, "E4410"), (PMSYS, "88")} <= _identifiers(tran)
    assert Appointment.objects.get(external_id="P3").patient_id == int(tran["id"])


def test_a40_merge_moves_the_visits_and_the_prior_mrn_keeps_working(listener, feeds, fhir):
    _send(
        listener,
        _pmsys("OLD1", "555^^^PMSYS^MR", "Okafor^Dan", "5185550101"),
        _pmsys("NEW1", "777^^^PMSYS^MR", "Okafor^Daniel", "5185550177"),
    )
    [prior] = _search(fhir, f"{PMSYS}|555")
    [survivor] = _search(fhir, f"{PMSYS}|777")
    first = Appointment.objects.get(external_id="OLD1")
    waiting = join_waitlist(
        patient=first.patient,
        practice=first.practice,
        appointment_type=first.appointment_type,
        earliest=first.start.date(),
        latest=first.start.date() + timedelta(days=7),
        source="staff",
    )
    merge = (
        "MSH|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201090000||ADT^A40^ADT_A39|MRG-1|P|2.5.1\r"
        "EVN|A40|20261201090000\r"
        "PID|1||777^^^PMSYS^MR||Okafor^Daniel\r"
        "MRG|555^^^PMSYS^MR\r"
    )
    [ack] = _send(listener, merge)
    assert _segment(ack, "MSA")[1] == "AA", ack

    # The prior MRN now names the survivor, who holds both identifiers.
    [found] = _search(fhir, f"{PMSYS}|555")
    assert found["id"] == survivor["id"]
    assert _identifiers(found) == {(PMSYS, "555"), (PMSYS, "777")}
    old = fhir.get(f"Patient/{prior['id']}").json()
    assert old["active"] is False
    assert old["link"] == [
        {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}
    ]
    visit = fhir.get(f"Appointment/{Appointment.objects.get(external_id='OLD1').pk}").json()
    patients = [
        p["actor"]["reference"]
        for p in visit["participant"]
        if p["actor"].get("reference", "").startswith("Patient/")
    ]
    assert patients == [f"Patient/{survivor['id']}"]
    waiting.refresh_from_db()
    assert str(waiting.patient_id) == survivor["id"]  # offers reach the surviving record

    # A message after the merge that still uses the prior MRN reaches the survivor.
    [late] = _send(
        listener,
        _pmsys(
            "OLD2",
            "555^^^PMSYS^MR",
            "Okafor^Daniel",
            "5185550177",
            start=_later(16),
        ),
    )
    assert _segment(late, "MSA")[1] == "AA"
    assert str(Appointment.objects.get(external_id="OLD2").patient_id) == survivor["id"]
    assert len(_search(fhir, "555")) == 1
    assert {t.to_address for t in _texts("OLD2")} == {"+15185550177"}


def test_a40_of_two_records_waiting_for_the_same_visit_keeps_one_place(listener, feeds, fhir):
    """Both records of one person were on the waitlist for the same practice and visit
    type: after the merge the person holds one active place (the one first in line), not
    two, and the other is closed as merged."""
    _send(
        listener,
        _pmsys("W1", "555^^^PMSYS^MR", "Okafor^Dan", "5185550101"),
        _pmsys("W2", "777^^^PMSYS^MR", "Okafor^Daniel", "5185550177"),
    )
    [survivor] = _search(fhir, f"{PMSYS}|777")
    places = []
    for external_id, days in (("W1", 7), ("W2", 3)):
        visit = Appointment.objects.get(external_id=external_id)
        places.append(
            join_waitlist(
                patient=visit.patient,
                practice=visit.practice,
                appointment_type=visit.appointment_type,
                earliest=visit.start.date(),
                latest=visit.start.date() + timedelta(days=days),
                source="staff",
            )
        )
    first_in_line, later = places
    merge = (
        "MSH|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201090000||ADT^A40^ADT_A39|MRG-3|P|2.5.1\r"
        "EVN|A40|20261201090000\r"
        "PID|1||777^^^PMSYS^MR||Okafor^Daniel\r"
        "MRG|555^^^PMSYS^MR\r"
    )
    [ack] = _send(listener, merge)
    assert _segment(ack, "MSA")[1] == "AA", ack

    waiting = WaitlistEntry.objects.filter(patient_id=survivor["id"], active=True)
    assert list(waiting.values_list("pk", flat=True)) == [first_in_line.pk]
    later.refresh_from_db()
    assert str(later.patient_id) == survivor["id"]
    assert (later.active, later.closed_reason) == (False, WaitlistEntry.Closed.MERGED)
    assert later.closed_at is not None


def test_a40_whose_identifiers_name_two_patients_is_refused(listener, feeds, fhir):
    _send(
        listener,
        _pmsys("A1", "555^^^PMSYS^MR", "Okafor^Dan", "5185550101"),
        _pmsys("A2", "777^^^PMSYS^MR", "Okafor^Daniel", "5185550177"),
        _pmsys("A3", "999^^^PMSYS^MR", "Nguyen^Mai", "5185550190"),
    )
    merge = (
        "MSH|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201090000||ADT^A40|MRG-2|P|2.5.1\r"
        "PID|1||777^^^PMSYS^MR~999^^^PMSYS^MR||Okafor^Daniel\r"
        "MRG|555^^^PMSYS^MR\r"
    )
    [ack] = _send(listener, merge)
    assert _segment(ack, "MSA")[1] == "AE" and "different patients" in _segment(ack, "ERR")[8]
    # Nothing moved.
    [prior] = _search(fhir, f"{PMSYS}|555")
    assert _identifiers(prior) == {(PMSYS, "555")} and prior["active"] is True


def test_csv_names_its_identifier_system(feeds, fhir, tmp_path: Path):
    _send_later = [_pmsys("P1", "12345^^^PMSYS^MR", "Okafor^Daniel", "5185550177")]
    from careline.integrations.hl7.receiving import receive_message

    assert receive_message(_send_later[0]).ack_code == "AA"
    header = "appointment_id,practice,provider,mrn,mrn_system,given_name,family_name,start"
    rows = [
        # The PMSYS export: its 12345 is Okafor.
        f"C1,TROY,Dr. Lee,12345,,Daniel,Okafor,{(_day() + timedelta(days=1)):%Y-%m-%d} 09:00",
        # A row naming another system: another person.
        f"C2,TROY,Dr. Lee,12345,{EPIC_MRN},Minh,Tran,{(_day() + timedelta(days=1)):%Y-%m-%d} 10:00",
    ]
    path = tmp_path / "pmsys.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    call_command(
        "import-csv",
        str(path),
        "--organization",
        feeds.organization.slug,
        "--identifier-system",
        PMSYS,
        "--no-progress",
    )
    [okafor] = _search(fhir, f"{PMSYS}|12345")
    [tran] = _search(fhir, f"{EPIC_MRN}|12345")
    assert Appointment.objects.get(external_id="C1").patient_id == int(okafor["id"])
    assert Appointment.objects.get(external_id="C2").patient_id == int(tran["id"])
    # Without a system the file's MRNs are the organization's own: a third 12345.
    path.write_text("\n".join([header, rows[0].replace("C1,", "C3,")]) + "\n", encoding="utf-8")
    call_command(
        "import-csv", str(path), "--organization", feeds.organization.slug, "--no-progress"
    )
    [own] = _search(fhir, "urn:careline:capital-health:mrn|12345")
    assert own["id"] not in (okafor["id"], tran["id"])


def test_an_api_key_names_the_system_of_bare_identifiers(feeds):
    key = issue_api_key(
        organization_slug=feeds.organization.slug,
        name="athena fhir",
        identifier_system="urn:oid:2.16.840.1.113883.3.564",
    )
    fhir = Fhir(key.plaintext)
    body = {
        "resourceType": "Patient",
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "12345"}],
        "name": [{"family": "Bare", "given": ["Ann"]}],
    }
    assert fhir.post("Patient", body).status_code == 201
    [found] = _search(fhir, "|12345")
    assert _identifiers(found) == {("urn:oid:2.16.840.1.113883.3.564", "12345")}
    # Another key's bare 12345 is another system's: no clash, another patient.
    default = Fhir(issue_api_key(organization_slug=feeds.organization.slug, name="x").plaintext)
    assert (
        default.post(
            "Patient", {**body, "name": [{"family": "Else", "given": ["Eva"]}]}
        ).status_code
        == 201
    )
    assert [p["name"][0]["family"] for p in _search(default, "|12345")] == ["Else"]


def _json(body: dict) -> str:
    import json

    return json.dumps(body)


def test_a_put_keeps_other_systems_identifiers_and_answers_with_all_of_them(listener, feeds, fhir):
    _send(listener, _pmsys("P1", "12345^^^PMSYS^MR", "Okafor^Daniel", "5185550177"))
    [okafor] = _search(fhir, f"{PMSYS}|12345")
    assert okafor["meta"]["versionId"] == "1"
    body = {
        "resourceType": "Patient",
        "id": okafor["id"],
        "identifier": [{"type": {"text": "EPI"}, "system": EPIC_EPI, "value": "E77"}],
        "name": [{"family": "Okafor", "given": ["Daniel"]}],
        "telecom": [{"system": "sms", "value": "+15185550177"}],
    }
    response = fhir.put(f"Patient/{okafor['id']}", body)
    assert response.status_code == 200, response.content
    # The feed's MRN stays; Epic's is added; one PUT is one version.
    assert _identifiers(response.json()) == {(PMSYS, "12345"), (EPIC_EPI, "E77")}
    assert response.json()["meta"]["versionId"] == "2"
    [again] = _search(fhir, f"{EPIC_EPI}|E77")
    assert again["id"] == okafor["id"]
