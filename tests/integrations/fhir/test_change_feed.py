"""FHIR as a change feed: a real client (fhirpy) polls `_lastUpdated` against a live server
while visits change through every door — FHIR, a CSV import, a staff page, an HL7 feed and
a patient's reply — and sees each change exactly once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from urllib.request import Request, urlopen

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from fhirpy import SyncFHIRClient

from careline.clinics.models import StaffRole
from careline.integrations.api_keys import issue_api_key
from careline.integrations.hl7.receiving import receive_message
from careline.integrations.models import Hl7Feed
from careline.scheduling.models import Appointment
from tests.conversations.conftest import ALWAYS_OPEN, BASE, TOKEN, TwoWay
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)

START = datetime(2031, 6, 2, 15, 0, tzinfo=UTC)


class Poller:
    """An analytics tool's loop: everything changed after the newest time seen, oldest
    first, following every next link; then the newest meta.lastUpdated is the next `since`."""

    def __init__(self, client: SyncFHIRClient, resource_type: str = "Appointment"):
        self.client = client
        self.resource_type = resource_type
        self.since: str | None = None
        self.seen: list[tuple[str, str]] = []

    def poll(self) -> list[tuple[str, str]]:
        search = self.client.resources(self.resource_type).sort("_lastUpdated").limit(2)
        if self.since:
            search = search.search(_lastUpdated=f"gt{self.since}")
        found = search.fetch_all()
        changes = [(r.id, r["meta"]["versionId"]) for r in found]
        if found:
            self.since = max(r["meta"]["lastUpdated"] for r in found)
        self.seen += changes
        return changes


def current(*appointments: Appointment | int) -> list[tuple[str, str]]:
    """(id, version) as stored now."""
    ids = [a if isinstance(a, int) else a.pk for a in appointments]
    rows = dict(Appointment.objects.filter(pk__in=ids).values_list("pk", "version"))
    return [(str(pk), str(rows[pk])) for pk in ids]


@pytest.fixture
def twoway(build, settings) -> TwoWay:
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.CARELINE_BASE_URL = BASE
    settings.CARELINE_OFFICE_HOURS = ALWAYS_OPEN
    return TwoWay(build)


@pytest.fixture
def client(live_server, twoway) -> SyncFHIRClient:
    key = issue_api_key(organization_slug=twoway.org.slug, name="feed").plaintext
    return SyncFHIRClient(f"{live_server.url}/fhir/R4", authorization=f"Bearer {key}")


def fhir_visit(client, twoway, patient, start: datetime, external_id: str):
    appointment = client.resource(
        "Appointment",
        status="booked",
        identifier=[{"system": "urn:ehr", "value": external_id}],
        start=start.isoformat(),
        end=(start + timedelta(minutes=20)).isoformat(),
        participant=[
            {"actor": {"reference": f"Patient/{patient.pk}"}, "status": "needs-action"},
            {"actor": {"reference": f"Practitioner/{twoway.provider.pk}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{twoway.practice.pk}"}, "status": "accepted"},
        ],
    )
    appointment.save()
    return appointment


def test_a_poller_sees_every_change_from_every_door_exactly_once(client, twoway, build, tmp_path):
    feed = Poller(client)
    assert feed.poll() == []

    # FHIR: two new visits (Ana's will be confirmed by text later). Bea's is on another
    # number, so Ana's "C" can only be about her own (a moved visit's notice on the same
    # number would ask to confirm too, and her "C" would be answered "which visit?").
    ana = twoway.patient(given_name="Ana")
    first = fhir_visit(client, twoway, twoway.patient(given_name="Bea"), START, "F-1")
    texted = fhir_visit(client, twoway, ana, twoway.local(2, 10), "F-2")
    assert feed.poll() == [(first.id, "1"), (texted.id, "1")]
    assert feed.poll() == []

    # CSV: three visits in one import share one change time; pages of two split the tie.
    csv = tmp_path / "visits.csv"
    rows = [
        f"C-{i},{twoway.practice.code},Dr. Lee,M-{i},Bo,Diaz,2031-06-0{3 + i} 09:00,booked"
        for i in range(3)
    ]
    header = "appointment_id,practice,provider,mrn,given_name,family_name,start,status"
    csv.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    call_command("import-csv", str(csv), "--organization", twoway.org.slug, "--no-progress")
    imported = list(Appointment.objects.filter(external_id__startswith="C-").order_by("pk"))
    stamps = {a.last_updated for a in imported}
    assert len(stamps) == 1, "one import, one change time: the tie this test is about"
    assert feed.poll() == current(*imported)
    assert feed.poll() == []

    # FHIR PUT: the EHR moves the first visit.
    first["start"] = (START + timedelta(hours=1)).isoformat()
    first["end"] = (START + timedelta(hours=1, minutes=20)).isoformat()
    first.save()
    assert feed.poll() == [(first.id, "2")]

    # A staff page: the front desk marks an imported visit arrived.
    staff = build.staff(twoway.org, role=StaffRole.ORGANIZATION_ADMIN, practices=[twoway.practice])
    desk = Client()
    desk.force_login(staff)
    desk.post(reverse("scheduling:set_status", args=[imported[0].pk]), {"status": "arrived"})
    assert feed.poll() == current(imported[0]) == [(str(imported[0].pk), "2")]

    # HL7: a new visit, then its cancellation.
    Hl7Feed.objects.create(
        organization=twoway.org,
        name="PMSYS",
        time_zone="America/Chicago",
        mrn_identifier_type="MR",
        mrn_assigning_authority="PMSYS",
        location_map={"TROYMAIN": twoway.practice.code},
    )
    assert receive_message(siu(appointment_id="H-1", start="20310610093000")).ack_code == "AA"
    hl7 = Appointment.objects.get(external_id="H-1")
    assert feed.poll() == current(hl7) == [(str(hl7.pk), "1")]
    cancel = siu("S15", appointment_id="H-1", start="20310610093000", sent="20261201090000")
    assert receive_message(cancel).ack_code == "AA"
    assert feed.poll() == current(hl7) == [(str(hl7.pk), "2")]

    # A patient's reply: the reminder reaches Ana, she texts C.
    visit = Appointment.objects.get(pk=texted.id)
    assert twoway.send_reminders(visit)
    assert feed.poll() == [], "sending a reminder does not change the visit"
    twoway.text(ana.mobile_phone, "C")
    visit.refresh_from_db()
    assert visit.status == "confirmed"
    assert feed.poll() == current(visit) == [(texted.id, "2")]

    # Every change once, none twice, in change order.
    assert len(feed.seen) == len(set(feed.seen)) == 10
    assert feed.poll() == []

    # Patients are a feed too: Ana, the imported and the HL7 patient, once each.
    patients = Poller(client, "Patient")
    ids = [pk for pk, _ in patients.poll()]
    assert len(ids) == len(set(ids)) and str(ana.pk) in ids and str(hl7.patient_id) in ids
    assert patients.poll() == []


def test_concurrent_changes_are_each_seen_once_while_polling(client, twoway, live_server):
    """Writers commit in any order while the poller polls; a change that commits after a
    poll read past its time would be lost for good. None is."""
    patient = twoway.patient()
    made = [
        fhir_visit(client, twoway, patient, START + timedelta(hours=i), f"P-{i}") for i in range(12)
    ]
    feed = Poller(client)
    feed.poll()
    key = client.authorization

    def cancel(appointment) -> None:
        body = appointment.serialize()
        body["status"] = "cancelled"
        request = Request(
            f"{live_server.url}/fhir/R4/Appointment/{appointment.id}",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Authorization": key, "Content-Type": "application/fhir+json"},
        )
        with urlopen(request, timeout=30) as response:
            assert response.status == 200

    writers = [threading.Thread(target=cancel, args=(a,)) for a in made]
    for writer in writers:
        writer.start()
    while any(w.is_alive() for w in writers):
        feed.poll()
    for writer in writers:
        writer.join()
    feed.poll()
    changes = [change for change in feed.seen if change[1] == "2"]
    assert sorted(changes) == sorted((a.id, "2") for a in made)
