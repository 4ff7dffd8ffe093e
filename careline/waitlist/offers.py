"""Waitlist fast-fill: a freed time is offered by text to waitlisted patients, best match
first, a few at a time; the first to accept gets it, atomically.

Freed times are found in the appointment history (AppointmentEvent), not in the code paths
that free them, so a cancellation by text, link, staff, HL7 or FHIR all count. The history
is read from a cursor; scheduling's "slot freed" announcement (careline.scheduling.changes,
subscribed in WaitlistConfig.ready()) wakes the reader right after the change commits, and
`run_due` (the periodic sweep) catches the rest (a file import) and moves offers on.

The offer texts and links are self-service's (careline.waitlist.patient_contact).

Race safety: every acceptance locks the opening row first, then books through
scheduling's book_appointment / move_appointment (which lock the provider and re-check the
time), so two patients answering YES together cannot both get the slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from careline.clinics.models import Practice
from careline.messaging.compliance import SendingHours
from careline.messaging.models import MessageKind, OutboundMessage
from careline.patients.models import PhoneConsent
from careline.scheduling.appointments import (
    InvalidTransition,
    SlotUnavailable,
    book_appointment,
    move_appointment,
)
from careline.scheduling.models import (
    OCCUPYING_STATUSES,
    UPCOMING_STATUSES,
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    ChangeSource,
)
from careline.waitlist.entries import close_entry
from careline.waitlist.models import (
    FreedSlotCursor,
    SlotOpening,
    WaitlistEntry,
    WaitlistOffer,
)
from careline.waitlist.patient_contact import contact

logger = logging.getLogger(__name__)

# Events are read in id order, but ids are handed out before commit: an event whose
# transaction committed late can sit just below the cursor. Recent events this far back
# are read again (openings are unique per event, so nothing is offered twice).
LOOKBACK_EVENTS = 500
LATE_COMMIT_WINDOW = timedelta(minutes=2)
EVENTS_PER_PASS = 500
# A YES or NO this long after an offer still refers to it (if no other text came since).
ANSWER_WINDOW = timedelta(hours=12)
FREEING_STATUSES = (AppointmentStatus.CANCELLED, AppointmentStatus.ENTERED_IN_ERROR)
OPEN_STATES = (SlotOpening.State.OPEN, SlotOpening.State.OFFERING)


@dataclass(frozen=True)
class Outcome:
    """The answer to a patient taking (or passing on) an offer."""

    result: str  # "won", "gone", "expired", "busy", "declined"
    message: str
    appointment: Appointment | None = None

    @property
    def won(self) -> bool:
        return self.result == "won"


# --- finding freed times ---------------------------------------------------------------------


def _freeing_events() -> Q:
    return Q(to_status__in=FREEING_STATUSES, from_status__in=OCCUPYING_STATUSES) | Q(
        old_start__isnull=False
    )


def _freed_time(event: AppointmentEvent) -> tuple[datetime, datetime] | None:
    appointment = event.appointment
    if event.old_start is not None:
        if event.old_start == event.new_start:
            return None
        return event.old_start, event.old_start + (appointment.end - appointment.start)
    return appointment.start, appointment.end


def _slot_taken(provider_id: int, start: datetime, end: datetime) -> bool:
    return Appointment.objects.filter(
        provider_id=provider_id, status__in=OCCUPYING_STATUSES, start__lt=end, end__gt=start
    ).exists()


def _anyone_waiting(practice: Practice, start: datetime) -> bool:
    day = start.astimezone(practice.zone).date()
    return WaitlistEntry.objects.filter(
        practice=practice, active=True, earliest_date__lte=day, latest_date__gte=day
    ).exists()


def process_freed_slots(*, now: datetime | None = None) -> int:
    """Turn newly freed future times into openings and send their first offers.
    Returns how many openings were created."""
    now = now or timezone.now()
    lead = timedelta(minutes=settings.CARELINE_WAITLIST_MIN_LEAD_MINUTES)
    created: list[int] = []
    while True:
        with transaction.atomic():
            FreedSlotCursor.objects.get_or_create(pk=1)
            cursor = FreedSlotCursor.objects.select_for_update().get(pk=1)
            top = AppointmentEvent.objects.order_by("-id").values_list("id", flat=True).first()
            if top is None:
                return len(created)
            events = list(
                AppointmentEvent.objects.filter(_freeing_events(), id__lte=top)
                .filter(
                    Q(id__gt=cursor.last_event_id)
                    | Q(
                        id__gt=cursor.last_event_id - LOOKBACK_EVENTS,
                        occurred_at__gte=now - LATE_COMMIT_WINDOW,
                    )
                )
                .exclude(Exists(SlotOpening.objects.filter(freed_by=OuterRef("pk"))))
                .select_related("appointment__practice")
                .order_by("id")[:EVENTS_PER_PASS]
            )
            for event in events:
                freed = _freed_time(event)
                appointment = event.appointment
                if freed is None or freed[0] - lead <= now:
                    continue
                if not _anyone_waiting(appointment.practice, freed[0]):
                    continue
                if _slot_taken(appointment.provider_id, *freed):
                    continue
                opening = SlotOpening.objects.create(
                    organization_id=appointment.organization_id,
                    practice_id=appointment.practice_id,
                    provider_id=appointment.provider_id,
                    start=freed[0],
                    end=freed[1],
                    freed_by=event,
                    created_at=now,
                )
                created.append(opening.pk)
            full = len(events) == EVENTS_PER_PASS
            cursor.last_event_id = max(cursor.last_event_id, events[-1].id if full else top)
            cursor.save(update_fields=["last_event_id"])
        if not full:
            break
    for opening_id in created:
        offer_next_batch(opening_id, now=now)
    if created:
        logger.info("Found %s freed slots with patients waiting", len(created))
    return len(created)


# --- offering ------------------------------------------------------------------------------


def _candidates(opening: SlotOpening, now: datetime, limit: int) -> list[WaitlistEntry]:
    """Active entries that can take this time, best first: those who asked for this
    provider, then whoever has waited longest. One entry per patient."""
    day = opening.start.astimezone(opening.practice.zone).date()
    minutes = int((opening.end - opening.start).total_seconds() // 60)
    busy_then = Appointment.objects.filter(
        patient_id=OuterRef("patient_id"),
        status__in=OCCUPYING_STATUSES,
        start__lt=opening.end,
        end__gt=opening.start,
    ).exclude(pk=Coalesce(OuterRef("appointment_id"), Value(0)))
    entries = (
        WaitlistEntry.objects.filter(
            practice_id=opening.practice_id,
            active=True,
            earliest_date__lte=day,
            latest_date__gte=day,
            appointment_type__duration_minutes__lte=minutes,
        )
        .filter(Q(provider__isnull=True) | Q(provider_id=opening.provider_id))
        .filter(
            Q(appointment__isnull=True)
            | Q(appointment__start__gt=opening.start, appointment__status__in=UPCOMING_STATUSES)
        )
        .exclude(patient__mobile_phone="")
        .exclude(Exists(busy_then))
        .exclude(
            Exists(WaitlistOffer.objects.filter(opening=opening, patient_id=OuterRef("patient_id")))
        )
        .exclude(
            Exists(
                WaitlistOffer.objects.filter(
                    patient_id=OuterRef("patient_id"),
                    state=WaitlistOffer.State.PENDING,
                    expires_at__gt=now,
                )
            )
        )
        .exclude(
            Exists(
                PhoneConsent.objects.filter(
                    organization_id=opening.organization_id,
                    phone=OuterRef("patient__mobile_phone"),
                    opted_out=True,
                )
            )
        )
        .annotate(
            rank=Case(
                When(provider_id=opening.provider_id, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .select_related("patient")
        .order_by("rank", "created_at", "id")[: limit * 3]
    )
    chosen, patients = [], set()
    for entry in entries:
        if entry.patient_id not in patients:
            patients.add(entry.patient_id)
            chosen.append(entry)
    return chosen[:limit]


def _close(opening: SlotOpening, state: str, now: datetime) -> None:
    opening.state, opening.closed_at = state, now
    opening.save(update_fields=["state", "closed_at"])
    opening.offers.filter(state=WaitlistOffer.State.PENDING).update(state=WaitlistOffer.State.GONE)


def offer_next_batch(opening_id: int, *, now: datetime | None = None) -> int:
    """Send the next batch of offers for an opening that has no open offer; close it when
    it is too late or nobody is left. Returns how many offers went out."""
    now = now or timezone.now()
    lead = timedelta(minutes=settings.CARELINE_WAITLIST_MIN_LEAD_MINUTES)
    with transaction.atomic():
        opening = (
            SlotOpening.objects.select_for_update(of=("self",))
            .select_related("practice__organization", "provider")
            .get(pk=opening_id)
        )
        if opening.state not in OPEN_STATES:
            return 0
        opening.offers.filter(state=WaitlistOffer.State.PENDING, expires_at__lte=now).update(
            state=WaitlistOffer.State.EXPIRED
        )
        if opening.offers.filter(state=WaitlistOffer.State.PENDING).exists():
            return 0
        if opening.start - lead <= now:
            _close(opening, SlotOpening.State.UNFILLED, now)
            return 0
        if _slot_taken(opening.provider_id, opening.start, opening.end):
            _close(opening, SlotOpening.State.WITHDRAWN, now)
            return 0
        hours = SendingHours(
            settings.CARELINE_SENDING_HOURS_START, settings.CARELINE_SENDING_HOURS_END
        )
        if hours.next_opening(now, opening.practice.zone) is not None:
            return 0  # no offers at night; the sweep sends them in the morning
        entries = _candidates(opening, now, settings.CARELINE_WAITLIST_BATCH_SIZE)
        if not entries:
            _close(opening, SlotOpening.State.UNFILLED, now)
            return 0
        expires = min(
            now + timedelta(minutes=settings.CARELINE_WAITLIST_OFFER_MINUTES),
            opening.start - lead,
        )
        opening.batches_sent += 1
        for entry in entries:
            offer = WaitlistOffer.objects.create(
                opening=opening,
                entry=entry,
                patient=entry.patient,
                phone=entry.patient.mobile_phone,
                batch=opening.batches_sent,
                sent_at=now,
                expires_at=expires,
            )
            contact().send_offer(offer, opening)
        opening.state = SlotOpening.State.OFFERING
        opening.save(update_fields=["state", "batches_sent"])
    logger.info("Opening %s: batch %s, %s offers", opening.pk, opening.batches_sent, len(entries))
    return len(entries)


def advance_offers(*, now: datetime | None = None, limit: int = 200) -> int:
    """Expire lapsed offers and send the next batch where nobody has an open offer."""
    now = now or timezone.now()
    WaitlistOffer.objects.filter(state=WaitlistOffer.State.PENDING, expires_at__lte=now).update(
        state=WaitlistOffer.State.EXPIRED
    )
    waiting = (
        SlotOpening.objects.filter(state__in=OPEN_STATES)
        .exclude(
            Exists(
                WaitlistOffer.objects.filter(
                    opening=OuterRef("pk"), state=WaitlistOffer.State.PENDING
                )
            )
        )
        .order_by("start")
        .values_list("id", flat=True)[:limit]
    )
    return sum(offer_next_batch(opening_id, now=now) for opening_id in list(waiting))


# Housekeeping higher apps want done on the waitlist's rounds (self-service forgets old
# rate-limit counters), added from their AppConfig.ready().
_also_due: list[Callable[[datetime], Mapping[str, int]]] = []


def also_run_when_due(job: Callable[[datetime], Mapping[str, int]]) -> None:
    if job not in _also_due:
        _also_due.append(job)


def run_due(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic waitlist work: read freed times, move offers on, then the housekeeping
    added by also_run_when_due."""
    now = now or timezone.now()
    done = {
        "openings": process_freed_slots(now=now),
        "offers": advance_offers(now=now),
    }
    for job in _also_due:
        done.update(job(now))
    return done


