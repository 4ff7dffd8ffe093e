"""Report figures, computed in the database with one grouped query each.

Definitions (the same everywhere Careline shows them):
- *appointments*: every appointment except those entered in error.
- *due*: visits whose time came and that were not cancelled — arrived, fulfilled or no-show.
- *no-show rate*: no-shows / due.
- *late cancellation*: cancelled less than 24 hours before the start; rate over appointments.
- *confirmation rate*: appointments the patient confirmed (at any time) / appointments.
- *calls avoided*: confirmations, cancellations and reschedules the patient did by text or
  link — each one is a phone call the front desk did not have to take.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from careline.analytics.statistics import RateComparison, compare_rates
from careline.clinics.models import Practice
from careline.scheduling.models import (
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    ChangeSource,
)

DIMENSIONS = {
    "practice": ("practice_id", "practice__name"),
    "provider": ("provider_id", "provider__display_name"),
    "appointment_type": ("appointment_type_id", "appointment_type__name"),
    "week": ("period", None),
    "month": ("period", None),
}
PATIENT_SOURCES = (ChangeSource.PATIENT_TEXT, ChangeSource.PATIENT_LINK)


@dataclass
class MetricsRow:
    key: object
    label: str
    appointments: int = 0
    due: int = 0
    no_shows: int = 0
    cancellations: int = 0
    late_cancellations: int = 0
    confirmed: int = 0
    calls_avoided: int = 0

    @property
    def no_show_rate(self) -> float | None:
        return self.no_shows / self.due if self.due else None

    @property
    def late_cancellation_rate(self) -> float | None:
        return self.late_cancellations / self.appointments if self.appointments else None

    @property
    def confirmation_rate(self) -> float | None:
        return self.confirmed / self.appointments if self.appointments else None


def _window(qs: QuerySet, start: date | None, end: date | None) -> QuerySet:
    if start:
        qs = qs.filter(
            start__gte=datetime.combine(start, time.min, tzinfo=timezone.get_current_timezone())
        )
    if end:
        qs = qs.filter(
            start__lt=datetime.combine(end, time.min, tzinfo=timezone.get_current_timezone())
        )
    return qs


def appointment_metrics(
    appointments: QuerySet[Appointment],
    *,
    group_by: str = "practice",
    start: date | None = None,
    end: date | None = None,
) -> list[MetricsRow]:
    """Grouped report over an already-scoped appointment queryset (use `.visible_to(user)`)."""
    if group_by not in DIMENSIONS:
        raise ValueError(f"Cannot group by {group_by!r}; choose one of {', '.join(DIMENSIONS)}")
    key_field, label_field = DIMENSIONS[group_by]
    qs = _window(appointments.exclude(status=AppointmentStatus.ENTERED_IN_ERROR), start, end)
    if group_by in ("week", "month"):
        trunc = TruncWeek if group_by == "week" else TruncMonth
        qs = qs.annotate(period=trunc("start"))
    fields = [key_field] + ([label_field] if label_field else [])
    due_q = Q(
        status__in=[
            AppointmentStatus.ARRIVED,
            AppointmentStatus.FULFILLED,
            AppointmentStatus.NO_SHOW,
        ]
    )
    rows = (
        qs.values(*fields)
        .annotate(
            appointments=Count("id"),
            due=Count("id", filter=due_q),
            no_shows=Count("id", filter=Q(status=AppointmentStatus.NO_SHOW)),
            cancellations=Count("id", filter=Q(status=AppointmentStatus.CANCELLED)),
            late_cancellations=Count(
                "id",
                filter=Q(status=AppointmentStatus.CANCELLED)
                & Q(status_changed_at__gt=F("start") - timedelta(hours=24)),
            ),
            confirmed=Count("id", filter=Q(confirmed_at__isnull=False)),
        )
        .order_by(key_field)
    )
    result: dict[object, MetricsRow] = {}
    for row in rows:
        key = row[key_field]
        label = row[label_field] if label_field else _period_label(key, group_by)
        result[key] = MetricsRow(
            key=key,
            label=label,
            **{
                k: row[k]
                for k in (
                    "appointments",
                    "due",
                    "no_shows",
                    "cancellations",
                    "late_cancellations",
                    "confirmed",
                )
            },
        )
    for key, count in _calls_avoided(qs, key_field, group_by).items():
        if key in result:
            result[key].calls_avoided = count
    return list(result.values())


def _calls_avoided(appointments: QuerySet, key_field: str, group_by: str) -> dict:
    events = AppointmentEvent.objects.filter(
        appointment__in=appointments.values("id"), source__in=PATIENT_SOURCES
    ).filter(
        Q(to_status__in=[AppointmentStatus.CONFIRMED, AppointmentStatus.CANCELLED])
        | Q(note="rescheduled")
    )
    if group_by in ("week", "month"):
        trunc = TruncWeek if group_by == "week" else TruncMonth
        events = events.annotate(period=trunc("appointment__start"))
        path = "period"
    else:
        path = f"appointment__{key_field}"
    return {r[path]: r["n"] for r in events.values(path).annotate(n=Count("id")).order_by()}


def _period_label(value, group_by: str) -> str:
    if value is None:
        return "—"
    if group_by == "month":
        return value.strftime("%Y-%m")
    return "Week of " + value.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class BeforeAfter:
    practice: Practice
    go_live: date
    before_due: int
    before_no_shows: int
    after_due: int
    after_no_shows: int
    comparison: RateComparison


def before_and_after(practices: Iterable[Practice], *, window_days: int = 180) -> list[BeforeAfter]:
    """No-show rate in the `window_days` before and after each practice's go-live date."""
    results = []
    due = [AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED, AppointmentStatus.NO_SHOW]
    for practice in practices:
        if not practice.go_live_date:
            continue
        go_live = datetime.combine(practice.go_live_date, time.min, tzinfo=practice.zone)
        window = timedelta(days=window_days)
        counts = Appointment.objects.filter(
            practice=practice,
            status__in=due,
            start__gte=go_live - window,
            start__lt=go_live + window,
        ).aggregate(
            before_due=Count("id", filter=Q(start__lt=go_live)),
            before_ns=Count("id", filter=Q(start__lt=go_live, status=AppointmentStatus.NO_SHOW)),
            after_due=Count("id", filter=Q(start__gte=go_live)),
            after_ns=Count("id", filter=Q(start__gte=go_live, status=AppointmentStatus.NO_SHOW)),
        )
        results.append(
            BeforeAfter(
                practice=practice,
                go_live=practice.go_live_date,
                before_due=counts["before_due"],
                before_no_shows=counts["before_ns"],
                after_due=counts["after_due"],
                after_no_shows=counts["after_ns"],
                comparison=compare_rates(
                    counts["before_ns"],
                    counts["before_due"],
                    counts["after_ns"],
                    counts["after_due"],
                ),
            )
        )
    return results
