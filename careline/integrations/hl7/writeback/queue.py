"""Filling the write-back outbox: what patients did since the last pass, one row per
message and feed, read set-based from a cursor per feed."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from careline.background import backoff
from careline.clinics.models import Practice
from careline.integrations.hl7.writeback.build import Peer, build_a31, build_siu, peer_of
from careline.integrations.models import (
    Hl7Feed,
    Hl7Message,
    Hl7MessageState,
    Hl7OutboundMessage,
    Hl7OutboundState,
    Hl7OutboundType,
    Hl7ProviderLink,
    Hl7WritebackCursor,
)
from careline.patients.models import ConsentEvent, ConsentSource, Patient
from careline.scheduling.models import (
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    ChangeSource,
)

logger = logging.getLogger("careline.integrations.hl7.writeback")

# A visit back to booked from these (the front desk's undo) is news to the EHR too.
TAKEN_BACK = (AppointmentStatus.CANCELLED, AppointmentStatus.CONFIRMED)
PATIENT_SOURCES = (
    ChangeSource.PATIENT_TEXT,
    ChangeSource.PATIENT_LINK,
    ChangeSource.PATIENT_CALL,
    ChangeSource.ONLINE_BOOKING,
    # The front desk working in Careline's day view, patient page or REST API.
    ChangeSource.FRONT_DESK,
)
ROWS_PER_BATCH = 500
# Ids are handed out before commit: a late-committing event can sit just below the
# cursor, so recent events this far back are read again (the outbox is unique per event).
LOOKBACK_ROWS = 500
LATE_COMMIT_WINDOW = timedelta(minutes=2)
FIRST_RUN_HISTORY = timedelta(days=1)


def writeback_feeds() -> QuerySet[Hl7Feed]:
    """Active feeds that have somewhere to send what patients did."""
    return (
        Hl7Feed.objects.filter(active=True, outbound_port__isnull=False)
        .exclude(outbound_host="")
        .select_related("organization")
    )


def writeback_configured() -> bool:
    return writeback_feeds().exists()


def fill_outbox(*, now: datetime | None = None) -> int:
    """Queue what patients did since the last pass, for every write-back feed.
    Returns how many messages were queued."""
    now = now or timezone.now()
    return sum(_fill_feed(feed, now) for feed in writeback_feeds())


def _starting_cursor(feed: Hl7Feed, now: datetime) -> Hl7WritebackCursor:
    since = now - FIRST_RUN_HISTORY
    last_event = (
        AppointmentEvent.objects.filter(occurred_at__lt=since)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    last_consent = (
        ConsentEvent.objects.filter(occurred_at__lt=since)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return Hl7WritebackCursor(
        feed=feed, last_event_id=last_event or 0, last_consent_event_id=last_consent or 0
    )


def _locked_cursor(feed: Hl7Feed, now: datetime) -> Hl7WritebackCursor:
    if not Hl7WritebackCursor.objects.filter(feed=feed).exists():
        start = _starting_cursor(feed, now)
        Hl7WritebackCursor.objects.get_or_create(
            feed=feed,
            defaults={
                "last_event_id": start.last_event_id,
                "last_consent_event_id": start.last_consent_event_id,
            },
        )
    # One filler per feed at a time, so stream sequences cannot collide.
    return Hl7WritebackCursor.objects.select_for_update().get(feed=feed)


def _fill_feed(feed: Hl7Feed, now: datetime) -> int:
    peer = peer_of(feed)
    queued = 0
    for fill in (_fill_appointment_batch, _fill_consent_batch):
        while True:
            with transaction.atomic():
                cursor = _locked_cursor(feed, now)
                count, more = fill(feed, cursor, peer, now)
            queued += count
            if not more:
                break
    if queued:
        logger.info("HL7 write-back: %s message(s) queued for feed %s", queued, feed.pk)
    return queued


def _practices_served(feed: Hl7Feed) -> list[int] | None:
    """Practices whose Careline-born visits this feed's EHR hears of; None: all of them."""
    if not feed.location_map:
        return None
    codes = set(feed.location_map.values()) | set(feed.location_map)
    return list(
        Practice.objects.filter(organization_id=feed.organization_id, code__in=codes).values_list(
            "id", flat=True
        )
    )


