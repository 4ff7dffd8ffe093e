"""The outbox's writes (careline.messaging.outbox), one function per state change."""

from datetime import timedelta

import pytest
from django.utils import timezone

from careline.messaging import outbox
from careline.messaging.models import MessageState, OutboundMessage
from careline.messaging.outbox import withdraw_planned_notice
from careline.messaging.planning import sync_reminders


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


def test_withdrawing_cancels_exactly_the_notice_steps_named(clinic):
    """One withdrawal for both former twins: self-service names booked and rescheduled
    (what it used to hard-code), conversations the one step it answered."""
    appointment = _notices(clinic)
    assert withdraw_planned_notice(appointment.pk, "booked", "rescheduled") == 2
    assert _states(appointment) == {
        "booked": WITHDRAWN,
        "rescheduled": WITHDRAWN,
        "cancelled": LEFT,
    }

    other = _notices(clinic)
    assert withdraw_planned_notice(other.pk, "cancelled") == 1
    assert _states(other) == {"booked": LEFT, "rescheduled": LEFT, "cancelled": WITHDRAWN}
    # Reminders are not notices, and a sent notice is never withdrawn.
    assert withdraw_planned_notice(other.pk, "cancelled") == 0
    with pytest.raises(ValueError):
        withdraw_planned_notice(other.pk, "reminder:1440")


def test_one_column_list_names_every_outbox_column():
    columns = [f.column for f in OutboundMessage._meta.concrete_fields if not f.primary_key]
    assert list(outbox.COLUMNS) == columns