# --- answering -----------------------------------------------------------------------------


def _patient_busy(offer: WaitlistOffer, opening: SlotOpening) -> bool:
    qs = Appointment.objects.filter(
        patient_id=offer.patient_id,
        status__in=OCCUPYING_STATUSES,
        start__lt=opening.end,
        end__gt=opening.start,
    )
    if offer.entry.appointment_id:
        qs = qs.exclude(pk=offer.entry.appointment_id)
    return qs.exists()


def _answered(offer: WaitlistOffer, state: str, now: datetime) -> None:
    offer.state, offer.answered_at = state, now
    offer.save(update_fields=["state", "answered_at"])
    contact().offer_answered(offer, now)


def _book(offer: WaitlistOffer, opening: SlotOpening, source: str) -> Appointment:
    entry = offer.entry
    later = entry.appointment
    # The freed time was a real visit on the provider's calendar (EHR-fed practices may
    # have no working hours in Careline), so only "is it free" is checked.
    if later is not None and later.status in UPCOMING_STATUSES and later.start > opening.start:
        return move_appointment(
            later,
            new_start=opening.start,
            new_provider=opening.provider,
            source=source,
            check_working_time=False,
        )
    return book_appointment(
        patient=offer.patient,
        provider=opening.provider,
        practice=opening.practice,
        appointment_type=entry.appointment_type,
        start=opening.start,
        source=source,
        check_working_time=False,
    )


