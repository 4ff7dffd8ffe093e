"""Waitlist fast-fill: who is offered a freed time, in which order, and who gets it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from careline.messaging.models import MessageKind, OutboundMessage
from careline.patients.consent import record_consent
from careline.patients.models import ConsentSource
from careline.scheduling.appointments import change_status
from careline.scheduling.models import (
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    ChangeSource,
)
from careline.waitlist import entries, offers
from careline.waitlist.models import (
    SlotOpening,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistSource,
)

pytestmark = pytest.mark.usefixtures("always_sending")


@dataclass(frozen=True)
class Reply:
    intent: str
    should_act: bool = True


YES, NO = Reply("confirm"), Reply("decline")


def _wait(clinic, patient=None, *, days=(0, 4), provider=None, created_ago=0, **kw):
    patient = patient or clinic.patient()
    entry = entries.join_waitlist(
        patient=patient,
        practice=clinic.practice,
        appointment_type=kw.pop("appointment_type", clinic.visit_type),
        earliest=clinic.monday + timedelta(days=days[0]),
        latest=clinic.monday + timedelta(days=days[1]),
        provider=provider,
        source=WaitlistSource.ONLINE,
        **kw,
    )
    if created_ago:
        WaitlistEntry.objects.filter(pk=entry.pk).update(
            created_at=timezone.now() - timedelta(hours=created_ago)
        )
    return entry


def _free(clinic, django_capture_on_commit_callbacks, hour=14, minute=40, day=None):
    """A booked visit is cancelled by the patient's text; the hook runs after the commit."""
    appointment = clinic.appointment(clinic.at(day or clinic.monday, hour, minute))
    with django_capture_on_commit_callbacks(execute=True):
        change_status(appointment, AppointmentStatus.CANCELLED, source=ChangeSource.PATIENT_TEXT)
    return appointment


def _offered_patients(opening=None):
    offers = WaitlistOffer.objects.filter(state=WaitlistOffer.State.PENDING)
    if opening is not None:
        offers = offers.filter(opening=opening)
    return {o.patient_id for o in offers}


def test_freed_time_is_offered_by_text_to_the_best_ranked_small_batch(
    clinic, django_capture_on_commit_callbacks
):
    oldest_any = _wait(clinic, created_ago=30)
    wants_lee = _wait(clinic, provider=clinic.provider, created_ago=1)
    second_any = _wait(clinic, created_ago=20)
    fourth = _wait(clinic, created_ago=10)

    _free(clinic, django_capture_on_commit_callbacks)

    opening = SlotOpening.objects.get()
    assert opening.state == SlotOpening.State.OFFERING
    assert opening.start == clinic.at(clinic.monday, 14, 40)
    assert _offered_patients() == {
        wants_lee.patient_id,
        oldest_any.patient_id,
        second_any.patient_id,
    }
    assert fourth.patient_id not in _offered_patients()
    text = OutboundMessage.objects.get(to_address=wants_lee.patient.mobile_phone)
    assert "Reply YES to take Mon" in text.body and "2:40 PM with Dr. Lee" in text.body
    assert "/a/" in text.body


def test_patients_who_cannot_take_the_time_are_never_offered_it(
    clinic, build, django_capture_on_commit_callbacks
):
    other_provider = build.provider(clinic.practice)
    busy = clinic.patient()
    clinic.appointment(clinic.at(clinic.monday, 14, 30), patient=busy, provider=other_provider)
    _wait(clinic, busy)
    _wait(clinic, days=(1, 4))  # range starts the day after
    _wait(clinic, appointment_type=build.appointment_type(clinic.org, minutes=40))  # too long
    opted_out = clinic.patient()
    record_consent(
        organization_id=clinic.org.pk,
        phone=opted_out.mobile_phone,
        opted_out=True,
        source=ConsentSource.PATIENT_TEXT,
    )
    _wait(clinic, opted_out)
    _wait(clinic, provider=other_provider)
    earlier_already = clinic.patient()
    own = clinic.appointment(clinic.at(clinic.monday, 9), patient=earlier_already)
    _wait(clinic, earlier_already, appointment=own)
    fits = _wait(clinic)

    _free(clinic, django_capture_on_commit_callbacks)

    assert _offered_patients() == {fits.patient_id}


