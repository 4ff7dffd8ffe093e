"""Two people booking the same time at once: the database lets exactly one win."""

import threading
from datetime import date, datetime, time

import pytest
from django.db import connection, connections

from careline.scheduling.appointments import SlotUnavailable, book_appointment, move_appointment
from careline.scheduling.models import Appointment, AppointmentStatus

BOOKERS = 8


def _race(target, arguments):
    barrier = threading.Barrier(len(arguments))
    outcomes = []
    lock = threading.Lock()

    def run(args):
        try:
            barrier.wait()
            result = target(*args)
            outcome = ("won", result.pk)
        except SlotUnavailable as exc:
            outcome = ("lost", str(exc))
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(a,)) for a in arguments]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookers_of_one_time_exactly_one_wins(build):
    practice = build.practice(time_zone="America/Chicago")
    provider = build.provider(practice)
    org = practice.organization
    # Different lengths so that they overlap without sharing every start.
    kinds = [build.appointment_type(org, minutes=m) for m in (20, 30, 40, 60)]
    patients = [build.patient(org) for _ in range(BOOKERS)]
    day = date(2026, 12, 2)
    arguments = [
        (p, kinds[i % 4], datetime.combine(day, time(9, 0 if i % 2 else 10), tzinfo=practice.zone))
        for i, p in enumerate(patients)
    ]

    def book(patient, kind, start):
        return book_appointment(
            patient=patient,
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=start,
        )

    outcomes = _race(book, arguments)

    winners = [o for o in outcomes if o[0] == "won"]
    assert len(outcomes) == BOOKERS
    assert len(winners) == 1, outcomes
    assert all("taken" in o[1] for o in outcomes if o[0] == "lost")
    assert (
        Appointment.objects.filter(provider=provider, status=AppointmentStatus.BOOKED).count() == 1
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_moves_into_one_time_exactly_one_wins(build):
    practice = build.practice(time_zone="America/New_York")
    provider = build.provider(practice)
    kind = build.appointment_type(practice.organization, minutes=20)
    day = date(2026, 12, 2)
    appointments = [
        book_appointment(
            patient=build.patient(practice.organization),
            provider=provider,
            practice=practice,
            appointment_type=kind,
            start=datetime.combine(day, time(13 + 20 * i // 60, 20 * i % 60), tzinfo=practice.zone),
        )
        for i in range(6)
    ]
    target = datetime.combine(day, time(10), tzinfo=practice.zone)

    def move(appointment):
        return move_appointment(appointment, new_start=target)

    outcomes = _race(move, [(a,) for a in appointments])
    assert sum(o[0] == "won" for o in outcomes) == 1, outcomes
    assert Appointment.objects.filter(provider=provider, start=target).count() == 1


@pytest.mark.django_db(transaction=True)
def test_database_itself_refuses_overlap_without_the_service(build):
    """Even code that skips the booking service cannot double-book on PostgreSQL."""
    if connection.vendor != "postgresql":
        pytest.skip("overlap exclusion constraint is PostgreSQL-only; SQLite has the unique index")
    from django.db import IntegrityError

    practice = build.practice()
    provider = build.provider(practice)
    kind = build.appointment_type(practice.organization, minutes=30)
    start = datetime.combine(date(2026, 12, 2), time(9), tzinfo=practice.zone)
    first = book_appointment(
        patient=build.patient(practice.organization),
        provider=provider,
        practice=practice,
        appointment_type=kind,
        start=start,
    )
    clash = Appointment(
        organization=practice.organization,
        practice=practice,
        provider=provider,
        patient=build.patient(practice.organization),
        appointment_type=kind,
        start=first.start.replace(minute=15),
        end=first.end.replace(minute=45),
        status_changed_at=first.status_changed_at,
        status_source="staff",
    )
    with pytest.raises(IntegrityError):
        clash.save()
