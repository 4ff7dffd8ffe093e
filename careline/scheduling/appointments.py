"""Scheduling rules: open-slot search, atomic booking and moving, status changes.

Every change to an appointment's status or time, whichever door it comes through (a
patient's text or link, staff, FHIR, HL7), is recorded by `record_change`: it stamps the
status, writes the AppointmentEvent (the history HL7 write-back, the waitlist and reports
read) and announces the change (careline.scheduling.changes) so reminders are re-planned
in the same transaction and freed time is offered after the commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from careline.clinics.models import AppointmentType, Practice, Provider
from careline.patients.models import Patient
from careline.scheduling import changes
from careline.scheduling.models import (
    OCCUPYING_STATUSES,
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    AppointmentVersion,
    BlockedPeriod,
    ChangeSource,
    Holiday,
    RecurringBreak,
    WorkingHours,
)
from careline.versions import change_stamp, snapshot, stamp

# How far ahead a slot search looks before giving up.
SEARCH_HORIZON_DAYS = 90

# The visits Careline can handle. Far from Python's years 1 and 9999, so that every
# reminder time, quiet-hours check and local date derived from a visit is computable in
# any time zone; at least a minute, as FHIR's minutesDuration is a positive integer; at most
# a day, as the slot search and visit types count in minutes of one day.
EARLIEST_VISIT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_VISIT = datetime(2200, 1, 1, tzinfo=UTC)
SHORTEST_VISIT = timedelta(minutes=1)
LONGEST_VISIT = timedelta(days=1)


class SlotUnavailable(Exception):
    """The requested time is taken or outside the provider's working time."""


class InvalidTransition(Exception):
    pass


