"""Report figures, computed in the database with one grouped query each.

The counts are filled here; every rate over them is defined once, numerator and denominator,
in careline.analytics.glossary (shown on the analytics page). Counts that are not rates:
- *appointments*: every appointment except those entered in error.
- *due*: visits whose time came and that were not cancelled — arrived, fulfilled or no-show.
- *calls avoided*: confirmations, cancellations and reschedules the patient did by text or
  link — each one is a phone call the front desk did not have to take.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, DateField, Exists, F, Func, OuterRef, Q, QuerySet
from django.utils import timezone

from careline.analytics.glossary import RATES
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
PATIENT_SOURCES = (ChangeSource.PATIENT_TEXT, ChangeSource.PATIENT_LINK, ChangeSource.PATIENT_CALL)


class _PeriodStart(Func):
    """First day (UTC) of a datetime's week (Monday) or month, in the database's own
    built-in date functions: Django's Trunc on SQLite calls back into Python for every
    row, which costs seconds over a million appointments."""

    output_field = DateField()
    sqlite_template = ""
    postgresql_unit = ""

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return self.sqlite_template.format(sql=sql), [*params] * self.sqlite_template.count("{sql}")

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(date_trunc('{self.postgresql_unit}', {sql} AT TIME ZONE 'UTC'))::date", params


class WeekStart(_PeriodStart):
    # "%%" is a literal % in SQL that also carries parameters.
    sqlite_template = (
        "date({sql}, '-' || ((CAST(strftime('%%w', {sql}) AS INTEGER) + 6) %% 7) || ' days')"
    )
    postgresql_unit = "week"


class MonthStart(_PeriodStart):
    sqlite_template = "date(strftime('%%Y-%%m-01', {sql}))"
    postgresql_unit = "month"


PERIODS = {"week": WeekStart, "month": MonthStart}


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
        return RATES["no_show_rate"].of(self)

    @property
    def cancellation_rate(self) -> float | None:
        return RATES["cancellation_rate"].of(self)

    @property
    def late_cancellation_rate(self) -> float | None:
        return RATES["late_cancellation_rate"].of(self)

    @property
    def confirmation_rate(self) -> float | None:
        return RATES["confirmation_rate"].of(self)


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
    if group_by in PERIODS:
        qs = qs.annotate(period=PERIODS[group_by]("start"))
    # Group by the key alone and look the few labels up afterwards: joining the label's
    # table into a million-row GROUP BY costs more than the whole rest of the report.
    fields = [key_field]
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
            confirmed=Count("id", filter=Q(confirmed_at__isnull=False)),
        )
        .order_by(key_field)
    )
    rows = list(rows)
    labels = _labels(key_field, label_field, [r[key_field] for r in rows]) if label_field else {}
    result: dict[object, MetricsRow] = {}
    for row in rows:
        key = row[key_field]
        label = labels.get(key, "—") if label_field else _period_label(key, group_by)
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
                    "confirmed",
                )
            },
        )
    # Late cancellations are few: count them on the cancelled rows alone (the date
    # arithmetic is costly per row on SQLite).
    late = (
        qs.filter(status=AppointmentStatus.CANCELLED)
        .filter(status_changed_at__gt=F("start") - timedelta(hours=24))
        .values(key_field)
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in late:
        if row[key_field] in result:
            result[row[key_field]].late_cancellations = row["n"]
    for key, count in _calls_avoided(qs, key_field, group_by).items():
        if key in result:
            result[key].calls_avoided = count
    return list(result.values())


def _labels(key_field: str, label_field: str, keys: list) -> dict:
    relation, attribute = label_field.split("__", 1)
    model = Appointment._meta.get_field(relation).related_model
    return dict(model.objects.filter(pk__in=keys).values_list("pk", attribute))


def _calls_avoided(appointments: QuerySet, key_field: str, group_by: str) -> dict:
    events = AppointmentEvent.objects.filter(
        appointment__in=appointments.values("id"), source__in=PATIENT_SOURCES
    ).filter(
        Q(to_status__in=[AppointmentStatus.CONFIRMED, AppointmentStatus.CANCELLED])
        | Q(note="rescheduled")
    )
    if group_by in PERIODS:
        events = events.annotate(period=PERIODS[group_by]("appointment__start"))
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


@dataclass
class EngagementRow:
    """Texting, inbox and waitlist figures of one practice over a period."""

    practice_id: int
    label: str
    texts_finished: int = 0  # delivered, sent, undelivered or failed
    texts_failed: int = 0
    reminded_visits: int = 0
    visits_with_reply: int = 0
    numbers_texted: int = 0
    opt_outs: int = 0
    slots_freed: int = 0
    slots_refilled: int = 0
    median_first_answer_minutes: float | None = None

    @property
    def delivery_failure_rate(self) -> float | None:
        return RATES["delivery_failure_rate"].of(self)

    @property
    def reply_rate(self) -> float | None:
        return RATES["reply_rate"].of(self)

    @property
    def opt_out_rate(self) -> float | None:
        return RATES["opt_out_rate"].of(self)

    @property
    def refill_rate(self) -> float | None:
        return RATES["refill_rate"].of(self)


def _between(field: str, start: datetime, end: datetime) -> Q:
    return Q(**{f"{field}__gte": start, f"{field}__lt": end})


def median_first_answer_minutes(conversations: QuerySet) -> float | None:
    """Median minutes from opening to the first staff answer, found by the database:
    count the answered ones, then read the middle one or two in order."""
    from django.db.models import DurationField, ExpressionWrapper

    answered = conversations.filter(first_staff_reply_at__isnull=False).annotate(
        wait=ExpressionWrapper(F("first_staff_reply_at") - F("opened_at"), DurationField())
    )
    n = answered.count()
    if not n:
        return None
    ordered = answered.order_by("wait").values_list("wait", flat=True)
    middle = list(ordered[(n - 1) // 2 : n // 2 + 1])
    return sum(w.total_seconds() for w in middle) / len(middle) / 60


def engagement_metrics(
    practices: QuerySet[Practice], *, start: datetime, end: datetime
) -> list[EngagementRow]:
    """Per practice: delivery failures, reply rate, opt-outs, waitlist refills, inbox speed."""
    from careline.conversations.models import Conversation, InboundMessage
    from careline.messaging.models import MessageKind, MessageState, OutboundMessage
    from careline.patients.models import ConsentEvent
    from careline.waitlist.models import SlotOpening

    rows = {p.id: EngagementRow(p.id, p.name) for p in practices}
    ids = list(rows)
    finished = [
        MessageState.SENT,
        MessageState.DELIVERED,
        MessageState.UNDELIVERED,
        MessageState.FAILED,
    ]
    texts = OutboundMessage.objects.filter(practice_id__in=ids, channel="sms").filter(
        _between("created_at", start, end)
    )
    for r in (
        texts.values("practice_id")
        .annotate(
            finished=Count("id", filter=Q(state__in=finished)),
            failed=Count("id", filter=Q(state__in=[MessageState.UNDELIVERED, MessageState.FAILED])),
            reminded=Count(
                "appointment_id",
                filter=Q(kind=MessageKind.REMINDER, state__in=finished),
                distinct=True,
            ),
            numbers=Count("to_address", filter=Q(state__in=finished), distinct=True),
        )
        .order_by()
    ):
        row = rows[r["practice_id"]]
        row.texts_finished, row.texts_failed = r["finished"], r["failed"]
        row.reminded_visits, row.numbers_texted = r["reminded"], r["numbers"]
    # A reply is any text from the number a reminder went to, between its sending and the
    # visit (whatever it said: only some kinds are tied to a visit), or one tied to the visit.
    answered = Exists(
        InboundMessage.objects.filter(
            organization_id=OuterRef("organization_id"),
            from_phone=OuterRef("to_address"),
            received_at__gte=OuterRef("sent_at"),
            received_at__lt=OuterRef("visit_start"),
        )
    ) | Exists(InboundMessage.objects.filter(appointment_id=OuterRef("appointment_id")))
    for r in (
        texts.filter(kind=MessageKind.REMINDER, state__in=finished, appointment_id__isnull=False)
        .filter(answered)
        .values("practice_id")
        .annotate(n=Count("appointment_id", distinct=True))
        .order_by()
    ):
        rows[r["practice_id"]].visits_with_reply = r["n"]
    # An opt-out counts for the practice whose text the number last received.
    for r in (
        ConsentEvent.objects.filter(kind=ConsentEvent.Kind.OPT_OUT)
        .filter(_between("occurred_at", start, end))
        .filter(phone__in=texts.values("to_address"))
        .annotate(practice_id=_last_texting_practice())
        .values("practice_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        if r["practice_id"] in rows:
            rows[r["practice_id"]].opt_outs = r["n"]
    for r in (
        SlotOpening.objects.filter(practice_id__in=ids)
        .filter(_between("created_at", start, end))
        .values("practice_id")
        .annotate(freed=Count("id"), filled=Count("id", filter=Q(state="filled")))
        .order_by()
    ):
        rows[r["practice_id"]].slots_freed = r["freed"]
        rows[r["practice_id"]].slots_refilled = r["filled"]
    for practice_id in ids:
        rows[practice_id].median_first_answer_minutes = median_first_answer_minutes(
            Conversation.objects.filter(practice_id=practice_id).filter(
                _between("opened_at", start, end)
            )
        )
    return list(rows.values())


def _last_texting_practice():
    from django.db.models import OuterRef, Subquery

    from careline.messaging.models import OutboundMessage

    return Subquery(
        OutboundMessage.objects.filter(to_address=OuterRef("phone"), practice_id__isnull=False)
        .order_by("-created_at")
        .values("practice_id")[:1]
    )