def _heard_from(feed: Hl7Feed, **match) -> QuerySet:
    """Messages of this feed that were about a visit: the visits whose EHR it is (their
    ids are the sending system's, which several feeds of one EHR may share)."""
    return Hl7Message.objects.filter(feed=feed, appointment__isnull=False, **match)


def _patient_changes(feed: Hl7Feed) -> Q:
    born_in_careline = Q(appointment__external_system="", appointment__external_id="")
    served = _practices_served(feed)
    if served is not None:
        born_in_careline &= Q(appointment__practice_id__in=served)
    return (
        Q(source__in=PATIENT_SOURCES, appointment__organization_id=feed.organization_id)
        & (Q(Exists(_heard_from(feed, appointment=OuterRef("appointment_id")))) | born_in_careline)
        & (
            Q(to_status__in=[AppointmentStatus.CONFIRMED, AppointmentStatus.CANCELLED])
            | Q(old_start__isnull=False, new_start__isnull=False)
            | Q(from_status="")
            | Q(from_status__in=TAKEN_BACK, to_status=AppointmentStatus.BOOKED)
        )
    )


def _since_cursor(last_id: int, now: datetime) -> Q:
    return Q(id__gt=last_id) | Q(
        id__gt=last_id - LOOKBACK_ROWS, occurred_at__gte=now - LATE_COMMIT_WINDOW
    )


def _next_batch(
    cursor: Hl7WritebackCursor, field: str, ledger: QuerySet, now: datetime
) -> tuple[list, bool]:
    """The ledger's next rows after the cursor's `field`, and the cursor moved past them
    (saved). `full`: a whole batch was read, so more may follow."""
    top = ledger.model.objects.order_by("-id").values_list("id", flat=True).first()
    if top is None:
        return [], False
    last = getattr(cursor, field)
    rows = list(
        ledger.filter(_since_cursor(last, now), id__lte=top).order_by("id")[:ROWS_PER_BATCH]
    )
    full = len(rows) == ROWS_PER_BATCH
    setattr(cursor, field, max(last, rows[-1].id if full else top))
    cursor.save(update_fields=[field])
    return rows, full


def _message_type(event: AppointmentEvent) -> str:
    if event.to_status == AppointmentStatus.CANCELLED:
        return Hl7OutboundType.CANCELLED
    if event.to_status == AppointmentStatus.CONFIRMED:
        return Hl7OutboundType.MODIFIED
    if event.old_start is not None:
        return Hl7OutboundType.RESCHEDULED
    if event.from_status:
        return Hl7OutboundType.MODIFIED  # a cancellation or confirmation undone
    return Hl7OutboundType.BOOKED


def _fill_appointment_batch(
    feed: Hl7Feed, cursor: Hl7WritebackCursor, peer: Peer, now: datetime
) -> tuple[int, bool]:
    events, full = _next_batch(
        cursor,
        "last_event_id",
        AppointmentEvent.objects.filter(_patient_changes(feed))
        .exclude(Exists(Hl7OutboundMessage.objects.filter(feed=feed, event=OuterRef("pk"))))
        .select_related(
            "appointment__patient",
            "appointment__practice",
            "appointment__provider",
            "appointment__appointment_type",
        ),
        now,
    )
    if not events:
        return 0, False

    appointment_ids = {e.appointment_id for e in events}
    inbound = _latest_inbound(
        feed,
        Appointment.objects.filter(id__in=appointment_ids),
        Hl7Message.objects.filter(feed=feed, appointment=OuterRef("pk")),
    )
    provider_codes = _provider_codes(feed, {e.appointment.provider_id for e in events})
    sequences = _Sequences(feed, [f"appointment:{i}" for i in appointment_ids])
    rows = []
    for event in events:
        appointment = event.appointment
        message_type = _message_type(event)
        control_id = f"CLE{event.id:X}"
        raw = build_siu(
            feed,
            peer,
            message_type=message_type,
            control_id=control_id,
            event=event,
            appointment=appointment,
            inbound=inbound.get(appointment.id),
            provider_code=provider_codes.get(appointment.provider_id, ""),
        )
        stream = f"appointment:{appointment.id}"
        rows.append(
            Hl7OutboundMessage(
                feed=feed,
                appointment=appointment,
                event=event,
                patient_id=appointment.patient_id,
                stream=stream,
                sequence=sequences.next(stream),
                message_type=message_type,
                control_id=control_id,
                raw=raw,
                next_attempt_at=now,
                created_at=now,
            )
        )
    Hl7OutboundMessage.objects.bulk_create(rows)
    return len(rows), full


