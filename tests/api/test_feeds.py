"""/api/v1/hl7-feeds: an interface engineer scripts a go-live with an API key; each key
sees and removes only its own organization's feeds."""

from __future__ import annotations

import pytest

from careline.integrations.api_keys import issue_api_key
from careline.integrations.hl7.receiving import FeedSelector, receive_message
from careline.integrations.models import Hl7Feed
from tests.api.conftest import Api, error
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db


@pytest.fixture
def troy(build, org):
    return build.practice(org, code="TROY", time_zone="America/Denver")


def test_create_then_list_and_read_a_feed(api, org, troy):
    created = api.post(
        "hl7-feeds",
        {
            "name": "ATHENA",
            "time_zone": "America/Denver",
            "identifier_system": "urn:oid:1.2.840.114350.1.13.5",
            "processing_id": "T",
            "location_map": {"TROYMAIN": "TROY"},
        },
    )
    assert created.status_code == 201, created.content
    feed = created.json()
    assert created["Location"].endswith(f"/api/v1/hl7-feeds/{feed['id']}")
    assert feed == {
        "id": feed["id"],
        "name": "ATHENA",
        "active": True,
        "processing_id": "T",
        "time_zone": "America/Denver",
        "identifier_system": "urn:oid:1.2.840.114350.1.13.5",
        "location_map": {"TROYMAIN": "TROY"},
        "sending_application": "ATHENA",
    }
    stored = Hl7Feed.objects.get(pk=feed["id"])
    assert stored.organization == org and stored.processing_id == "T"
    assert api.get("hl7-feeds").json() == {"data": [feed]}
    assert api.get(f"hl7-feeds/{feed['id']}").json() == feed


def test_a_feed_created_over_the_api_takes_messages_in_its_zone(api, org, troy):
    api.post("hl7-feeds", {"name": "PMSYS", "location_map": {"TROYMAIN": "TROY"}})
    receipt = receive_message(siu(msg_id="A1"), FeedSelector(organization_slug=org.slug))
    assert receipt.ack_code == "AA", receipt.reason
    feed = api.get("hl7-feeds").json()["data"][0]
    # Omitted: the zone the practices share, the feed's own namespace, production.
    assert feed["time_zone"] == "America/Denver"
    assert feed["identifier_system"] == f"urn:careline:{org.slug}:PMSYS"
    assert feed["processing_id"] == "P"


@pytest.mark.parametrize(
    "body,field,text",
    [
        ({"name": "X", "time_zone": "Mars/Base"}, "time_zone", "not an IANA time zone"),
        ({"name": "X", "identifier_system": "my mrns"}, "identifier_system", "not a URI"),
        ({"name": "X", "location_map": {"A": "NOPE"}}, "location_map", "known practice codes"),
        ({"name": "X", "location_map": ["A"]}, "location_map", "must be an object"),
        ({"name": "X", "processing_id": "Q"}, "processing_id", "must be one of"),
        ({"name": ""}, "name", "must not be blank"),
        ({"name": "X", "colour": "red"}, "colour", "is not a field here"),
    ],
)
def test_bad_bodies_are_422_naming_the_field_and_store_nothing(api, troy, body, field, text):
    response = api.post("hl7-feeds", body)
    assert response.status_code == 422, response.content
    assert any(text in m for m in error(response)["fields"][field]), error(response)
    assert not Hl7Feed.objects.exists()


def test_a_duplicate_name_is_422(api, troy):
    assert api.post("hl7-feeds", {"name": "ATHENA"}).status_code == 201
    response = api.post("hl7-feeds", {"name": "ATHENA", "processing_id": "D"})
    assert response.status_code == 422
    assert "already has a feed named 'ATHENA'" in error(response)["fields"]["name"][0]
    assert Hl7Feed.objects.get().processing_id == "P"


def test_delete_removes_an_unused_feed_and_deactivates_one_with_messages(api, org, troy):
    unused = api.post("hl7-feeds", {"name": "UNUSED"}).json()
    live = api.post("hl7-feeds", {"name": "LIVE", "location_map": {"TROYMAIN": "TROY"}}).json()
    receive_message(siu(msg_id="A1", sending_app="LIVE"))

    gone = api.request("DELETE", f"hl7-feeds/{unused['id']}")
    assert gone.status_code == 200 and gone.json()["outcome"] == "deleted"
    assert api.get(f"hl7-feeds/{unused['id']}").status_code == 404

    kept = api.request("DELETE", f"hl7-feeds/{live['id']}")
    assert kept.json()["outcome"] == "deactivated"
    assert kept.json()["feed"]["active"] is False
    assert [f["name"] for f in api.get("hl7-feeds").json()["data"]] == ["LIVE"]
    assert not Hl7Feed.objects.get(pk=live["id"]).active


def test_another_organizations_key_can_neither_see_nor_remove_the_feeds(build, api, troy):
    feed = api.post("hl7-feeds", {"name": "ATHENA"}).json()
    other_org = build.organization()
    other = Api(issue_api_key(organization_slug=other_org.slug, name="B").plaintext)
    assert other.get("hl7-feeds").json() == {"data": []}
    assert other.get(f"hl7-feeds/{feed['id']}").status_code == 404
    refused = other.request("DELETE", f"hl7-feeds/{feed['id']}")
    assert refused.status_code == 404 and error(refused)["code"] == "not_found"
    assert Hl7Feed.objects.filter(pk=feed["id"], active=True).exists()
    # Its own feed of the same name is its own business.
    assert other.post("hl7-feeds", {"name": "ATHENA"}).status_code == 201
    assert [f["id"] for f in api.get("hl7-feeds").json()["data"]] == [feed["id"]]
