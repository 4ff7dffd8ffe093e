"""The directory as a change feed: a real client (fhirpy) polls `_lastUpdated` on
Practitioner, Location and Schedule against a live server while providers and practices
change through FHIR, an HL7 feed over MLLP, a CSV import and the Django admin, and sees
each change exactly once; reads carry meta.versionId, meta.lastUpdated and an ETag."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from fhirpy import SyncFHIRClient

from careline.clinics.models import Practice, Provider, StaffRole
from careline.integrations.api_keys import issue_api_key
from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.integrations.hl7.receiving import FeedSelector
from tests.integrations.fhir.conftest import Fhir, outcome
from tests.integrations.fhir.test_change_feed import Poller
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(build):
    org = build.organization(slug="valley")
    practice = build.practice(org, code="TROY", name="Troy Clinic")
    provider = build.provider(practice, display_name="Dr. Lee", npi="1234567893")
    return org, practice, provider


@pytest.fixture
def client(live_server, world) -> SyncFHIRClient:
    key = issue_api_key(organization_slug=world[0].slug, name="feed").plaintext
    return SyncFHIRClient(f"{live_server.url}/fhir/R4", authorization=f"Bearer {key}")


@pytest.fixture
def listener(world):
    call_command(
        "hl7-feed",
        "add",
        "PMSYS",
        "--organization",
        "valley",
        "--time-zone",
        "America/Chicago",
        "--map-location",
        "TROYMAIN=TROY",
        stdout=StringIO(),
    )
    running = start_background_listener(FeedSelector(organization_slug="valley"))
    yield running
    running.close()


def stored(model, *pks: int) -> list[tuple[str, str]]:
    rows = dict(model.objects.filter(pk__in=pks).values_list("pk", "version"))
    return [(str(pk), str(rows[pk])) for pk in pks]


def schedules(*pairs: tuple[Provider, Practice]) -> list[tuple[str, str]]:
    """(id, version) of the Schedules of these (provider, practice) pairs as stored now."""
    rows = []
    for provider, practice in pairs:
        provider.refresh_from_db()
        practice.refresh_from_db()
        rows.append((f"{provider.pk}-{practice.pk}", str(provider.version + practice.version)))
    return rows


def test_a_poller_sees_every_directory_change_exactly_once(
    client, world, listener, build, tmp_path
):
    org, troy, lee = world
    practitioners, locations, calendars = (
        Poller(client, "Practitioner"),
        Poller(client, "Location"),
        Poller(client, "Schedule"),
    )
    assert practitioners.poll() == stored(Provider, lee.pk)
    assert locations.poll() == stored(Practice, troy.pk)
    assert calendars.poll() == schedules((lee, troy))
    for poller in (practitioners, locations, calendars):
        assert poller.poll() == []

    # FHIR: a new practitioner, then the EHR renames Dr. Lee.
    kim = client.resource(
        "Practitioner", name=[{"family": "Kim", "given": ["Ana"], "prefix": ["Dr"]}]
    )
    kim.save()
    assert practitioners.poll() == [(kim.id, "1")]
    dr_lee = client.reference("Practitioner", str(lee.pk)).to_resource()
    dr_lee["name"] = [{"text": "Dr. Lee-Park", "family": "Lee-Park"}]
    dr_lee.save()
    assert practitioners.poll() == [(str(lee.pk), "2")]
    # Dr. Lee's calendar shows the new name: it changed too; Kim works nowhere yet.
    assert calendars.poll() == schedules((lee, troy))
    assert locations.poll() == []

    # FHIR: a new location, then Troy's front-desk number changes.
    boulder = client.resource(
        "Location",
        name="Boulder Clinic",
        identifier=[{"value": "BOULDER"}],
        extension=[
            {
                "url": "http://hl7.org/fhir/StructureDefinition/timezone",
                "valueCode": "America/Denver",
            }
        ],
    )
    boulder.save()
    troy_location = client.reference("Location", str(troy.pk)).to_resource()
    troy_location["telecom"] = [{"system": "phone", "value": "+15125550142"}]
    troy_location.save()
    assert locations.poll() == [(boulder.id, "1"), (str(troy.pk), "2")]
    assert calendars.poll() == schedules((lee, troy)), "Troy's calendars show its name: bumped"
    assert practitioners.poll() == []

    # HL7 over MLLP: a visit with a provider Careline has not met: a new practitioner and
    # a new calendar; then one with Dr. Kim at Troy: her first calendar there.
    message = siu(msg_id="D1", appointment_id="V1", start="20310610093000")
    with MllpClient(listener.host, listener.port) as mllp:
        assert "|AA|D1" in mllp.send(message)
        wong = Provider.objects.get(display_name__contains="Wong")
        assert practitioners.poll() == stored(Provider, wong.pk) == [(str(wong.pk), "1")]
        assert calendars.poll() == schedules((wong, troy))
        kim_at_troy = siu(
            msg_id="D2", appointment_id="V2", start="20310611093000", provider="KIM^Kim^Ana"
        )
        assert "|AA|D2" in mllp.send(kim_at_troy)
    # The feed's provider code is a new provider (feeds match providers by their codes).
    kim_hl7 = Provider.objects.exclude(pk=kim.id).get(display_name__contains="Kim")
    assert practitioners.poll() == stored(Provider, kim_hl7.pk)
    assert calendars.poll() == schedules((kim_hl7, troy))
    # A repeat of a known visit changes nobody's record.
    with MllpClient(listener.host, listener.port) as mllp:
        assert "|AA|D3" in mllp.send(siu(msg_id="D3", appointment_id="V1", start="20310610100000"))
    assert practitioners.poll() == calendars.poll() == locations.poll() == []

    # CSV: Dr. Lee-Park starts at Boulder (her calendar there is new), a new provider too.
    csv = tmp_path / "visits.csv"
    header = "appointment_id,practice,provider,mrn,given_name,family_name,start,status"
    rows = [
        "C-1,BOULDER,Dr. Lee-Park,M-1,Bo,Diaz,2031-06-03 09:00,booked",
        "C-2,BOULDER,Dr. Ortiz,M-2,Cy,Diaz,2031-06-03 10:00,booked",
        "C-3,BOULDER,Dr. Ortiz,M-3,Di,Diaz,2031-06-03 11:00,booked",
    ]
    csv.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    call_command(
        "import-csv", str(csv), "--organization", "valley", "--no-progress", stdout=StringIO()
    )
    ortiz = Provider.objects.get(display_name="Dr. Ortiz")
    boulder_practice = Practice.objects.get(code="BOULDER")
    lee.refresh_from_db()
    assert lee.version == 3
    assert sorted(practitioners.poll()) == sorted(stored(Provider, lee.pk, ortiz.pk))
    assert sorted(calendars.poll()) == sorted(
        schedules((lee, boulder_practice), (ortiz, boulder_practice), (lee, troy))
    ), "Dr. Lee's record changed (a new practice), so her Troy calendar is bumped too"

    # The Django admin: an organization admin deactivates Dr. Ortiz.
    admin = build.staff(org, role=StaffRole.ORGANIZATION_ADMIN, practices=[troy])
    browser = Client()
    browser.force_login(admin)
    response = browser.post(
        f"/admin/clinics/provider/{ortiz.pk}/change/",
        {
            "organization": org.pk,
            "practices": [boulder_practice.pk],
            "display_name": "Dr. Ortiz",
            "family_name": "",
            "given_name": "",
            "npi": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert practitioners.poll() == stored(Provider, ortiz.pk) == [(str(ortiz.pk), "3")]
    assert calendars.poll() == schedules((ortiz, boulder_practice))

    # Every change once, none twice.
    for poller in (practitioners, locations, calendars):
        assert len(poller.seen) == len(set(poller.seen))
        assert poller.poll() == []


def test_reads_carry_the_version_and_last_updated_searches_are_anded(world):
    org, troy, lee = world
    fhir = Fhir(issue_api_key(organization_slug=org.slug, name="reads").plaintext)
    for path, version in (
        (f"Practitioner/{lee.pk}", 1),
        (f"Location/{troy.pk}", 1),
        (f"Schedule/{lee.pk}-{troy.pk}", 2),
    ):
        response = fhir.get(path)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["meta"]["versionId"] == str(version)
        assert response["ETag"] == f'W/"{version}"'
        assert body["meta"]["lastUpdated"].endswith("Z")
        again = fhir.client.get(
            f"/fhir/R4/{path}", headers={**fhir._headers(), "If-None-Match": response["ETag"]}
        )
        assert again.status_code == 304

    first = fhir.get(f"Practitioner/{lee.pk}").json()["meta"]["lastUpdated"]
    renamed = fhir.put(
        f"Practitioner/{lee.pk}",
        {"resourceType": "Practitioner", "id": str(lee.pk), "name": [{"text": "Dr. Lee"}]},
    )
    assert renamed.status_code == 200 and renamed["ETag"] == 'W/"2"'
    second = renamed.json()["meta"]["lastUpdated"]
    assert first < second

    def ids(resource_type: str, *values: str) -> list[str]:
        response = fhir.client.get(
            f"/fhir/R4/{resource_type}",
            [("_lastUpdated", v) for v in values],
            headers=fhir._headers(),
        )
        assert response.status_code == 200, response.content
        return [e["resource"]["id"] for e in response.json().get("entry", [])]

    assert ids("Practitioner", f"gt{first}") == [str(lee.pk)]
    assert ids("Practitioner", f"gt{second}") == []
    assert ids("Practitioner", f"ge{first}", f"lt{second}") == []  # ANDed: nothing between
    assert ids("Practitioner", f"ge{first}", f"le{second}") == [str(lee.pk)]
    assert ids("Practitioner", f"ne{second}") == []
    assert ids("Practitioner", f"eq{second}") == [str(lee.pk)]
    assert ids("Schedule", f"gt{first}") == [f"{lee.pk}-{troy.pk}"]
    assert ids("Schedule", f"gt{second}") == []
    assert ids("Location", f"lt{second}") == [str(troy.pk)]
    assert ids("Location", f"gt{first}", f"lt{second}") == []

    # A stale If-Match on a Location is refused, not silently applied.
    stale = fhir.client.put(
        f"/fhir/R4/Location/{troy.pk}",
        '{"resourceType": "Location", "name": "Renamed"}',
        content_type="application/fhir+json",
        headers={**fhir._headers(), "If-Match": 'W/"7"'},
    )
    assert stale.status_code == 412 and "version 1" in outcome(stale)
    assert Practice.objects.get(pk=troy.pk).name == troy.name

    # Slot is computed, not stored: no change feed, said so by name.
    slot = fhir.get("Slot", _lastUpdated=f"gt{first}")
    assert slot.status_code == 400 and "_lastUpdated" in outcome(slot)
    # Versions are current only: vread and _history stay Patient's and Appointment's.
    history = fhir.get(f"Practitioner/{lee.pk}/_history")
    assert history.status_code == 404 and "only its current version" in outcome(history)
