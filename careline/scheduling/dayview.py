"""What the front desk sees for a day: each visit and where its patient's answer stands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import QuerySet

from careline.clinics.models import Practice
from careline.patients.models import PhoneConsent
from careline.scheduling.models import Appointment, AppointmentStatus


class ReplyState:
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    NO_ANSWER = "no answer"
    OPTED_OUT = "unreachable: opted out"
    NO_MOBILE = "unreachable: no mobile"


@dataclass(frozen=True)
class DayRow:
    appointment: Appointment
    local_start: datetime
    reply_state: str


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
    """One label per appointment, from its status and whether its patient can be reached."""
    phones = {a.patient.mobile_phone for a in appointments if a.patient.mobile_phone}
    org_ids = {a.organization_id for a in appointments}
    opted_out = set(
        PhoneConsent.objects.filter(
            organization_id__in=org_ids, phone__in=phones, opted_out=True
        ).values_list("organization_id", "phone")
    )
    states = {}
    for appt in appointments:
        if appt.status == AppointmentStatus.CANCELLED:
            state = ReplyState.CANCELLED
        elif appt.confirmed_at or appt.status == AppointmentStatus.CONFIRMED:
            state = ReplyState.CONFIRMED
        elif not appt.patient.mobile_phone:
            state = ReplyState.NO_MOBILE
        elif (appt.organization_id, appt.patient.mobile_phone) in opted_out:
            state = ReplyState.OPTED_OUT
        else:
            state = ReplyState.NO_ANSWER
        states[appt.id] = state
    return states


def day_rows(practice: Practice, day: date, provider_id: int | None = None) -> list[DayRow]:
    appointments = list(appointments_of_day(practice, day, provider_id))
    states = reply_states(appointments)
    zone = practice.zone
    return [DayRow(a, a.start.astimezone(zone), states[a.id]) for a in appointments]


def call_list(practice: Practice, today: date) -> list[DayRow]:
    """Tomorrow's visits to phone: nobody confirmed them, or the no-show model rates them
    high-risk (the extra touch that a risk-targeting experiment measures)."""
    tomorrow = today + timedelta(days=1)
    threshold = settings.CARELINE_NOSHOW_CALL_THRESHOLD
    rows = []
    for row in day_rows(practice, tomorrow):
        appt = row.appointment
        risky = appt.noshow_risk is not None and appt.noshow_risk >= threshold
        if appt.status == AppointmentStatus.BOOKED and row.reply_state != ReplyState.CONFIRMED:
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
