"""What one MLLP peer can hold: connections, idle time, frame size, stored refusals.

Raw sockets against a listener running in-process on a random port, with small limits
so the tests are quick; the listener applies messages in its own threads, so these
tests commit for real (transaction=True).
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from careline.integrations.hl7.mllp import (
    MllpClient,
    MllpLimits,
    frame,
    start_background_listener,
)
from careline.integrations.hl7.receiving import RejectedRetention
from careline.integrations.models import Hl7Message, Hl7MessageState
from careline.scheduling.models import Appointment
from tests.faults.support import careline_env, database_url
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def serve(feeds):
    running = []

    def start(**limits) -> tuple[str, int]:
        listener = start_background_listener(limits=MllpLimits(**limits))
        running.append(listener)
        return listener.host, listener.port

    yield start
    for listener in running:
        listener.close()


def _msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")


def _err(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("ERR|")).split("|")


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the peer closes the connection (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_a_silent_or_trickling_connection_is_closed_an_active_one_is_not(serve):
    host, port = serve(idle_timeout=0.6)
    silent = socket.create_connection((host, port))
    started = time.monotonic()
    assert _closed_within(silent, 5)
    assert time.monotonic() - started < 3
    silent.close()

    # Half a frame, then a byte now and then: never a whole message, so closed too.
    trickle = socket.create_connection((host, port))
    trickle.sendall(b"\x0bMSH|^~\\&|PMSYS")
    started = time.monotonic()
    with pytest.raises(OSError):
        for _ in range(30):
            trickle.sendall(b"x")
            time.sleep(0.1)
    assert time.monotonic() - started < 3
    trickle.close()

    # A feed that sends within the timeout is served for as long as it likes.
    with MllpClient(host, port, timeout=5) as client:
        for n in range(4):
            assert _msa(client.send(siu(appointment_id=f"I{n}")))[1] == "AA"
            time.sleep(0.3)
    assert Appointment.objects.filter(external_id__startswith="I").count() == 4


def test_one_connection_over_the_limit_is_refused_and_served_after_one_closes(serve):
    host, port = serve(max_connections=3, idle_timeout=30)
    clients = [MllpClient(host, port, timeout=5) for _ in range(3)]
    for n, client in enumerate(clients):
        assert _msa(client.send(siu(appointment_id=f"K{n}")))[1] == "AA"

    extra = socket.create_connection((host, port))
    started = time.monotonic()
    assert _closed_within(extra, 5)
    assert time.monotonic() - started < 2
    extra.close()
    # Those already open keep working.
    assert _msa(clients[0].send(siu(appointment_id="K0", sent="20261201090000")))[1] == "AA"

    clients.pop().close()
    deadline = time.monotonic() + 5
    while True:
        try:
            with MllpClient(host, port, timeout=5) as late:
                assert _msa(late.send(siu(appointment_id="LATE")))[1] == "AA"
            break
        except ConnectionError:
            # The listener has not yet seen the close; a real sender retries too.
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for client in clients:
        client.close()
    assert Appointment.objects.filter(external_id="LATE").exists()


def test_an_oversize_frame_is_answered_ar_without_being_buffered(serve):
    limit = 64 * 1024
    host, port = serve(max_frame_bytes=limit)
    message = siu(msg_id="BIG1", appointment_id="BIG")
    payload = frame(message + "NTE|1||" + "x" * (20 * 1024 * 1024) + "\r")
    tracemalloc.start()
    try:
        with MllpClient(host, port, timeout=30) as client:
            client.send_raw(payload)
            ack = client.read_ack()
            # The same connection goes on: the next frame is read from its start.
            follow = client.send(siu(msg_id="SMALL1", appointment_id="SMALL"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 20 MB went through; the listener held about one frame limit of it at a time.
    assert peak < 8 * 1024 * 1024
    assert _msa(ack)[1:3] == ["AR", "BIG1"]
    assert "at most 65,536" in _msa(ack)[3]
    assert _err(ack)[3].startswith("102^")
    assert _msa(follow)[1:3] == ["AA", "SMALL1"]
    assert not Appointment.objects.filter(external_id="BIG").exists()
    stored = Hl7Message.objects.get(state=Hl7MessageState.REJECTED)
    assert stored.raw.startswith("MSH|") and len(stored.raw) <= 4096 + 100
    # Resending it smaller with the same control id is not taken for a duplicate.
    with MllpClient(host, port, timeout=5) as client:
        assert _msa(client.send(message))[1:3] == ["AA", "BIG1"]


def test_an_oversize_frame_without_a_header_closes_the_connection(serve):
    host, port = serve(max_frame_bytes=4096)
    sock = socket.create_connection((host, port))
    sock.sendall(b"\x0b" + b"\x00" * 100_000 + b"\x1c\x0d")
    assert _closed_within(sock, 5)
    sock.close()
    assert not Hl7Message.objects.exists()


def test_refused_messages_are_trimmed_to_the_bound_and_kept_short(serve, feeds):
    host, port = serve(retention=RejectedRetention(keep=3, days=30))
    unroutable = "MSH|^~\\&|NOBODY|X|CARELINE|CARELINE|20261201||SIU^S12|U{n}|P|2.5.1\rSCH|1\r"
    with MllpClient(host, port) as client:
        # An applied message with a warning (no mobile number) is history, never trimmed.
        no_mobile = siu(msg_id="KEEP1", appointment_id="KEEP", phones="")
        assert _msa(client.send(no_mobile))[1] == "AA"
        for n in range(6):
            assert _msa(client.send(unroutable.format(n=n)))[1] == "AR"
        # Refused by a feed (unknown location, nothing applied): that feed's bound.
        for n in range(5):
            bad = siu(msg_id=f"LOC{n}", appointment_id=f"LOC{n}", location="NOWHERE")
            assert _msa(client.send(bad))[1] == "AE"
        huge = "MSH|^~\\&|NOBODY|X|CARELINE|CARELINE|20261201||ADT^A01|HUGE|P|2.5.1\r"
        assert _msa(client.send(huge + "NTE|" + "y" * 100_000 + "\r"))[1] == "AR"

    unrouted = Hl7Message.objects.filter(feed=None)
    assert unrouted.count() == 3
    assert "HUGE" in unrouted.order_by("-id")[0].raw[:100]
    assert len(unrouted.order_by("-id")[0].raw) < 4200
    assert sorted(m.raw.split("|")[9] for m in unrouted.order_by("-id")[1:]) == ["U4", "U5"]
    by_feed = Hl7Message.objects.filter(feed=feeds.pms)
    assert sorted(by_feed.values_list("control_id", flat=True)) == [
        "KEEP1",
        "LOC2",
        "LOC3",
        "LOC4",
    ]

    # Age: a refusal older than the retention days goes with the next one written.
    Hl7Message.objects.filter(control_id="LOC2").update(
        received_at=timezone.now() - timedelta(days=31)
    )
    Hl7Message.objects.filter(control_id="KEEP1").update(
        received_at=timezone.now() - timedelta(days=400)
    )
    with MllpClient(host, port) as client:
        assert _msa(client.send(siu(msg_id="LOC9", location="NOWHERE")))[1] == "AE"
    assert sorted(by_feed.values_list("control_id", flat=True)) == [
        "KEEP1",
        "LOC3",
        "LOC4",
        "LOC9",
    ]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-connections", "0"),
        ("--max-frame-bytes", "0"),
        ("--idle-timeout", "-1"),
        ("--keep-rejected", "-5"),
    ],
)
def test_mllp_command_refuses_nonsense_limits(db, option, value):
    with pytest.raises(CommandError, match=option):
        call_command("mllp", "--port", "0", option, value)


def test_the_command_takes_its_limits_from_its_options_and_the_environment(feeds):
    env = careline_env(
        DATABASE_URL=database_url(),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        CARELINE_MLLP_MAX_CONNECTIONS="1",
    )
    command = [sys.executable, "-m", "careline", "mllp", "--port", "0", "--idle-timeout", "1.5"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "careline mllp did not start"
        address = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        host, port = address.rsplit(":", 1)
        with MllpClient(host, int(port), timeout=5) as client:
            assert _msa(client.send(siu(appointment_id="CLI")))[1] == "AA"
            extra = socket.create_connection((host, int(port)))
            assert _closed_within(extra, 5)  # CARELINE_MLLP_MAX_CONNECTIONS=1
            extra.close()
            started = time.monotonic()
            with pytest.raises(ConnectionError):
                client.read_ack()  # --idle-timeout 1.5 closes the silent connection
            assert 1 < time.monotonic() - started < 5
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert Appointment.objects.filter(external_id="CLI").exists()
