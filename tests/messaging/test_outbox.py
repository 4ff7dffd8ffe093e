"""The outbox's writes (careline.messaging.outbox), one function per state change."""

from datetime import timedelta

from django.utils import timezone

from careline.conversations.offers import withdraw_planned_notice as withdraw_one_step
from careline.messaging.models import MessageState, OutboundMessage
from careline.messaging.planning import sync_reminders
from careline.selfservice.texts import withdraw_planned_notice as withdraw_booking_notices


def _notices(clinic):
    """A visit with a scheduled notice for every step key a change can plan."""
    appointment = clinic.appointment(timezone.now() + timedelta(days=3))
    sync_reminders([appointment.pk])
    booked = OutboundMessage.objects.get(appointment=appointment, step_key="booked")
    for step in ("rescheduled", "cancelled"):
        OutboundMessage.objects.create(
            **{
                f.attname: getattr(booked, f.attname)
                for f in OutboundMessage._meta.concrete_fields
                if not f.primary_key
            }
            | {"step_key": step, "kind": step, "visit_start": booked.visit_start + timedelta(1)}
        )
    return appointment


def _states(appointment) -> dict[str, tuple[str, str]]:
    return {
        m.step_key: (m.state, m.reason)
        for m in OutboundMessage.objects.filter(appointment=appointment).exclude(
            step_key__startswith="reminder:"
        )
    }


WITHDRAWN = (MessageState.CANCELLED, "answered_directly")
LEFT = (MessageState.SCHEDULED, "")


def test_the_two_withdrawals_differ_in_the_steps_they_cancel(clinic):
    """Self-service withdrew both the booked and the rescheduled notice; conversations
    withdrew the one step it was given."""
    appointment = _notices(clinic)
    withdraw_booking_notices(appointment.pk)
    assert _states(appointment) == {
        "booked": WITHDRAWN,
        "rescheduled": WITHDRAWN,
        "cancelled": LEFT,
    }

    other = _notices(clinic)
    withdraw_one_step(other.pk, "cancelled")
    assert _states(other) == {"booked": LEFT, "rescheduled": LEFT, "cancelled": WITHDRAWN}
