"""What the front desk does to a visit, from the day view, the patient page or the REST API:
confirm it, cancel it (with a reason), move it to an open time, check the patient in
(arrived), mark a no-show — and take any of these back within `UNDO_WINDOW`.

Each act is an ordinary appointment change (`scheduling.appointments`, so `record_change`):
its AppointmentEvent is the audit entry (who, when, why), reminders are re-planned in the
same transaction, a cancellation or a move texts the patient its notice, and the EHR
hears of it through the HL7 write-back (source `front_desk`). An undo goes the same way
back: `appointments.revert_change`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from careline.clinics.models import Provider
from careline.scheduling.appointments import (
    InvalidTransition,
    Slot,
    SlotUnavailable,
    change_status,
    find_open_slots,
    latest_event,
    move_appointment,
    revert_change,
)
from careline.scheduling.models import (
    UPCOMING_STATUSES,
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    ChangeSource,
)

# Long enough to notice a wrong click, short enough that the patient's texts and the
# EHR's copy have rarely moved on.
UNDO_WINDOW = timedelta(minutes=5)
# How far ahead the slot picker looks for a day the desk types in.
PICKER_REACH = timedelta(days=2 * 366)
REASON_MAX_LENGTH = 150
UNDO_NOTE = "undo of change #"

# The acts, by the name the pages and the API use.
CONFIRM, CANCEL, RESCHEDULE, ARRIVED, NO_SHOW = (
    "confirm",
    "cancel",
    "reschedule",
    "arrived",
    "noshow",
)
ACTIONS = (CONFIRM, CANCEL, RESCHEDULE, ARRIVED, NO_SHOW)
_STATUS_OF = {
    CONFIRM: AppointmentStatus.CONFIRMED,
    CANCEL: AppointmentStatus.CANCELLED,
    ARRIVED: AppointmentStatus.ARRIVED,
    NO_SHOW: AppointmentStatus.NO_SHOW,
}


class DeskError(Exception):
    """The act was refused; `field` names the input at fault (for a form or a 422)."""

    def __init__(self, message: str, field: str = "action") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Undoable:
    event_id: int
    until: datetime


@dataclass(frozen=True)
class Done:
    appointment: Appointment
    event: AppointmentEvent
    undo_until: datetime | None


def _done(appointment: Appointment, event: AppointmentEvent) -> Done:
    return Done(appointment, event, undo_deadline(event))


def undo_deadline(event: AppointmentEvent) -> datetime | None:
    """Until when the front desk may take `event` back; None if it never may."""
    if (
        event.source != ChangeSource.FRONT_DESK
        or not event.from_status
        or event.note.startswith(UNDO_NOTE)
    ):
        return None
    return event.occurred_at + UNDO_WINDOW


def available_actions(appointment: Appointment) -> tuple[str, ...]:
    """The acts that make sense for a visit in its current status (the buttons shown)."""
    status = appointment.status
    if status == AppointmentStatus.BOOKED:
        return (CONFIRM, RESCHEDULE, CANCEL, ARRIVED, NO_SHOW)
    if status == AppointmentStatus.CONFIRMED:
        return (RESCHEDULE, CANCEL, ARRIVED, NO_SHOW)
    if status == AppointmentStatus.ARRIVED:
        return (NO_SHOW,)
    if status == AppointmentStatus.NO_SHOW:
        return (ARRIVED,)
    return ()


def act(
    appointment: Appointment,
    action: str,
    *,
    user,
    reason: str = "",
    start: datetime | None = None,
    provider_id: int | None = None,
) -> Done:
    """Do one front-desk act on a visit the caller has already found visible to `user`."""
    if action not in ACTIONS:
        raise DeskError(f"Unknown action {action!r}; use one of: {', '.join(ACTIONS)}.")
    reason = " ".join((reason or "").split())
    if action == CANCEL:
        if not reason:
            raise DeskError("Say why the visit is cancelled.", "reason")
        if len(reason) > REASON_MAX_LENGTH:
            raise DeskError(f"Keep the reason to {REASON_MAX_LENGTH} characters.", "reason")
        if "\x00" in reason:  # PostgreSQL cannot store it in a text column
            raise DeskError("The reason contains a NUL character; type it again.", "reason")
    try:
        if action == RESCHEDULE:
            moved = _reschedule(appointment, user=user, start=start, provider_id=provider_id)
            return _done(moved, latest_event(moved.pk))
        if appointment.status == _STATUS_OF[action]:
            raise DeskError(
                f"The visit is already {appointment.get_status_display().lower()}.", "action"
            )
        note = f"cancelled by the front desk: {reason}" if action == CANCEL else "front desk"
        changed = change_status(
            appointment, _STATUS_OF[action], source=ChangeSource.FRONT_DESK, user=user, note=note
        )
    except InvalidTransition as exc:
        raise DeskError(str(exc), "action") from exc
    event = latest_event(changed.pk)
    return _done(changed, event)


def _reschedule(
    appointment: Appointment, *, user, start: datetime | None, provider_id: int | None
) -> Appointment:
    if start is None:
        raise DeskError("Pick the new time.", "start")
    if timezone.is_naive(start):
        raise DeskError("The new time needs its time zone (or UTC offset).", "start")
    if start <= timezone.now():
        raise DeskError("The new time has already passed.", "start")
    provider = None
    if provider_id is not None:
        provider = (
            Provider.objects.filter(pk=provider_id, practices=appointment.practice_id, active=True)
            .distinct()
            .first()
        )
        if provider is None:
            raise DeskError("That provider does not work at this visit's practice.", "provider")
    if appointment.status not in UPCOMING_STATUSES:
        raise DeskError(
            f"A {appointment.get_status_display().lower()} visit cannot be moved.", "action"
        )
    try:
        return move_appointment(
            appointment,
            new_start=start,
            new_provider=provider,
            source=ChangeSource.FRONT_DESK,
            user=user,
            note="rescheduled by the front desk",
        )
    except SlotUnavailable as exc:
        raise DeskError(str(exc), "start") from exc


def undo(appointment: Appointment, *, user, event_id: int | None = None) -> Done:
    """Take back the visit's latest front-desk act, within `UNDO_WINDOW` of it."""
    event = latest_event(appointment.pk)
    if event is None or (event_id is not None and event.pk != event_id):
        raise DeskError("The visit has changed since; there is nothing to undo.", "event")
    deadline = undo_deadline(event)
    if event.note.startswith(UNDO_NOTE):
        raise DeskError("That change was already undone; there is nothing to undo.", "event")
    if deadline is None:
        raise DeskError("Only a front-desk change can be undone here.", "event")
    if timezone.now() > deadline:
        raise DeskError("The few minutes to undo this change have passed.", "event")
    try:
        restored = revert_change(
            event, source=ChangeSource.FRONT_DESK, user=user, note=f"{UNDO_NOTE}{event.pk}"
        )
    except (InvalidTransition, SlotUnavailable) as exc:
        raise DeskError(str(exc), "event") from exc
    return Done(restored, latest_event(restored.pk), None)


