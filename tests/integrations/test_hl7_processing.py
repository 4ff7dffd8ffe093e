"""Applying SIU messages: statuses, mapping, ACK codes, idempotency, ordering, replay."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.urls import reverse

from careline.clinics.models import Provider
from careline.integrations.hl7.receiving import FeedSelector, receive_message
from careline.integrations.models import Hl7Message, Hl7MessageState, Hl7ProviderLink
from careline.patients.models import Patient
from careline.scheduling.models import Appointment, AppointmentEvent, AppointmentStatus
from tests.integrations.conftest import SHARED_SAMPLES, sample
from tests.integrations.messages import siu


def _appointment(feed, external_id: str) -> Appointment:
    return Appointment.objects.get(external_system=feed.namespace, external_id=external_id)


def test_shared_samples_in_order(feeds):
    acks = [receive_message(sample(p.name)) for p in sorted(SHARED_SAMPLES.glob("*.hl7"))]
    assert [a.ack_code for a in acks] == ["AA"] * 7

    athena = _appointment(feeds.athena, "880101")
    assert athena.status == AppointmentStatus.NO_SHOW  # S15 + SCH-25 NOSHOW
    assert athena.practice == feeds.albany  # AIL "7" mapped to ALB
    assert athena.start == datetime(2026, 12, 3, 14, 30, tzinfo=UTC)  # 09:30 New York
    assert (athena.end - athena.start).total_seconds() == 20 * 60
    assert athena.patient.mobile_phone == "+15185550143"  # the CP repetition
    assert athena.patient.preferred_language == "es"
    assert athena.allow_overlap and athena.external_system == feeds.athena.namespace

    allscripts = _appointment(feeds.pms, "77120")
    assert allscripts.status == AppointmentStatus.CANCELLED
    assert allscripts.practice == feeds.troy
    assert allscripts.provider.display_name == "Dr. Wong"  # S14 changed the provider
    assert allscripts.start == datetime(2026, 12, 4, 19, 15, tzinfo=UTC)
    assert allscripts.patient.mrn == "150922"
    assert allscripts.patient.email == "d.okafor@example.org"
    history = list(allscripts.events.values_list("to_status", "source"))
    assert history[0] == ("booked", "hl7") and history[-1] == ("cancelled", "hl7")

    assert _appointment(feeds.pms, "99001").status == AppointmentStatus.NO_SHOW  # S26
    # S17 for an appointment never received: nothing to delete, nothing invented.
    assert not Appointment.objects.filter(external_id="99002").exists()
    assert Hl7Message.objects.filter(state=Hl7MessageState.APPLIED).count() == 7


def test_message_is_stored_raw_with_its_ack(feeds):
    text = siu(msg_id="RAW1")
    receipt = receive_message(text)
    stored = Hl7Message.objects.get(control_id="RAW1")
    assert stored.raw == text
    assert stored.ack == receipt.ack and stored.ack_code == "AA"
    assert stored.feed == feeds.pms and (stored.message_type, stored.trigger_event) == (
        "SIU",
        "S12",
    )
    assert stored.appointment == _appointment(feeds.pms, "A100")
    assert stored.processed_at >= stored.received_at


def test_duplicate_control_id_gets_same_ack_and_is_not_reapplied(feeds):
    first = receive_message(siu(msg_id="DUP1", start="20261210093000"))
    appointment = _appointment(feeds.pms, "A100")
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CONFIRMED)
    again = receive_message(siu(msg_id="DUP1", start="20261210093000"))
    assert again.duplicate and again.ack == first.ack
    assert Hl7Message.objects.filter(control_id="DUP1").count() == 1
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert appointment.events.count() == 1


def test_same_control_id_from_another_feed_is_a_different_message(feeds):
    receive_message(siu(msg_id="SAME", appointment_id="P1"))
    other = sample("01-s12-new-athena-style.hl7").replace("MSG00001", "SAME")
    assert receive_message(other).ack_code == "AA"
    assert Hl7Message.objects.filter(control_id="SAME").count() == 2


def test_out_of_order_s14_does_not_roll_back(feeds):
    receive_message(siu("S12", sent="20261201100000", start="20261210093000"))
    receive_message(siu("S14", sent="20261201120000", start="20261211100000"))
    late = receive_message(siu("S14", sent="20261201110000", start="20261212080000"))
    assert late.ack_code == "AA"
    appointment = _appointment(feeds.pms, "A100")
    assert appointment.start == datetime(2026, 12, 11, 15, 0, tzinfo=UTC)


def test_s13_reschedule_moves_and_records_old_time(feeds):
    receive_message(siu("S12", start="20261210093000"))
    receive_message(siu("S13", sent="20261201090000", start="20261215140000-0500"))
    appointment = _appointment(feeds.pms, "A100")
    assert appointment.start == datetime(2026, 12, 15, 19, 0, tzinfo=UTC)
    moved = appointment.events.exclude(old_start=None).get()
    assert moved.old_start == datetime(2026, 12, 10, 14, 30, tzinfo=UTC)


def test_s12_after_s15_for_the_same_time_does_not_resurrect(feeds):
    receive_message(siu("S15", sent="20261201120000", status="Cancelled"))
    assert _appointment(feeds.pms, "A100").status == AppointmentStatus.CANCELLED
    receive_message(siu("S12", sent="20261201100000"))
    assert _appointment(feeds.pms, "A100").status == AppointmentStatus.CANCELLED


def test_status_from_event_and_filler_status(feeds):
    feeds.pms.cancelled_status_codes = ["PATCXL"]
    feeds.pms.save()
    cases = [
        ("S12", "Booked", "booked"),
        ("S15", "Cancelled", "cancelled"),
        ("S15", "NOSHOW", "noshow"),
        ("S26", "", "noshow"),
        ("S17", "Deleted", "entered-in-error"),
        ("S14", "patcxl", "cancelled"),
    ]
    for n, (trigger, status, expected) in enumerate(cases):
        receive_message(siu(trigger, appointment_id=f"ST{n}", status=status))
        assert _appointment(feeds.pms, f"ST{n}").status == expected, (trigger, status)


def test_unknown_location_is_ae_not_stored_then_replayed_after_mapping(feeds, client):
    receipt = receive_message(siu(location="NEWSITE", msg_id="LOC1"))
    assert receipt.ack_code == "AE"
    assert "Unknown location 'NEWSITE'" in receipt.ack
    assert "MSA|AE|LOC1|" in receipt.ack and "ERR|||103^" in receipt.ack
    assert not Appointment.objects.exists()
    message = Hl7Message.objects.get(control_id="LOC1")
    assert message.state == Hl7MessageState.ERROR and "NEWSITE" in message.error

    feeds.pms.location_map["NEWSITE"] = "TROY"
    feeds.pms.save()
    admin = get_user_model().objects.create_superuser("root", "r@example.org", "pw-12345678")
    client.force_login(admin)
    listing = client.get(reverse("admin:integrations_hl7message_changelist") + "?state=error")
    assert b"LOC1" in listing.content and b"NEWSITE" in listing.content
    response = client.post(
        reverse("admin:integrations_hl7message_changelist"),
        {"action": "replay", "_selected_action": [message.pk]},
        follow=True,
    )
    assert b"Replayed: 1 AA" in response.content
    message.refresh_from_db()
    assert (message.state, message.ack_code, message.replay_count) == ("applied", "AA", 1)
    assert _appointment(feeds.pms, "A100").practice == feeds.troy


def test_patient_without_mobile_is_aa_with_a_warning_and_stored(feeds):
    receipt = receive_message(siu(phones="^PRN^PH^^1^518^5550111", msg_id="PH1"))
    assert receipt.ack_code == "AA" and "no mobile number" in receipt.reason
    assert "|101^Required field missing^HL70357|W|" in receipt.ack
    appointment = _appointment(feeds.pms, "A100")
    assert appointment.status == AppointmentStatus.BOOKED
    assert appointment.patient.mobile_phone == ""
    assert Hl7Message.objects.get(control_id="PH1").appointment == appointment


def test_invalid_mobile_number_is_reported(feeds):
    receipt = receive_message(siu(phones="^ORN^CP^^1^000^0000000"))
    assert receipt.ack_code == "AE"
    assert "not a valid phone number" in receipt.reason
    assert _appointment(feeds.pms, "A100")


def test_cancellation_needs_no_phone(feeds):
    receive_message(siu("S12"))
    Patient.objects.update(mobile_phone="")
    receipt = receive_message(siu("S15", sent="20261202080000", status="Cancelled", phones=""))
    assert receipt.ack_code == "AA"


def test_mrn_from_the_configured_pid3_repetition(feeds):
    receive_message(siu(mrn="123-45-6789^^^SSA^SS~M77^^^PMSYS^MR"))
    assert _appointment(feeds.pms, "A100").patient.mrn == "M77"
    receipt = receive_message(siu(appointment_id="B2", mrn="123-45-6789^^^SSA^SS"))
    assert receipt.ack_code == "AE" and "PID-3 has no MRN" in receipt.reason
    assert not Patient.objects.filter(mrn="123-45-6789").exists()


def test_existing_patient_is_matched_and_updated(feeds, build):
    patient = build.patient(
        feeds.organization,
        mrn="M500",
        identifier_system=feeds.pms.namespace,
        given_name="Old",
        mobile_phone="",
    )
    receive_message(siu(name="Lopez^Ana", language="spa^Spanish"))
    patient.refresh_from_db()
    assert (patient.given_name, patient.family_name) == ("Ana", "Lopez")
    assert patient.mobile_phone == "+15185550122" and patient.preferred_language == "es"
    assert Patient.objects.filter(organization=feeds.organization).count() == 1


def test_unknown_provider_without_auto_create_then_linked(feeds, build):
    feeds.pms.create_unknown_providers = False
    feeds.pms.save()
    receipt = receive_message(siu(msg_id="PR1"))
    assert receipt.ack_code == "AE" and "Unknown provider 'LWONG'" in receipt.reason
    lee = build.provider(feeds.troy, display_name="Dr. Wong-Lee")
    Hl7ProviderLink.objects.create(feed=feeds.pms, code="LWONG", provider=lee)
    from careline.integrations.hl7.receiving import replay_message

    assert replay_message(Hl7Message.objects.get(control_id="PR1")).ack_code == "AA"
    assert _appointment(feeds.pms, "A100").provider == lee


def test_auto_created_provider_is_linked_and_reused(feeds):
    receive_message(siu(appointment_id="C1"))
    receive_message(siu(appointment_id="C2"))
    assert Provider.objects.filter(organization=feeds.organization).count() == 1
    link = Hl7ProviderLink.objects.get(feed=feeds.pms, code="LWONG")
    assert link.provider.display_name == "Dr. Wong"
    assert feeds.troy in link.provider.practices.all()


def test_timestamps_without_offset_use_the_practice_time_zone(feeds):
    # The visit's practice (TROYMAIN → TROY) decides, not the feed.
    feeds.troy.time_zone = "America/Chicago"
    feeds.troy.save()
    feeds.pms.time_zone = "America/Los_Angeles"
    feeds.pms.save()
    receive_message(siu(start="20261210093000"))
    receive_message(siu(appointment_id="Z2", start="20261210093000+0100"))
    assert _appointment(feeds.pms, "A100").start == datetime(2026, 12, 10, 15, 30, tzinfo=UTC)
    assert _appointment(feeds.pms, "Z2").start == datetime(2026, 12, 10, 8, 30, tzinfo=UTC)


def test_wrong_message_type_is_rejected_and_kept(feeds):
    adt = "MSH|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201||ADT^A01|ADT1|P|2.5.1\rPID|1||9\r"
    receipt = receive_message(adt)
    assert receipt.ack_code == "AR"
    assert "MSA|AR|ADT1|" in receipt.ack and "200^Unsupported message type" in receipt.ack
    stored = Hl7Message.objects.get(control_id="ADT1")
    assert stored.state == Hl7MessageState.REJECTED and stored.raw == adt


def test_unroutable_and_unparseable_are_rejected(feeds):
    unknown = receive_message(siu(sending_app="OTHERSYS"))
    assert unknown.ack_code == "AR" and "OTHERSYS" in unknown.reason
    assert receive_message("this is not hl7").ack_code == "AR"
    no_id = receive_message(siu(msg_id="NOID").replace("|NOID|", "||"))
    assert no_id.ack_code == "AR" and "MSH-10" in no_id.reason
    assert Hl7Message.objects.filter(state=Hl7MessageState.REJECTED, feed=None).count() == 2
    assert not Appointment.objects.exists()


def test_selector_pins_one_feed(feeds):
    only_pms = FeedSelector(feed_name="PMSYS")
    # Sent by a system calling itself something else, but this listener serves PMSYS only.
    assert receive_message(siu(sending_app="ENGINE01"), only_pms).ack_code == "AA"


def test_no_start_for_a_new_visit_is_ae(feeds):
    text = siu(order=("SCH", "PID", "AIL", "AIP"), start="")
    receipt = receive_message(text)
    assert receipt.ack_code == "AE" and "No start time" in receipt.reason
    assert not AppointmentEvent.objects.exists()


def test_duration_is_elapsed_time_across_dst(feeds):
    # 01:50 New York on the spring-forward night; 90 minutes later is 04:20 EDT.
    receive_message(siu(start="20270314015000", minutes="90"))
    appointment = _appointment(feeds.pms, "A100")
    assert appointment.start == datetime(2027, 3, 14, 6, 50, tzinfo=UTC)
    assert appointment.end == datetime(2027, 3, 14, 8, 20, tzinfo=UTC)
