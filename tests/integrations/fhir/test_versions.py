"""Versions over FHIR: meta.versionId, ETag and If-Match, vread and _history, _lastUpdated
searches, JSON only (406), and dateTimes that must carry their offset."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from careline.scheduling.models import Appointment
from tests.integrations.fhir.conftest import FHIR_JSON, outcome
from tests.integrations.fhir.test_rest import appointment_body

pytestmark = pytest.mark.django_db

START = datetime(2031, 6, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def world(build, org):
    practice = build.practice(org, time_zone="America/Chicago")
    provider = build.provider(practice)
    patient = build.patient(org)
    return practice, provider, patient


def put(fhir, path: str, body: dict, **headers: str):
    return fhir.client.put(
        f"/fhir/R4/{path}",
        json.dumps(body),
        content_type=FHIR_JSON,
        headers=fhir._headers(headers),
    )


def booked(fhir, world, start=START, **extra) -> dict:
    practice, provider, patient = world
    body = appointment_body(patient, provider, practice, start, **extra)
    response = fhir.post("Appointment", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_every_read_carries_its_version_etag_and_last_modified(fhir, world):
    created = booked(fhir, world)
    assert created["meta"]["versionId"] == "1"
    response = fhir.get(f"Appointment/{created['id']}")
    assert response.status_code == 200
    assert response["ETag"] == 'W/"1"'
    stamp = datetime.fromisoformat(response.json()["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert response["Last-Modified"] == stamp.strftime("%a, %d %b %Y %H:%M:%S GMT")

    changed = fhir.put(
        f"Appointment/{created['id']}",
        {**created, "start": (START + timedelta(hours=1)).isoformat(),
         "end": (START + timedelta(hours=1, minutes=20)).isoformat()},
    )  # fmt: skip
    assert changed.status_code == 200 and changed["ETag"] == 'W/"2"'
    assert changed.json()["meta"]["versionId"] == "2"
    assert changed.json()["meta"]["lastUpdated"] > created["meta"]["lastUpdated"]

    unchanged = fhir.client.get(
        f"/fhir/R4/Appointment/{created['id']}",
        headers=fhir._headers({"If-None-Match": 'W/"2"'}),
    )
    assert unchanged.status_code == 304 and unchanged["ETag"] == 'W/"2"'
    outdated = fhir.client.get(
        f"/fhir/R4/Appointment/{created['id']}",
        headers=fhir._headers({"If-None-Match": 'W/"1"'}),
    )
    assert outdated.status_code == 200 and outdated.json()["meta"]["versionId"] == "2"

    _, _, patient = world
    read = fhir.get(f"Patient/{patient.pk}")
    assert read["ETag"] == f'W/"{read.json()["meta"]["versionId"]}"'
    assert "lastUpdated" in read.json()["meta"]


def test_if_match_stale_version_is_412_and_changes_nothing(fhir, world):
    created = booked(fhir, world)
    path = f"Appointment/{created['id']}"
    moved = {**created, "start": (START + timedelta(hours=2)).isoformat(),
             "end": (START + timedelta(hours=2, minutes=20)).isoformat()}  # fmt: skip
    # Someone else changes it first: version 2.
    assert put(fhir, path, moved, **{"If-Match": 'W/"1"'}).status_code == 200

    cancelled = {**created, "status": "cancelled"}
    stale = put(fhir, path, cancelled, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert "version 2, not 1" in outcome(stale)
    current = Appointment.objects.get(pk=created["id"])
    assert current.status == "booked" and current.version == 2

    fresh = put(fhir, path, {**cancelled, "start": moved["start"], "end": moved["end"]},
                **{"If-Match": 'W/"2"'})  # fmt: skip
    assert fresh.status_code == 200, fresh.content
    assert fresh.json()["status"] == "cancelled" and fresh["ETag"] == 'W/"3"'

    bad = put(fhir, path, cancelled, **{"If-Match": "yesterday"})
    assert bad.status_code == 400 and "If-Match" in outcome(bad)


def test_if_match_on_a_conditional_update_and_patients(fhir, world):
    created = booked(fhir, world, identifier=[{"system": "urn:ehr", "value": "V-9"}])
    stale = put(
        fhir, "Appointment?identifier=urn:ehr|V-9", {**created, "status": "noshow"},
        **{"If-Match": 'W/"7"'},
    )  # fmt: skip
    assert stale.status_code == 412
    assert Appointment.objects.get(pk=created["id"]).status == "booked"

    _, _, patient = world
    body = fhir.get(f"Patient/{patient.pk}").json()
    version = body["meta"]["versionId"]
    renamed = {**body, "name": [{"family": "Rivera", "given": ["Ana"]}]}
    ok = put(fhir, f"Patient/{patient.pk}", renamed, **{"If-Match": f'W/"{version}"'})
    assert ok.status_code == 200 and ok.json()["meta"]["versionId"] == str(int(version) + 1)
    again = put(fhir, f"Patient/{patient.pk}", renamed, **{"If-Match": f'W/"{version}"'})
    assert again.status_code == 412


def test_vread_and_history_return_each_stored_version(fhir, world):
    created = booked(fhir, world)
    path = f"Appointment/{created['id']}"
    fhir.put(path, {**created, "status": "cancelled"})

    first = fhir.get(f"{path}/_history/1")
    assert first.status_code == 200 and first["ETag"] == 'W/"1"'
    assert first.json()["status"] == "booked" and first.json()["meta"]["versionId"] == "1"
    second = fhir.get(f"{path}/_history/2")
    assert second.json()["status"] == "cancelled"
    missing = fhir.get(f"{path}/_history/3")
    assert missing.status_code == 404 and "_history" in outcome(missing)

    history = fhir.get(f"{path}/_history")
    assert history.status_code == 200
    bundle = history.json()
    assert bundle["type"] == "history" and bundle["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["2", "1"]
    assert [e["resource"]["status"] for e in bundle["entry"]] == ["cancelled", "booked"]
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"2"', 'W/"1"']

    _, _, patient = world
    patient_history = fhir.get(f"Patient/{patient.pk}/_history").json()
    assert patient_history["type"] == "history" and patient_history["total"] >= 1


def test_last_updated_search_with_prefixes_and_precision(fhir, world):
    first = booked(fhir, world)
    second = booked(fhir, world, start=START + timedelta(days=1))
    t1, t2 = first["meta"]["lastUpdated"], second["meta"]["lastUpdated"]
    assert t1 < t2

    def ids(**params) -> list[str]:
        response = fhir.get("Appointment", **params)
        assert response.status_code == 200, response.content
        return [e["resource"]["id"] for e in response.json().get("entry", [])]

    assert ids(_lastUpdated=f"gt{t1}") == [second["id"]]
    assert ids(_lastUpdated=f"ge{t1}", _sort="_lastUpdated") == [first["id"], second["id"]]
    assert ids(_lastUpdated=f"lt{t2}") == [first["id"]]
    assert ids(_lastUpdated=f"eq{t1}") == [first["id"]]
    assert ids(_lastUpdated=f"sa{t1}") == [second["id"]]
    assert ids(_lastUpdated=f"eb{t2}") == [first["id"]]
    assert set(ids(_lastUpdated=f"ne{t1}")) == {second["id"]}
    # A day is the whole day: both were changed today (UTC).
    today = t1[:10]
    assert set(ids(_lastUpdated=today)) == {first["id"], second["id"]}
    assert ids(_lastUpdated=f"gt{today}") == []
    assert set(ids(_lastUpdated=f"ap{today}")) == {first["id"], second["id"]}
    assert set(ids(_lastUpdated=f"le{t2}")) == {first["id"], second["id"]}

    bad = fhir.get("Appointment", _lastUpdated="gtyesterday")
    assert bad.status_code == 400
    wrong_sort = fhir.get("Appointment", _sort="-_lastUpdated")
    assert wrong_sort.status_code == 400 and "_sort" in outcome(wrong_sort)
    unversioned = fhir.get("Slot", _lastUpdated=f"gt{t1}")
    assert unversioned.status_code == 400 and "_lastUpdated" in outcome(unversioned)

    statement = CapabilityStatement.model_validate(fhir.get("metadata").json())
    resources = {r.type: r for r in statement.rest[0].resource}
    for name in ("Patient", "Appointment", "Practitioner", "Location", "Schedule"):
        assert "_lastUpdated" in {p.name for p in resources[name].searchParam}
        assert resources[name].versioning == "versioned-update"
        assert resources[name].readHistory is (name in ("Patient", "Appointment"))


def test_paging_by_last_updated_splits_ties_without_losing_or_repeating(fhir, world):
    made = [booked(fhir, world, start=START + timedelta(days=i)) for i in range(5)]
    # Two of them are changed in one transaction-sized step: give them the same time, as
    # a bulk import does.
    Appointment.objects.filter(pk__in=[made[1]["id"], made[2]["id"], made[3]["id"]]).update(
        last_updated=datetime.fromisoformat(made[1]["meta"]["lastUpdated"].replace("Z", "+00:00"))
    )
    seen = []
    url_params = {"_sort": "_lastUpdated", "_count": "2"}
    response = fhir.get("Appointment", **url_params)
    while True:
        bundle = response.json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        response = fhir.client.get(following[0], headers=fhir._headers())
    assert seen == [m["id"] for m in made]
    bad = fhir.get("Appointment", _sort="_lastUpdated", _cursor="nonsense")
    assert bad.status_code == 400 and "next link" in outcome(bad)


@pytest.mark.parametrize(
    "accept, params",
    [
        ("application/fhir+xml", {}),
        ("application/xml", {}),
        ("application/fhir+json", {"_format": "xml"}),
        ("application/fhir+json", {"_format": "application/fhir+xml"}),
        ("text/turtle", {}),
    ],
)
def test_xml_is_406_not_json(fhir, world, accept, params):
    _, _, patient = world
    for path in (f"Patient/{patient.pk}", "Patient", "metadata"):
        response = fhir.client.get(
            f"/fhir/R4/{path}", params, headers=fhir._headers({"Accept": accept})
        )
        assert response.status_code == 406, (path, response.content)
        assert "JSON" in outcome(response)


@pytest.mark.parametrize(
    "accept, params",
    [
        ("application/fhir+json", {}),
        ("application/json", {}),
        ("*/*", {}),
        ("application/fhir+xml;q=1, application/fhir+json;q=0.5", {}),
        ("", {"_format": "json"}),
        ("", {"_format": "application/fhir+json"}),
    ],
)
def test_json_in_any_spelling_is_served(fhir, world, accept, params):
    _, _, patient = world
    response = fhir.client.get(
        f"/fhir/R4/Patient/{patient.pk}", params, headers=fhir._headers({"Accept": accept})
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "field, value",
    [
        ("start", "2031-06-02T10:00:00"),
        ("end", "2031-06-02T10:20"),
        ("start", "2031-06-02T10:00:00.250"),
    ],
)
def test_a_datetime_without_offset_is_refused_naming_the_element(fhir, world, field, value):
    practice, provider, patient = world
    body = appointment_body(patient, provider, practice, START)
    body[field] = value
    response = fhir.post("Appointment", body)
    assert response.status_code == 422, response.content
    assert f"Appointment.{field}" in response.json()["issue"][0]["expression"]
    assert "offset" in outcome(response)
    assert not Appointment.objects.exists()

    meta = appointment_body(patient, provider, practice, START)
    meta["meta"] = {"lastUpdated": "2031-01-01T00:00:00"}
    refused = fhir.post("Appointment", meta)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Appointment.meta.lastUpdated"]
    # With an offset, and a date without a time, all is well.
    body[field] = {"start": "2031-06-02T10:00:00-05:00", "end": "2031-06-02T10:20:00-05:00"}[field]
    assert fhir.post("Appointment", body).status_code == 201
