"""Write-back to the EHR over a real TCP MLLP connection to a scripted receiver."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections import deque
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from careline.background import RETRY_MAX
from careline.integrations.hl7.mllp import END_BLOCK, decode, frame
from careline.integrations.hl7.parsing import parse_siu, to_datetime
from careline.integrations.hl7.receiving import receive_message
from careline.integrations.hl7.writeback import queue, send
from careline.integrations.models import Hl7Feed, Hl7OutboundMessage, Hl7OutboundState
from careline.messaging.compliance import SendingHours
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.patients.consent import record_consent
from careline.patients.models import ConsentSource
from careline.scheduling.appointments import book_appointment, change_status, move_appointment
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from tests.emails import sent
from tests.integrations.conftest import sample
from tests.integrations.messages import siu

MOBILE = "+15185550122"  # the CP repetition of messages.siu


class Receiver:
    """An EHR interface engine: records every frame, answers as scripted (default AA).

    Script entries: "AA", "AE", "AR", or "DROP" (close the connection without an answer).
    """

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.script: deque[str] = deque()
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                buffer = b""
                while True:
                    while END_BLOCK not in buffer:
                        chunk = self.request.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    block, _, buffer = buffer.partition(END_BLOCK)
                    text = decode(block[block.find(b"\x0b") + 1 :])
                    receiver.frames.append(text)
                    answer = receiver.script.popleft() if receiver.script else "AA"
                    if answer == "DROP":
                        self.request.shutdown(socket.SHUT_RDWR)
                        return
                    control_id = text.split("\r")[0].split("|")[9]
                    reason = "" if answer == "AA" else f"Scripted {answer}"
                    ack = (
                        "MSH|^~\\&|EHR|CLINIC|CARELINE|CARELINE|20261201||ACK|A1|P|2.5.1\r"
                        f"MSA|{answer}|{control_id}|{reason}\r"
                    )
                    self.request.sendall(frame(ack))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def control_ids(self) -> list[str]:
        return [f.split("\r")[0].split("|")[9] for f in self.frames]


def segment(message: str, segment_id: str) -> list[str]:
    return next(s for s in message.split("\r") if s.startswith(segment_id + "|")).split("|")


@pytest.fixture
def ehr(feeds):
    receiver = Receiver()
    feeds.pms.outbound_host, feeds.pms.outbound_port = "127.0.0.1", receiver.port
    feeds.pms.save()
    yield receiver
    receiver.close()


def arrive(message: str) -> Appointment:
    receipt = receive_message(message)
    assert receipt.ack_code == "AA", receipt.reason
    return Appointment.objects.get(pk=receipt_appointment(receipt))


def receipt_appointment(receipt) -> int:
    from careline.integrations.models import Hl7Message

    return Hl7Message.objects.get(pk=receipt.message_id).appointment_id


def run(at: datetime | None = None):
    return send.run_once(now=at, timeout=5)


def control_id_of(appointment: Appointment, status: str) -> str:
    return Hl7OutboundMessage.objects.get(
        appointment=appointment, event__to_status=status
    ).control_id


def test_confirmation_by_text_arrives_as_s14_confirmed(ehr, feeds):
    visit = arrive(siu("S12", appointment_id="W1", start="20261210093000"))
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)

    assert run()["sent"] == 1
    [message] = ehr.frames
    msh = segment(message, "MSH")
    # Addressed back to the application and facility the feed sends from, in its version.
    assert msh[2:6] == ["CARELINE", "CARELINE", "PMSYS", "CLINIC"]
    assert (msh[8], msh[11]) == ("SIU^S14^SIU_S12", "2.5.1")
    # Table 0278 has no "confirmed": Booked, and the event reason (SCH-6) says why.
    assert segment(message, "SCH")[25] == "Booked^Booked^HL70278"
    assert segment(message, "SCH")[6].startswith("confirmed^Confirmed by the patient")
    assert segment(message, "SCH")[16] == "CARELINE^Careline^Patient^^^^^^CARELINE"
    assert segment(message, "PID")[3] == "M500^^^PMSYS^MR"
    # What we send reads back, with our own parser, as the same visit.
    parsed = parse_siu(message)
    assert parsed.appointment_id == "W1"
    assert to_datetime(parsed.start, feeds.pms.zone, "start") == visit.start
    assert [p.code for p in parsed.providers] == ["LWONG"]
    assert [loc.code for loc in parsed.locations] == ["TROYMAIN"]
    row = Hl7OutboundMessage.objects.get()
    assert (row.state, row.ack_code, row.message_type) == (Hl7OutboundState.SENT, "AA", "S14")


def test_cancellation_by_link_is_s15_in_the_feeds_older_version(ehr, feeds):
    visit = arrive(siu("S12", appointment_id="W2", version="2.3"))
    change_status(visit, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_LINK)

    run()
    [message] = ehr.frames
    msh = segment(message, "MSH")
    assert (msh[8], msh[11]) == ("SIU^S15", "2.3")
    assert "\rTQ1|" not in message  # TQ1 is 2.5 on; 2.3 reads SCH-11
    assert segment(message, "SCH")[25] == "Cancelled^Cancelled^HL70278"
    assert segment(message, "SCH")[6].startswith("patient_link^")


def test_reschedule_is_s13_with_the_new_time_and_the_feeds_own_ids_and_pid(ehr, feeds):
    inbound = sample("02-s13-reschedule-allscripts-style.hl7")
    visit = arrive(inbound)
    new_start = visit.start + timedelta(days=2, hours=1)
    move_appointment(
        visit, new_start=new_start, source=ChangeSource.PATIENT_LINK, check_working_time=False
    )

    run()
    [message] = ehr.frames
    sch = segment(message, "SCH")
    assert segment(message, "MSH")[8] == "SIU^S13"  # the sample's feed speaks 2.3
    assert (sch[1], sch[2]) == ("5521", "77120")  # placer and filler as the feed sent them
    parsed = parse_siu(message)
    zone = feeds.pms.zone
    assert to_datetime(sch[11].split("^")[3], zone, "SCH-11") == new_start
    assert to_datetime(segment(message, "AIS")[4], zone, "AIS-4") == new_start
    assert to_datetime(parsed.end, zone, "end") == new_start + (visit.end - visit.start)
    # The feed's own PID goes back verbatim, so nothing about the patient is blanked.
    inbound_pid = next(s for s in inbound.split("\r") if s.startswith("PID|"))
    assert "|".join(segment(message, "PID")) == inbound_pid


def test_order_per_appointment_under_a_failing_then_recovering_receiver(ehr, feeds):
    first = arrive(siu("S12", appointment_id="W4"))
    other = arrive(siu("S12", appointment_id="W5", start="20261210100000", mrn="M501^^^PMSYS^MR"))
    change_status(first, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    change_status(first, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_TEXT)
    change_status(other, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    t0 = timezone.now()
    assert queue.fill_outbox(now=t0) == 3
    confirm, cancel = (
        control_id_of(first, AppointmentStatus.CONFIRMED),
        control_id_of(first, AppointmentStatus.CANCELLED),
    )
    other_confirm = control_id_of(other, AppointmentStatus.CONFIRMED)

    ehr.script.extend(["AE"])
    run(t0)
    # The cancellation waits behind its appointment's unsent confirmation; others go on.
    assert ehr.control_ids() == [confirm, other_confirm]
    held = Hl7OutboundMessage.objects.get(control_id=confirm)
    assert (held.state, held.error_acks, held.ack_code) == ("pending", 1, "AE")
    assert "Scripted AE" in held.last_error

    run(t0 + timedelta(seconds=10))  # still backing off: nothing is sent
    assert len(ehr.frames) == 2

    ehr.script.extend(["DROP"])
    run(t0 + timedelta(minutes=1))  # connection dropped without an ACK
    assert ehr.control_ids()[2:] == [confirm]
    held.refresh_from_db()
    assert (held.state, held.attempts, held.error_acks) == ("pending", 2, 1)

    run(t0 + timedelta(minutes=10))  # recovered: the confirmation, then the cancellation
    assert ehr.control_ids()[3:] == [confirm, cancel]
    assert set(Hl7OutboundMessage.objects.values_list("state", flat=True)) == {"sent"}


def test_refused_connection_retries_without_giving_up(feeds):
    visit = arrive(siu("S12", appointment_id="W6"))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    feeds.pms.outbound_host, feeds.pms.outbound_port = "127.0.0.1", port
    feeds.pms.save()
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    t0 = timezone.now()
    for hours in range(0, 48, 4):
        run(t0 + timedelta(hours=hours))
    row = Hl7OutboundMessage.objects.get()
    assert row.state == Hl7OutboundState.PENDING and row.attempts == 12
    assert "Cannot connect" in row.last_error
    assert row.next_attempt_at - (t0 + timedelta(hours=44)) == RETRY_MAX


def test_ar_fails_at_once_and_the_next_message_goes(ehr, feeds):
    visit = arrive(siu("S12", appointment_id="W7"))
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    change_status(visit, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_TEXT)
    ehr.script.extend(["AR"])
    t0 = timezone.now()
    run(t0)
    rejected = Hl7OutboundMessage.objects.get(message_type="S14")
    assert (rejected.state, rejected.ack_code) == (Hl7OutboundState.FAILED, "AR")
    assert rejected.last_error == "Rejected by the EHR (AR): Scripted AR"
    assert Hl7OutboundMessage.objects.get(message_type="S15").state == Hl7OutboundState.SENT
    run(t0 + timedelta(days=1))
    assert len(ehr.frames) == 2  # never retried


def test_repeated_ae_fails_after_the_limit(ehr, feeds, monkeypatch):
    monkeypatch.setattr(queue, "MAX_ERROR_ACKS", 2)
    visit = arrive(siu("S12", appointment_id="W8"))
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    ehr.script.extend(["AE", "AE"])
    t0 = timezone.now()
    for minutes in (0, 5, 60, 600):
        run(t0 + timedelta(minutes=minutes))
    row = Hl7OutboundMessage.objects.get()
    assert (row.state, row.error_acks, len(ehr.frames)) == (Hl7OutboundState.FAILED, 2, 2)


def test_running_twice_sends_nothing_new(ehr, feeds):
    visit = arrive(siu("S12", appointment_id="W9"))
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    assert run()["sent"] == 1
    assert run() == {}
    # The late-commit look-back reads recent events again without queueing them twice.
    assert queue.fill_outbox() == 0
    assert len(ehr.frames) == 1 and Hl7OutboundMessage.objects.count() == 1


def test_changes_by_the_feed_staff_or_other_feeds_are_not_echoed(ehr, feeds, build):
    visit = arrive(siu("S12", appointment_id="W10"))
    arrive(siu("S14", appointment_id="W10", sent="20261201090000", status="Confirmed"))
    arrive(siu("S15", appointment_id="W10", sent="20261201100000"))
    other = arrive(siu("S12", appointment_id="W11", start="20261211093000"))
    change_status(other, AppointmentStatus.CANCELLED, source=ChangeSource.STAFF)
    change_status(other, AppointmentStatus.ENTERED_IN_ERROR, source=ChangeSource.FHIR)
    # A patient's confirmation of a visit from the other feed (which has no outbound host).
    athena_visit = arrive(sample("01-s12-new-athena-style.hl7"))
    assert athena_visit.external_system == Hl7Feed.objects.get(name="EHRNET").namespace
    change_status(athena_visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    assert visit.events.count() >= 2

    assert run() == {}
    assert ehr.frames == [] and not Hl7OutboundMessage.objects.exists()


def test_online_booking_is_s12_with_careline_as_placer(ehr, feeds, build):
    arrive(siu("S12", appointment_id="W12"))  # links LWONG to a provider
    provider = Appointment.objects.get(external_id="W12").provider
    provider.practices.add(feeds.albany)
    patient = build.patient(feeds.organization, mrn="", family_name="Nguyen")
    kind = build.appointment_type(feeds.organization, minutes=15, code="FU15")
    start = datetime(2026, 12, 14, 15, 0, tzinfo=UTC)
    booked = book_appointment(
        patient=patient,
        provider=provider,
        practice=feeds.troy,
        appointment_type=kind,
        start=start,
        source=ChangeSource.ONLINE_BOOKING,
        check_working_time=False,
    )
    # Albany is not among this feed's locations: its EHR does not hear of that visit.
    book_appointment(
        patient=patient,
        provider=provider,
        practice=feeds.albany,
        appointment_type=kind,
        start=start + timedelta(hours=2),
        source=ChangeSource.ONLINE_BOOKING,
        check_working_time=False,
    )

    run()
    [message] = ehr.frames
    sch = segment(message, "SCH")
    assert segment(message, "MSH")[8] == "SIU^S12^SIU_S12"
    assert (sch[1], sch[2], sch[25]) == (f"{booked.id}^CARELINE", "", "Booked^Booked^HL70278")
    assert segment(message, "AIL")[3] == "TROYMAIN"
    assert segment(message, "AIP")[3].split("^")[0] == "LWONG"
    assert segment(message, "PID")[3] == f"{patient.id}^^^CARELINE^PI"
    assert to_datetime(segment(message, "AIS")[4], feeds.pms.zone, "AIS-4") == start


def test_opt_out_and_back_in_reach_the_ehr_as_a31_in_order(ehr, feeds):
    arrive(siu("S12", appointment_id="W13"))
    org = feeds.organization.id
    record_consent(
        organization_id=org, phone=MOBILE, opted_out=True, source=ConsentSource.PATIENT_TEXT
    )
    # What the EHR itself told us is not sent back to it.
    record_consent(
        organization_id=org, phone=MOBILE, opted_out=False, source=ConsentSource.EHR_FEED
    )
    record_consent(
        organization_id=org, phone=MOBILE, opted_out=False, source=ConsentSource.PATIENT_TEXT
    )

    run()
    assert len(ehr.frames) == 2
    opted_out, opted_in = ehr.frames
    assert segment(opted_out, "MSH")[8] == "ADT^A31^ADT_A05"
    phones = segment(opted_out, "PID")[13].split("~")
    # The feed's own phone list, with only the mobile number marked.
    assert phones == ["^PRN^PH^^1^518^5550111", "^ORN^CP^^1^518^5550122^^SMS OPTED-OUT"]
    assert segment(opted_out, "ZCL")[1:5] == ["1", "SMS", MOBILE, "OPTED-OUT"]
    assert segment(opted_out, "ZCL")[6] == "patient_text"
    assert segment(opted_in, "ZCL")[4] == "OPTED-IN"
    rows = list(Hl7OutboundMessage.objects.order_by("sequence"))
    assert [r.message_type for r in rows] == ["A31", "A31"]
    assert [r.sequence for r in rows] == [1, 2]
    assert run() == {}  # the look-back re-reads the ledger without queueing twice


def test_history_from_before_write_back_was_set_up_is_not_replayed(feeds, build):
    visit = arrive(siu("S12", appointment_id="W14"))
    change_status(
        visit,
        AppointmentStatus.CONFIRMED,
        source=ChangeSource.PATIENT_TEXT,
        at=timezone.now() - timedelta(days=3),
    )
    receiver = Receiver()
    try:
        feeds.pms.outbound_host, feeds.pms.outbound_port = "127.0.0.1", receiver.port
        feeds.pms.save()
        change_status(visit, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_TEXT)
        run()
        assert [segment(f, "MSH")[8] for f in receiver.frames] == ["SIU^S15^SIU_S12"]
    finally:
        receiver.close()


def test_a_claimed_row_is_leased_and_comes_back_if_its_sender_dies(ehr, feeds):
    visit = arrive(siu("S12", appointment_id="W15"))
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    t0 = timezone.now()
    queue.fill_outbox(now=t0)
    assert len(queue.claim_due(t0, 10)) == 1
    assert queue.claim_due(t0, 10) == []  # another worker does not take it meanwhile
    assert len(queue.claim_due(t0 + queue.LEASE, 10)) == 1


def test_read_ack_variants():
    ack = "MSH|^~\\&|E|F|C|C|2026||ACK|1|P|2.5.1\rMSA|CE|X1\rERR||||E||||Slot \\T\\ room busy\r"
    assert send.read_ack(ack, "X1") == send.AckReading("AE", "Slot & room busy")
    assert not send.read_ack(ack, "X2").in_step
    assert send.read_ack("garbage", "X1").code == "AE"


def test_command_once(ehr, feeds, capsys):
    visit = arrive(siu("S12", appointment_id="W16"))
    change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
    call_command("hl7-writeback", "--once")
    assert "sent=1" in capsys.readouterr().out
    feeds.pms.outbound_host = ""
    feeds.pms.outbound_port = None
    feeds.pms.save()
    call_command("hl7-writeback", "--once")
    assert "No active HL7 feed has an outbound host" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_two_senders_at_once_send_each_message_once_and_in_order(ehr, feeds):
    for n in range(6):
        visit = arrive(
            siu(
                "S12",
                appointment_id=f"C{n}",
                start=f"202612{10 + n}093000",
                mrn=f"M6{n}^^^PMSYS^MR",
            )
        )
        change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
        change_status(visit, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_LINK)
    queue.fill_outbox()
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            send.send_due(batch_size=2, timeout=5)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(ehr.control_ids()) == sorted(
        Hl7OutboundMessage.objects.values_list("control_id", flat=True)
    )
    assert len(ehr.frames) == 12
    for n in range(6):
        kinds = [segment(f, "MSH")[8] for f in ehr.frames if segment(f, "SCH")[2] == f"C{n}"]
        assert kinds == ["SIU^S14^SIU_S12", "SIU^S15^SIU_S12"]


def test_confirmation_from_an_email_button_arrives_as_s14_like_a_text_reply(ehr, feeds, client):
    """A patient the feed gave only an email address (PID-13 NET^Internet) confirms with
    the reminder email's button: the EHR hears of it as of a confirmation by text."""
    zone = feeds.pms.zone
    day = (timezone.now() + timedelta(days=5)).astimezone(zone)
    start = day.replace(hour=9, minute=30, second=0, microsecond=0)
    visit = arrive(
        siu(
            "S12",
            appointment_id="WMAIL1",
            start=f"{start:%Y%m%d%H%M%S}",
            phones="^PRN^PH^^1^518^5550111~^NET^Internet^ana.lopez@example.org",
        )
    )
    assert (visit.patient.email, visit.patient.mobile_phone) == ("ana.lopez@example.org", "")
    Dispatcher(
        SimulatorGateway(),
        clock=lambda: visit.start - timedelta(hours=72) + timedelta(minutes=1),
        hours=SendingHours(0, 24),
    ).run_once()
    (reminder,) = [e for e in sent() if e.header("Subject").startswith("Appointment reminder")]
    confirm = reminder.link_labelled("Confirm my visit")
    assert client.post(f"{confirm}/confirm").status_code == 200

    assert run()["sent"] == 1
    [message] = ehr.frames
    assert segment(message, "MSH")[8] == "SIU^S14^SIU_S12"
    assert segment(message, "SCH")[2] == "WMAIL1"
    reason = segment(message, "SCH")[6]
    assert reason == "confirmed^Confirmed by the patient (Patient link)^CARELINE"
