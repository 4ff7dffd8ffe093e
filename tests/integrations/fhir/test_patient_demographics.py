"""Patient demographics through FHIR with an API key: every phone number with its use,
the address, and a language Careline does not text in, kept and returned."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.integrations.fhir.conftest import Fhir, outcome

pytestmark = pytest.mark.django_db

TAGALOG = {
    "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "tl", "display": "Tagalog"}]},
    "preferred": True,
}


def _patient(**extra) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "D100"}],
        "name": [{"family": "Santos", "given": ["Maria"]}],
        "telecom": [
            {"system": "phone", "use": "home", "value": "(303) 555-0160"},
            {"system": "phone", "use": "mobile", "value": "(303) 555-0161"},
            {"system": "fax", "use": "work", "value": "303-555-0162"},
            {"system": "pager", "value": "555-0163"},
            {"system": "email", "value": "maria@example.com"},
        ],
        "address": [
            {"use": "old", "line": ["9 Old Rd"], "city": "Denver", "state": "CO"},
            {
                "use": "home",
                "line": ["400 Ocean Ave", "Unit 2"],
                "city": "Santa Monica",
                "state": "CA",
                "postalCode": "90401",
            },
        ],
        **extra,
    }


def test_every_number_address_and_language_received_come_back(fhir: Fhir):
    created = fhir.post("Patient", _patient(communication=[TAGALOG]))
    assert created.status_code == 201, created.content
    read = fhir.get(f"Patient/{created.json()['id']}").json()
    assert sorted((t["system"], t.get("use", ""), t["value"]) for t in read["telecom"]) == [
        ("email", "", "maria@example.com"),
        ("fax", "work", "+13035550162"),
        ("pager", "", "555-0163"),  # not a whole number: kept as sent
        ("phone", "home", "+13035550160"),
        ("sms", "mobile", "+13035550161"),
    ]
    assert read["address"] == [
        {
            "use": "home",
            "line": ["400 Ocean Ave, Unit 2"],
            "city": "Santa Monica",
            "state": "CA",
            "postalCode": "90401",
        }
    ]
    (communication,) = read["communication"]
    assert communication["language"]["coding"][0]["code"] == "en"
    assert communication["extension"][0]["valueString"] == "Tagalog (tl)"

    # A client that reads the patient and writes it back changes nothing.
    written = fhir.put(f"Patient/{read['id']}", read)
    assert written.status_code == 200, written.content
    again = fhir.get(f"Patient/{read['id']}").json()
    assert again["communication"] == read["communication"]
    assert again["telecom"] == read["telecom"] and again["address"] == read["address"]

    # Staff see the numbers, the address and what language was asked for (a patient with
    # no visit and no home practice yet is visible to superusers only).
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("root", password="x-Pass-9!"))
    page = staff.get(f"/patients/{read['id']}/").content.decode()
    assert "Language received: Tagalog (tl) — texts in English" in page
    assert "+13035550160 (home)" in page and "+13035550161 (mobile, texted)" in page
    assert "400 Ocean Ave, Unit 2, Santa Monica, CA 90401" in page
    assert "America/Los_Angeles" in page  # the address, not the 303 area code


def test_an_address_value_too_long_is_refused_naming_the_field(fhir: Fhir):
    resource = _patient()
    resource["address"][1]["postalCode"] = "9" * 40
    response = fhir.post("Patient", resource)
    assert response.status_code == 422
    assert "Patient.address.postalCode" in outcome(response)


def test_a_supported_language_leaves_no_language_received(fhir: Fhir):
    spanish = {"language": {"coding": [{"code": "es-MX"}]}, "preferred": True}
    languages = [TAGALOG | {"preferred": False}, spanish]
    created = fhir.post("Patient", _patient(communication=languages))
    assert created.status_code == 201, created.content
    (communication,) = fhir.get(f"Patient/{created.json()['id']}").json()["communication"]
    assert communication["language"]["coding"][0]["code"] == "es"
    assert "extension" not in communication
