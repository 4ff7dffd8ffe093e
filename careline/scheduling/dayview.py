"""What the front desk sees for a day: each visit and where its patient's answer stands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from careline.clinics.models import Practice
from careline.patients.models import PhoneConsent
from careline.scheduling.models import UPCOMING_STATUSES, Appointment, AppointmentStatus


class ReplyState:
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    NOT_TEXTED = "not texted yet"
    NO_ANSWER = "texted, no answer"
    ASKED_TO_MOVE = "asked to reschedule"
    OPTED_OUT = "opted out"
    NO_MOBILE = "no mobile"


# Who a person should phone, and in which order among visits at the same time.
CALL_ORDER = (
    ReplyState.OPTED_OUT,
    ReplyState.NO_MOBILE,
    ReplyState.NO_ANSWER,
    ReplyState.ASKED_TO_MOVE,
)

# What was texted and what patients asked is known above scheduling (messaging,
# conversations), which subscribe here in their AppConfig.ready(): each reader takes the
# day's appointment ids and answers, in one query, which of them it holds true for.
VisitReader = Callable[[list[int]], set[int]]
_texted_readers: list[VisitReader] = []
_asked_to_move_readers: list[VisitReader] = []
_not_to_touch_readers: list[VisitReader] = []


def on_read_texted(reader: VisitReader) -> None:
    """`reader(ids)`: the visits a text about them has reached (or is leaving for)."""
    if reader not in _texted_readers:
        _texted_readers.append(reader)


def on_read_asked_to_move(reader: VisitReader) -> None:
    """`reader(ids)`: the visits whose patient asked to move them since their last change."""
    if reader not in _asked_to_move_readers:
        _asked_to_move_readers.append(reader)


def on_read_not_to_touch(reader: VisitReader) -> None:
    """`reader(ids)`: high-risk visits randomized to get no extra touch, which the call
    list must not add for their risk (a call would be the touch the experiment withholds)."""
    if reader not in _not_to_touch_readers:
        _not_to_touch_readers.append(reader)


def _read(readers: list[VisitReader], ids: list[int]) -> set[int]:
    found: set[int] = set()
    for reader in readers:
        found |= reader(ids)
    return found


@dataclass(frozen=True)
class DayRow:
    appointment: Appointment
    local_start: datetime
    reply_state: str
    # The latest change the front desk may still take back (careline.scheduling.desk).
    undo: object = None

    @property
    def target(self) -> str:
        return f"#appt-{self.appointment.id}"

    @property
    def state_key(self) -> str:
        return self.reply_state.replace(",", "").replace(" ", "-")


def local_day_bounds(practice: Practice, day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=practice.zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=practice.zone)
    return start, end


def appointments_of_day(
    practice: Practice, day: date, provider_id: int | None = None
) -> QuerySet[Appointment]:
    start, end = local_day_bounds(practice, day)
    qs = Appointment.objects.filter(practice=practice, start__gte=start, start__lt=end).exclude(
        status=AppointmentStatus.ENTERED_IN_ERROR
    )
    if provider_id:
        qs = qs.filter(provider_id=provider_id)
    return qs.select_related("patient", "provider", "appointment_type", "practice").order_by(
        "start", "id"
    )


def reply_states(appointments: list[Appointment]) -> dict[int, str]:
    """Where each visit's answer stands, from its status, whether its patient can be
    reached, whether it was texted and whether the patient asked to move it. A few
    set-based queries for the whole list, never one per visit."""
    phones = {a.patient.mobile_phone for a in appointments if a.patient.mobile_phone}
    org_ids = {a.organization_id for a in appointments}
    opted_out = set(
        PhoneConsent.objects.filter(
            organization_id__in=org_ids, phone__in=phones, opted_out=True
        ).values_list("organization_id", "phone")
    )
    open_ids = [a.id for a in appointments if a.status in UPCOMING_STATUSES]
    texted = _read(_texted_readers, open_ids) if open_ids else set()
    asked_to_move = _read(_asked_to_move_readers, open_ids) if open_ids else set()
    states = {}
    for appt in appointments:
        if appt.status == AppointmentStatus.CANCELLED:
            state = ReplyState.CANCELLED
        elif appt.id in asked_to_move:
            state = ReplyState.ASKED_TO_MOVE
        elif appt.confirmed_at or appt.status == AppointmentStatus.CONFIRMED:
            state = ReplyState.CONFIRMED
        elif not appt.patient.mobile_phone:
            state = ReplyState.NO_MOBILE
        elif (appt.organization_id, appt.patient.mobile_phone) in opted_out:
            state = ReplyState.OPTED_OUT
        elif appt.id in texted:
            state = ReplyState.NO_ANSWER
        else:
            state = ReplyState.NOT_TEXTED
        states[appt.id] = state
    return states


def needs_call(row: DayRow, now: datetime) -> bool:
    """A visit still ahead that texting has not settled: its patient cannot be texted,
    has not answered, or asked to move it."""
    return (
        row.appointment.status in UPCOMING_STATUSES
        and row.appointment.start > now
        and row.reply_state in CALL_ORDER
    )


def calls_to_make(rows: list[DayRow], now: datetime) -> list[DayRow]:
    """The day's call list: soonest first, then unreachable before unanswered."""
    return sorted(
        (row for row in rows if needs_call(row, now)),
        key=lambda row: (row.appointment.start, CALL_ORDER.index(row.reply_state)),
    )


def day_rows(practice: Practice, day: date, provider_id: int | None = None) -> list[DayRow]:
    appointments = list(appointments_of_day(practice, day, provider_id))
    states = reply_states(appointments)
    zone = practice.zone
    return [DayRow(a, a.start.astimezone(zone), states[a.id]) for a in appointments]


def call_list(practice: Practice, today: date) -> list[DayRow]:
    """Tomorrow's visits to phone: texting has not settled them (`needs_call`), or the
    no-show model rates them high-risk, unless the extra-touch experiment randomized them
    to no touch (careline.messaging.touches)."""
    tomorrow = today + timedelta(days=1)
    threshold = settings.CARELINE_NOSHOW_CALL_THRESHOLD
    now = timezone.now()
    rows = []
    day = day_rows(practice, tomorrow)
    not_to_touch = _read(_not_to_touch_readers, [row.appointment.id for row in day])
    for row in day:
        appt = row.appointment
        risky = (
            appt.noshow_risk is not None
            and appt.noshow_risk >= threshold
            and appt.id not in not_to_touch
        )
        if needs_call(row, now):
            rows.append(row)
        elif appt.status in (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED) and risky:
            rows.append(
                DayRow(
                    appt,
                    row.local_start,
                    f"{row.reply_state}; high no-show risk ({appt.noshow_risk:.0%})",
                )
            )
    return rows
