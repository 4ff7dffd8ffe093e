"""New bookings received together go in set-based (issue 21): each is stored and applied
exactly as if it had come alone, a bad message in the group gets its own answer without
taking the others with it, a group dropped in flight and resent is applied once, the
statements a group costs do not grow with its size, and a large batch over MLLP leaves
the planner fresh statistics.

The listener applies messages in its own threads, so these tests commit for real
(transaction=True).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from careline.integrations.hl7.mllp import MllpClient, frame, start_background_listener
from careline.integrations.hl7.receiving import receive_message, receive_together
from careline.integrations.models import Hl7Message, Hl7MessageState
from careline.messaging.models import OutboundMessage
from careline.patients.models import Patient, PatientIdentifier, PatientVersion
from careline.scheduling.models import Appointment, AppointmentEvent, AppointmentVersion
from tests.demo.test_statistics_after_bulk_loads import _forget_statistics, _has_statistics
from tests.faults.pgcluster import free_port
from tests.faults.support import careline_env, database_url
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)

# Statements to receive a group of new bookings (S12, new patient, new visit) together:
# the same for 8 as for 16, set-based. Alone, an S12 costs 43 (SQLite) / 47 (PostgreSQL).
QUERIES_PER_GROUP = {"sqlite": 41, "postgresql": 47}


def _new_visit(n: int, **fields) -> str:
    return siu(msg_id=f"N{n}", appointment_id=f"V{n}", mrn=f"M{n}^^^PMSYS^MR", **fields)


def _msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")


def _err(ack: str) -> str:
    return next((s for s in ack.split("\r") if s.startswith("ERR|")), "")


def _stored(n: int) -> dict:
    """What receiving message N{n} stored, without ids and times."""
    visit = Appointment.objects.get(external_id=f"V{n}")
    patient = visit.patient
    assert patient.mrn == f"M{n}"
    return {
        "patient": {
            f: getattr(patient, f)
            for f in (
                "family_name",
                "given_name",
                "birth_date",
                "mobile_phone",
                "phones",
                "preferred_language",
                "home_practice_id",
                "time_zones",
                "version",
            )
        },
        "identifiers": list(
            PatientIdentifier.objects.filter(patient=patient).values_list(
                "system", "type_code", "type_text"
            )
        ),
        "patient_versions": PatientVersion.objects.filter(patient=patient).count(),
        "visit": {
            f: getattr(visit, f)
            for f in (
                "practice_id",
                "provider_id",
                "appointment_type_id",
                "start",
                "end",
                "status",
                "status_source",
                "allow_overlap",
                "external_system",
                "external_updated_at",
                "version",
            )
        },
        "visit_versions": AppointmentVersion.objects.filter(appointment=visit).count(),
        "events": list(
            AppointmentEvent.objects.filter(appointment=visit).values_list(
                "from_status", "to_status", "source", "note"
            )
        ),
        "planned": sorted(
            OutboundMessage.objects.filter(appointment=visit).values_list("kind", "step_key")
        ),
        "message": Hl7Message.objects.filter(control_id=f"N{n}").values_list(
            "state", "ack_code", "error", "appointment_id"
        )[0][:3],
    }


def test_new_bookings_together_are_stored_as_one_alone_and_cost_the_same_for_8_and_16(feeds):
    # Warm: the feed's first visit creates its provider and visit type.
    assert receive_message(_new_visit(0)).ack_code == "AA"
    alone = receive_message(_new_visit(1))

    with CaptureQueriesContext(connection) as eight:
        receipts = receive_together([_new_visit(n) for n in range(10, 18)])
    with CaptureQueriesContext(connection) as sixteen:
        receipts += receive_together([_new_visit(n) for n in range(20, 36)])

    assert [r.ack_code for r in receipts] == ["AA"] * 24
    assert len(eight.captured_queries) <= QUERIES_PER_GROUP[connection.vendor]
    assert len(sixteen.captured_queries) == len(eight.captured_queries)
    # Each one stored exactly as the one received alone, and answered the same way.
    expected = _stored(1)
    assert expected["planned"] and expected["events"]
    for n in (*range(10, 18), *range(20, 36)):
        assert _stored(n) == expected, n
    for receipt in receipts:
        assert _msa(receipt.ack)[1] == "AA"
        assert receipt.ack.split("\r")[1:] != [] and _err(receipt.ack) == _err(alone.ack)
    assert Patient.objects.count() == Appointment.objects.count() == 26


def test_a_bad_message_in_a_group_gets_its_own_answer_and_the_others_are_applied(feeds):
    assert receive_message(_new_visit(0)).ack_code == "AA"
    group = [
        _new_visit(1),
        _new_visit(2, location="NOWHERE"),  # unknown location: AE, nothing applied
        "this is not HL7",  # AR
        _new_visit(3, start="20261310093000"),  # month 13: AE naming SCH-11
        _new_visit(4, phones="^ORN^CP^^1^000^0000000"),  # bad mobile: AE, visit stored
        _new_visit(5, name=""),  # a new patient without a name: AE
        _new_visit(6),
    ]

    receipts = receive_together(group)

    codes = [r.ack_code for r in receipts]
    assert codes == ["AA", "AE", "AR", "AE", "AE", "AE", "AA"]
    assert "NOWHERE" in _err(receipts[1].ack)
    assert "SCH^1^11" in _err(receipts[3].ack)
    assert "PID^1^13" in _err(receipts[4].ack)
    assert sorted(Appointment.objects.values_list("external_id", flat=True)) == [
        "V0",
        "V1",
        "V4",
        "V6",
    ]
    for n in (1, 6):
        assert _stored(n)["message"] == (Hl7MessageState.APPLIED, "AA", "")
        assert _stored(n)["planned"]
    assert Hl7Message.objects.filter(control_id__in=["N2", "N3", "N5"], state="error").count() == 3
    # Sent again, every message gets its stored answer and nothing is applied twice.
    again = receive_together(group)
    assert [r.ack_code for r in again] == codes
    assert [r.ack for r in again if r.ack_code != "AR"] == [
        r.ack for r in receipts if r.ack_code != "AR"
    ]
    assert Appointment.objects.count() == 4
    assert AppointmentEvent.objects.count() == 4


def test_a_group_dropped_in_flight_and_resent_is_applied_once(feeds):
    listener = start_background_listener()
    messages = [_new_visit(n) for n in range(1, 9)]
    try:
        # Eight senders send at once and lose their connections before any ACK...
        dropped = [socket.create_connection((listener.host, listener.port)) for _ in messages]
        for sock, message in zip(dropped, messages, strict=True):
            sock.sendall(frame(message))
        for sock in dropped:
            sock.close()
        # ...and reconnect and resend at once, while that group may still be in flight,
        # until each hears AA.
        answers: dict[int, str] = {}
        errors: list[BaseException] = []

        def resend(n: int) -> None:
            try:
                deadline = time.monotonic() + 30
                with MllpClient(listener.host, listener.port, timeout=30) as client:
                    while time.monotonic() < deadline:
                        ack = client.send(messages[n])
                        # AE 205 only while the first copy is still being applied.
                        assert _msa(ack)[1] == "AA" or "205" in _err(ack), ack
                        if _msa(ack)[1] == "AA":
                            answers[n] = ack
                            return
                        time.sleep(0.05)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=resend, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        listener.close()

    assert not errors
    assert sorted(answers) == list(range(8))
    for n in range(8):
        stored = Hl7Message.objects.get(control_id=f"N{n + 1}")
        assert answers[n] == stored.ack, "the stored ACK, not a second application"
    assert Hl7Message.objects.count() == 8
    assert Appointment.objects.count() == 8
    assert Patient.objects.count() == 8
    assert AppointmentEvent.objects.count() == 8
    plans = {
        OutboundMessage.objects.filter(appointment=v).count() for v in Appointment.objects.all()
    }
    assert len(plans) == 1 and plans.pop() > 0


def test_a_large_batch_over_mllp_leaves_statistics(feeds):
    tables = ("scheduling_appointment", "patients_patient", "integrations_hl7message")
    _forget_statistics(*tables)
    batch = (
        "BHS|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201080000||||BULK-1\r"
        + "".join(_new_visit(n) for n in range(100))
        + "BTS|100\r"
    )
    listener = start_background_listener()
    try:
        with MllpClient(listener.host, listener.port, timeout=120) as client:
            ack = client.send(batch)
    finally:
        listener.close()
    assert ack.count("MSA|AA|") == 100
    assert Appointment.objects.count() == 100
    assert [t for t in tables if not _has_statistics(t)] == []


def test_processes_need_postgresql_and_a_fixed_port(feeds):
    with pytest.raises(CommandError, match="--processes"):
        call_command("mllp", "--processes", "2", "--port", "0")
    if connection.vendor == "sqlite":
        with pytest.raises(CommandError, match="PostgreSQL"):
            call_command("mllp", "--processes", "2", "--port", "2575")


def test_two_listener_processes_share_the_port_and_apply_each_message_once(feeds):
    if connection.vendor != "postgresql":
        pytest.skip("several listener processes are for PostgreSQL")
    port = free_port()
    env = careline_env(
        DATABASE_URL=database_url(), PYTHONPATH=str(Path(__file__).resolve().parents[2])
    )
    command = [sys.executable, "-m", "careline", "mllp", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--processes", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    answers: list[str] = []
    errors: list[BaseException] = []
    try:
        started = [process.stdout.readline() for _ in range(2)]
        assert all(line.startswith("Listening for MLLP on") for line in started), started

        def sender(c: int) -> None:
            try:
                with MllpClient("127.0.0.1", port, timeout=60) as client:
                    for n in range(c * 100, c * 100 + 5):
                        answers.append(_msa(client.send(_new_visit(n)))[1])
                    # A copy of a message already applied by either process: its ACK.
                    answers.append(_msa(client.send(_new_visit(c * 100)))[1])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=sender, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert not errors
    assert answers == ["AA"] * 48
    assert Hl7Message.objects.count() == 40
    assert Appointment.objects.count() == 40
    assert AppointmentEvent.objects.count() == 40
    assert process.returncode == 0