def accept_offer(offer_id: int, *, source: str) -> Outcome:
    """The patient says YES. Exactly one patient wins an opening."""
    opening_id = WaitlistOffer.objects.filter(pk=offer_id).values_list("opening_id", flat=True)[0]
    with transaction.atomic():
        # Lock order everywhere: opening, then offer.
        opening = (
            SlotOpening.objects.select_for_update(of=("self",))
            .select_related("practice", "provider")
            .get(pk=opening_id)
        )
        offer = (
            WaitlistOffer.objects.select_for_update(of=("self",))
            .select_related("patient", "entry__appointment", "entry__appointment_type")
            .get(pk=offer_id)
        )
        now = timezone.now()
        language = offer.patient.preferred_language
        if offer.state == WaitlistOffer.State.ACCEPTED:
            return _outcome("won", offer, opening, language, opening.filled_appointment)
        if opening.state == SlotOpening.State.FILLED or offer.state == WaitlistOffer.State.GONE:
            _answered(offer, WaitlistOffer.State.GONE, now)
            return _outcome("gone", offer, opening, language)
        if (
            offer.state != WaitlistOffer.State.PENDING
            or offer.expires_at <= now
            or opening.state not in OPEN_STATES
            or not offer.entry.active
        ):
            _answered(offer, WaitlistOffer.State.EXPIRED, now)
            return _outcome("expired", offer, opening, language)
        if _patient_busy(offer, opening):
            _answered(offer, WaitlistOffer.State.DECLINED, now)
            return _outcome("busy", offer, opening, language)
        try:
            appointment = _book(offer, opening, source)
        except (SlotUnavailable, InvalidTransition):
            _close(opening, SlotOpening.State.WITHDRAWN, now)
            _answered(offer, WaitlistOffer.State.GONE, now)
            return _outcome("gone", offer, opening, language)
        opening.state, opening.closed_at, opening.filled_appointment = (
            SlotOpening.State.FILLED,
            now,
            appointment,
        )
        opening.save(update_fields=["state", "closed_at", "filled_appointment"])
        _answered(offer, WaitlistOffer.State.ACCEPTED, now)
        opening.offers.filter(state=WaitlistOffer.State.PENDING).update(
            state=WaitlistOffer.State.GONE
        )
        close_entry(offer.entry_id, WaitlistEntry.Closed.FILLED, now)
    logger.info("Opening %s filled by offer %s", opening.pk, offer.pk)
    return _outcome("won", offer, opening, language, appointment)


