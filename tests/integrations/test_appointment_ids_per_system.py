"""A visit id belongs to the system that issued it: SCH-1/SCH-2 are EIs (id^namespace
id^universal id^type), and the same visit number from two feeds or two namespaces is two
visits. Sent over real MLLP, read and searched over FHIR with an API key, written back to
the EHR in the namespace it came in."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps as django_apps

from careline.clinics.directory import appointment_type_for_code
from careline.integrations.api_keys import issue_api_key
from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.integrations.hl7.receiving import FeedSelector
from careline.integrations.models import Hl7Feed
from careline.scheduling.appointments import change_status
from careline.scheduling.external import upsert_external_appointment
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from tests.integrations.fhir.conftest import Fhir
from tests.integrations.messages import siu
from tests.integrations.test_writeback import Receiver, run, segment

pytestmark = pytest.mark.django_db(transaction=True)

OID = "1.2.840.114350.1.13.5"


@pytest.fixture
def listener(feeds):
    running = start_background_listener(FeedSelector(organization_slug="capital-health"))
    yield running
    running.close()


@pytest.fixture
def fhir(feeds) -> Fhir:
    return Fhir(issue_api_key(organization_slug="capital-health", name="ehr").plaintext)


def from_ehrnet(msg_id: str, appointment_id: str, trigger: str = "S12", **kw: str) -> str:
    """EHRNET's message: its MSH-3, its own patient, at Troy (a practice code, unmapped)."""
    kw.setdefault("mrn", "E77")
    return siu(
        trigger,
        msg_id=msg_id,
        appointment_id=appointment_id,
        sending_app="EHRNET",
        location="TROY",
        **kw,
    )


def ack_code(ack: str) -> str:
    return next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")[1]


def test_the_same_visit_number_from_two_systems_is_two_visits(feeds, listener, fhir):
    with MllpClient(listener.host, listener.port) as mllp:
        acks = [
            # Both feeds number a visit V100; neither names a namespace in the EI.
            mllp.send(siu(msg_id="P1", appointment_id="V100", start="20261210093000")),
            mllp.send(from_ehrnet("E1", "V100", start="20261211093000")),
            # EHRNET's scheduling module names its own: a universal id (an OID), then a
            # namespace id alone. Each is another system, so another visit.
            mllp.send(from_ehrnet("E2", f"V100^CADENCE^{OID}^ISO", start="20261214093000")),
            mllp.send(from_ehrnet("E3", "V100^CADENCE", start="20261215093000")),
        ]
    assert [ack_code(a) for a in acks] == ["AA"] * 4
    visits = {a.external_system: a for a in Appointment.objects.filter(external_id="V100")}
    pms, ehrnet = feeds.pms.namespace, feeds.athena.namespace
    assert sorted(visits) == sorted([pms, ehrnet, f"urn:oid:{OID}", "CADENCE"])
    assert pms == "urn:careline:capital-health:PMSYS"

    # PMSYS moves its V100 (placer id in SCH-1, filler V100 in SCH-2): EHRNET's stay put.
    with MllpClient(listener.host, listener.port) as mllp:
        moved = siu(
            "S13", msg_id="P2", appointment_id="V100", start="20261210110000", sent="20261202"
        )
        assert ack_code(mllp.send(moved)) == "AA"
    after = {a.external_system: a for a in Appointment.objects.filter(external_id="V100")}
    assert after[pms].start.hour == 16 and after[pms].start != visits[pms].start
    assert {k: v.start for k, v in after.items() if k != pms} == {
        k: v.start for k, v in visits.items() if k != pms
    }

    # FHIR: each keeps its system; a search by system|value finds exactly that one.
    def found(identifier: str) -> list[tuple[str, str]]:
        response = fhir.get("Appointment", identifier=identifier)
        assert response.status_code == 200, response.content
        return [
            (i.get("system", ""), i["value"])
            for entry in response.json().get("entry", [])
            for i in entry["resource"]["identifier"]
        ]

    assert found(f"{pms}|V100") == [(pms, "V100")]
    assert found(f"{ehrnet}|V100") == [(ehrnet, "V100")]
    assert found(f"urn:oid:{OID}|V100") == [(f"urn:oid:{OID}", "V100")]
    assert found("CADENCE|V100") == [("CADENCE", "V100")]
    assert len(found("V100")) == 4
    assert found(f"urn:oid:{OID}|V101") == []

    # A FHIR client's own V100 is a fifth visit; its conditional create finds its own.
    patient = visits[pms].patient
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "identifier": [{"system": "https://ehr.example.org/visits", "value": "V100"}],
        "start": "2026-12-16T09:00:00-05:00",
        "end": "2026-12-16T09:20:00-05:00",
        "participant": [
            {"actor": {"reference": f"Patient/{patient.pk}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{feeds.troy.pk}"}, "status": "accepted"},
            {
                "actor": {"reference": f"Practitioner/{visits[pms].provider_id}"},
                "status": "accepted",
            },
        ],
    }
    created = fhir.post("Appointment", body)
    assert created.status_code == 201, created.content
    again = fhir.post(
        "Appointment",
        body,
        headers={"If-None-Exist": "identifier=https://ehr.example.org/visits|V100"},
    )
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    assert Appointment.objects.filter(external_id="V100").count() == 5