def test_first_yes_wins_and_later_ones_are_told_it_is_gone(
    clinic, django_capture_on_commit_callbacks
):
    first, second = _wait(clinic), _wait(clinic)
    _free(clinic, django_capture_on_commit_callbacks)

    won = offers.handle_reply(clinic.org.pk, first.patient.mobile_phone, YES)
    late = offers.handle_reply(clinic.org.pk, second.patient.mobile_phone, YES)

    assert won.startswith("You are booked for Mon") and "Dr. Lee" in won
    assert "just taken" in late
    booked = Appointment.objects.get(patient=first.patient, status=AppointmentStatus.BOOKED)
    assert booked.start == clinic.at(clinic.monday, 14, 40)
    assert booked.status_source == ChangeSource.PATIENT_TEXT
    assert not Appointment.objects.filter(patient=second.patient).exists()
    opening = SlotOpening.objects.get()
    assert opening.state == SlotOpening.State.FILLED and opening.filled_appointment == booked
    first.refresh_from_db()
    assert not first.active and first.closed_reason == WaitlistEntry.Closed.FILLED
    second.refresh_from_db()
    assert second.active  # still waiting for the next time
    # Answered once; another YES is not about an offer any more.
    assert offers.handle_reply(clinic.org.pk, second.patient.mobile_phone, YES) is None


def test_a_waitlisted_visit_is_moved_earlier_and_its_old_time_offered_on(
    clinic, django_capture_on_commit_callbacks
):
    mover = clinic.patient()
    later = clinic.appointment(clinic.at(clinic.monday + timedelta(days=3), 11), patient=mover)
    _wait(clinic, mover, appointment=later)
    next_in_line = _wait(clinic, days=(3, 3))
    _free(clinic, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        offers.handle_reply(clinic.org.pk, mover.mobile_phone, YES)

    later.refresh_from_db()
    assert later.start == clinic.at(clinic.monday, 14, 40)
    assert Appointment.objects.filter(patient=mover).count() == 1
    chained = SlotOpening.objects.get(start=clinic.at(clinic.monday + timedelta(days=3), 11))
    assert _offered_patients(chained) == {next_in_line.patient_id}


def test_no_passes_and_the_next_batch_is_offered(
    clinic, settings, django_capture_on_commit_callbacks
):
    settings.CARELINE_WAITLIST_BATCH_SIZE = 1
    first = _wait(clinic, created_ago=2)
    second = _wait(clinic, created_ago=1)
    _free(clinic, django_capture_on_commit_callbacks)
    assert _offered_patients() == {first.patient_id}

    answer = offers.handle_reply(clinic.org.pk, first.patient.mobile_phone, NO)

    assert "keep you on the waitlist" in answer
    assert _offered_patients() == {second.patient_id}
    assert WaitlistOffer.objects.get(patient=first.patient).state == WaitlistOffer.State.DECLINED


def test_offers_expire_and_move_on_then_the_opening_closes(
    clinic, settings, django_capture_on_commit_callbacks
):
    settings.CARELINE_WAITLIST_BATCH_SIZE = 1
    first, second = _wait(clinic, created_ago=2), _wait(clinic, created_ago=1)
    _free(clinic, django_capture_on_commit_callbacks)
    later = timezone.now() + timedelta(minutes=16)

    assert offers.advance_offers(now=later) == 1
    assert _offered_patients() == {second.patient_id}
    assert "ended" in offers.handle_reply(clinic.org.pk, first.patient.mobile_phone, YES)

    offers.advance_offers(now=later + timedelta(minutes=16))
    opening = SlotOpening.objects.get()
    assert opening.state == SlotOpening.State.UNFILLED and opening.batches_sent == 2


def test_a_feed_cancellation_is_found_in_the_history_by_the_sweep(clinic):
    entry = _wait(clinic)
    offers.process_freed_slots()  # cursor starts here
    appointment = clinic.appointment(clinic.at(clinic.monday, 10))
    # What an HL7 cancel does: save and record the event, without change_status.
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CANCELLED)
    AppointmentEvent.objects.create(
        appointment=appointment,
        from_status=AppointmentStatus.BOOKED,
        to_status=AppointmentStatus.CANCELLED,
        source=ChangeSource.HL7,
        occurred_at=timezone.now(),
    )

    assert offers.run_due()["openings"] == 1
    assert offers.run_due()["openings"] == 0  # read once only
    assert _offered_patients() == {entry.patient_id}


