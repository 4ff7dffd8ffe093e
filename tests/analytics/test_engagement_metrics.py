"""Texting, inbox and waitlist figures on a hand-built dataset with known answers."""

from datetime import timedelta

import pytest
from django.utils import timezone

from careline.analytics.metrics import engagement_metrics, median_first_answer_minutes
from careline.clinics.models import Practice
from careline.conversations.models import Conversation, InboundMessage
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.patients.consent import record_consent
from careline.scheduling.models import Appointment
from careline.waitlist.models import SlotOpening


@pytest.fixture
def practice(build):
    return build.practice(name="Birch Clinic")


def _visit(build, practice, hours_ahead):
    from careline.scheduling.appointments import book_appointment

    provider = practice.providers.first() or build.provider(practice, weekdays=range(7), hours=None)
    start = timezone.now() + timedelta(hours=hours_ahead)
    return book_appointment(
        patient=build.patient(practice.organization, home_practice=practice),
        provider=provider,
        practice=practice,
        appointment_type=build.appointment_type(practice.organization),
        start=start,
        check_working_time=False,
    )


def _text(practice, appointment, state, kind=MessageKind.REMINDER, to=None):
    now = timezone.now()
    return OutboundMessage.objects.create(
        organization=practice.organization,
        practice=practice,
        appointment=appointment,
        patient=appointment.patient if appointment else None,
        channel="sms",
        to_address=to or appointment.patient.mobile_phone,
        kind=kind,
        state=state,
        step_key=f"test:{OutboundMessage.objects.count()}",
        due_at=now,
        created_at=now,
    )


def test_figures_match_hand_counts(build, practice):
    start, end = timezone.now() - timedelta(days=1), timezone.now() + timedelta(days=1)
    visits = [_visit(build, practice, 30 + i) for i in range(4)]
    OutboundMessage.objects.filter(appointment__in=visits).delete()  # only the texts below
    _text(practice, visits[0], MessageState.DELIVERED)
    _text(practice, visits[1], MessageState.DELIVERED)
    _text(practice, visits[2], MessageState.FAILED)
    _text(practice, visits[3], MessageState.UNDELIVERED)
    _text(practice, visits[3], MessageState.SCHEDULED)  # not finished: not counted
    InboundMessage.objects.create(
        provider_message_id="SM1",
        from_phone="+1",
        to_phone="+2",
        body="C",
        received_at=timezone.now(),
        appointment=visits[0],
    )
    record_consent(
        organization_id=practice.organization_id,
        phone=visits[1].patient.mobile_phone,
        opted_out=True,
        source="patient_text",
        detail="STOP",
    )
    now = timezone.now()
    for state in ("filled", "filled", "expired"):
        SlotOpening.objects.create(
            organization=practice.organization,
            practice=practice,
            provider=visits[0].provider,
            start=now,
            end=now,
            state=state,
            created_at=now,
        )
    for minutes in (10, 30, 50, None):
        Conversation.objects.create(
            organization=practice.organization,
            practice=practice,
            phone="+15125550000",
            created_at=now,
            opened_at=now,
            last_patient_message_at=now,
            first_staff_reply_at=now + timedelta(minutes=minutes) if minutes else None,
        )

    [row] = engagement_metrics(Practice.objects.filter(pk=practice.pk), start=start, end=end)
    assert (row.texts_finished, row.texts_failed) == (4, 2)
    assert row.delivery_failure_rate == pytest.approx(0.5)
    assert (row.reminded_visits, row.visits_with_reply) == (4, 1)
    assert row.reply_rate == pytest.approx(0.25)
    assert (row.numbers_texted, row.opt_outs) == (4, 1)
    assert (row.slots_freed, row.slots_refilled) == (3, 2)
    assert row.refill_rate == pytest.approx(2 / 3)
    assert row.median_first_answer_minutes == pytest.approx(30)


def test_median_of_an_even_count_is_the_mean_of_the_middle_two(build, practice):
    now = timezone.now()
    for minutes in (5, 15, 25, 100):
        Conversation.objects.create(
            organization=practice.organization,
            practice=practice,
            phone="+15125550001",
            created_at=now,
            opened_at=now,
            last_patient_message_at=now,
            first_staff_reply_at=now + timedelta(minutes=minutes),
        )
    assert median_first_answer_minutes(Conversation.objects.all()) == pytest.approx(20)
    assert median_first_answer_minutes(Conversation.objects.none()) is None
    assert Appointment.objects.count() == 0
