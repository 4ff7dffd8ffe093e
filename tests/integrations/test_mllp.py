"""Real TCP MLLP connections to the listener, running in-process on a random port.

The listener applies messages in its own threads, so these tests commit for real
(transaction=True) instead of running inside one rolled-back transaction.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from careline.integrations.hl7.mllp import MllpClient, frame, start_background_listener
from careline.integrations.models import Hl7Message, Hl7MessageState
from careline.scheduling.models import Appointment, AppointmentStatus
from tests.integrations.conftest import SHARED_SAMPLES, sample
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener(feeds):
    running = start_background_listener()
    yield running
    running.close()


def _msa(ack: str) -> list[str]:
    segment = next(s for s in ack.split("\r") if s.startswith("MSA|"))
    return segment.split("|")


def test_shared_samples_and_variants_over_one_connection(listener, feeds):
    variants = [
        siu("S12", appointment_id="V1", version="2.3", separator="\r\n"),
        siu("S14", appointment_id="V1", sent="20261201090000", order=("AIP", "SCH", "PID")),
        siu(
            "S12",
            appointment_id="V2",
            mrn="M777^^^PMSYS^MR",
            name=r"O\T\Brien^Ana",
            extra=("ZSC|1|x^y|~~",),
            separator="\n",
        ),
        siu(
            "S13",
            appointment_id="V2",
            sent="20261201100000",
            start="20261220100000-0500",
            mrn="M777^^^PMSYS^MR",
            name=r"O\T\Brien^Ana",
        ),
        siu("S15", appointment_id="V2", sent="20261201110000", status="NOSHOW", mrn=""),
        siu("S26", appointment_id="V3"),
        siu("S17", appointment_id="V1", sent="20261201120000"),
    ]
    messages = [sample(p.name) for p in sorted(SHARED_SAMPLES.glob("*.hl7"))] + variants
    with MllpClient(listener.host, listener.port) as client:
        acks = [client.send(m) for m in messages]
    assert [_msa(a)[1] for a in acks] == ["AA"] * len(messages)
    # Each ACK answers its own message.
    assert [_msa(a)[2] for a in acks[:7]] == [f"MSG0000{n}" for n in range(1, 8)]
    assert Appointment.objects.get(external_id="V1").status == AppointmentStatus.ENTERED_IN_ERROR
    v2 = Appointment.objects.get(external_id="V2")
    assert v2.status == AppointmentStatus.NO_SHOW
    assert v2.patient.family_name == "O&Brien"
    assert Appointment.objects.get(external_id="V3").status == AppointmentStatus.NO_SHOW


def test_wrong_type_garbage_and_truncation_then_still_serving(listener, feeds):
    adt = "MSH|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201||ADT^A01|ADT9|P|2.5.1\rPID|1\r"
    with MllpClient(listener.host, listener.port) as client:
        assert _msa(client.send(adt))[1:3] == ["AR", "ADT9"]
        # Framed garbage is answered AR; bytes outside any frame get no answer at all,
        # and the next proper frame on the same connection is still read.
        assert _msa(client.send(b"\x00\xffnot hl7 at all"))[1] == "AR"
        client.send_raw(b"stray bytes with no frame\x1c\x0d")
        assert _msa(client.send(siu(msg_id="AFTER1")))[1:3] == ["AA", "AFTER1"]
        # Junk in front of a frame is skipped, the frame itself is processed.
        client.send_raw(b"junk" + frame(siu(msg_id="AFTER2", appointment_id="J2")))
        assert _msa(client.read_ack())[1:3] == ["AA", "AFTER2"]

    # A connection that drops mid-message: nothing is processed, nothing is stored.
    dropped = socket.create_connection((listener.host, listener.port))
    dropped.sendall(b"\x0b" + siu(msg_id="HALF").encode()[:80])
    dropped.close()
    # A frame cut before its end bytes, then closed.
    cut = socket.create_connection((listener.host, listener.port))
    cut.sendall(b"\x0b" + siu(msg_id="CUT").encode())
    cut.shutdown(socket.SHUT_WR)
    cut.settimeout(5)
    assert cut.recv(100) == b""  # closed without an ACK
    cut.close()

    with MllpClient(listener.host, listener.port) as client:
        assert _msa(client.send(siu(msg_id="LATER", appointment_id="L1")))[1] == "AA"
    assert not Hl7Message.objects.filter(control_id__in=["HALF", "CUT"]).exists()
    assert Hl7Message.objects.filter(state=Hl7MessageState.REJECTED).count() == 2


def test_duplicate_over_mllp_gets_same_ack(listener, feeds):
    with MllpClient(listener.host, listener.port) as client:
        first = client.send(siu(msg_id="D1"))
        second = client.send(siu(msg_id="D1"))
    assert first == second
    assert Hl7Message.objects.filter(control_id="D1").count() == 1


def test_many_connections_at_once_and_a_stalled_one(listener, feeds):
    # A connection that sends half a frame and waits must not hold up anyone else.
    stalled = socket.create_connection((listener.host, listener.port))
    stalled.sendall(b"\x0bMSH|^~\\&|PMSYS")
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with MllpClient(listener.host, listener.port, timeout=30) as client:
                results[n] = [
                    _msa(client.send(siu(appointment_id=f"C{n}-{i}", mrn=f"M{n}^^^PMSYS^MR")))[1]
                    for i in range(5)
                ]
        except BaseException as exc:  # reported below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stalled.close()
    assert not errors
    assert all(codes == ["AA"] * 5 for codes in results.values()) and len(results) == 8
    assert Appointment.objects.filter(external_system=feeds.pms.namespace).count() == 40
    assert time.monotonic() - started < 30


def test_mllp_command_help_and_missing_feed(db):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No active HL7 feed"):
        call_command("mllp", "--port", "0", "--organization", "nobody")
