"""A feed configured only with `careline hl7-feed add` takes messages over real MLLP
connections: in its zone, at its mapped practice, and only with its MSH-11 processing ID."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command

from careline.integrations.hl7.mllp import MllpClient, start_background_listener
from careline.integrations.hl7.receiving import FeedSelector
from careline.integrations.models import Hl7Feed, Hl7Message, Hl7MessageState
from careline.messaging.models import OutboundMessage
from careline.patients.models import Patient
from careline.scheduling.models import Appointment
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)


def _segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(f"{name}|")).split("|")


def _with_processing_id(message: str, processing_id: str) -> str:
    return message.replace("|P|2.5.1", f"|{processing_id}|2.5.1", 1)


def add_feed(*args: str) -> str:
    out = StringIO()
    call_command("hl7-feed", "add", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def rockies(build):
    org = build.organization(slug="rockies")
    # Practices in two zones: a feed added without --time-zone would read New York time.
    denver = build.practice(org, code="DEN", time_zone="America/Denver")
    build.practice(org, code="KC", time_zone="America/Chicago")
    return org, denver


@pytest.fixture
def listen():
    running = []

    def start(organization_slug: str):
        listener = start_background_listener(FeedSelector(organization_slug=organization_slug))
        running.append(listener)
        return listener

    yield start
    for listener in running:
        listener.close()


def test_a_feed_added_from_the_console_is_applied_in_its_zone_at_its_mapped_practice(
    rockies, listen
):
    org, denver = rockies
    add_feed(
        "ROCKIES",
        "--organization",
        "rockies",
        "--time-zone",
        "America/Denver",
        "--namespace",
        "urn:oid:1.2.840.114350.1.13.99",
        "--map-location",
        "DENMAIN=DEN",
    )
    listener = listen("rockies")
    message = siu(msg_id="R1", appointment_id="V1", start="20261210093000", location="DENMAIN")
    with MllpClient(listener.host, listener.port) as client:
        ack = client.send(message)
    assert _segment(ack, "MSA")[1:3] == ["AA", "R1"]
    visit = Appointment.objects.get(external_id="V1")
    assert visit.organization == org and visit.practice == denver
    assert visit.external_system == "urn:oid:1.2.840.114350.1.13.99"  # the feed's namespace
    # 09:30 in Denver (MST, UTC-7) is 16:30 UTC.
    assert visit.start == datetime(2026, 12, 10, 16, 30, tzinfo=UTC)
    assert Hl7Feed.objects.get(name="ROCKIES").identifier_system == (
        "urn:oid:1.2.840.114350.1.13.99"
    )


def test_a_test_message_to_a_production_feed_is_refused_and_changes_nothing(rockies, listen):
    add_feed("ROCKIES", "--organization", "rockies", "--map-location", "DENMAIN=DEN")
    listener = listen("rockies")
    test_message = _with_processing_id(
        siu(msg_id="T1", appointment_id="V9", location="DENMAIN"), "T"
    )
    with MllpClient(listener.host, listener.port) as client:
        ack = client.send(test_message)
        # The production message that reuses the test message's control id is applied:
        # the refusal did not take the id.
        again = client.send(siu(msg_id="T1", appointment_id="V10", location="DENMAIN"))
    assert _segment(ack, "MSA")[1:3] == ["AR", "T1"]
    err = _segment(ack, "ERR")
    assert err[3].startswith("202^")
    assert "MSH-11" in err[8] and "'T'" in err[8]
    # A test exchange is answered as one.
    assert _segment(ack, "MSH")[10] == "T"
    refused = Hl7Message.objects.get(state=Hl7MessageState.REJECTED)
    assert refused.feed.name == "ROCKIES" and "MSH-11" in refused.error
    assert not Appointment.objects.filter(external_id="V9").exists()

    assert _segment(again, "MSA")[1:3] == ["AA", "T1"]
    visit = Appointment.objects.get(external_id="V10")
    assert Appointment.objects.count() == 1
    assert Patient.objects.count() == 1
    assert not OutboundMessage.objects.exclude(appointment=visit).exists()


def test_a_training_feed_takes_training_messages_and_refuses_production_ones(rockies, listen):
    add_feed(
        "ROCKIES-TEST",
        "--organization",
        "rockies",
        "--processing-id",
        "T",
        "--map-location",
        "DENMAIN=DEN",
    )
    listener = listen("rockies")
    with MllpClient(listener.host, listener.port) as client:
        production = client.send(siu(msg_id="P1", appointment_id="V1", location="DENMAIN"))
        training = client.send(
            _with_processing_id(siu(msg_id="P2", appointment_id="V2", location="DENMAIN"), "T")
        )
        debugging = client.send(
            _with_processing_id(siu(msg_id="P3", appointment_id="V3", location="DENMAIN"), "D")
        )
    assert _segment(production, "MSA")[1] == "AR"
    assert "takes 'T' messages only" in _segment(production, "ERR")[8]
    assert _segment(training, "MSA")[1] == "AA"
    assert _segment(debugging, "MSA")[1] == "AR"
    assert list(Appointment.objects.values_list("external_id", flat=True)) == ["V2"]