def _fill_consent_batch(
    feed: Hl7Feed, cursor: Hl7WritebackCursor, peer: Peer, now: datetime
) -> tuple[int, bool]:
    changes, full = _next_batch(
        cursor,
        "last_consent_event_id",
        ConsentEvent.objects.filter(organization_id=feed.organization_id).exclude(
            source=ConsentSource.EHR_FEED
        ),
        now,
    )
    if not changes:
        return 0, False

    patients = (
        Patient.objects.filter(
            organization_id=feed.organization_id,
            mobile_phone__in={c.phone for c in changes},
        )
        .exclude(mrn="")
        .filter(Exists(_heard_from(feed, appointment__patient=OuterRef("pk"))))
    )
    by_phone: dict[str, list[Patient]] = defaultdict(list)
    for patient in patients:
        by_phone[patient.mobile_phone].append(patient)
    if not by_phone:
        return 0, full
    done = set(
        Hl7OutboundMessage.objects.filter(
            feed=feed, consent_event_id__in=[c.id for c in changes]
        ).values_list("consent_event_id", "patient_id")
    )
    patient_ids = {p.id for group in by_phone.values() for p in group}
    inbound = _latest_inbound(
        feed,
        Patient.objects.filter(id__in=patient_ids),
        Hl7Message.objects.filter(feed=feed, appointment__patient=OuterRef("pk")),
    )
    sequences = _Sequences(feed, [f"patient:{i}" for i in patient_ids])
    rows = []
    for change in changes:
        for patient in by_phone.get(change.phone, []):
            if (change.id, patient.id) in done:
                continue
            control_id = f"CLC{change.id:X}P{patient.id:X}"
            stream = f"patient:{patient.id}"
            rows.append(
                Hl7OutboundMessage(
                    feed=feed,
                    patient=patient,
                    consent_event=change,
                    stream=stream,
                    sequence=sequences.next(stream),
                    message_type=Hl7OutboundType.TEXTING_CONSENT,
                    control_id=control_id,
                    raw=build_a31(
                        feed,
                        peer,
                        control_id=control_id,
                        change=change,
                        patient=patient,
                        inbound=inbound.get(patient.id),
                    ),
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    Hl7OutboundMessage.objects.bulk_create(rows)
    return len(rows), full


def _latest_inbound(feed: Hl7Feed, owners: QuerySet, messages: QuerySet) -> dict[int, str]:
    """The raw text of the last message the feed sent about each owner (two queries)."""
    latest = dict(
        owners.annotate(
            last_message=Subquery(
                messages.exclude(state=Hl7MessageState.REJECTED)
                .order_by("-received_at", "-id")
                .values("id")[:1]
            )
        )
        .filter(last_message__isnull=False)
        .values_list("last_message", "pk")
    )
    return {
        latest[message_id]: raw
        for message_id, raw in Hl7Message.objects.filter(id__in=latest).values_list("id", "raw")
    }


def _provider_codes(feed: Hl7Feed, provider_ids: set[int]) -> dict[int, str]:
    codes: dict[int, str] = {}
    for provider_id, code in (
        Hl7ProviderLink.objects.filter(feed=feed, provider_id__in=provider_ids)
        .order_by("id")
        .values_list("provider_id", "code")
    ):
        codes.setdefault(provider_id, code)
    return codes


class _Sequences:
    """Next sequence number per stream, read once per batch."""

    def __init__(self, feed: Hl7Feed, streams: list[str]):
        self._last = dict(
            Hl7OutboundMessage.objects.filter(feed=feed, stream__in=streams)
            .values("stream")
            .annotate(last=Max("sequence"))
            .values_list("stream", "last")
        )

    def next(self, stream: str) -> int:
        self._last[stream] = self._last.get(stream, 0) + 1
        return self._last[stream]


# -- the queue's state: claimed, answered, retried, sent again ----------------------

LEASE = timedelta(minutes=2)
MAX_ERROR_ACKS = 5


@dataclass(frozen=True)
class AckReading:
    code: str  # AA, AE or AR (enhanced-mode CA/CE/CR folded in)
    reason: str
    in_step: bool = True  # False when the ACK answers another message


def claim_due(now: datetime, batch_size: int) -> list[Hl7OutboundMessage]:
    """Take the next due rows, each stream in order; a lease keeps other workers off."""
    earlier_pending = Hl7OutboundMessage.objects.filter(
        feed_id=OuterRef("feed_id"),
        stream=OuterRef("stream"),
        sequence__lt=OuterRef("sequence"),
        state=Hl7OutboundState.PENDING,
    )
    with transaction.atomic():
        rows = list(
            Hl7OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(
                state=Hl7OutboundState.PENDING,
                next_attempt_at__lte=now,
                feed_id__in=writeback_feeds().values("id"),
            )
            .exclude(Exists(earlier_pending))
            .order_by("next_attempt_at", "id")[:batch_size]
        )
        if rows:
            # A lease, not a state: a worker that dies mid-send leaves the row due again.
            Hl7OutboundMessage.objects.filter(pk__in=[r.pk for r in rows]).update(
                next_attempt_at=now + LEASE
            )
    return rows


def record_ack(row: Hl7OutboundMessage, reading: AckReading, now: datetime, stats: Counter) -> None:
    """Record the EHR's answer to one sent row: sent, failed, or due again later."""
    row.attempts += 1
    row.ack_code = reading.code
    if reading.code == "AA":
        row.state, row.sent_at, row.last_error = Hl7OutboundState.SENT, now, ""
        stats["sent"] += 1
    elif reading.code == "AR":
        row.state = Hl7OutboundState.FAILED
        row.last_error = f"Rejected by the EHR (AR): {reading.reason or 'no reason given'}"
        stats["failed"] += 1
    else:
        row.error_acks += 1
        row.last_error = f"Error from the EHR (AE): {reading.reason or 'no reason given'}"
        if row.error_acks >= MAX_ERROR_ACKS:
            row.state = Hl7OutboundState.FAILED
            stats["failed"] += 1
        else:
            row.next_attempt_at = now + backoff(row.attempts)
            stats["retry"] += 1
    row.save(
        update_fields=[
            "attempts",
            "error_acks",
            "ack_code",
            "state",
            "sent_at",
            "last_error",
            "next_attempt_at",
        ]
    )
    logger.info("HL7 write-back %s %s: %s (%s)", row.pk, row.message_type, row.state, reading.code)


def retry_later(
    row: Hl7OutboundMessage, now: datetime, error: str, stats: Counter, *, tried: bool = True
) -> None:
    """The row goes out again later; `tried`: it reached the wire this time."""
    if tried:
        row.attempts += 1
        row.last_error = error
    row.next_attempt_at = now + backoff(max(row.attempts, 1))
    row.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    stats["retry" if tried else "deferred"] += 1
    if tried:
        logger.warning("HL7 write-back %s: %s", row.pk, error)


def send_again(messages: QuerySet[Hl7OutboundMessage]) -> int:
    """Make the failed ones among `messages` due now, with a fresh count of AE answers."""
    return messages.filter(state=Hl7OutboundState.FAILED).update(
        state=Hl7OutboundState.PENDING, next_attempt_at=timezone.now(), error_acks=0
    )
