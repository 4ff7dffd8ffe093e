"""MLLP at load: each MSH-10 applied exactly once across reconnects and concurrent
connections, messages from several connections committed together, and the number of
queries an S12 costs pinned so it cannot creep back up.

The listener applies messages in its own threads, so these tests commit for real
(transaction=True) instead of running inside one rolled-back transaction.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from django.db import connection
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext

from careline.integrations.hl7.mllp import MllpClient, frame, start_background_listener
from careline.integrations.hl7.receiving import receive_message, receive_together
from careline.integrations.models import Hl7Message, Hl7MessageState
from careline.messaging.models import OutboundMessage
from careline.scheduling.models import Appointment, AppointmentEvent
from tests.integrations.messages import siu

pytestmark = pytest.mark.django_db(transaction=True)

# Queries to receive one S12 for a new patient and a new visit (stored raw, patient and
# visit stored with their versions and history, reminders planned and stamped for the
# Communication change feed, ACK recorded): alone, and per message when eight are received
# in one transaction. The planned texts' change time costs two queries on SQLite (the
# chunk's organizations, the newest stamp) and four on PostgreSQL (with the lock and the
# database's clock).
QUERIES_ALONE = {"sqlite": 45, "postgresql": 51}
QUERIES_TOGETHER_PER_MESSAGE = {"sqlite": 30, "postgresql": 31}


@pytest.fixture
def listener(feeds):
    running = start_background_listener()
    yield running
    running.close()


def _msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")


def _new_visit(n: int) -> str:
    return siu(msg_id=f"N{n}", appointment_id=f"V{n}", mrn=f"M{n}^^^PMSYS^MR")


def _wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_message_resent_after_a_dropped_connection_is_applied_once(listener, feeds):
    message = siu(msg_id="RC1", appointment_id="RC-VISIT")
    # The sender's connection drops before it reads the ACK...
    dropped = socket.create_connection((listener.host, listener.port))
    dropped.sendall(frame(message))
    dropped.close()
    _wait_for(lambda: Hl7Message.objects.filter(control_id="RC1").exclude(ack="").exists())
    visit = Appointment.objects.get(external_id="RC-VISIT")
    planned = OutboundMessage.objects.filter(appointment=visit).count()
    assert planned > 0
    stored = Hl7Message.objects.get(control_id="RC1")

    # ...so it reconnects and sends the same message again, twice.
    with MllpClient(listener.host, listener.port) as client:
        again = [client.send(message), client.send(message)]

    assert [_msa(a)[1:3] for a in again] == [["AA", "RC1"]] * 2
    assert again == [stored.ack] * 2, "the stored ACK, not a second application"
    assert Hl7Message.objects.filter(control_id="RC1").count() == 1
    assert Appointment.objects.filter(external_id="RC-VISIT").count() == 1
    assert AppointmentEvent.objects.filter(appointment=visit).count() == 1
    assert OutboundMessage.objects.filter(appointment=visit).count() == planned


def test_the_same_messages_on_eight_connections_at_once_are_applied_once(listener, feeds):
    messages = [_new_visit(n) for n in range(6)]
    answers: list[list[str]] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            with MllpClient(listener.host, listener.port, timeout=60) as client:
                answers.append([_msa(client.send(m))[1] for m in messages])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(answers) == 8
    # Each copy is answered AA (applied, or the stored ACK), or AE 205 while the first
    # copy is still being applied on another connection: never applied twice.
    assert {code for codes in answers for code in codes} <= {"AA", "AE"}
    assert Hl7Message.objects.count() == 6
    assert set(Hl7Message.objects.values_list("state", flat=True)) == {Hl7MessageState.APPLIED}
    assert Appointment.objects.count() == 6
    assert AppointmentEvent.objects.count() == 6
    # A resend once things are quiet gets AA for every one of them.
    with MllpClient(listener.host, listener.port) as client:
        assert [_msa(client.send(m))[1] for m in messages] == ["AA"] * 6
    assert Appointment.objects.count() == 6


def test_messages_from_eight_connections_are_received_together(feeds):
    # Count every statement the listener's own database connections run.
    statements: list[str] = []
    lock = threading.Lock()

    def count(execute, sql, params, many, context):
        with lock:
            statements.append(sql)
        return execute(sql, params, many, context)

    def watch(sender, connection, **kwargs):
        if threading.current_thread().name.startswith("hl7-db"):
            connection.execute_wrappers.append(count)

    connection_created.connect(watch)
    running = start_background_listener()
    per = 6
    errors: list[BaseException] = []

    def sender(c: int) -> None:
        try:
            with MllpClient(running.host, running.port, timeout=60) as client:
                for i in range(per):
                    assert _msa(client.send(_new_visit(c * 100 + i)))[1] == "AA"
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=sender, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        running.close()
        connection_created.disconnect(watch)
    assert not errors
    assert Hl7Message.objects.filter(state=Hl7MessageState.APPLIED).count() == 8 * per
    visits = Appointment.objects.all()
    assert visits.count() == 8 * per
    # Every visit got its reminders planned, the same plan as one received alone.
    plans = {OutboundMessage.objects.filter(appointment=v).count() for v in visits}
    assert len(plans) == 1 and plans.pop() > 0
    # Messages that waited for another connection's transaction went in together: one
    # planning pass (it starts by reading the reminder rules) for all of them, not one
    # per message.
    passes = sum('FROM "messaging_reminderrule"' in sql for sql in statements)
    assert 0 < passes <= 8 * per / 2


def test_queries_per_s12_alone_and_together(feeds):
    # Warm: the feed's first visit creates its provider and visit type.
    assert receive_message(_new_visit(0)).ack_code == "AA"

    with CaptureQueriesContext(connection) as alone:
        assert receive_message(_new_visit(1)).ack_code == "AA"
    with CaptureQueriesContext(connection) as together:
        receipts = receive_together([_new_visit(n) for n in range(2, 10)])

    assert [r.ack_code for r in receipts] == ["AA"] * 8
    assert len(alone.captured_queries) <= QUERIES_ALONE[connection.vendor]
    per_message = len(together.captured_queries) / 8
    assert per_message <= QUERIES_TOGETHER_PER_MESSAGE[connection.vendor]
    # Received together, each is applied and planned exactly as it would be alone.
    plans = {
        OutboundMessage.objects.filter(appointment__external_id=f"V{n}").count()
        for n in range(1, 10)
    }
    assert len(plans) == 1 and plans.pop() > 0
