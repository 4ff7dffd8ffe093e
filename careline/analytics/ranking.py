"""Practices and providers side by side, readable at 72 practices and 420 providers.

A bar per group stops being readable past a few dozen, so the comparison page ranks: the
top or bottom N by any column, a search on the name, groups with too few visits left out
of the ranking (a practice with 3 visits and 2 no-shows is not the worst practice), and a
sparkline per row of its monthly no-show rate, all on one shared scale so rows compare.
The funnel (texted → confirmed → arrived) nests: each step counts visits that also passed
the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from careline.analytics.metrics import DIMENSIONS, MetricsRow, MonthStart, appointment_metrics
from careline.messaging.models import MessageKind, MessageState, OutboundMessage
from careline.scheduling.models import Appointment, AppointmentStatus

GROUPS = ("practice", "provider")
SORTS = {
    "label": "Name",
    "appointments": "Appointments",
    "due": "With outcome",
    "no_show_rate": "No-show rate",
    "confirmation_rate": "Confirmation rate",
    "late_cancellation_rate": "Late-cancellation rate",
}
SPARK_MONTHS = 12
SPARK_WIDTH, SPARK_HEIGHT = 96, 20
_DUE = [AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED, AppointmentStatus.NO_SHOW]
_ARRIVED = [AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED]


@dataclass
class RankedRow:
    rank: int
    metrics: MetricsRow
    spark: list[float | None]
    spark_points: str = ""


@dataclass
class Ranking:
    rows: list[RankedRow]
    matching: int  # groups that match the search and have enough visits
    too_few: int  # groups that match the search but have fewer than `min_due` outcomes
    spark_months: list[date]
    spark_peak: float


def _months_back(last: date, count: int) -> list[date]:
    first = last.replace(day=1)
    months = [first]
    for _ in range(count - 1):
        first = (first - timedelta(days=1)).replace(day=1)
        months.append(first)
    return months[::-1]


def _sort_key(sort: str):
    def key(row: MetricsRow):
        value = getattr(row, sort)
        return value.casefold() if isinstance(value, str) else value

    return key


def rank(
    appointments: QuerySet[Appointment],
    *,
    group_by: str,
    start: date | None,
    end: date | None,
    search: str = "",
    sort: str = "no_show_rate",
    descending: bool = True,
    limit: int = 15,
    bottom: bool = False,
    min_due: int = 30,
) -> Ranking:
    """The groups of `appointments` (already scoped to the user) ranked by `sort`: the first
    `limit` (or, with `bottom`, the last), among those whose name contains `search` and
    that have at least `min_due` visits with an outcome."""
    if group_by not in GROUPS:
        raise ValueError(f"Rank by {' or '.join(GROUPS)}, not {group_by!r}")
    if sort not in SORTS:
        raise ValueError(f"Sort by one of {', '.join(SORTS)}, not {sort!r}")
    rows = appointment_metrics(appointments, group_by=group_by, start=start, end=end)
    needle = search.strip().casefold()
    found = [r for r in rows if needle in r.label.casefold()]
    ranked = [r for r in found if r.due >= min_due]
    # Groups without a value (no visits with an outcome) go last whichever the direction.
    with_value = [r for r in ranked if getattr(r, sort) is not None]
    without = [r for r in ranked if getattr(r, sort) is None]
    ordered = sorted(with_value, key=_sort_key(sort), reverse=descending) + without
    positions = {id(r): i + 1 for i, r in enumerate(ordered)}
    chosen = ordered[-limit:] if bottom else ordered[:limit]
    months = _months_back(end - timedelta(days=1) if end else timezone.now().date(), SPARK_MONTHS)
    sparks = _monthly_rates(appointments, group_by, [r.key for r in chosen], months)
    peak = max((v for s in sparks.values() for v in s if v is not None), default=0.0) or 1.0
    result = [
        RankedRow(positions[id(r)], r, sparks.get(r.key, [None] * len(months))) for r in chosen
    ]
    for row in result:
        row.spark_points = _points(row.spark, peak)
    return Ranking(result, len(ordered), len(found) - len(ranked), months, peak)


def _monthly_rates(
    appointments: QuerySet[Appointment], group_by: str, keys: list, months: list[date]
) -> dict[object, list[float | None]]:
    """Each group's no-show rate per month, for the shown groups only (one grouped query)."""
    if not keys:
        return {}
    key_field = DIMENSIONS[group_by][0]
    zone = timezone.get_current_timezone()
    after = months[-1] + timedelta(days=32)
    window = appointments.filter(
        **{f"{key_field}__in": keys},
        start__gte=datetime.combine(months[0], time.min, tzinfo=zone),
        start__lt=datetime.combine(after.replace(day=1), time.min, tzinfo=zone),
        status__in=_DUE,
    )
    counts = (
        window.annotate(month=MonthStart("start"))
        .values(key_field, "month")
        .annotate(due=Count("id"), no_shows=Count("id", filter=Q(status=AppointmentStatus.NO_SHOW)))
        .order_by()
    )
    index = {m: i for i, m in enumerate(months)}
    rates: dict[object, list[float | None]] = {k: [None] * len(months) for k in keys}
    for row in counts:
        month = row["month"]
        if isinstance(month, datetime):
            month = month.date()
        elif isinstance(month, str):
            month = date.fromisoformat(month[:10])
        if month in index and row["due"]:
            rates[row[key_field]][index[month]] = row["no_shows"] / row["due"]
    return rates


def _points(values: list[float | None], peak: float) -> str:
    """SVG polyline points; a month without visits breaks nothing, it is simply skipped."""
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 2 - (SPARK_HEIGHT - 4) * v / peak:.1f}"
        for i, v in enumerate(values)
        if v is not None
    )


@dataclass(frozen=True)
class Funnel:
    """Past visits → texted a reminder → and confirmed → and arrived."""

    visits: int
    texted: int
    confirmed: int
    arrived: int

    def steps(self) -> list[tuple[str, int, float | None]]:
        base = self.visits
        return [
            (label, n, n / base if base else None)
            for label, n in (
                ("Visits", self.visits),
                ("Texted a reminder", self.texted),
                ("…and confirmed", self.confirmed),
                ("…and arrived", self.arrived),
            )
        ]


def funnel(appointments: QuerySet[Appointment], *, start: date | None, end: date | None) -> Funnel:
    zone = timezone.get_current_timezone()
    past = appointments.filter(start__lt=timezone.now()).exclude(
        status=AppointmentStatus.ENTERED_IN_ERROR
    )
    if start:
        past = past.filter(start__gte=datetime.combine(start, time.min, tzinfo=zone))
    if end:
        past = past.filter(start__lt=datetime.combine(end, time.min, tzinfo=zone))
    # An uncorrelated IN (read once, hashed), not EXISTS per visit.
    reminded = OutboundMessage.objects.filter(
        kind=MessageKind.REMINDER,
        state__in=[MessageState.SENT, MessageState.DELIVERED],
        appointment_id__isnull=False,
    ).values("appointment_id")
    texted = Q(id__in=reminded)
    confirmed = texted & Q(confirmed_at__isnull=False)
    counts = past.aggregate(
        visits=Count("id"),
        texted=Count("id", filter=texted),
        confirmed=Count("id", filter=confirmed),
        arrived=Count("id", filter=confirmed & Q(status__in=_ARRIVED)),
    )
    return Funnel(**counts)
