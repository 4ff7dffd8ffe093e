"""A feed configured for test messages (MSH-11 T) is written back to in test messages too,
so the EHR's test system does not refuse Careline's confirmations as production traffic."""

from __future__ import annotations

from careline.integrations.models import ProcessingId
from careline.scheduling.appointments import change_status
from careline.scheduling.models import AppointmentStatus, ChangeSource
from tests.integrations.messages import siu
from tests.integrations.test_writeback import Receiver, arrive, run, segment


def test_a_training_feed_gets_its_write_back_marked_training(feeds):
    receiver = Receiver()
    try:
        feeds.pms.processing_id = ProcessingId.TRAINING
        feeds.pms.outbound_host, feeds.pms.outbound_port = "127.0.0.1", receiver.port
        feeds.pms.save()
        training = siu("S12", appointment_id="W1").replace("|P|2.5.1", "|T|2.5.1", 1)
        visit = arrive(training)
        change_status(visit, AppointmentStatus.CONFIRMED, source=ChangeSource.PATIENT_TEXT)
        assert run()["sent"] == 1
    finally:
        receiver.close()
    [message] = receiver.frames
    assert segment(message, "MSH")[10] == "T"
    assert segment(message, "SCH")[25] == "Booked^Booked^HL70278"  # table 0278
