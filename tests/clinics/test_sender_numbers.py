"""A texting number belongs to one organization: another cannot claim it through any door."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from careline.clinics.models import Organization, Practice, SenderNumber, StaffRole
from careline.clinics.numbers import claim_sender_number
from careline.integrations.api_keys import issue_api_key
from tests.integrations.fhir.conftest import Fhir, outcome

A_NUMBER = "+15125550111"
A_PRACTICE_NUMBER = "+15125550112"
B_NUMBER = "+13035550100"


@pytest.fixture
def two_orgs(build):
    a = build.organization(name="Alpha Health", default_sender_number=A_NUMBER)
    a_practice = build.practice(a, sender_number=A_PRACTICE_NUMBER)
    claim_sender_number(a.pk, A_NUMBER)
    claim_sender_number(a.pk, A_PRACTICE_NUMBER)
    b = build.organization(name="Beta Health", default_sender_number=B_NUMBER)
    b_practice = build.practice(b, name="Beta Clinic", code="BETA")
    return a, a_practice, b, b_practice


def test_the_database_holds_each_number_once(two_orgs):
    a, _, b, _ = two_orgs
    with pytest.raises(IntegrityError), transaction.atomic():
        SenderNumber.objects.create(phone=A_NUMBER, organization=b)


@pytest.mark.parametrize("number", [A_NUMBER, A_PRACTICE_NUMBER, "512-555-0112"])
def test_settings_page_refuses_another_organizations_number(client, build, two_orgs, number):
    _, _, b, b_practice = two_orgs
    client.force_login(build.staff(b, StaffRole.PRACTICE_MANAGER, practices=[b_practice]))
    url = reverse("messaging_settings:practice", args=[b_practice.pk])
    response = client.post(url, {"phone": "", "sender_number": number, "address": ""})
    assert response.status_code == 200
    assert "already the texting number of another organization" in response.content.decode()
    b_practice.refresh_from_db()
    assert b_practice.sender_number == ""
    assert set(SenderNumber.objects.filter(organization=b).values_list("phone", flat=True)) == set()


def test_settings_page_claims_a_free_number_and_frees_the_old_one(client, build, two_orgs):
    a, a_practice, _, _ = two_orgs
    client.force_login(build.staff(a, StaffRole.ORGANIZATION_ADMIN))
    url = reverse("messaging_settings:practice", args=[a_practice.pk])
    response = client.post(url, {"phone": "", "sender_number": "+15125550177", "address": ""})
    assert response.status_code == 302
    claimed = SenderNumber.objects.filter(organization=a).values_list("phone", flat=True)
    assert set(claimed) == {A_NUMBER, "+15125550177"}


def test_several_practices_of_one_organization_may_share_a_number(client, build, two_orgs):
    a, _, _, _ = two_orgs
    other = build.practice(a, name="Second Alpha")
    client.force_login(build.staff(a, StaffRole.ORGANIZATION_ADMIN))
    url = reverse("messaging_settings:practice", args=[other.pk])
    response = client.post(url, {"phone": "", "sender_number": A_PRACTICE_NUMBER, "address": ""})
    assert response.status_code == 302
    other.refresh_from_db()
    assert other.sender_number == A_PRACTICE_NUMBER


def test_admin_refuses_another_organizations_number(client, build, two_orgs):
    _, _, b, b_practice = two_orgs
    client.force_login(build.staff(b, StaffRole.ORGANIZATION_ADMIN))
    url = reverse("admin:clinics_practice_change", args=[b_practice.pk])
    data = {
        "organization": b.pk,
        "name": b_practice.name,
        "code": b_practice.code,
        "phone": "",
        "address": "",
        "time_zone": "America/Chicago",
        "sender_number": A_PRACTICE_NUMBER,
        "go_live_date": "",
    }
    response = client.post(url, data)
    assert response.status_code == 200
    assert "already the texting number of another organization" in response.content.decode()
    b_practice.refresh_from_db()
    assert b_practice.sender_number == ""

    url = reverse("admin:clinics_organization_change", args=[b.pk])
    response = client.post(url, {"name": b.name, "slug": b.slug, "default_sender_number": A_NUMBER})
    assert response.status_code == 200
    assert "already the texting number of another organization" in response.content.decode()
    b.refresh_from_db()
    assert b.default_sender_number == B_NUMBER


def test_fhir_location_refuses_another_organizations_number(two_orgs):
    a, a_practice, b, _ = two_orgs
    fhir = Fhir(issue_api_key(organization_slug=b.slug, name="b").plaintext)
    body = {
        "resourceType": "Location",
        "name": "Hijack Clinic",
        "identifier": [{"value": "HIJACK"}],
        "telecom": [{"system": "sms", "value": A_PRACTICE_NUMBER}],
    }
    response = fhir.post("Location", body)
    assert response.status_code == 409
    assert "already the texting number of another organization" in outcome(response)
    assert not Practice.objects.filter(code="HIJACK").exists()
    assert SenderNumber.objects.get(phone=A_PRACTICE_NUMBER).organization == a
    body["telecom"] = [{"system": "sms", "value": "+13035550199"}]
    assert fhir.post("Location", body).status_code == 201
    assert SenderNumber.objects.get(phone="+13035550199").organization == b
    assert Organization.objects.get(pk=a.pk).default_sender_number == A_NUMBER
