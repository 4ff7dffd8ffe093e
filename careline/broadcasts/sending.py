"""Choosing a broadcast's audience, previewing it and queueing it — all set-based SQL."""

from __future__ import annotations

import time as clock
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from careline.broadcasts.models import Broadcast
from careline.clinics.models import Practice
from careline.messaging import outbox
from careline.messaging.compliance import SendingHours
from careline.messaging.models import MessageKind, MessageState, OutboundMessage, Priority
from careline.messaging.segments import SegmentCount, count_segments
from careline.patients.models import Language, Patient, PhoneConsent
from careline.scheduling.models import Appointment, AppointmentStatus

VARIABLES = ("{first_name}", "{practice}")
# A broadcast that could not go out within this long after its time is not sent late.
BROADCAST_EXPIRY = timedelta(hours=12)


class BroadcastError(ValueError):
    """The broadcast cannot be sent as composed; the message says what to fix."""


@dataclass(frozen=True)
class Audience:
    practice_ids: tuple[int, ...]
    provider_ids: tuple[int, ...] = ()
    appointment_type_ids: tuple[int, ...] = ()
    appointments_from: date | None = None
    appointments_to: date | None = None  # inclusive
    language: str = ""
    seen_since: date | None = None

    @property
    def about_appointments(self) -> bool:
        return bool(
            self.provider_ids
            or self.appointment_type_ids
            or self.appointments_from
            or self.appointments_to
        )

    @classmethod
    def from_record(cls, record: dict) -> Audience:
        """The audience as_record() stored with the broadcast."""

        def day(value: str | None) -> date | None:
            return date.fromisoformat(value) if value else None

        return cls(
            practice_ids=tuple(record.get("practice_ids") or ()),
            provider_ids=tuple(record.get("provider_ids") or ()),
            appointment_type_ids=tuple(record.get("appointment_type_ids") or ()),
            appointments_from=day(record.get("appointments_from")),
            appointments_to=day(record.get("appointments_to")),
            language=record.get("language") or "",
            seen_since=day(record.get("seen_since")),
        )

    def as_record(self) -> dict:
        return {
            k: (v.isoformat() if isinstance(v, date) else list(v) if isinstance(v, tuple) else v)
            for k, v in self.__dict__.items()
        }


@dataclass
class Preview:
    reach: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    waiting_for_morning: int = 0
    by_language: dict[str, int] = field(default_factory=dict)


def _local_midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _in_practice_days(
    visits: QuerySet[Appointment],
    practice_ids: tuple[int, ...],
    *,
    since: date | None = None,
    through: date | None = None,
) -> QuerySet[Appointment]:
    """Visits on or after `since` and on or before `through` (inclusive), each day in the
    time zone of the visit's practice: a day filter means the practice's calendar day, not
    UTC's (a 7 p.m. visit in Denver is the next day in UTC)."""
    if since is None and through is None:
        return visits
    zones: dict[str, list[int]] = {}
    for practice_id, zone in Practice.objects.filter(id__in=practice_ids).values_list(
        "id", "time_zone"
    ):
        zones.setdefault(zone, []).append(practice_id)
    by_zone = Q(pk__in=[])
    for zone_name, ids in zones.items():
        zone = zoneinfo.ZoneInfo(zone_name)
        window = Q(practice_id__in=ids)
        if since is not None:
            window &= Q(start__gte=_local_midnight(since, zone))
        if through is not None:
            window &= Q(start__lt=_local_midnight(through + timedelta(days=1), zone))
        by_zone |= window
    return visits.filter(by_zone)


def matching_appointments(audience: Audience) -> QuerySet[Appointment]:
    qs = Appointment.objects.filter(practice_id__in=audience.practice_ids)
    if audience.provider_ids:
        qs = qs.filter(provider_id__in=audience.provider_ids)
    if audience.appointment_type_ids:
        qs = qs.filter(appointment_type_id__in=audience.appointment_type_ids)
    qs = _in_practice_days(
        qs,
        audience.practice_ids,
        since=audience.appointments_from,
        through=audience.appointments_to,
    )
    if audience.about_appointments:
        qs = qs.filter(status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED])
    return qs