def test_times_too_soon_or_already_retaken_are_not_offered(
    clinic, settings, django_capture_on_commit_callbacks
):
    _wait(clinic, days=(-14, 20))
    soon = clinic.appointment(timezone.now() + timedelta(minutes=30))
    with django_capture_on_commit_callbacks(execute=True):
        change_status(soon, AppointmentStatus.CANCELLED, source=ChangeSource.STAFF)
    assert not SlotOpening.objects.exists()


def test_no_offers_at_night_they_wait_for_the_morning(
    clinic, settings, django_capture_on_commit_callbacks
):
    settings.CARELINE_SENDING_HOURS_START = 8
    settings.CARELINE_SENDING_HOURS_END = 21
    _wait(clinic)
    appointment = clinic.appointment(clinic.at(clinic.monday, 15))
    change_status(appointment, AppointmentStatus.CANCELLED, source=ChangeSource.STAFF)
    night = clinic.at(clinic.monday - timedelta(days=3), 23).astimezone(UTC)
    offers.process_freed_slots(now=night)
    opening = SlotOpening.objects.get()
    assert opening.state == SlotOpening.State.OPEN and not opening.offers.exists()
    morning = clinic.at(clinic.monday - timedelta(days=2), 8, 5)
    assert offers.advance_offers(now=morning) == 1


def test_handle_reply_leaves_other_texts_alone(clinic, django_capture_on_commit_callbacks):
    entry = _wait(clinic)
    phone = entry.patient.mobile_phone
    assert offers.handle_reply(clinic.org.pk, phone, YES) is None  # no offer yet
    _free(clinic, django_capture_on_commit_callbacks)
    assert offers.handle_reply(clinic.org.pk, phone, Reply("cancel")) is None
    assert offers.handle_reply(clinic.org.pk, phone, Reply("confirm", should_act=False)) is None
    assert offers.handle_reply(clinic.org.pk + 999, phone, YES) is None
    # A reminder went out after the offer: a YES now answers the reminder.
    OutboundMessage.objects.create(
        organization=clinic.org,
        to_address=phone,
        kind=MessageKind.REMINDER,
        due_at=timezone.now(),
        created_at=timezone.now() + timedelta(seconds=1),
    )
    assert offers.handle_reply(clinic.org.pk, phone, YES) is None


def test_spanish_speakers_get_spanish_offers_and_answers(
    clinic, django_capture_on_commit_callbacks
):
    entry = _wait(clinic, clinic.patient(preferred_language="es"))
    _free(clinic, django_capture_on_commit_callbacks)
    offer = OutboundMessage.objects.get(to_address=entry.patient.mobile_phone)
    assert "Responda SÍ" in offer.body and "lunes" in offer.body and "p.m." in offer.body
    answer = offers.handle_reply(clinic.org.pk, entry.patient.mobile_phone, YES)
    assert answer.startswith("Tiene cita")


def test_joining_again_updates_the_entry_and_keeps_the_place(clinic):
    patient = clinic.patient()
    first = _wait(clinic, patient, created_ago=5)
    again = _wait(clinic, patient, days=(1, 2))
    assert again.pk == first.pk and again.earliest_date == clinic.monday + timedelta(days=1)
    assert WaitlistEntry.objects.filter(patient=patient, active=True).count() == 1
    with pytest.raises(entries.WaitlistError, match="before the first"):
        _wait(clinic, patient, days=(3, 1))
    with pytest.raises(entries.WaitlistError, match="passed"):
        entries.join_waitlist(
            patient=patient,
            practice=clinic.practice,
            appointment_type=clinic.visit_type,
            earliest=date(2020, 1, 1),
            latest=date(2020, 1, 2),
            source=WaitlistSource.STAFF,
        )


def test_the_periodic_command_reads_feed_cancellations(clinic):
    _wait(clinic)
    offers.process_freed_slots()
    appointment = clinic.appointment(clinic.at(clinic.monday, 10))
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CANCELLED)
    AppointmentEvent.objects.create(
        appointment=appointment,
        from_status=AppointmentStatus.BOOKED,
        to_status=AppointmentStatus.CANCELLED,
        source=ChangeSource.FHIR,
        occurred_at=timezone.now(),
    )
    out = StringIO()
    call_command("waitlist", "--once", stdout=out)
    assert "openings=1" in out.getvalue() and "offers=0" in out.getvalue()
