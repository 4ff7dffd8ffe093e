"""The last gate before a send: pure decisions from facts gathered by the dispatcher."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from careline.messaging.models import Channel, MessageKind
from careline.scheduling.models import UPCOMING_STATUSES, AppointmentStatus

SEND, SUPPRESS, DEFER = "send", "suppress", "defer"


@dataclass(frozen=True)
class SendingHours:
    """Local hours in which texts other than replies may go out: [start, end)."""

    start: int = 8
    end: int = 21

    def next_opening(self, moment: datetime, zone: zoneinfo.ZoneInfo) -> datetime | None:
        """None when `moment` is inside the hours, else the next opening (aware, UTC)."""
        local = moment.astimezone(zone)
        if self.start <= local.hour < self.end:
            return None
        day = local.date() if local.hour < self.start else local.date() + timedelta(days=1)
        return datetime.combine(day, time(self.start), tzinfo=zone).astimezone(
            zoneinfo.ZoneInfo("UTC")
        )

    def next_opening_everywhere(
        self, moment: datetime, zones: tuple[zoneinfo.ZoneInfo, ...]
    ) -> datetime | None:
        """Like `next_opening`, for a phone that may be in any of `zones` (an area code
        spanning two zones): the hours are kept in all of them, i.e. the latest morning and
        the earliest evening."""
        at = moment
        # Each step moves to a zone's next opening; zones a few hours apart agree in two
        # steps. Windows that never overlap (zones half a day apart) end on the last one.
        for _ in range(2 * len(zones) + 1):
            later = [o for z in zones if (o := self.next_opening(at, z)) is not None]
            if not later:
                break
            at = max(later)
        return None if at == moment else at


@dataclass(frozen=True)
class Facts:
    """What is true right now about one message about to be sent."""

    kind: str
    channel: str
    now: datetime
    expires_at: datetime | None
    zone: zoneinfo.ZoneInfo
    has_address: bool
    # Where the patient's phone is (its area code's zones); quiet hours are kept there.
    # Empty when unknown: the practice's zone.
    patient_zones: tuple[zoneinfo.ZoneInfo, ...] = ()
    opted_out: bool = False
    # Appointment messages only: the appointment as it is now, and the visit time planned for.
    has_appointment: bool = False
    appointment_status: str = ""
    appointment_start: datetime | None = None
    visit_start: datetime | None = None
    stop_when_confirmed: bool = False
    # Messages (not replies) this patient got in the last 24 hours.
    sent_to_patient_last_day: int = 0
    # Another visit's reminder of the same step already went to this number for the same
    # practice and local day (a family sharing one phone).
    number_already_reminded: bool = False


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str = ""
    defer_until: datetime | None = None


APPOINTMENT_KINDS = (MessageKind.REMINDER, MessageKind.BOOKED, MessageKind.RESCHEDULED)


def decide(facts: Facts, *, hours: SendingHours, daily_cap: int) -> Decision:
    f = facts
    if f.expires_at is not None and f.expires_at <= f.now:
        return Decision(SUPPRESS, "expired")
    if not f.has_address:
        return Decision(SUPPRESS, "no_address")
    if f.kind in APPOINTMENT_KINDS or f.kind == MessageKind.CANCELLED:
        reason = _appointment_problem(f)
        if reason:
            return Decision(SUPPRESS, reason)
    # A reply answers the patient's own text (STOP confirmation, HELP): it goes to
    # opted-out numbers and at any hour, and is not counted against the cap.
    if f.kind == MessageKind.REPLY:
        return Decision(SEND)
    # A number that said STOP gets no texts; an address that unsubscribed, no email.
    if f.opted_out:
        return Decision(SUPPRESS, "opted_out")
    if f.channel == Channel.SMS:
        opening = hours.next_opening_everywhere(f.now, f.patient_zones or (f.zone,))
        if opening is not None:
            if f.visit_start is not None and f.visit_start <= opening:
                return Decision(SUPPRESS, "quiet_hours")
            if f.expires_at is not None and f.expires_at <= opening:
                return Decision(SUPPRESS, "expired")
            return Decision(DEFER, "quiet_hours", opening)
    if f.sent_to_patient_last_day >= daily_cap:
        return Decision(SUPPRESS, "frequency_cap")
    if f.kind == MessageKind.REMINDER and f.number_already_reminded:
        return Decision(SUPPRESS, "shared_number")
    return Decision(SEND)


def _appointment_problem(f: Facts) -> str:
    if not f.has_appointment:
        return "appointment_gone"
    if f.kind == MessageKind.CANCELLED:
        return "" if f.appointment_status == AppointmentStatus.CANCELLED else "appointment_changed"
    if f.appointment_status not in UPCOMING_STATUSES:
        if f.appointment_status == AppointmentStatus.CANCELLED:
            return "appointment_cancelled"
        return "appointment_closed"
    if f.visit_start != f.appointment_start:
        return "appointment_moved"
    if f.appointment_start is None or f.appointment_start <= f.now:
        return "visit_started"
    if (
        f.kind == MessageKind.REMINDER
        and f.stop_when_confirmed
        and f.appointment_status == AppointmentStatus.CONFIRMED
    ):
        return "confirmed"
    return ""