def audience_patients(organization_id: int, audience: Audience) -> QuerySet[Patient]:
    """Patients the filters select, before any exclusion.

    The visits are read in uncorrelated subqueries (`id IN (SELECT patient_id …)`): each
    database reads the chosen practices' visits once, whatever its statistics say. A
    correlated EXISTS per patient let SQLite, on a fresh load without statistics, walk a
    whole practice's visits for every patient of the organization (119 s, issue 21)."""
    if not audience.practice_ids:
        raise BroadcastError("Choose at least one practice.")
    patients = Patient.objects.filter(organization_id=organization_id)
    booked = Q(id__in=matching_appointments(audience).values("patient_id"))
    if audience.about_appointments:
        patients = patients.filter(booked)
    else:
        patients = patients.filter(Q(home_practice_id__in=audience.practice_ids) | booked)
    if audience.language:
        patients = patients.filter(preferred_language=audience.language)
    if audience.seen_since:
        seen = _in_practice_days(
            Appointment.objects.filter(
                practice_id__in=audience.practice_ids,
                status__in=[AppointmentStatus.FULFILLED, AppointmentStatus.ARRIVED],
            ),
            audience.practice_ids,
            since=audience.seen_since,
        )
        patients = patients.filter(id__in=seen.values("patient_id"))
    return patients


def audience_within(organization_id: int, audience: Audience, limit: int) -> bool:
    """Whether the audience has at most `limit` patients, known from two index reads of at
    most limit + 1 rows each (the practices' home patients and their matching visits, an
    upper bound of the audience), so the answer costs the same for any practice size."""
    if not audience.practice_ids:
        raise BroadcastError("Choose at least one practice.")
    bound = 0
    if not audience.about_appointments:
        bound = Patient.objects.filter(
            organization_id=organization_id, home_practice_id__in=audience.practice_ids
        )[: limit + 1].count()
        if bound > limit:
            return False
    return bound + matching_appointments(audience)[: limit + 1].count() <= limit


def _opted_out(organization_id: int) -> QuerySet[PhoneConsent]:
    return PhoneConsent.objects.filter(
        organization_id=organization_id, opted_out=True, phone=OuterRef("mobile_phone")
    )


def recipients(organization_id: int, audience: Audience) -> QuerySet:
    """One patient id per reachable number: families sharing a phone get one text."""
    return (
        audience_patients(organization_id, audience)
        .exclude(mobile_phone="")
        .exclude(Exists(_opted_out(organization_id)))
        .values("mobile_phone")
        .annotate(first_patient=Min("id"))
        .values("first_patient")
    )