def decline_offer(offer_id: int) -> Outcome:
    """The patient passes; they stay on the waitlist. The next batch goes out when nobody
    else holds an open offer."""
    opening_id = WaitlistOffer.objects.filter(pk=offer_id).values_list("opening_id", flat=True)[0]
    with transaction.atomic():
        opening = SlotOpening.objects.select_for_update().get(pk=opening_id)
        offer = (
            WaitlistOffer.objects.select_for_update(of=("self",))
            .select_related("patient")
            .get(pk=offer_id)
        )
        language = offer.patient.preferred_language
        if offer.state == WaitlistOffer.State.ACCEPTED:
            return _outcome("won", offer, opening, language, opening.filled_appointment)
        if offer.state == WaitlistOffer.State.PENDING:
            _answered(offer, WaitlistOffer.State.DECLINED, timezone.now())
    offer_next_batch(opening_id)
    return _outcome("declined", offer, opening, language)


def _outcome(
    result: str,
    offer: WaitlistOffer,
    opening: SlotOpening,
    language: str,
    appointment: Appointment | None = None,
) -> Outcome:
    message = contact().answer(result, opening, language, appointment)
    return Outcome(result, message, appointment)


def handle_reply(organization_id: int, phone: str, interpretation) -> str | None:
    """Act on a YES/NO texted back to a waitlist offer; returns the text to send back, or
    None when the reply is not about an offer (the caller handles it as usual).

    The reply counts for the newest unanswered offer to this number in the last hours,
    unless another appointment text went to the number after it (then YES means that)."""
    intent = getattr(interpretation, "intent", "")
    if intent not in ("confirm", "decline"):
        return None
    if not getattr(interpretation, "should_act", True):
        return None
    now = timezone.now()
    offer = (
        WaitlistOffer.objects.filter(
            opening__organization_id=organization_id,
            phone=phone,
            answered_at__isnull=True,
            sent_at__gte=now - ANSWER_WINDOW,
        )
        .order_by("-sent_at", "-id")
        .first()
    )
    if offer is None:
        return None
    newer_text = OutboundMessage.objects.filter(
        organization_id=organization_id,
        to_address=phone,
        created_at__gt=offer.sent_at,
        kind__in=[
            MessageKind.REMINDER,
            MessageKind.BOOKED,
            MessageKind.RESCHEDULED,
            MessageKind.BROADCAST,
        ],
    ).exists()
    if newer_text:
        return None
    if intent == "confirm":
        outcome = accept_offer(offer.pk, source=ChangeSource.PATIENT_TEXT)
        if outcome.won:
            contact().booked_by_text(outcome.appointment.pk)
    else:
        outcome = decline_offer(offer.pk)
    logger.info("Waitlist offer %s answered by text: %s", offer.pk, outcome.result)
    return outcome.message