def undoable(appointment_ids: list[int], now: datetime | None = None) -> dict[int, Undoable]:
    """For the day's visits, the latest change of each that may still be undone: one query
    (only the last few minutes' changes are read)."""
    now = now or timezone.now()
    latest: dict[int, AppointmentEvent] = {}
    for event in AppointmentEvent.objects.filter(
        appointment_id__in=appointment_ids, occurred_at__gte=now - UNDO_WINDOW
    ).order_by("id"):
        latest[event.appointment_id] = event
    found = {}
    for appointment_id, event in latest.items():
        deadline = undo_deadline(event)
        if deadline is not None and deadline >= now:
            found[appointment_id] = Undoable(event.pk, deadline)
    return found


def open_times(
    appointment: Appointment, on_or_after: date | None = None, count: int = 12
) -> list[Slot]:
    """Open times the visit could move to (any provider of its practice), from the given
    local day or from now, soonest first: the slot picker."""
    practice = appointment.practice
    now = timezone.now()
    after = now
    if on_or_after is not None:
        if on_or_after > (now + PICKER_REACH).date():
            return []  # past any schedule a practice keeps (and, near year 9999, the calendar)
        after = max(now, datetime.combine(on_or_after, time.min, tzinfo=practice.zone))
    minutes = int((appointment.end - appointment.start).total_seconds() // 60)
    slots: list[Slot] = find_open_slots(
        practice=practice, duration_minutes=minutes, after=after, count=count
    )
    return slots