def preview(
    organization_id: int, audience: Audience, *, send_at: datetime | None = None
) -> Preview:
    # Two queries whatever the size: the exclusions and the reach (distinct reachable
    # numbers) in one pass, then the chosen recipients by language and home practice.
    has_mobile = ~Q(mobile_phone="")
    totals = (
        audience_patients(organization_id, audience)
        .annotate(out=Exists(_opted_out(organization_id)))
        .aggregate(
            no_mobile=Count("id", filter=Q(mobile_phone="")),
            opted_out=Count("id", filter=has_mobile & Q(out=True)),
            reachable=Count("id", filter=has_mobile & Q(out=False)),
            reach=Count("mobile_phone", filter=has_mobile & Q(out=False), distinct=True),
        )
    )
    no_mobile, opted_out = totals["no_mobile"], totals["opted_out"]
    total_reachable, reach = totals["reachable"], totals["reach"]
    by_language: dict[str, int] = {}
    per_practice: dict[int | None, int] = {}
    for language, practice_id, n in (
        Patient.objects.filter(id__in=recipients(organization_id, audience))
        .values_list("preferred_language", "home_practice_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        by_language[language] = by_language.get(language, 0) + n
        per_practice[practice_id] = per_practice.get(practice_id, 0) + n
    hours = SendingHours(settings.CARELINE_SENDING_HOURS_START, settings.CARELINE_SENDING_HOURS_END)
    moment = send_at or timezone.now()
    waiting = 0
    zones = dict(
        Practice.objects.filter(id__in=[*per_practice, audience.practice_ids[0]]).values_list(
            "id", "time_zone"
        )
    )
    for practice_id, n in per_practice.items():
        zone = zoneinfo.ZoneInfo(zones.get(practice_id) or zones[audience.practice_ids[0]])
        if hours.next_opening(moment, zone) is not None:
            waiting += n
    return Preview(
        reach=reach,
        excluded={
            "opted out": opted_out,
            "no mobile number": no_mobile,
            "shares a number with another recipient": total_reachable - reach,
        },
        waiting_for_morning=waiting,
        by_language=by_language,
    )


def _count_by(qs: QuerySet, column: str) -> dict:
    return {row[column]: row["n"] for row in qs.values(column).annotate(n=Count("id")).order_by()}


def render_sample(body: str, *, first_name: str, practice: str) -> str:
    return body.replace("{first_name}", first_name).replace("{practice}", practice)


def validate_bodies(body_en: str, body_es: str) -> None:
    if not body_en.strip():
        raise BroadcastError("Write the English text.")
    for body in (body_en, body_es):
        for part in body.split("{")[1:]:
            name = "{" + part.split("}", 1)[0] + "}"
            if name not in VARIABLES:
                raise BroadcastError(
                    f"Unknown variable {name}; you can use {', '.join(VARIABLES)}."
                )


def segment_count(body: str) -> SegmentCount:
    """Segments of the text as a patient with a longish first name would receive it."""
    return count_segments(render_sample(body, first_name="Alexandra", practice="Practice"))


@transaction.atomic
def send_broadcast(
    *,
    organization_id: int,
    audience: Audience,
    name: str,
    body_en: str,
    body_es: str = "",
    send_at: datetime | None = None,
    user=None,
) -> Broadcast:
    """Record the broadcast, Queued; the worker queues its texts (queue_broadcasts), so a
    page or API request never writes thousands of rows. A small audience is counted here
    (its reach and exclusions); a larger one is left uncounted (`recipients` None) for the
    worker, which counts it before queueing: no request spends seconds counting."""
    validate_bodies(body_en, body_es)
    now = timezone.now()
    send_at = send_at or now
    if send_at < now - timedelta(minutes=1):
        raise BroadcastError("The sending time is in the past.")
    summary = None
    if audience_within(organization_id, audience, settings.CARELINE_BROADCAST_INLINE_COUNT):
        summary = preview(organization_id, audience, send_at=send_at)
    broadcast = Broadcast.objects.create(
        organization_id=organization_id,
        name=name[:120] or "Broadcast",
        body_en=body_en,
        body_es=body_es,
        audience=audience.as_record(),
        send_at=send_at,
        state=Broadcast.State.QUEUED,
        recipients=summary.reach if summary else None,
        excluded=summary.excluded if summary else {},
        created_by=user,
    )
    broadcast.practices.set(audience.practice_ids)
    return broadcast


# Texts queued per transaction: on SQLite each chunk holds the one write lock for a moment,
# then lets waiting webhooks and staff pages in (a whole 10^5 broadcast at once held it
# for seconds, issue 21).
QUEUE_CHUNK = 5000
# A broadcast whose queueing has not moved for this long lost its worker: another resumes.
STALLED_AFTER = timedelta(minutes=2)


def queue_broadcasts(limit: int = 10) -> Counter[str]:
    """The worker's part: queue the texts of Queued broadcasts (and resume one whose worker
    stopped half-way), then mark Done the sending ones with nothing left to send. Returns
    what it did, for the worker's summary."""
    done: Counter[str] = Counter()
    stalled = timezone.now() - STALLED_AFTER
    waiting = Broadcast.objects.filter(
        Q(state=Broadcast.State.QUEUED)
        | Q(
            state=Broadcast.State.SENDING,
            queued_through__isnull=False,
            queue_progressed_at__lt=stalled,
        )
    ).order_by("id")
    for broadcast_id in list(waiting.values_list("id", flat=True)[:limit]):
        queued = _queue(broadcast_id)
        if queued:
            done["broadcast texts queued"] += queued
    pending = OutboundMessage.objects.filter(
        broadcast_id=OuterRef("pk"), state__in=[MessageState.SCHEDULED, MessageState.SENDING]
    )
    finished = (
        Broadcast.objects.filter(state=Broadcast.State.SENDING, queued_through__isnull=True)
        .exclude(Exists(pending))
        .update(state=Broadcast.State.DONE)
    )
    if finished:
        done["broadcasts done"] += finished
    return done


def _queue(broadcast_id: int) -> int:
    """Queue one broadcast's texts in chunks of QUEUE_CHUNK recipients, each chunk in its own
    transaction that first moves the broadcast's cursor (`queued_through`) from where the
    last one left it: a second worker, a resumed one or a cancel in between finds the
    cursor moved (or the state changed) and queues nothing twice."""
    broadcast = Broadcast.objects.get(id=broadcast_id)
    audience = Audience.from_record(broadcast.audience)
    # Counted and chosen before any write: on SQLite a write takes the one write lock, and
    # reading a large audience while holding it would keep webhooks out.
    counts: dict = {}
    if broadcast.recipients is None:
        counts["excluded"] = preview(
            broadcast.organization_id, audience, send_at=broadcast.send_at
        ).excluded
    chosen = sorted(
        recipients(broadcast.organization_id, audience).values_list("first_patient", flat=True)
    )
    if broadcast.state == Broadcast.State.QUEUED:
        # The conditional UPDATE is the claim: a second worker, or a cancel that came
        # first, leaves nothing to do here.
        if not Broadcast.objects.filter(id=broadcast_id, state=Broadcast.State.QUEUED).update(
            state=Broadcast.State.SENDING,
            queued_through=0,
            queue_progressed_at=timezone.now(),
            recipients=len(chosen),
            **counts,
        ):
            return 0
        cursor = 0
    else:
        cursor = broadcast.queued_through or 0
    remaining = [patient_id for patient_id in chosen if patient_id > cursor]
    queued = 0
    for start in range(0, max(len(remaining), 1), QUEUE_CHUNK):
        ids = remaining[start : start + QUEUE_CHUNK]
        last = start + QUEUE_CHUNK >= len(remaining)
        began = clock.monotonic()
        with transaction.atomic():
            if not Broadcast.objects.filter(
                id=broadcast_id, state=Broadcast.State.SENDING, queued_through=cursor
            ).update(queued_through=None if last else ids[-1], queue_progressed_at=timezone.now()):
                return queued
            if ids:
                queued += _queue_texts(broadcast, audience, ids)
        if ids:
            cursor = ids[-1]
        if not last and connection.vendor == "sqlite":
            # As long again without the lock, so the writers waiting for it get in.
            clock.sleep(clock.monotonic() - began)
    total = OutboundMessage.objects.filter(broadcast_id=broadcast_id).count()
    Broadcast.objects.filter(id=broadcast_id).update(recipients=total)
    return queued


def _queue_texts(broadcast: Broadcast, audience: Audience, patient_ids: list[int]) -> int:
    """One outbox row per given recipient of the broadcast, in one INSERT … SELECT."""
    body_en = broadcast.body_en
    body_es = broadcast.body_es or body_en
    if connection.vendor == "postgresql":
        # One array parameter: bound once, not once per recipient.
        chosen_sql, chosen = "SELECT unnest(%s::bigint[])", [list(patient_ids)]
    else:
        chosen_sql, chosen = ", ".join(["%s"] * len(patient_ids)), list(patient_ids)
    # A value per outbox column, in careline.messaging.outbox.COLUMNS order.
    select_sql = f"""
        SELECT p.organization_id, COALESCE(p.home_practice_id, %s), p.id, NULL, %s, 'sms',
               p.mobile_phone, '',
               REPLACE(REPLACE(CASE WHEN p.preferred_language = %s THEN %s ELSE %s END,
                               '{{first_name}}', p.given_name),
                       '{{practice}}', COALESCE(pr.name, %s)),
               %s, '', NULL, %s, %s, %s, %s, %s, '', 0, NULL, NULL, '', '', '', 0, %s,
               NULL, NULL, 1, %s
        FROM {Patient._meta.db_table} p
        LEFT JOIN {Practice._meta.db_table} pr ON pr.id = p.home_practice_id
        WHERE p.id IN ({chosen_sql})
    """
    fallback_practice = Practice.objects.get(id=audience.practice_ids[0])
    params = [
        fallback_practice.id,
        broadcast.id,
        Language.SPANISH,
        body_es,
        body_en,
        fallback_practice.name,
        MessageKind.BROADCAST,
        False,
        Priority.BROADCAST,
        broadcast.send_at,
        broadcast.send_at + BROADCAST_EXPIRY,
        MessageState.SCHEDULED,
        timezone.now(),
        connection.ops.adapt_datetimefield_value(outbox.change_time([broadcast.organization_id])),
        *chosen,
    ]
    return outbox.insert_broadcast(select_sql, params)


def progress(broadcast: Broadcast, report: dict[str, int]) -> str:
    """Queued → Sending → Sent (n of N) → Done, as its page shows it."""
    if broadcast.state != Broadcast.State.SENDING:
        return Broadcast.State(broadcast.state).label
    gone = sum(
        report.get(state.label, 0)
        for state in (MessageState.SENT, MessageState.DELIVERED, MessageState.UNDELIVERED)
    )
    return f"Sent ({gone:,} of {broadcast.recipients:,})" if gone else "Sending"


def delivery_report(broadcast: Broadcast) -> dict[str, int]:
    """Messages of the broadcast by state, plus suppression reasons."""
    rows = OutboundMessage.objects.filter(broadcast_id=broadcast.id)
    report = {state.label: 0 for state in MessageState}
    for state, n in _count_by(rows, "state").items():
        report[MessageState(state).label] = n
    for reason, n in _count_by(rows.filter(state=MessageState.SUPPRESSED), "reason").items():
        report[f"Suppressed: {reason or 'unspecified'}"] = n
    return report


def cancel_broadcast(broadcast: Broadcast) -> int:
    """Stop what has not gone out yet; what was sent stays sent."""
    with transaction.atomic():
        # First, and an UPDATE: it waits for a worker queueing this broadcast's texts right
        # now, and a worker coming after it finds it no longer Queued.
        Broadcast.objects.filter(id=broadcast.id).update(state=Broadcast.State.CANCELLED)
        stopped = outbox.cancel_broadcast_messages(broadcast.id)
        broadcast.state = Broadcast.State.CANCELLED
    return stopped
