"""Twenty waitlisted patients answer one offer at the same moment, by link and by text."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from django.db import connections
from django.test import Client

from careline.scheduling.appointments import change_status
from careline.scheduling.models import Appointment, AppointmentStatus, ChangeSource
from careline.waitlist.entries import join_waitlist
from careline.waitlist.models import SlotOpening, WaitlistOffer, WaitlistSource
from careline.waitlist.offers import handle_reply
from tests.selfservice.conftest import texted_token

CLIENTS = 20


@dataclass(frozen=True)
class Yes:
    intent: str = "confirm"
    should_act: bool = True


@pytest.mark.django_db(transaction=True)
def test_twenty_clients_race_for_one_freed_slot_exactly_one_wins(clinic, settings, always_sending):
    settings.CARELINE_WAITLIST_BATCH_SIZE = CLIENTS
    entries = [
        join_waitlist(
            patient=clinic.patient(),
            practice=clinic.practice,
            appointment_type=clinic.visit_type,
            earliest=clinic.monday,
            latest=clinic.monday,
            source=WaitlistSource.TEXT,
        )
        for _ in range(CLIENTS)
    ]
    freed = clinic.appointment(clinic.at(clinic.monday, 14, 40))
    change_status(freed, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_LINK)
    assert WaitlistOffer.objects.filter(state=WaitlistOffer.State.PENDING).count() == CLIENTS

    tokens = {entry.pk: texted_token(entry.patient.mobile_phone) for entry in entries}

    def by_link(entry):
        response = Client().post(f"/a/{tokens[entry.pk]}/answer", {"answer": "take"})
        return response.status_code == 200, response.content.decode()

    def by_text(entry):
        message = handle_reply(clinic.org.pk, entry.patient.mobile_phone, Yes())
        return message.startswith("You are booked"), message

    barrier = threading.Barrier(CLIENTS)
    outcomes, lock = [], threading.Lock()

    def run(index, entry):
        try:
            barrier.wait()
            outcome = (by_link if index % 2 else by_text)(entry)
        except Exception as exc:  # a crash is an outcome the test must see
            outcome = (None, repr(exc))
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(i, e)) for i, e in enumerate(entries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(outcomes) == CLIENTS
    winners = [text for won, text in outcomes if won]
    losers = [text for won, text in outcomes if won is False]
    assert len(winners) == 1, outcomes
    assert len(losers) == CLIENTS - 1, outcomes
    assert all("just taken" in text for text in losers), losers
    booked = Appointment.objects.filter(
        provider=clinic.provider, start=clinic.at(clinic.monday, 14, 40), status="booked"
    )
    assert booked.count() == 1
    opening = SlotOpening.objects.get()
    assert opening.state == SlotOpening.State.FILLED and opening.filled_appointment == booked[0]
    assert WaitlistOffer.objects.filter(state=WaitlistOffer.State.ACCEPTED).count() == 1