class VisitTimeError(ValueError):
    """A visit time Careline cannot handle; `field` is "start" or "end", `message` says
    why in words a caller can act on (each door names the field its own way)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_visit_times(start: datetime, end: datetime | None = None) -> None:
    """The one rule every door (FHIR, HL7, CSV, forms, booking) applies before storing a
    visit: refuse what the reminder worker could not plan, render or send. Raises
    VisitTimeError naming the field; `end` None checks a start alone (e.g. a new time
    chosen for a visit whose length is known)."""
    for field, moment in (("start", start), ("end", end)):
        if moment is None:
            continue
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise VisitTimeError(field, "needs a time zone or UTC offset.")
        try:
            in_range = EARLIEST_VISIT <= moment < LATEST_VISIT
        except OverflowError:  # an offset that pushes year 1 or 9999 off the calendar
            in_range = False
        if not in_range:
            raise VisitTimeError(
                field,
                f"must be in the years {EARLIEST_VISIT.year} to {LATEST_VISIT.year - 1}.",
            )
    if end is None:
        return
    if end - start < SHORTEST_VISIT:
        raise VisitTimeError("end", "must be at least one minute after the start.")
    if end - start > LONGEST_VISIT:
        raise VisitTimeError("end", "must be at most 24 hours after the start.")


@dataclass(frozen=True)
class Slot:
    provider_id: int
    practice_id: int
    start: datetime  # aware, UTC
    end: datetime


Interval = tuple[datetime, datetime]


def _subtract(free: list[Interval], busy: Iterable[Interval]) -> list[Interval]:
    """Remove busy intervals from sorted, disjoint free intervals."""
    result = free
    for b_start, b_end in sorted(busy):
        next_result = []
        for f_start, f_end in result:
            if b_end <= f_start or b_start >= f_end:
                next_result.append((f_start, f_end))
                continue
            if f_start < b_start:
                next_result.append((f_start, b_start))
            if b_end < f_end:
                next_result.append((b_end, f_end))
        result = next_result
    return result


def _local(day: date, at: time, practice: Practice) -> datetime:
    # zoneinfo resolves a wall time that falls in a DST gap or overlap via fold=0, which is
    # what a clinic's schedule means by "9:00". Converted to UTC at once so that all
    # interval arithmetic below is in absolute time, not wall-clock time.
    return datetime.combine(day, at, tzinfo=practice.zone).astimezone(UTC)


def find_open_slots(
    *,
    practice: Practice,
    duration_minutes: int,
    after: datetime,
    providers: Iterable[Provider] | None = None,
    count: int = 3,
    horizon_days: int = SEARCH_HORIZON_DAYS,
) -> list[Slot]:
    """The next `count` open slots of `duration_minutes` at `practice` starting at or after `after`.

    Candidate starts lie on a grid of `duration_minutes` from the start of each working
    period, and also right after each busy interval, so short gaps are not wasted. With no
    providers given, anyone working at the practice may take the slot.
    """
    if after.tzinfo is None:
        raise ValueError("`after` must be timezone-aware")
    if duration_minutes <= 0:
        raise ValueError("duration must be positive")
    length = timedelta(minutes=duration_minutes)
    provider_ids = (
        [p.id for p in providers]
        if providers is not None
        else list(practice.providers.filter(active=True).values_list("id", flat=True))
    )
    if not provider_ids:
        return []
    hours = defaultdict(list)
    for wh in WorkingHours.objects.filter(practice=practice, provider_id__in=provider_ids):
        hours[(wh.provider_id, wh.weekday)].append((wh.start_time, wh.end_time))
    breaks = defaultdict(list)
    for br in RecurringBreak.objects.filter(practice=practice, provider_id__in=provider_ids):
        breaks[(br.provider_id, br.weekday)].append((br.start_time, br.end_time))

    zone = practice.zone
    first_day = after.astimezone(zone).date()
    found: list[Slot] = []
    # Search a week at a time so the busy-time queries stay small.
    for week in range(0, horizon_days, 7):
        days = [first_day + timedelta(days=week + i) for i in range(7)]
        window_start = _local(days[0], time.min, practice)
        window_end = _local(days[-1] + timedelta(days=1), time.min, practice)
        holidays = set(
            Holiday.objects.filter(practice=practice, date__in=days).values_list("date", flat=True)
        )
        busy: dict[int, list[Interval]] = defaultdict(list)
        for provider_id, start, end in Appointment.objects.filter(
            provider_id__in=provider_ids,
            status__in=OCCUPYING_STATUSES,
            start__lt=window_end,
            end__gt=window_start,
        ).values_list("provider_id", "start", "end"):
            busy[provider_id].append((start, end))
        for bp in BlockedPeriod.objects.filter(
            Q(provider_id__in=provider_ids) | Q(provider__isnull=True),
            practice=practice,
            start__lt=window_end,
            end__gt=window_start,
        ):
            targets = [bp.provider_id] if bp.provider_id else provider_ids
            for provider_id in targets:
                busy[provider_id].append((bp.start, bp.end))

        week_slots: list[Slot] = []
        for day in days:
            if day in holidays:
                continue
            weekday = day.weekday()
            for provider_id in provider_ids:
                periods = hours.get((provider_id, weekday))
                if not periods:
                    continue
                free = sorted(
                    (_local(day, s, practice), _local(day, e, practice)) for s, e in periods
                )
                free = _subtract(
                    free,
                    [
                        (_local(day, s, practice), _local(day, e, practice))
                        for s, e in breaks.get((provider_id, weekday), [])
                    ],
                )
                free = _subtract(free, busy.get(provider_id, []))
                for f_start, f_end in free:
                    candidate = f_start
                    while candidate + length <= f_end:
                        if candidate >= after:
                            week_slots.append(
                                Slot(
                                    provider_id,
                                    practice.id,
                                    candidate,
                                    candidate + length,
                                )
                            )
                        candidate += length
        week_slots.sort(key=lambda s: (s.start, s.provider_id))
        found.extend(week_slots)
        if len(found) >= count:
            break
    return found[:count]


def _lock_provider(provider_id: int) -> None:
    # Serializes bookings per provider on PostgreSQL; SQLite runs write transactions
    # one at a time (IMMEDIATE mode), so the check below cannot interleave there either.
    list(Provider.objects.select_for_update().filter(id=provider_id).values_list("id"))


def _overlapping(provider_id: int, start: datetime, end: datetime, exclude_id: int | None = None):
    qs = Appointment.objects.filter(
        provider_id=provider_id, status__in=OCCUPYING_STATUSES, start__lt=end, end__gt=start
    )
    if exclude_id is not None:
        qs = qs.exclude(id=exclude_id)
    return qs.exists()


def _is_free_working_time(
    practice: Practice, provider_id: int, start: datetime, end: datetime
) -> bool:
    local = start.astimezone(practice.zone)
    day = local.date()
    if Holiday.objects.filter(practice=practice, date=day).exists():
        return False
    periods = [
        (_local(day, wh.start_time, practice), _local(day, wh.end_time, practice))
        for wh in WorkingHours.objects.filter(
            practice=practice, provider_id=provider_id, weekday=day.weekday()
        )
    ]
    breaks = [
        (_local(day, br.start_time, practice), _local(day, br.end_time, practice))
        for br in RecurringBreak.objects.filter(
            practice=practice, provider_id=provider_id, weekday=day.weekday()
        )
    ]
    blocked = [
        (bp.start, bp.end)
        for bp in BlockedPeriod.objects.filter(
            Q(provider_id=provider_id) | Q(provider__isnull=True),
            practice=practice,
            start__lt=end,
            end__gt=start,
        )
    ]
    free = _subtract(_subtract(sorted(periods), breaks), blocked)
    return any(f_start <= start and end <= f_end for f_start, f_end in free)


def book_appointment(
    *,
    patient: Patient,
    provider: Provider,
    practice: Practice,
    appointment_type: AppointmentType,
    start: datetime,
    source: str = ChangeSource.STAFF,
    user=None,
    check_working_time: bool = True,
) -> Appointment:
    """Book `start` for the patient, or raise SlotUnavailable (VisitTimeError for a time
    Careline cannot handle, which the door should have refused). Safe under concurrency."""
    check_visit_times(start)  # before the arithmetic, which overflows at the calendar's end
    end = start + timedelta(minutes=appointment_type.duration_minutes)
    check_visit_times(start, end)
    now = timezone.now()
    try:
        with transaction.atomic():
            _lock_provider(provider.id)
            if check_working_time and not _is_free_working_time(practice, provider.id, start, end):
                raise SlotUnavailable("That time is outside the provider's working hours.")
            if _overlapping(provider.id, start, end):
                raise SlotUnavailable("That time has just been taken.")
            appointment = Appointment(
                organization_id=practice.organization_id,
                practice=practice,
                provider=provider,
                patient=patient,
                appointment_type=appointment_type,
                start=start,
                end=end,
            )
            record_change(appointment, AppointmentStatus.BOOKED, source=source, user=user, at=now)
    except IntegrityError as exc:
        # The database's own guarantee fired: someone else won the race.
        raise SlotUnavailable("That time has just been taken.") from exc
    return appointment


def move_appointment(
    appointment: Appointment,
    *,
    new_start: datetime,
    new_provider: Provider | None = None,
    source: str = ChangeSource.STAFF,
    user=None,
    check_working_time: bool = True,
    note: str = "rescheduled",
) -> Appointment:
    """Move to a new time (and provider) atomically; the old time is freed in the same step."""
    provider = new_provider or appointment.provider
    duration = appointment.end - appointment.start
    check_visit_times(new_start)
    new_end = new_start + duration
    check_visit_times(new_start, new_end)
    now = timezone.now()
    try:
        with transaction.atomic():
            _lock_provider(provider.id)
            current = Appointment.objects.select_for_update().get(pk=appointment.pk)
            if current.status not in (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED):
                raise InvalidTransition(
                    f"A {current.get_status_display().lower()} visit cannot be moved."
                )
            if check_working_time and not _is_free_working_time(
                current.practice, provider.id, new_start, new_end
            ):
                raise SlotUnavailable("That time is outside the provider's working hours.")
            if _overlapping(provider.id, new_start, new_end, exclude_id=current.pk):
                raise SlotUnavailable("That time has just been taken.")
            old_start, old_provider_id = current.start, current.provider_id
            current.start, current.end, current.provider = new_start, new_end, provider
            # A moved visit needs a fresh confirmation.
            current.confirmed_at = None
            record_change(
                current,
                AppointmentStatus.BOOKED,
                source=source,
                user=user,
                at=now,
                note=note,
                old_start=old_start,
                old_provider_id=old_provider_id if old_provider_id != provider.id else None,
                restamp=True,
            )
    except IntegrityError as exc:
        raise SlotUnavailable("That time has just been taken.") from exc
    return current


ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    AppointmentStatus.BOOKED: {
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.ARRIVED,
        AppointmentStatus.CANCELLED,
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.FULFILLED,
        AppointmentStatus.ENTERED_IN_ERROR,
    },
    AppointmentStatus.CONFIRMED: {
        AppointmentStatus.ARRIVED,
        AppointmentStatus.CANCELLED,
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.FULFILLED,
        AppointmentStatus.ENTERED_IN_ERROR,
        AppointmentStatus.BOOKED,
    },
    AppointmentStatus.ARRIVED: {
        AppointmentStatus.FULFILLED,
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.ENTERED_IN_ERROR,
    },
    AppointmentStatus.NO_SHOW: {AppointmentStatus.ARRIVED, AppointmentStatus.ENTERED_IN_ERROR},
    AppointmentStatus.FULFILLED: {AppointmentStatus.ENTERED_IN_ERROR},
    AppointmentStatus.CANCELLED: {AppointmentStatus.ENTERED_IN_ERROR},
    AppointmentStatus.ENTERED_IN_ERROR: set(),
}


def change_status(
    appointment: Appointment,
    new_status: str,
    *,
    source: str,
    user=None,
    note: str = "",
    at: datetime | None = None,
) -> Appointment:
    """Apply a status change if the state machine allows it, recording who and when."""
    at = at or timezone.now()
    with transaction.atomic():
        current = Appointment.objects.select_for_update().get(pk=appointment.pk)
        if new_status == current.status:
            return current
        if new_status not in ALLOWED_TRANSITIONS[current.status]:
            raise InvalidTransition(
                f"Cannot change a {current.get_status_display().lower()} appointment to "
                f"{AppointmentStatus(new_status).label.lower()}."
            )
        record_change(current, new_status, source=source, user=user, note=note, at=at)
    return current


def latest_event(appointment_id: int) -> AppointmentEvent | None:
    return AppointmentEvent.objects.filter(appointment_id=appointment_id).order_by("-id").first()


def revert_change(
    event: AppointmentEvent, *, source: str, user=None, note: str, at: datetime | None = None
) -> Appointment:
    """Put a visit back as it was before `event`, which must still be its latest change
    (a staff member's undo): its status, and its time and provider if `event` moved it.
    The way back is a change like any other (`record_change`): recorded, re-planned,
    written back. Raises InvalidTransition when the visit changed since, SlotUnavailable
    when its old time has been given to someone else meanwhile."""
    at = at or timezone.now()
    if not event.from_status:
        raise InvalidTransition("A new booking cannot be undone; cancel it instead.")
    moved = event.old_start is not None and event.new_start is not None
    target = Appointment.objects.get(pk=event.appointment_id)
    back_provider_id = (event.old_provider_id if moved else None) or target.provider_id
    try:
        with transaction.atomic():
            for provider_id in sorted({target.provider_id, back_provider_id}):
                _lock_provider(provider_id)
            current = Appointment.objects.select_for_update().get(pk=event.appointment_id)
            latest = latest_event(current.pk)
            if latest is None or latest.pk != event.pk or current.provider_id != target.provider_id:
                raise InvalidTransition("The visit has changed since; there is nothing to undo.")
            old_start = None
            start, end = current.start, current.end
            if moved and event.old_start != current.start:
                start, end = event.old_start, event.old_start + (current.end - current.start)
            if event.from_status in OCCUPYING_STATUSES and _overlapping(
                back_provider_id, start, end, exclude_id=current.pk
            ):
                raise SlotUnavailable("That time has been given to another visit since.")
            from_provider = current.provider_id
            if (start, back_provider_id) != (current.start, from_provider):
                old_start = current.start
                current.start, current.end, current.provider_id = start, end, back_provider_id
            record_change(
                current,
                event.from_status,
                source=source,
                user=user,
                at=at,
                note=note,
                old_start=old_start,
                old_provider_id=from_provider if from_provider != back_provider_id else None,
                restamp=True,
            )
            if old_start is not None:
                changes.move_taken_back(current.pk, untold_start=old_start)
    except IntegrityError as exc:
        raise SlotUnavailable("That time has been given to another visit since.") from exc
    return current


def stamp_status(
    appointment: Appointment, status: str, *, source: str, at: datetime, user=None, was: str
) -> None:
    """Set `status` with who and when on the row (not saved). A confirmation is dated when
    it happens; a visit back to booked is no longer confirmed."""
    appointment.status = status
    appointment.status_changed_at = at
    appointment.status_source, appointment.status_changed_by = source, user
    if status == AppointmentStatus.CONFIRMED and status != was:
        appointment.confirmed_at = at
    elif status == AppointmentStatus.BOOKED and status != was:
        appointment.confirmed_at = None


def record_change(
    appointment: Appointment,
    status: str,
    *,
    source: str,
    at: datetime,
    user=None,
    note: str = "",
    old_start: datetime | None = None,
    old_provider_id: int | None = None,
    restamp: bool = False,
) -> None:
    """Record one change of a locked appointment (or a new, unsaved one) and announce it.

    The caller has decided the change is allowed and set any new time or provider on
    `appointment`; `old_start` is the time it moved from. The status is stamped with who
    and when if it changed (or `restamp`: a move made in Careline is its mover's act),
    the row saved, the AppointmentEvent written, reminders re-planned in this
    transaction, and a freed time (a cancellation, a move) announced for after the
    commit. Must run inside the caller's transaction.
    """
    new = appointment.pk is None
    from_status = "" if new else appointment.status
    if new or restamp or status != from_status:
        stamp_status(appointment, status, source=source, at=at, user=user, was=from_status)
    save_version(appointment)
    AppointmentEvent.objects.create(
        appointment=appointment,
        from_status=from_status,
        to_status=status,
        old_start=old_start,
        new_start=appointment.start if new or old_start is not None else None,
        old_provider_id=old_provider_id,
        source=source,
        changed_by=user,
        note=note[:200],
        occurred_at=at,
    )
    changes.appointments_changed([appointment.pk])
    freed = from_status in OCCUPYING_STATUSES and status not in OCCUPYING_STATUSES
    if freed or old_start is not None:
        changes.slot_freed()


def save_version(appointment: Appointment) -> None:
    """Save a locked appointment (or a new one) as its next version: FHIR's versionId and
    lastUpdated, kept in AppointmentVersion for vread and _history. `record_change` saves
    through here; so does a feed's change the history does not record (a new visit type).
    Must run inside the caller's transaction."""
    new = appointment.pk is None
    stamp(appointment)
    appointment.save(force_insert=new)
    AppointmentVersion.objects.create(
        appointment=appointment,
        version=appointment.version,
        last_updated=appointment.last_updated,
        fields=snapshot(appointment),
    )


def move_visits_to_patient(prior_patient_id: int, survivor_id: int) -> list[int]:
    """An EHR merged two records of one person (ADT^A40): the prior record's visits become
    the survivor's, each as its next version, and their reminders are re-planned (the
    seam) in the caller's transaction. The status and history stay as they are."""
    moved = []
    for appointment in Appointment.objects.select_for_update().filter(patient_id=prior_patient_id):
        appointment.patient_id = survivor_id
        save_version(appointment)
        moved.append(appointment.pk)
    if moved:
        changes.appointments_changed(moved)
    return moved


def record_imported_changes(events: list[AppointmentEvent]) -> None:
    """The history of a file import, written in one statement per batch.

    An import is the one door that does not go through `record_change`: it writes
    thousands of rows at once, re-plans reminders afterwards in one set-based pass that
    sends no notices, and its freed times are found by the waitlist's periodic sweep."""
    AppointmentEvent.objects.bulk_create(events, batch_size=1000)


def import_appointments(
    new: list[Appointment], changed: list[Appointment], fields: Iterable[str]
) -> None:
    """A file import's visits, written in batches: `new` inserted, `changed` updated. Their
    history goes through `record_imported_changes`, their reminders through one
    set-based re-plan afterwards. Each is stored as its next version with one change time
    (one UPDATE per batch bumps the versions). Must run inside the import's transaction."""
    rows = [*new, *changed]
    if not rows:
        return
    at = change_stamp(Appointment, rows[0].organization_id)
    for appointment in new:
        appointment.version, appointment.last_updated = 1, at
    Appointment.objects.bulk_create(new, batch_size=1000)
    if changed:
        Appointment.objects.bulk_update(changed, list(fields), batch_size=500)
        for start in range(0, len(changed), 1000):
            batch = changed[start : start + 1000]
            ids = [a.pk for a in batch]
            Appointment.objects.filter(pk__in=ids).update(version=F("version") + 1, last_updated=at)
            versions = dict(Appointment.objects.filter(pk__in=ids).values_list("pk", "version"))
            for appointment in batch:
                appointment.version, appointment.last_updated = versions[appointment.pk], at
    AppointmentVersion.objects.bulk_create(
        [
            AppointmentVersion(
                appointment_id=a.pk, version=a.version, last_updated=at, fields=snapshot(a)
            )
            for a in rows
        ],
        batch_size=1000,
    )


def record_new_visits(
    new: list[Appointment], *, source: str, at: datetime, notes: list[str]
) -> None:
    """New visits (a feed's group of bookings, with their statuses set), each recorded as
    `record_change` records one (status stamped, first version, its history event, the
    seam told) but in a few multi-row INSERTs for all of them. Nothing is freed by a new
    visit. Must run inside the caller's transaction."""
    if not new:
        return
    by_organization: dict[int, list[Appointment]] = {}
    for appointment in new:
        stamp_status(appointment, appointment.status, source=source, at=at, was="")
        by_organization.setdefault(appointment.organization_id, []).append(appointment)
    for rows in by_organization.values():
        import_appointments(rows, [], ())
    AppointmentEvent.objects.bulk_create(
        [
            AppointmentEvent(
                appointment=appointment,
                from_status="",
                to_status=appointment.status,
                new_start=appointment.start,
                source=source,
                note=note[:200],
                occurred_at=at,
            )
            for appointment, note in zip(new, notes, strict=True)
        ],
        batch_size=1000,
    )
    changes.appointments_changed([appointment.pk for appointment in new])


def record_risk_scores(scores: dict[int, float]) -> None:
    """Store the no-show model's risk for each appointment id."""
    Appointment.objects.bulk_update(
        [Appointment(id=pk, noshow_risk=risk) for pk, risk in scores.items()],
        ["noshow_risk"],
        batch_size=1000,
    )
