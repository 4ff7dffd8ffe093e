"""Slot: open time computed from the schedule (working hours, breaks, holidays, blocks and
booked visits); read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from careline.clinics.models import AppointmentType
from careline.integrations.fhir.errors import FhirError, not_found
from careline.integrations.fhir.resources.handler import Context, Handler, SearchParameter, iso
from careline.integrations.fhir.resources.schedule import ScheduleHandler, ScheduleRow
from careline.integrations.fhir.search import (
    date_range,
    is_ascii_number,
    parse_token,
    search_parameter,
)
from careline.scheduling.appointments import (
    LONGEST_VISIT,
    VisitTimeError,
    check_visit_times,
    find_open_slots,
)


@dataclass(frozen=True)
class SlotRow:
    schedule: ScheduleRow
    start: datetime
    end: datetime
    free: bool

    @property
    def id(self) -> str:
        minutes = int((self.end - self.start).total_seconds() // 60)
        return f"{self.schedule.id}-{int(self.start.timestamp())}-{minutes}"


class SlotHandler(Handler):
    resource_type = "Slot"
    writable = False
    documentation = (
        "Open time computed from working hours, breaks, holidays, blocked periods and booked "
        "appointments. Read-only. Searches need schedule=; start= bounds the window (default "
        "the next 14 days, at most 90); only status=free is published. The slot length is the "
        "appointment-type's duration (code of an appointment type), default 20 minutes."
    )
    search_parameters = {
        "schedule": SearchParameter("reference", "Schedule/<id> (required)."),
        "start": SearchParameter("date", "Window: ge/gt for its start, lt/le for its end."),
        "status": SearchParameter("token", "free (the only status published)."),
        "appointment-type": SearchParameter("token", "Appointment type code: slot length."),
    }
    DEFAULT_WINDOW = timedelta(days=14)
    MAX_WINDOW = timedelta(days=90)
    MAX_SLOTS = 2000

    def get(self, ctx: Context, resource_id: str) -> SlotRow:
        parts = resource_id.split("-")
        if len(parts) != 4 or not all(is_ascii_number(p) and len(p) < 12 for p in parts):
            raise not_found("Slot", resource_id)
        schedule = ScheduleHandler().get(ctx, f"{parts[0]}-{parts[1]}")
        start = datetime.fromtimestamp(int(parts[2]), tz=UTC)
        minutes = int(parts[3])
        if not 0 < minutes <= 24 * 60:
            raise not_found("Slot", resource_id)
        end = start + timedelta(minutes=minutes)
        try:
            check_visit_times(start, end)
        except VisitTimeError:
            raise not_found("Slot", resource_id) from None
        found = find_open_slots(
            practice=schedule.practice,
            duration_minutes=minutes,
            after=start,
            providers=[schedule.provider],
            count=1,
            horizon_days=7,
        )
        free = bool(found) and found[0].start == start
        return SlotRow(schedule, start, end, free)

    def search(self, ctx, params, offset, count) -> tuple[int, list[Any]]:
        schedules = params.get("schedule", [])
        if len(schedules) != 1 or "," in schedules[0]:
            raise FhirError(
                400,
                "Slot search needs exactly one schedule=Schedule/<id>.",
                expression=["schedule"],
            )
        raw = schedules[0].strip()
        schedule_id = raw.split("/")[-1] if raw.startswith("Schedule/") or "/" not in raw else ""
        if not schedule_id:
            raise FhirError(
                400, f"schedule must be Schedule/<id>, got '{raw}'.", expression=["schedule"]
            )
        with search_parameter("schedule"):
            schedule = ScheduleHandler().get(ctx, schedule_id)
        for status in params.get("status", []):
            if set(status.split(",")) != {"free"}:
                raise FhirError(
                    400, "Only free slots are published: use status=free.", expression=["status"]
                )
        minutes = 20
        for code in params.get("appointment-type", []):
            token = parse_token(code)
            appointment_type = AppointmentType.objects.filter(
                organization=ctx.organization, code=token.code or ""
            ).first()
            if appointment_type is None:
                raise FhirError(
                    400,
                    f"appointment-type '{code}' is not a known code.",
                    expression=["appointment-type"],
                )
            minutes = appointment_type.duration_minutes
            if not 0 < minutes <= LONGEST_VISIT.total_seconds() // 60:
                raise FhirError(
                    400,
                    f"appointment-type '{code}' lasts {minutes} minutes; slots are 1 to 1440.",
                    expression=["appointment-type"],
                )
        zone = schedule.practice.zone
        now = timezone.now()
        after, before = now, None
        for value in params.get("start", []):
            with search_parameter("start"):
                prefix, lo, hi = date_range(value, zone)
            if prefix in ("ge", "eq"):
                after = max(after, lo)
            elif prefix in ("gt", "sa"):
                after = max(after, hi)
            if prefix in ("lt", "eb"):
                before = lo if before is None else min(before, lo)
            elif prefix in ("le", "eq"):
                before = hi if before is None else min(before, hi)
            elif prefix not in ("ge", "gt", "sa"):
                raise FhirError(
                    400, f"start supports eq, ge, gt, lt, le; got '{value}'.", expression=["start"]
                )
        before = min(before or after + self.DEFAULT_WINDOW, after + self.MAX_WINDOW)
        if before <= after:
            return 0, []
        horizon = (before - after).days + 2
        slots = [
            s
            for s in find_open_slots(
                practice=schedule.practice,
                duration_minutes=minutes,
                after=after,
                providers=[schedule.provider],
                count=self.MAX_SLOTS,
                horizon_days=horizon,
            )
            if s.end <= before
        ]
        rows = [SlotRow(schedule, s.start, s.end, True) for s in slots]
        return len(rows), rows[offset : offset + count] if count else []

    def render(self, ctx: Context, row: SlotRow) -> dict[str, Any]:
        return {
            "resourceType": "Slot",
            "id": row.id,
            "schedule": {"reference": f"Schedule/{row.schedule.id}"},
            "status": "free" if row.free else "busy",
            "start": iso(row.start),
            "end": iso(row.end),
        }
