"""`careline hl7-feed` and `careline organization`: feeds and organizations configured from
the console, bad input refused with a clear error and nothing stored."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from careline.clinics.directory import set_staff_role
from careline.clinics.models import Organization, StaffRole
from careline.integrations.hl7.receiving import FeedSelector, receive_message
from careline.integrations.models import Hl7Feed
from tests.integrations.messages import siu

ROOT = Path(__file__).resolve().parents[2]


def careline(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def valley(build):
    org = build.organization(slug="valley-health", name="Valley Health")
    build.practice(org, code="TROY", time_zone="America/Chicago")
    build.practice(org, code="ALB", time_zone="America/Chicago")
    return org


@pytest.mark.django_db
def test_add_stores_every_setting_and_list_shows_them(valley):
    out = careline(
        "hl7-feed",
        "add",
        "ATHENA",
        "--organization",
        "valley-health",
        "--time-zone",
        "America/Denver",
        "--namespace",
        "urn:oid:1.2.840.114350.1.13.5",
        "--processing-id",
        "t",
        "--map-location",
        "TROYMAIN=TROY",
        "--map-location",
        "7=ALB",
        "--sending-application",
        "ATHENANET",
    )
    assert "Added HL7 feed" in out
    feed = Hl7Feed.objects.get(organization=valley, name="ATHENA")
    assert feed.active
    assert feed.time_zone == "America/Denver"
    assert feed.identifier_system == "urn:oid:1.2.840.114350.1.13.5"
    assert feed.processing_id == "T"
    assert feed.location_map == {"TROYMAIN": "TROY", "7": "ALB"}
    assert feed.sending_application == "ATHENANET"
    listing = careline("hl7-feed", "list", "--organization", "valley-health")
    for shown in (
        "ATHENA",
        "processing-id=T",
        "time-zone=America/Denver",
        "namespace=urn:oid:1.2.840.114350.1.13.5",
        "locations=7=ALB,TROYMAIN=TROY",
        "sending-application=ATHENANET",
    ):
        assert shown in listing


@pytest.mark.django_db
def test_defaults_a_namespace_of_its_own_production_and_the_practices_shared_zone(valley):
    careline("hl7-feed", "add", "EPIC", "--organization", "valley-health")
    feed = Hl7Feed.objects.get(name="EPIC")
    assert feed.identifier_system == "urn:careline:valley-health:EPIC"
    assert feed.processing_id == "P"
    assert feed.time_zone == "America/Chicago"
    assert feed.location_map == {}


@pytest.mark.django_db
def test_the_listener_that_had_no_feed_takes_messages_once_one_is_added(valley):
    selector = FeedSelector(organization_slug="valley-health")
    with pytest.raises(ValueError, match="careline hl7-feed add"):
        selector.check()
    careline("hl7-feed", "add", "PMSYS", "--organization", "valley-health")
    selector.check()
    receipt = receive_message(siu(msg_id="M1", location="TROY"), selector)
    assert receipt.ack_code == "AA", receipt.reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--organization", "valley-heath"],
            ["No organization has the slug 'valley-heath'", "Did you mean 'valley-health'?"],
        ),
        (
            ["--organization", "valley-health", "--map-location", "TROYMAIN=TORY"],
            ["--map-location", "TORY", "known practice codes: ALB, TROY"],
        ),
        (["--organization", "valley-health", "--map-location", "TROYMAIN"], ["CODE=PRACTICE"]),
        (
            ["--organization", "valley-health", "--time-zone", "America/Denvr"],
            ["--time-zone", "'America/Denvr' is not an IANA time zone"],
        ),
        (
            ["--organization", "valley-health", "--namespace", "EPIC MRNs"],
            ["--namespace", "'EPIC MRNs' is not a URI"],
        ),
    ],
)
def test_bad_input_is_refused_naming_the_option_and_nothing_is_stored(valley, args, expected):
    with pytest.raises(CommandError) as refused:
        careline("hl7-feed", "add", "ATHENA", *args)
    for text in expected:
        assert text in str(refused.value)
    assert not Hl7Feed.objects.exists()


@pytest.mark.django_db
def test_a_duplicate_name_is_refused_and_the_first_feed_is_unchanged(valley):
    careline("hl7-feed", "add", "ATHENA", "--organization", "valley-health")
    with pytest.raises(CommandError, match="already has a feed named 'ATHENA'"):
        careline(
            "hl7-feed", "add", "ATHENA", "--organization", "valley-health", "--processing-id", "T"
        )
    assert list(Hl7Feed.objects.values_list("name", "processing_id")) == [("ATHENA", "P")]


@pytest.mark.django_db
def test_remove_deletes_an_unused_feed_and_deactivates_one_with_messages(valley):
    careline("hl7-feed", "add", "UNUSED", "--organization", "valley-health")
    careline("hl7-feed", "add", "LIVE", "--organization", "valley-health")
    receive_message(siu(msg_id="M1", location="TROY", sending_app="LIVE"))
    assert "Removed" in careline("hl7-feed", "remove", "UNUSED", "--organization", "valley-health")
    assert "deactivated" in careline(
        "hl7-feed", "remove", "LIVE", "--organization", "valley-health"
    )
    assert list(Hl7Feed.objects.values_list("name", "active")) == [("LIVE", False)]
    with pytest.raises(CommandError, match="no feed named 'UNUSED'. Its feeds: LIVE"):
        careline("hl7-feed", "remove", "UNUSED", "--organization", "valley-health")


@pytest.mark.django_db
def test_organizations_are_added_explicitly_and_listed(valley):
    assert "Added organization 'lakeside'" in careline(
        "organization", "add", "lakeside", "--name", "Lakeside Clinics"
    )
    listing = careline("organization", "list")
    assert "lakeside  Lakeside Clinics" in listing and "valley-health  Valley Health" in listing
    for args, message in (
        (["lakeside", "--name", "Again"], "already exists"),
        (["Lake Side", "--name", "X"], "not a valid organization slug"),
        (["riverside", "--name", " "], "name"),
    ):
        with pytest.raises(CommandError, match=message):
            careline("organization", "add", *args)
    assert Organization.objects.count() == 2


@pytest.mark.django_db
def test_a_feed_saved_in_the_admin_gets_its_namespace_stored(valley, django_user_model):
    user = django_user_model.objects.create_user("ada", password="x", is_staff=True)
    set_staff_role(user, valley, StaffRole.ORGANIZATION_ADMIN, [])
    client = Client()
    client.force_login(user)
    response = client.post(
        "/admin/integrations/hl7feed/add/",
        {
            "organization": valley.pk,
            "name": "ADMINFEED",
            "active": "on",
            "time_zone": "America/Chicago",
            "processing_id": "P",
            "identifier_system": "",
            "mrn_identifier_type": "MR",
            "location_map": "{}",
            "appointment_type_map": "{}",
            "cancelled_status_codes": '["CANCELLED"]',
            "noshow_status_codes": '["NOSHOW"]',
            "create_unknown_providers": "on",
            "create_unknown_appointment_types": "on",
            "default_appointment_type_code": "VISIT",
            "provider_links-TOTAL_FORMS": "0",
            "provider_links-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    feed = Hl7Feed.objects.get(name="ADMINFEED")
    assert feed.identifier_system == "urn:careline:valley-health:ADMINFEED"


@pytest.fixture(scope="module")
def console_database(tmp_path_factory) -> dict[str, str]:
    """The environment of a `careline` process with its own migrated SQLite database."""
    path = tmp_path_factory.mktemp("console") / "careline.sqlite3"
    env = os.environ | {"PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{path}"}
    subprocess.run(
        [sys.executable, "-m", "careline", "migrate", "-v", "0"], env=env, check=True, timeout=300
    )
    return env


def test_from_the_console_mistakes_exit_non_zero_and_a_go_live_script_works(console_database):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "careline", *args],
            env=console_database,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    typo = run("apikey", "create", "Epic", "--organization", "valley")
    assert typo.returncode != 0
    assert "No organization has the slug 'valley'" in typo.stderr
    assert "Traceback" not in typo.stderr

    assert run("organization", "add", "valley", "--name", "Valley Health").returncode == 0
    assert run("apikey", "create", "Epic", "--organization", "valley").returncode == 0
    bad_zone = run("hl7-feed", "add", "EPIC", "--organization", "valley", "--time-zone", "Nowhere")
    assert bad_zone.returncode != 0 and "--time-zone" in bad_zone.stderr
    added = run("hl7-feed", "add", "EPIC", "--organization", "valley", "--processing-id", "T")
    assert added.returncode == 0, added.stderr
    listing = run("hl7-feed", "list")
    assert "valley  EPIC  active  processing-id=T" in listing.stdout
    scripted = run("apikey", "create", "X", "--organization", "new-org", "--create-organization")
    assert scripted.returncode == 0, scripted.stderr
    assert "new-org" in run("organization", "list").stdout


@pytest.mark.django_db
def test_a_name_with_spaces_gets_a_namespace_that_is_a_uri(valley):
    careline("hl7-feed", "add", "EPIC TEST", "--organization", "valley-health")
    feed = Hl7Feed.objects.get(name="EPIC TEST")
    assert feed.identifier_system == "urn:careline:valley-health:EPIC%20TEST"