def test_write_back_echoes_the_ei_the_ehr_sent(feeds, listener):
    receiver = Receiver()
    try:
        feeds.athena.outbound_host, feeds.athena.outbound_port = "127.0.0.1", receiver.port
        feeds.athena.save()
        with MllpClient(listener.host, listener.port) as mllp:
            for message in (
                from_ehrnet("E1", f"V7^CADENCE^{OID}^ISO", start="20261214093000"),
                from_ehrnet("E2", "V8", start="20261214100000"),
                # PMSYS's own V7: not EHRNET's visit, never written back to it.
                siu(msg_id="P1", appointment_id="V7", start="20261210093000"),
            ):
                assert ack_code(mllp.send(message)) == "AA"
        for visit in Appointment.objects.filter(external_id__in=["V7", "V8"]):
            change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
        assert run()["sent"] == 2
    finally:
        receiver.close()
    sent = sorted(segment(frame, "SCH")[2] for frame in receiver.frames)
    assert sent == [f"V7^CADENCE^{OID}^ISO", "V8"]


def test_the_upgrade_moves_each_feeds_visits_to_its_namespace(feeds, build):
    """Before: a feed's visits were keyed by the feed's name. The data migration keys them
    by the feed's namespace; other systems' ids and other organizations stay as they are."""
    migration = importlib.import_module(
        "careline.integrations.migrations.0007_appointment_ids_per_system"
    )
    org = feeds.organization
    provider = build.provider(feeds.troy)
    visit_type = appointment_type_for_code(org, code="FU")
    elsewhere = build.organization()
    elsewhere_practice = build.practice(elsewhere)
    elsewhere_feed = Hl7Feed.objects.create(
        organization=elsewhere, name="PMSYS", identifier_system="urn:oid:9.9"
    )
    # EHRNET and PMSYS are one EHR: they share a namespace, and both sent visit "S1".
    feeds.athena.identifier_system = feeds.pms.namespace
    feeds.athena.save()

    def visit(system: str, external_id: str, *, practice=feeds.troy, who=provider, hour=9):
        start = datetime(2031, 3, 4, hour, tzinfo=UTC)
        return upsert_external_appointment(
            organization=practice.organization,
            practice=practice,
            provider=who,
            patient=build.patient(practice.organization),
            appointment_type=visit_type
            if practice.organization == org
            else appointment_type_for_code(practice.organization, code="FU"),
            start=start,
            end=start + timedelta(minutes=20),
            status=AppointmentStatus.BOOKED,
            source=ChangeSource.HL7,
            external_system=system,
            external_id=external_id,
        ).appointment

    pms_visit = visit("PMSYS", "A1")
    shared_pms, shared_ehrnet = visit("PMSYS", "S1", hour=10), visit("EHRNET", "S1", hour=11)
    from_csv = visit("csv", "A1", hour=12)
    other_org = visit(
        "PMSYS", "A1", practice=elsewhere_practice, who=build.provider(elsewhere_practice)
    )

    migration.to_feed_namespaces(django_apps, None)

    def system(appointment: Appointment) -> str:
        appointment.refresh_from_db()
        return appointment.external_system

    assert system(pms_visit) == feeds.pms.namespace == "urn:careline:capital-health:PMSYS"
    # The older feed's visit takes the shared id; the other keeps its feed's name, so
    # two visits never merge in the upgrade.
    assert system(shared_ehrnet) == feeds.pms.namespace
    assert system(shared_pms) == "PMSYS"
    assert system(from_csv) == "csv"
    assert system(other_org) == elsewhere_feed.identifier_system


UUID = "F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6"


@pytest.mark.parametrize(
    ("hd", "system"),
    [
        # An OID sent as a URN already is not prefixed again; a UUID sent in capitals is
        # a URN in lower case.
        (("CADENCE", f"urn:oid:{OID}", "ISO"), f"urn:oid:{OID}"),
        (("CADENCE", UUID, "UUID"), f"urn:uuid:{UUID.lower()}"),
        # A universal id of a local type gives way to the namespace id.
        (("CADENCE", "X99", "L"), "CADENCE"),
    ],
)
def test_a_patients_and_a_visits_hd_name_the_same_system(feeds, listener, fhir, hd, system):
    """PID-3's assigning authority (CX-4) and SCH-1's EI are both HDs: one that names a
    system names the same one for the patient and for the visit."""
    namespace, universal, kind = hd
    message = from_ehrnet(
        "E9",
        f"V200^{namespace}^{universal}^{kind}",
        mrn=f"E90^^^{namespace}&{universal}&{kind}^MR",
        start="20261214093000",
    )
    with MllpClient(listener.host, listener.port) as mllp:
        assert ack_code(mllp.send(message)) == "AA"
    visit = fhir.get("Appointment", identifier=f"{system}|V200").json()["entry"]
    patient = fhir.get("Patient", identifier=f"{system}|E90").json()["entry"]
    assert [e["resource"]["identifier"] for e in visit] == [[{"system": system, "value": "V200"}]]
    assert [(i["system"], i["value"]) for i in patient[0]["resource"]["identifier"]] == [
        (system, "E90")
    ]
