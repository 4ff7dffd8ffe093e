"""Applying SIU messages (and ADT A08/A31 patient updates): store raw, process in one
transaction, answer with an ACK.

The rules:
- Every message is stored as received before anything else happens, so nothing received
  is ever lost (of a refused one, an excerpt: see below); a duplicate control id
  (MSH-10) with the same content gets the stored ACK again and changes nothing; the
  same control id with different content is refused (AR, ERR 205 at MSH-10) and
  nothing of it is applied: the sender reused an id, and either message may be wrong.
- A batch (FHS/BHS … BTS/FTS) in one frame is taken message by message, each as if it
  had come alone; the answer is a batch of their ACKs (see receive_batch).
- Messages from several MLLP connections may be received in one transaction
  (receive_together): each is stored in it, so none is acknowledged unless stored and
  applied, and a transaction that fails leaves each to be received alone.
- AR: not a parseable SIU message (or an MSH we cannot store), or no feed to take it.
  AE: understood, but (part of) it cannot be applied. An unknown location or provider
  leaves the message for staff to replay after fixing the feed mapping; a patient
  whose mobile number is not a valid number still gets the appointment stored. AA:
  applied; AA with an ERR of severity W when applied but something optional is missing
  (no mobile number, a language Careline does not text in), so engines do not resend.
- Times without an offset are wall-clock times at the visit's practice (AIL-3, else
  PV1-3, mapped to a practice): its time zone, not the feed's; MSH-7 is read in the
  feed's zone. A local time that does not exist (skipped by a spring-forward change)
  is refused AE naming the field; one that happens twice (fall back) is the first.
- A field whose value cannot be used is AE (HL7: an application error in the data, not
  a message the interface cannot take) with ERR code 102, an ERR-2 location such as
  SCH^1^11^1^4 and an ERR-8 text naming it, and nothing of the message is applied: a
  timestamp that is not an ASCII-digit DTM, has an out-of-range month/day/hour or is
  outside 1900–2199; a duration that is negative, not ASCII digits, shorter than a
  minute or longer than a day; an id longer than its column. "Internal error" is for
  our own faults only.
- Refused messages are evidence, not data: REJECTED rows keep an excerpt of at most
  REJECTED_EXCERPT_CHARS, and REJECTED rows and AE rows that applied nothing are kept
  at most `RejectedRetention.keep` per feed and `days` days, trimmed here each time one
  is written (a flood of garbage cannot fill the disk).
- ADT^A08 and ADT^A31 (update patient information) update the patient PID-3 names (the
  same lookup as an SIU's patient): name, birth date, phones, language and address; a
  patient Careline does not know yet is created (an EHR often sends A08/A31 for people
  registered before the interface went live), with the practice PV1-3 maps to as home
  practice, if any. AA, with a warning when the patient has no mobile number.
- Every PID-13/PID-14 number is stored with its use (XTN-2 PRN/ORN/VHN home, WPN work)
  and kind (XTN-3 PH phone, FX fax, BP pager, CP/CELL mobile); the valid mobile one is
  texted. A PID-15 language Careline does not text in is kept as received for staff.
- The appointment's status comes from the trigger event and SCH-25 (S15 + NOSHOW is a
  no-show); an older message never rolls a newer state back (integrations.appointments).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from careline import versions
from careline.clinics.directory import add_provider, appointment_type_for_code
from careline.clinics.models import AppointmentType, Practice, Provider
from careline.clinics.validators import normalize_phone
from careline.conversations.inbox import move_conversations_to_patient
from careline.integrations.hl7.ack import ACCEPT, ERROR, REJECT, build_ack, escape
from careline.integrations.hl7.parsing import (
    MAX_CONTROL_ID,
    MAX_MRN,
    MOBILE_EQUIPMENT,
    AdtMessage,
    BadValue,
    Header,
    InvalidField,
    MergeMessage,
    MessageRejected,
    Phone,
    Resource,
    SiuMessage,
    SiuPatient,
    hd_system,
    normalize_segment_breaks,
    parse_message,
    read_header,
    to_date,
    to_datetime,
    to_duration,
)
from careline.integrations.hl7.parsing import (
    PatientIdentifier as ParsedIdentifier,
)
from careline.integrations.models import Hl7Feed, Hl7Message, Hl7MessageState, Hl7ProviderLink
from careline.messaging.models import OutboundMessage
from careline.patients.identifiers import MAX_SYSTEM, Identifier, identified_patients
from careline.patients.languages import coded_language, language_as_received
from careline.patients.models import (
    Patient,
    PatientVersion,
    PhoneSystem,
    PhoneUse,
    phones_with_mobile,
)
from careline.patients.records import (
    IdentifierConflict,
    add_patients,
    create_patient,
    keep_identifiers,
    merge_patients,
    update_patient,
)
from careline.scheduling import changes
from careline.scheduling.appointments import (
    VisitTimeError,
    check_visit_times,
    move_visits_to_patient,
)
from careline.scheduling.external import (
    ExternalVisit,
    add_external_appointments,
    upsert_external_appointment,
)
from careline.scheduling.models import (
    UPCOMING_STATUSES,
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    AppointmentVersion,
    ChangeSource,
)
from careline.tablestats import refresh_statistics
from careline.waitlist.entries import move_entries_to_patient

logger = logging.getLogger(__name__)


class NotApplicable(Exception):
    """Understood, but cannot be applied: AE, nothing stored, replayable after a fix."""

    def __init__(self, reason: str, *, code: str = "207", location: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.location = location  # ERR-2, e.g. SCH^1^11^1^4


@dataclass(frozen=True)
class Receipt:
    """What the sender is told about one message."""

    ack: str
    ack_code: str
    message_id: int | None
    duplicate: bool = False
    reason: str = ""
    # The receipts of the messages of a batch (the ack is then the batch's).
    batch: tuple[Receipt, ...] = ()


@dataclass(frozen=True)
class FeedSelector:
    """Which feed(s) a listener or import serves; by default every active feed."""

    organization_slug: str = ""
    feed_name: str = ""

    def feeds(self):
        qs = Hl7Feed.objects.filter(active=True).select_related("organization")
        if self.organization_slug:
            qs = qs.filter(organization__slug=self.organization_slug)
        if self.feed_name:
            qs = qs.filter(name=self.feed_name)
        return qs

    def check(self) -> None:
        """Raise ValueError saying what to configure when no feed can take messages."""
        if not self.feeds().exists():
            scope = " ".join(
                part
                for part in (
                    f"named '{self.feed_name}'" if self.feed_name else "",
                    f"in organization '{self.organization_slug}'" if self.organization_slug else "",
                )
                if part
            )
            raise ValueError(
                f"No active HL7 feed {scope or 'is configured'}. Add one with `careline "
                "hl7-feed add NAME --organization SLUG` or in the admin (Integrations › HL7 "
                "feeds)."
            )

    def resolve(self, header: Header) -> Hl7Feed | None:
        feeds = list(self.feeds())
        if len(feeds) == 1:
            return feeds[0]
        wanted = header.sending_application.strip().lower()
        matches = [f for f in feeds if f.routing_application.lower() == wanted]
        return matches[0] if len(matches) == 1 else None

    def pinned(self) -> PinnedFeeds:
        """This selector with its feeds read once, for messages applied in one
        transaction (a feed changed meanwhile counts from the next transaction on)."""
        return PinnedFeeds(self.organization_slug, self.feed_name, tuple(self.feeds()))


@dataclass(frozen=True)
class PinnedFeeds(FeedSelector):
    loaded: tuple[Hl7Feed, ...] = ()

    def feeds(self):
        return self.loaded

    def pinned(self) -> PinnedFeeds:
        return self


# Enough to see what a sender sent (MSH and the first segments); the rest is dropped.
REJECTED_EXCERPT_CHARS = 4096


@dataclass(frozen=True)
class RejectedRetention:
    """How many refused messages to keep per feed, and for how long (0: no bound)."""

    keep: int = 10_000
    days: int = 30

    @classmethod
    def from_settings(cls) -> RejectedRetention:
        return cls(
            keep=settings.CARELINE_HL7_REJECTED_KEEP, days=settings.CARELINE_HL7_REJECTED_DAYS
        )


def _excerpt(raw: str) -> str:
    if len(raw) <= REJECTED_EXCERPT_CHARS:
        return raw
    return raw[:REJECTED_EXCERPT_CHARS] + f"\r[… {len(raw):,} characters received, cut]"


def _refused(feed_id: int | None) -> Q:
    # AE rows linked to an appointment are that visit's history (write-back reads them).
    return Q(feed_id=feed_id) & (
        Q(state=Hl7MessageState.REJECTED) | Q(state=Hl7MessageState.ERROR, appointment__isnull=True)
    )


def trim_refused(feed_id: int | None, retention: RejectedRetention, now: datetime) -> int:
    """Delete this feed's oldest refused messages beyond the retention bound."""
    refused = Hl7Message.objects.filter(_refused(feed_id))
    deleted = 0
    if retention.days > 0:
        deleted += refused.filter(received_at__lt=now - timedelta(days=retention.days)).delete()[0]
    if retention.keep > 0:
        oldest_kept = refused.order_by("-id").values_list("id", flat=True)[
            retention.keep - 1 : retention.keep
        ]
        cutoff = next(iter(oldest_kept), None)
        if cutoff is not None:
            deleted += refused.filter(id__lt=cutoff).delete()[0]
    if deleted:
        logger.info("HL7 retention: %s refused message(s) of feed %s deleted", deleted, feed_id)
    return deleted


def _ack_id() -> str:
    return uuid.uuid4().hex[:20].upper()


def receive_message(
    raw: str,
    selector: FeedSelector | None = None,
    retention: RejectedRetention | None = None,
) -> Receipt:
    """Store, process and acknowledge one message (the text between MLLP frame bytes)."""
    selector = selector or FeedSelector()
    retention = retention or RejectedRetention.from_settings()
    # PostgreSQL text cannot hold NUL; it never belongs in HL7, so keep a visible marker.
    raw = raw.replace("\x00", "\ufffd")
    if is_batch(raw):
        return receive_batch(raw, selector, retention)
    now = timezone.now()
    try:
        header = read_header(raw)
    except MessageRejected as exc:
        return _store_rejected(raw, None, None, exc.reason, exc.code, now, retention)
    feed = selector.resolve(header)
    if feed is None:
        reason = (
            f"No HL7 feed is configured for sending application "
            f"'{header.sending_application or '(empty MSH-3)'}'."
        )
        return _store_rejected(raw, header, None, reason, "207", now, retention, "MSH^1^3")
    if not header.control_id:
        reason = "MSH-10 (message control id) is empty."
        return _store_rejected(raw, header, feed, reason, "101", now, retention, "MSH^1^10")
    if len(header.control_id) > MAX_CONTROL_ID:
        reason = f"MSH-10 (message control id) is longer than {MAX_CONTROL_ID} characters."
        return _store_rejected(raw, header, feed, reason, "102", now, retention, "MSH^1^10")
    if header.processing_id != feed.processing_id:
        return _refuse_processing_id(raw, header, feed, now, retention)

    existing = _stored(feed, header.control_id)
    if existing is not None:
        if _is_other_message(existing, raw):
            return _reused_control_id(raw, header, feed, existing, now, retention)
        return _duplicate(existing, header)
    try:
        message = Hl7Message.objects.create(
            feed=feed,
            control_id=header.control_id,
            message_type=header.message_type[:3],
            trigger_event=header.trigger[:3],
            raw=raw,
            received_at=now,
        )
    except IntegrityError:
        # The same message arrived on another connection at the same moment.
        existing = _stored(feed, header.control_id)
        if existing is not None and _is_other_message(existing, raw):
            return _reused_control_id(raw, header, feed, existing, now, retention)
        return _duplicate(existing, header)
    receipt = process_message(message)
    if receipt.ack_code != ACCEPT and message.appointment_id is None:
        trim_refused(feed.id, retention, now)
    return receipt


def receive_together(
    raws: list[str],
    selector: FeedSelector | None = None,
    retention: RejectedRetention | None = None,
    *,
    keep_lookups: float = 0.0,
) -> list[Receipt | None]:
    """Several messages (say, one from each open connection) received in one transaction.

    Each is received as `receive_message` would receive it alone, in a savepoint of its
    own, in order; their reminders are planned together at the end, in one set-based
    pass, and all commit at once: one commit, one feed lookup, one planning pass and one
    change time (careline.versions) for the lot instead of one each. Nothing is
    acknowledged before the commit (the caller sends the ACKs once this returns). A
    message whose savepoint failed (a database error, e.g. a row another connection
    inserted first) has None: the caller receives it alone after the commit. If the
    transaction itself fails, nothing of any of them is stored and this raises; the
    caller receives each alone.

    Configuration rows are read once per transaction, or kept this thread's
    `keep_lookups` seconds across transactions (the listener's threads; see _lookups).
    """
    retention = retention or RejectedRetention.from_settings()
    receipts: list[Receipt | None] = [None] * len(raws)
    with (
        _lookups_kept(keep_lookups),  # outermost: it hears of a failed commit too
        transaction.atomic(),
        changes.announced_together(),
        versions.one_time_per_transaction(),
    ):
        selector = selector or FeedSelector()
        feeds = _found(
            ("feeds", selector.organization_slug, selector.feed_name),
            lambda: selector.pinned().loaded,
        )
        pinned = PinnedFeeds(selector.organization_slug, selector.feed_name, feeds or ())
        booked = _book_together(raws, pinned)
        for n, raw in enumerate(raws):
            if n in booked:
                receipts[n] = booked[n]
                continue
            try:
                with transaction.atomic():
                    receipts[n] = receive_message(raw, pinned, retention)
            except Exception as exc:  # noqa: BLE001 — received alone after the commit
                logger.info("HL7 message left for a transaction of its own: %s", type(exc).__name__)
    return receipts


# ---- new bookings received together ---------------------------------------------------
#
# Most of what a busy feed sends is S12: a new visit, often for a patient new to
# Careline. Received one by one, each costs some thirty statements and about ten
# milliseconds of ORM work. Received together, the new bookings of a group are read in
# one statement per kind (stored control ids, known visits, known patients) and written
# in one multi-row INSERT per table, through the tables' owners. Everything else (updates,
# cancellations, known patients, anything refused, anything that would create a
# provider link or a visit type) goes the way it goes alone, after them.


@dataclass(frozen=True)
class _Booking:
    """A new booking read from a message, nothing written yet."""

    index: int
    raw: str
    header: Header
    feed: Hl7Feed
    identifiers: list[Identifier]
    patient: Patient  # unsaved
    visit: ExternalVisit  # its patient is `patient`
    outcome: Applied  # warnings only


def _book_together(raws: list[str], feeds: PinnedFeeds) -> dict[int, Receipt]:
    """Apply the new bookings among messages received together, set-based; their
    receipts by position in `raws`. Must run inside `receive_together`'s transaction. A
    failure (say, a patient another listener process stored a moment ago) rolls all of
    them back to their savepoint and returns nothing: each is then received alone."""
    now = timezone.now()
    readings = [_read(n, raw, feeds, now) for n, raw in enumerate(raws)]
    # Two messages of one group naming the same control id, visit or patient go one by
    # one, in order: the second must see what the first did.
    seen = Counter(key for keys, _ in readings for key in set(keys))
    bookings = [
        booking
        for keys, booking in readings
        if booking is not None and all(seen[key] == 1 for key in keys)
    ]
    bookings = _still_new(bookings)
    if not bookings:
        return {}
    organizations = sorted({b.feed.organization_id for b in bookings})
    for organization_id in organizations:
        # Stamped outside the savepoint below: on PostgreSQL the stamp's advisory lock
        # must outlive a rollback of it.
        versions.change_stamp(Patient, organization_id)
        versions.change_stamp(Appointment, organization_id)
    try:
        with transaction.atomic():
            add_patients([(b.patient, b.identifiers) for b in bookings])
            visit_ids: dict[int, int] = {}
            for organization_id in organizations:
                mine = [b for b in bookings if b.feed.organization_id == organization_id]
                added = add_external_appointments(organization_id, [b.visit for b in mine])
                visit_ids.update((b.index, a.pk) for b, a in zip(mine, added, strict=True))
            messages = Hl7Message.objects.bulk_create(
                [_applied_message(b, visit_ids[b.index], now) for b in bookings]
            )
    except Exception as exc:  # noqa: BLE001 — each is received alone instead
        logger.info(
            "HL7: %s new bookings left to go one by one after %s", len(bookings), type(exc).__name__
        )
        return {}
    logger.info(
        "HL7 messages %s to %s: %s new bookings applied together (AA)",
        messages[0].id,
        messages[-1].id,
        len(messages),
    )
    return {
        b.index: Receipt(m.ack, ACCEPT, m.id, reason=m.error)
        for b, m in zip(bookings, messages, strict=True)
    }


def _read(
    n: int, raw: str, feeds: PinnedFeeds, now: datetime
) -> tuple[list[tuple], _Booking | None]:
    """What a message names (its control id, visit and patient identifiers, as keys) and,
    when it may be a new booking, the booking."""
    raw = raw.replace("\x00", "\ufffd")
    if is_batch(raw):
        return [("batch", n)], None
    try:
        header = read_header(raw)
    except MessageRejected:
        return [], None
    feed = feeds.resolve(header)
    if (
        feed is None
        or not header.control_id
        or len(header.control_id) > MAX_CONTROL_ID
        or header.processing_id != feed.processing_id
    ):
        return [], None
    keys: list[tuple] = [("message", feed.id, header.control_id)]
    try:
        parsed = parse_message(raw)
    except (MessageRejected, InvalidField):
        return keys, None
    organization_id = feed.organization_id
    named = [parsed.patient]
    if isinstance(parsed, MergeMessage):
        named.append(SiuPatient(identifiers=parsed.prior_identifiers))
    for data in named:
        if data is None:
            continue
        try:
            keys += [("patient", organization_id, *i.key) for i in _identifiers(feed, data)]
        except NotApplicable:
            pass
    if not isinstance(parsed, SiuMessage):
        return keys, None
    system = parsed.appointment_system or feed.namespace
    keys.append(("visit", organization_id, system, parsed.appointment_id))
    return keys, _new_booking(n, raw, feed, parsed, system, now)


def _new_booking(
    n: int, raw: str, feed: Hl7Feed, siu: SiuMessage, system: str, now: datetime
) -> _Booking | None:
    """The booking an S12 describes, if everything it needs is known and valid (found
    in this transaction's configuration lookups, created by nothing); else None."""
    data = siu.patient
    if (
        siu.header.trigger != "S12"
        or status_for(feed, siu.header.trigger, siu.filler_status) != AppointmentStatus.BOOKED
        or not siu.appointment_id
        or data is None
        or not siu.providers
    ):
        return None
    outcome = Applied()
    try:
        updated_at = (
            to_datetime(siu.header.sent_at, feed.zone, "MSH-7 message time")
            if siu.header.sent_at
            else now
        )
        practice = _practice(feed, siu, None, outcome)
        provider = _linked_provider(feed, siu.providers)
        appointment_type = _known_appointment_type(feed, siu.service)
        if provider is None or appointment_type is None:
            return None
        start, end = _times(siu, visit_zone(feed, practice), None)
        end = end or start + timedelta(minutes=appointment_type.duration_minutes)
        if end <= start:
            return None
        check_visit_times(start, end)
        mrn = _mrn(feed, data)
        identifiers = _identifiers(feed, data)
        fields = _patient_fields(data, None, outcome)
    except (NotApplicable, BadValue, VisitTimeError):
        return None
    if outcome.problems or not mrn or not (fields.get("family_name") or fields.get("given_name")):
        return None
    fields.setdefault("family_name", "")
    fields.setdefault("given_name", "")
    patient = Patient(
        organization_id=feed.organization_id, mrn=mrn[:MAX_MRN], home_practice=practice, **fields
    )
    if not patient.mobile_phone:
        outcome.warn(_no_mobile_warning(data), "101", "PID^1^13")
    visit = ExternalVisit(
        practice=practice,
        provider=provider,
        patient=patient,
        appointment_type=appointment_type,
        start=start,
        end=end,
        status=AppointmentStatus.BOOKED,
        source=ChangeSource.HL7,
        external_system=system,
        external_id=siu.appointment_id,
        updated_at=updated_at,
        note=f"HL7 {siu.header.trigger}",
    )
    return _Booking(n, raw, siu.header, feed, identifiers, patient, visit, outcome)


def _still_new(bookings: list[_Booking]) -> list[_Booking]:
    """The bookings whose control id, visit and patient identifiers are all unknown here:
    one statement per kind (and organization) for the whole group."""
    if not bookings:
        return []
    stored = set(
        Hl7Message.objects.filter(
            feed_id__in={b.feed.id for b in bookings},
            control_id__in={b.header.control_id for b in bookings},
        ).values_list("feed_id", "control_id")
    )
    known: set[tuple] = set()
    for organization_id in {b.feed.organization_id for b in bookings}:
        mine = [b for b in bookings if b.feed.organization_id == organization_id]
        known.update(
            ("visit", organization_id, system, external_id)
            for system, external_id in Appointment.objects.filter(
                organization_id=organization_id,
                external_id__in={b.visit.external_id for b in mine},
            ).values_list("external_system", "external_id")
        )
        found = identified_patients(organization_id, [i for b in mine for i in b.identifiers])
        known.update(
            ("patient", organization_id, *key.split("|", 1))
            for keys in found.values()
            for key in keys
        )
    return [
        b
        for b in bookings
        if (b.feed.id, b.header.control_id) not in stored
        and ("visit", b.feed.organization_id, b.visit.external_system, b.visit.external_id)
        not in known
        and not any(("patient", b.feed.organization_id, *i.key) in known for i in b.identifiers)
    ]


def _applied_message(booking: _Booking, appointment_id: int, now: datetime) -> Hl7Message:
    """The stored message of a booking applied together, with its ACK (as _finish)."""
    outcome, header = booking.outcome, booking.header
    warning = " ".join(outcome.warnings)
    ack = build_ack(
        ACCEPT,
        header,
        reason=warning,
        error_code=outcome.warning_code if warning else "0",
        error_location=outcome.warning_location if warning else "",
        ack_control_id=_ack_id(),
        warning=warning,
    )
    return Hl7Message(
        feed=booking.feed,
        control_id=header.control_id,
        message_type=header.message_type[:3],
        trigger_event=header.trigger[:3],
        raw=booking.raw,
        state=Hl7MessageState.APPLIED,
        error=warning,
        ack_code=ACCEPT,
        ack=ack,
        appointment_id=appointment_id,
        received_at=now,
        processed_at=timezone.now(),
    )


# Configuration rows (the feeds, practices by location code, provider links, visit types) found
# while receiving messages together, set by `receive_together`; None: every message
# reads them afresh. Kept for the transaction, or (the MLLP listener's threads, each with
# its own database connection, living as long as the listener) for a second across
# transactions: re-reading them cost three statements per group, as many as a group's
# new bookings. Only rows found are kept, never an absence (a message may create the
# missing link or type); a change made in the admin counts within that second. A
# transaction that fails drops what was kept (a row it read may have been its own,
# rolled back with it).
LISTENER_LOOKUPS_SECONDS = 1.0
_lookups = threading.local()


@contextmanager
def _lookups_kept(seconds: float) -> Iterator[None]:
    now = time.monotonic()
    kept = getattr(_lookups, "kept", None)
    if kept is None or now - kept[0] > seconds:
        kept = (now, {})
    _lookups.kept = kept if seconds > 0 else None
    _lookups.found = kept[1]
    try:
        yield
    except BaseException:
        _lookups.kept = None
        raise
    finally:
        _lookups.found = None


def _found(key: tuple, load: Callable[[], object]):
    kept = getattr(_lookups, "found", None)
    if kept is None:
        return load()
    if key not in kept:
        value = load()
        if not value:
            return value
        kept[key] = value
    return kept[key]


# ---- batches ---------------------------------------------------------------------------

_BATCH_HEADERS = ("FHS", "BHS")
_BATCH_ENVELOPE = ("FHS", "BHS", "BTS", "FTS")


def is_batch(raw: str) -> bool:
    """Whether a frame holds an HL7 batch (FHS/BHS envelope) rather than one message."""
    return normalize_segment_breaks(raw)[:3] in _BATCH_HEADERS


def _split_batch(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """The envelope segments by id, and the messages (each from its MSH) of a batch."""
    envelope: dict[str, list[str]] = {}
    messages: list[list[str]] = []
    for segment in text.split("\r"):
        kind = segment[:3]
        if kind in _BATCH_ENVELOPE:
            envelope.setdefault(kind, []).append(segment)
        elif kind == "MSH":
            messages.append([segment])
        elif messages and segment.strip():
            messages[-1].append(segment)
    return envelope, ["\r".join(m) + "\r" for m in messages]


def batch_messages(raw: str) -> list[str]:
    """The messages of a frame: those of a batch, or the frame itself."""
    if not is_batch(raw):
        return [raw]
    return _split_batch(normalize_segment_breaks(raw))[1]


def _envelope_field(segment: str, n: int) -> str:
    # FHS/BHS count the field separator as field 1, like MSH.
    fields = segment.split(segment[3:4] or "|") if len(segment) > 3 else [segment]
    return fields[n - 1].split("^")[0].strip() if 0 < n - 1 < len(fields) else ""


def receive_batch(
    raw: str,
    selector: FeedSelector | None = None,
    retention: RejectedRetention | None = None,
) -> Receipt:
    """Each message of a batch received as if it came alone; the answer is a batch ACK.

    HL7 v2 batch acknowledgement (original mode): a response batch with the same
    envelope (FHS only if the request had one), whose BHS-12 / FHS-12 name the
    request's batch / file control id (BHS-11 / FHS-11), holding one ACK per message in
    order, and BTS-1 / FTS-1 counting them. A message's ACK is the one it would get
    alone (a resent batch gets each message's stored ACK again).
    """
    text = normalize_segment_breaks(raw)
    envelope, messages = _split_batch(text)
    receipts = tuple(receive_message(m, selector, retention) for m in messages)
    at = timezone.now().astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    segments: list[str] = []
    for kind in _BATCH_HEADERS:
        if kind not in envelope:
            continue
        theirs = envelope[kind][0]
        segments.append(
            "|".join(
                [
                    kind,
                    "^~\\&",
                    "CARELINE",
                    "CARELINE",
                    escape(_envelope_field(theirs, 3)),
                    escape(_envelope_field(theirs, 4)),
                    at,
                    "",
                    "",
                    "",
                    _ack_id(),
                    escape(_envelope_field(theirs, 11)),
                ]
            )
        )
    if "BHS" not in envelope:
        # A file (FHS) holds batches; answer with one even when the sender left BHS out.
        segments.append(f"BHS|^~\\&|CARELINE|CARELINE|||{at}||||{_ack_id()}")
    segments.extend(r.ack.rstrip("\r") for r in receipts)
    comment = "" if messages else "The batch holds no messages."
    segments.append(f"BTS|{len(receipts)}|{comment}")
    if "FHS" in envelope:
        segments.append("FTS|1")
    codes = {r.ack_code for r in receipts}
    worst = next((c for c in (REJECT, ERROR) if c in codes), ACCEPT if receipts else REJECT)
    logger.info("HL7 batch of %s message(s): %s", len(receipts), worst)
    return Receipt(
        "\r".join(segments) + "\r",
        worst,
        None,
        reason=comment or " ".join(r.reason for r in receipts if r.reason)[:2000],
        batch=receipts,
    )


# A batch frame of at least this many messages is a bulk load: the listener refreshes
# the planner's statistics after it (smaller ones are a feed's ordinary traffic, which
# would pay an ANALYZE per frame).
BULK_BATCH_MESSAGES = 100


def refresh_statistics_after_bulk() -> None:
    """Fresh planner statistics for the tables received messages fill (`careline
    import-hl7`, a large batch over MLLP), like every other bulk path."""
    refresh_statistics(
        Hl7Message,
        Patient,
        PatientVersion,
        Appointment,
        AppointmentEvent,
        AppointmentVersion,
        OutboundMessage,
    )


def receive_oversize(
    head: str,
    size: int,
    limit: int,
    selector: FeedSelector | None = None,
    retention: RejectedRetention | None = None,
) -> Receipt | None:
    """AR for a frame over the listener's size limit, of which only `head` was kept.

    None when the head has no readable MSH: there is no one to address an answer to.
    """
    try:
        header = read_header(head.split("\r", 1)[0].split("\n", 1)[0])
    except MessageRejected:
        return None
    selector = selector or FeedSelector()
    feed = selector.resolve(header)
    reason = f"The message is {size:,} bytes; this listener accepts at most {limit:,}."
    return _store_rejected(
        head,
        header,
        feed,
        reason,
        "102",
        timezone.now(),
        retention or RejectedRetention.from_settings(),
        keep_control_id=False,  # the sender may send it again, smaller, with the same id
    )


def _refuse_processing_id(
    raw: str, header: Header, feed: Hl7Feed, now: datetime, retention: RejectedRetention
) -> Receipt:
    """A test (T) or debugging (D) message on a production feed, or the reverse: AR, and
    nothing applied. The control id is not kept, so a later message that reuses it is
    not answered with this refusal (test systems often restart their numbering)."""
    reason = (
        f"MSH-11 processing ID '{header.processing_id or '(empty)'}' does not match the "
        f"feed '{feed.name}', which takes '{feed.processing_id}' messages only."
    )
    return _store_rejected(
        raw, header, feed, reason, "202", now, retention, "MSH^1^11", keep_control_id=False
    )


def _stored(feed: Hl7Feed, control_id: str) -> Hl7Message | None:
    return Hl7Message.objects.filter(feed=feed, control_id=control_id).first()


def _duplicate(message: Hl7Message | None, header: Header) -> Receipt:
    if message is None or not message.ack:
        reason = "A message with this control id is still being processed; send it again later."
        ack = build_ack(ERROR, header, reason=reason, error_code="205", ack_control_id=_ack_id())
        return Receipt(ack, ERROR, message.id if message else None, duplicate=True, reason=reason)
    logger.info("HL7 message %s: duplicate control id, stored ACK resent", message.id)
    return Receipt(message.ack, message.ack_code, message.id, duplicate=True, reason=message.error)


def _comparable(raw: str) -> str:
    # Resending engines may change segment breaks or trailing blanks, never content.
    return "\r".join(seg.rstrip() for seg in normalize_segment_breaks(raw).split("\r"))


def _is_other_message(existing: Hl7Message, raw: str) -> bool:
    """Whether a message reusing a stored control id says something else."""
    if existing.state == Hl7MessageState.REJECTED and len(raw) > REJECTED_EXCERPT_CHARS:
        # Only an excerpt of a refused message is kept: compare like with like.
        return _comparable(_excerpt(raw)) != _comparable(existing.raw)
    return _comparable(raw) != _comparable(existing.raw)


def _reused_control_id(
    raw: str,
    header: Header,
    feed: Hl7Feed,
    existing: Hl7Message,
    now: datetime,
    retention: RejectedRetention,
) -> Receipt:
    received = timezone.localtime(existing.received_at, feed.zone)
    reason = (
        f"MSH-10 control id '{header.control_id}' was already used on "
        f"{received:%Y-%m-%d %H:%M %Z} by a message with different content "
        f"(stored message {existing.id}); this one was not applied. Send it with a new "
        "control id."
    )
    logger.info("HL7 message %s: control id reused with different content", existing.id)
    return _store_rejected(
        raw, header, feed, reason, "205", now, retention, "MSH^1^10", keep_control_id=False
    )


def _store_rejected(
    raw: str,
    header: Header | None,
    feed: Hl7Feed | None,
    reason: str,
    code: str,
    now: datetime,
    retention: RejectedRetention,
    location: str = "",
    *,
    keep_control_id: bool = True,
) -> Receipt:
    ack = build_ack(
        REJECT,
        header,
        reason=reason,
        error_code=code,
        error_location=location,
        ack_control_id=_ack_id(),
    )
    keep_id = keep_control_id and header and feed and len(header.control_id) <= MAX_CONTROL_ID
    message = Hl7Message.objects.create(
        feed=feed,
        # Rejected without a feed: no idempotency to keep, and the id may repeat.
        control_id=header.control_id if keep_id else "",
        message_type=header.message_type[:3] if header else "",
        trigger_event=header.trigger[:3] if header else "",
        raw=_excerpt(raw),
        state=Hl7MessageState.REJECTED,
        error=reason,
        ack_code=REJECT,
        ack=ack,
        received_at=now,
        processed_at=now,
    )
    logger.info("HL7 message %s rejected (AR)", message.id)
    trim_refused(feed.id if feed else None, retention, now)
    return Receipt(ack, REJECT, message.id, reason=reason)


def process_message(message: Hl7Message) -> Receipt:
    """Apply a stored message in one transaction and record the outcome and its ACK."""
    header, location = None, ""
    try:
        siu = parse_message(message.raw)
        header = siu.header
        for attempt in (1, 2):
            try:
                with transaction.atomic():
                    return _apply_and_finish(message, siu)
            except IntegrityError:
                # Another connection created the same patient or provider just now;
                # the second attempt finds it.
                if attempt == 2:
                    raise
    except MessageRejected as exc:
        state, code, reason, error_code = Hl7MessageState.REJECTED, REJECT, exc.reason, exc.code
    except (NotApplicable, InvalidField) as exc:
        state, code, reason, error_code = Hl7MessageState.ERROR, ERROR, exc.reason, exc.code
        location = exc.location
    except Exception as exc:  # noqa: BLE001 — the sender must get an answer, and we a record
        # Exception text may quote patient data; the log gets the type, the row the text.
        logger.error("HL7 message %s failed: %s", message.id, type(exc).__name__)
        state, code, error_code = Hl7MessageState.ERROR, ERROR, "207"
        reason = f"Internal error while applying the message ({type(exc).__name__}: {exc})."
    if header is None:
        header = _header_or_none(message.raw)
    if state == Hl7MessageState.REJECTED and len(message.raw) > REJECTED_EXCERPT_CHARS:
        # Not replayable as it stands: keep what shows what it was, not all of it.
        message.raw = _excerpt(message.raw)
        message.save(update_fields=["raw"])
    _finish(message, header, state, code, reason, error_code, None, location)
    return Receipt(message.ack, code, message.id, reason=reason)


def _header_or_none(raw: str) -> Header | None:
    try:
        return read_header(raw)
    except MessageRejected:
        return None


def _apply_and_finish(message: Hl7Message, siu: SiuMessage | AdtMessage | MergeMessage) -> Receipt:
    if isinstance(siu, AdtMessage):
        outcome = apply_adt(message.feed, siu)
    elif isinstance(siu, MergeMessage):
        outcome = apply_merge(message.feed, siu)
    else:
        outcome = apply_siu(message.feed, siu, received_at=message.received_at)
    state, code, reason, error_code = Hl7MessageState.APPLIED, ACCEPT, "", "0"
    location, warning = outcome.problem_location, ""
    if outcome.problems:
        state, code, error_code = Hl7MessageState.ERROR, ERROR, outcome.problem_code
        reason = " ".join(outcome.problems + outcome.warnings)
    elif outcome.warnings:
        # Applied: the sender must not resend, but should hear what was missing.
        reason = warning = " ".join(outcome.warnings)
        error_code, location = outcome.warning_code, outcome.warning_location
    _finish(
        message,
        siu.header,
        state,
        code,
        reason,
        error_code,
        outcome.appointment_id,
        location,
        warning=warning,
    )
    return Receipt(message.ack, code, message.id, reason=reason)


def _finish(
    message: Hl7Message,
    header: Header | None,
    state: str,
    code: str,
    reason: str,
    error_code: str,
    appointment_id: int | None,
    location: str = "",
    *,
    warning: str = "",
) -> None:
    message.state, message.ack_code, message.error = state, code, reason
    message.ack = build_ack(
        code,
        header,
        reason=reason,
        error_code=error_code,
        error_location=location,
        ack_control_id=_ack_id(),
        warning=warning,
    )
    message.processed_at = timezone.now()
    if appointment_id is not None:
        message.appointment_id = appointment_id
    message.save(update_fields=["state", "ack_code", "error", "ack", "processed_at", "appointment"])
    logger.info("HL7 message %s %s (%s)", message.id, state, code)


def replay_message(message: Hl7Message) -> Receipt:
    """Process a stored message again, e.g. after staff fixed the feed's mapping."""
    if message.feed_id is None:
        raise ValueError("This message was not routed to any feed; it cannot be replayed.")
    Hl7Message.objects.filter(pk=message.pk).update(replay_count=F("replay_count") + 1)
    message.replay_count += 1
    return process_message(message)


# ---- applying ------------------------------------------------------------------------


@dataclass
class Applied:
    appointment_id: int | None = None
    problems: list[str] = field(default_factory=list)
    # ERR-3 and ERR-2 of the first problem: the ACK has one ERR segment.
    problem_code: str = ""
    problem_location: str = ""
    # Applied, but something optional is missing: AA with an ERR of severity W.
    warnings: list[str] = field(default_factory=list)
    warning_code: str = ""
    warning_location: str = ""

    def problem(self, text: str, code: str, location: str = "") -> None:
        if not self.problems:
            self.problem_code, self.problem_location = code, location
        self.problems.append(text)

    def warn(self, text: str, code: str, location: str = "") -> None:
        if not self.warnings:
            self.warning_code, self.warning_location = code, location
        self.warnings.append(text)


def status_for(feed: Hl7Feed, trigger: str, filler_status: str) -> str:
    """The trigger event says what happened; SCH-25 may say it more precisely."""
    code = " ".join(filler_status.upper().split())
    if trigger == "S17":
        return AppointmentStatus.ENTERED_IN_ERROR
    if trigger == "S26" or code in feed.noshow_status_codes:
        return AppointmentStatus.NO_SHOW
    if trigger == "S15" or code in feed.cancelled_status_codes:
        return AppointmentStatus.CANCELLED
    return AppointmentStatus.BOOKED


def apply_siu(feed: Hl7Feed, siu: SiuMessage, *, received_at: datetime) -> Applied:
    """Create or update the patient and appointment the message describes."""
    result = Applied()
    zone = feed.zone
    organization = feed.organization
    updated_at = received_at
    if siu.header.sent_at:
        try:
            updated_at = to_datetime(siu.header.sent_at, zone, "MSH-7 message time")
        except BadValue as exc:
            result.problem(
                f"{exc} The arrival time was used as the message time.", "102", "MSH^1^7"
            )
    status = status_for(feed, siu.header.trigger, siu.filler_status)
    # A visit id is the sending system's: the EI's namespace, else the feed's. The same
    # number from two systems is two visits.
    system = siu.appointment_system or feed.namespace
    current = (
        Appointment.objects.select_related("practice", "provider", "patient", "appointment_type")
        .filter(organization=organization, external_system=system, external_id=siu.appointment_id)
        .first()
    )
    if current is None and status != AppointmentStatus.BOOKED and not _describes_visit(siu):
        # A cancellation, no-show or deletion of a visit we never had: nothing to change.
        logger.info("HL7 %s for an unknown appointment: nothing to apply", siu.header.trigger)
        return result

    practice = _practice(feed, siu, current, result)
    patient = _patient(feed, siu.patient, practice, current, result)
    provider = _provider(feed, siu.providers, practice, current)
    start, end = _times(siu, visit_zone(feed, practice), current)
    appointment_type = _appointment_type(feed, siu.service, current, start, end)
    if end is None:
        end = start + timedelta(minutes=appointment_type.duration_minutes)
    if end <= start:
        raise NotApplicable(
            "The appointment would end before it starts.",
            code="102",
            location=siu.end_location or siu.duration_location,
        )
    try:
        check_visit_times(start, end)
    except VisitTimeError as exc:
        where = siu.start_location if exc.field == "start" else None
        raise NotApplicable(
            f"The appointment's {exc.field} {exc.message}",
            code="102",
            location=where or siu.end_location or siu.duration_location,
        ) from exc

    upsert = upsert_external_appointment(
        organization=organization,
        practice=practice,
        provider=provider,
        patient=patient,
        appointment_type=appointment_type,
        start=start,
        end=end,
        status=status,
        source=ChangeSource.HL7,
        external_system=system,
        external_id=siu.appointment_id,
        updated_at=updated_at,
        note=f"HL7 {siu.header.trigger}",
    )
    result.appointment_id = upsert.appointment.id
    if not upsert.applied:
        logger.info(
            "HL7 %s older than the appointment's last update: not applied", siu.header.trigger
        )
    elif (
        upsert.appointment.status in UPCOMING_STATUSES
        and not patient.mobile_phone
        and not result.problems
    ):
        result.warn(_no_mobile_warning(siu.patient), "101", "PID^1^13")
    return result


def apply_adt(feed: Hl7Feed, adt: AdtMessage) -> Applied:
    """Update (or create) the patient an ADT A08/A31 describes."""
    result = Applied()
    codes = [feed.location_map.get(loc.code, loc.code) for loc in adt.locations]
    practice = (
        Practice.objects.filter(organization_id=feed.organization_id, code__in=codes).first()
        if codes
        else None
    )
    patient = _patient(feed, adt.patient, practice, None, result)
    if not patient.mobile_phone and not result.problems:
        result.warn(_no_mobile_warning(adt.patient), "101", "PID^1^13")
    return result


def visit_zone(feed: Hl7Feed, practice: Practice | None):
    """The zone a visit time without an offset is read in: the practice's, else the feed's."""
    if practice is not None and practice.time_zone:
        return practice.zone
    return feed.zone


def _no_mobile_warning(data: SiuPatient | None) -> str:
    numbers = [p for p in data.phones if p.number] if data else []
    found = (
        f"PID-13/PID-14 hold {len(numbers)} number(s), none marked mobile"
        if numbers
        else "PID-13/PID-14 hold no phone number"
    )
    return (
        f"Applied, but the patient has no mobile number: {found} (XTN-3 equipment type "
        f"{'/'.join(sorted(MOBILE_EQUIPMENT))}), so no reminders will be texted."
    )


def _describes_visit(siu: SiuMessage) -> bool:
    return bool(siu.start and siu.patient and siu.providers and siu.locations)


def _practice(
    feed: Hl7Feed, siu: SiuMessage, current: Appointment | None, result: Applied
) -> Practice:
    if not siu.locations:
        if current is not None:
            return current.practice
        raise NotApplicable("No AIL segment names the location of this visit.", code="101")
    codes = [feed.location_map.get(loc.code, loc.code) for loc in siu.locations]
    practices = _found(
        ("practices", feed.organization_id, tuple(codes)),
        lambda: {
            p.code: p
            for p in Practice.objects.filter(organization_id=feed.organization_id, code__in=codes)
        },
    )
    for code in codes:
        if code in practices:
            return practices[code]
    reason = (
        f"Unknown location '{siu.locations[0].code}' (AIL-3): map it to a practice code "
        f"in the feed '{feed.name}' settings."
    )
    if current is None:
        raise NotApplicable(reason, code="103")
    result.problem(reason + " The visit stays at its current practice.", "103", "AIL^1^3")
    return current.practice


def _mrn(feed: Hl7Feed, patient: SiuPatient) -> str:
    wanted_type = feed.mrn_identifier_type.strip().upper()
    wanted_authority = feed.mrn_assigning_authority.strip().upper()
    if not wanted_type and not wanted_authority:
        return patient.identifiers[0].value if patient.identifiers else ""
    for ident in patient.identifiers:
        if (not wanted_type or ident.type_code.upper() == wanted_type) and (
            not wanted_authority or ident.authority.upper() == wanted_authority
        ):
            return ident.value
    # Many feeds (athenahealth-style 2.3) send the MRN bare, without type or authority;
    # a typed identifier of another kind (SS, DL…) is never taken for the MRN.
    for ident in patient.identifiers:
        if not ident.type_code and not ident.authority:
            return ident.value
    return ""


def _patient(
    feed: Hl7Feed,
    data: SiuPatient | None,
    practice: Practice | None,
    current: Appointment | None,
    result: Applied,
) -> Patient:
    if data is None:
        if current is not None:
            return current.patient
        raise NotApplicable("The message has no PID segment: whose visit is it?", code="101")
    mrn = _mrn(feed, data)
    if not mrn:
        if current is not None:
            return current.patient
        expected = feed.mrn_identifier_type or "any"
        raise NotApplicable(
            f"PID-3 has no MRN (identifier type {expected}"
            + (
                f", authority {feed.mrn_assigning_authority}"
                if feed.mrn_assigning_authority
                else ""
            )
            + ").",
            code="101",
        )
    identifiers = _identifiers(feed, data)
    found = identified_patients(feed.organization_id, identifiers)
    if len(found) > 1:
        named = "; ".join(
            f"patient {pid} has {', '.join(keys)}" for pid, keys in sorted(found.items())
        )
        raise NotApplicable(
            f"The PID-3 identifiers name different patients ({named}); nothing was applied. "
            "Correct PID-3, or merge the patients in the EHR (ADT^A40) first.",
            code="205",
            location="PID^1^3",
        )
    patient = (
        Patient.objects.select_for_update().filter(pk=next(iter(found))).first() if found else None
    )
    changed = _patient_fields(data, patient, result)

    if patient is None:
        if not changed.get("family_name") and not changed.get("given_name"):
            raise NotApplicable("PID-5 has no patient name for a new patient.", code="101")
        changed.setdefault("family_name", "")
        changed.setdefault("given_name", "")
        return create_patient(
            organization_id=feed.organization_id,
            mrn=mrn[:MAX_MRN],
            home_practice=practice,
            identifiers=identifiers,
            **changed,
        )
    if not patient.mrn:
        changed["mrn"] = mrn[:MAX_MRN]
    try:
        added = keep_identifiers(patient, identifiers, new_version=False)
    except IdentifierConflict as exc:
        # Only when another connection stored one of them a moment ago.
        raise NotApplicable(
            f"PID-3 names patient {patient.pk} and, by {', '.join(exc.taken)}, patient "
            f"{exc.other_patient_id}; nothing was applied.",
            code="205",
            location="PID^1^3",
        ) from exc
    return update_patient(patient, touched=added, **changed)


def _patient_fields(data: SiuPatient, patient: Patient | None, result: Applied) -> dict:
    """The patient's fields a PID segment sets (only those it sends), for `patient` or a
    new one (None); what cannot be used is noted on `result`."""
    changed: dict[str, object] = {}
    if data.family_name:
        changed["family_name"] = data.family_name[:100]
    if data.given_name:
        changed["given_name"] = data.given_name[:100]
    if data.birth_date:
        try:
            changed["birth_date"] = to_date(data.birth_date, "PID-7 birth date")
        except BadValue as exc:
            result.problem(str(exc), "102", "PID^1^7")
    language = coded_language(data.language, data.language_text, data.language_system)
    if language:
        changed["preferred_language"] = language
        changed["language_received"] = ""
    elif data.language or data.language_text:
        _unknown_language(data, patient, result)
        changed["language_received"] = language_as_received(
            data.language, data.language_text, data.language_system
        )
    mobile = _mobile(data, result)
    if mobile:
        changed["mobile_phone"] = mobile
    phones = [_stored_phone(p) for p in data.phones if p.number]
    if phones:
        texted = mobile or (patient.mobile_phone if patient else "")
        changed["phones"] = phones_with_mobile(phones, texted)
    if data.address is not None:
        changed.update(
            address_line=data.address.line[:200],
            city=data.address.city[:100],
            state=data.address.state[:50],
            postal_code=data.address.postal_code[:20],
            country=data.address.country[:60],
        )
    email = next((p.email for p in data.phones if "@" in p.email), "")
    if email:
        changed["email"] = email[:254]
    return changed


def identifier_system(feed: Hl7Feed, ident: ParsedIdentifier) -> str:
    """The system of a PID-3 repetition: its assigning authority (CX-4, read as every HD
    is, `parsing.hd_system`) when sent, else the feed's namespace. The authority the feed
    is configured to send its MRNs under (`mrn_assigning_authority`) is the feed's
    namespace: feeds send it on some messages and leave it out on others."""
    own = feed.mrn_assigning_authority.strip().upper()
    if own and ident.authority.upper() == own:
        return feed.namespace
    return hd_system(ident.authority, ident.authority_id, ident.authority_id_type) or feed.namespace


def _identifiers(feed: Hl7Feed, data: SiuPatient) -> list[Identifier]:
    identifiers = []
    for n, ident in enumerate(data.identifiers, start=1):
        if len(ident.value) > MAX_MRN:
            # Cutting it could merge two patients whose identifiers share a prefix.
            raise NotApplicable(
                f"The identifier in PID-3 repetition {n} is longer than {MAX_MRN} characters.",
                code="102",
                location="PID^1^3",
            )
        system = identifier_system(feed, ident)
        if len(system) > MAX_SYSTEM:
            raise NotApplicable(
                f"The assigning authority (CX-4) of PID-3 repetition {n} is longer than "
                f"{MAX_SYSTEM} characters.",
                code="102",
                location="PID^1^3",
            )
        identifiers.append(Identifier(system, ident.value, type_code=ident.type_code[:20]))
    return identifiers


def apply_merge(feed: Hl7Feed, merge: MergeMessage) -> Applied:
    """ADT^A40: the prior record (MRG-1) is merged into the surviving one (PID-3).

    The prior patient's visits, conversations and waitlist places move to the survivor
    and its identifiers become the survivor's, so a message that still names the prior MRN
    reaches the survivor. Identifiers that name two different Careline patients on either side are
    refused (AE), nothing applied. A prior record Careline never saw leaves its identifiers
    with the survivor; a survivor Careline does not know yet is the prior record renamed.
    """
    result = Applied()
    organization_id = feed.organization_id
    survivor_ids = _identifiers(feed, merge.patient)
    prior_ids = _identifiers(feed, SiuPatient(identifiers=merge.prior_identifiers))
    survivors = identified_patients(organization_id, survivor_ids)
    priors = identified_patients(organization_id, prior_ids)
    for found, where in ((survivors, "PID-3"), (priors, "MRG-1")):
        if len(found) > 1:
            named = "; ".join(
                f"patient {pid} has {', '.join(k)}" for pid, k in sorted(found.items())
            )
            raise NotApplicable(
                f"The {where} identifiers name different patients ({named}); nothing was applied.",
                code="205",
                location="PID^1^3" if where == "PID-3" else "MRG^1^1",
            )
    locked = {
        p.pk: p for p in Patient.objects.select_for_update().filter(pk__in=[*survivors, *priors])
    }
    survivor = locked.get(next(iter(survivors), None))
    prior = locked.get(next(iter(priors), None))
    if survivor is None and prior is None:
        result.warn(
            "Neither the surviving (PID-3) nor the prior patient (MRG-1) is known here; "
            "nothing to merge. Later messages create the survivor.",
            "204",
            "MRG^1^1",
        )
        return result
    blanks: dict[str, object] = {}
    if survivor is None:
        # The EHR renumbered a patient Careline knows only by the prior identifiers.
        survivor, prior = prior, None
    merged = prior is not None and prior.pk != survivor.pk
    if merged:
        move_visits_to_patient(prior.pk, survivor.pk)
        move_conversations_to_patient(prior.pk, survivor.pk)
        move_entries_to_patient(prior.pk, survivor.pk)
        blanks = {
            name: getattr(prior, name)
            for name in ("mobile_phone", "email", "birth_date", "home_practice_id")
            if not getattr(survivor, name) and getattr(prior, name)
        }
        merge_patients(prior, survivor)
        logger.info("HL7 A40: patient %s merged into patient %s", prior.pk, survivor.pk)
    try:
        added = keep_identifiers(survivor, [*survivor_ids, *prior_ids], new_version=False)
    except IdentifierConflict as exc:
        raise NotApplicable(
            f"{', '.join(exc.taken)} belongs to patient {exc.other_patient_id}; nothing was "
            "applied.",
            code="205",
            location="PID^1^3",
        ) from exc
    if not survivor.mrn:
        blanks["mrn"] = _mrn(feed, merge.patient)[:MAX_MRN]
    update_patient(survivor, touched=added or merged, **blanks)
    return result


def _unknown_language(data: SiuPatient, patient: Patient | None, result: Applied) -> None:
    shown = language_as_received(data.language, data.language_text, data.language_system)
    kept = patient.get_preferred_language_display() if patient else "English"
    result.warn(
        f"PID-15 language '{shown}' is not one Careline texts in; texts stay in {kept}. "
        "Staff: check the patient's language.",
        "103",
        "PID^1^15",
    )


# XTN-2 telecommunication use codes (HL7 table 0201) as FHIR ContactPoint uses.
_XTN_USES = {
    "PRN": PhoneUse.HOME,
    "ORN": PhoneUse.HOME,
    "VHN": PhoneUse.HOME,
    "WPN": PhoneUse.WORK,
}
# XTN-3 equipment types (HL7 table 0202) that are not a voice phone.
_XTN_SYSTEMS = {"FX": PhoneSystem.FAX, "BP": PhoneSystem.PAGER}


def _stored_phone(phone: Phone) -> dict[str, str]:
    """One XTN as stored on the patient: E.164 when any spelling is valid, else as sent."""
    value = ""
    for spelling in phone.alternatives:
        try:
            value = normalize_phone(spelling)
        except ValidationError:
            continue
        # A work number's extension (XTN-8) is for the person dialling; keep it.
        if " ext. " in spelling:
            value += " ext. " + spelling.rsplit(" ext. ", 1)[1]
        break
    return {
        "system": _XTN_SYSTEMS.get(phone.equipment, PhoneSystem.PHONE),
        "use": PhoneUse.MOBILE if phone.is_mobile else _XTN_USES.get(phone.use, ""),
        "value": value or phone.number[:40],
    }


def _mobile(data: SiuPatient, result: Applied) -> str:
    """The first valid number marked mobile (PID-13 before PID-14, in repetition order).

    Only a number the sender marks mobile is texted: an untyped v2.3 number may be a
    landline, and in North America the number itself cannot tell.
    """
    mobiles = [p for p in data.phones if p.is_mobile and p.alternatives]
    for phone in mobiles:
        for spelling in phone.alternatives:
            try:
                return normalize_phone(spelling)
            except ValidationError:
                continue
    if mobiles:
        result.problem(
            f"The mobile number in {mobiles[0].location.split('^')[0]}-"
            f"{mobiles[0].location.split('^')[2]} (CP) is not a valid phone number.",
            "102",
            mobiles[0].location,
        )
    return ""


def _provider(
    feed: Hl7Feed, resources: list[Resource], practice: Practice, current: Appointment | None
) -> Provider:
    if not resources:
        if current is not None:
            return current.provider
        raise NotApplicable("No AIP or AIG segment names the provider.", code="101")
    linked = _linked_provider(feed, resources)
    if linked is not None:
        return linked
    resource = resources[0]
    if not feed.create_unknown_providers:
        raise NotApplicable(
            f"Unknown provider '{resource.code}' (AIP-3/AIG-3): link it to a provider in "
            f"the feed '{feed.name}' settings.",
            code="103",
        )
    provider = add_provider(feed.organization_id, practices=[practice], **_provider_names(resource))
    Hl7ProviderLink.objects.create(feed=feed, code=resource.code[:80], provider=provider)
    return provider


def _linked_provider(feed: Hl7Feed, resources: list[Resource]) -> Provider | None:
    """The provider the first linked AIP/AIG code names, if any is linked."""
    codes = [r.code for r in resources]
    links = _found(
        ("provider links", feed.id, tuple(codes)),
        lambda: {
            link.code: link.provider
            for link in Hl7ProviderLink.objects.select_related("provider").filter(
                feed=feed, code__in=codes
            )
        },
    )
    for resource in resources:
        if resource.code in links:
            return links[resource.code]
    return None


def _provider_names(resource: Resource) -> dict[str, str]:
    family, given = resource.family_name, resource.given_name
    if not family and resource.name:
        # AIG-3.2 is free text: "Patel, Nisha" or "Nisha Patel".
        if "," in resource.name:
            family, given = (p.strip() for p in resource.name.split(",", 1))
        else:
            *first, family = resource.name.split()
            given = " ".join(first)
    if family:
        prefix = resource.prefix or "Dr."
        display = f"{prefix} {family.title() if family.isupper() else family}"
    else:
        display = resource.code
    return {
        "display_name": display[:200],
        "family_name": family[:100],
        "given_name": given[:100],
    }


def _times(siu: SiuMessage, zone, current: Appointment | None) -> tuple[datetime, datetime | None]:
    if not siu.start:
        if current is not None:
            return current.start, current.end
        raise NotApplicable(
            "No start time: none of SCH-11.4, TQ1-7, AIS-4, AIL-6, AIP-6, AIG-8 is filled.",
            code="101",
        )
    # parse_siu already refused unusable values; this only names the field if one slips by.
    location = siu.start_location
    try:
        start = to_datetime(siu.start, zone, "Start time")
        if siu.end:
            location = siu.end_location
            return start, to_datetime(siu.end, zone, "End time")
        if siu.duration:
            location = siu.duration_location
            return start, start + to_duration(*siu.duration, "Duration")
    except BadValue as exc:
        raise NotApplicable(str(exc), code="102", location=location) from exc
    if current is not None:
        return start, start + (current.end - current.start)
    return start, None


def _appointment_type(
    feed: Hl7Feed,
    service: Resource | None,
    current: Appointment | None,
    start: datetime,
    end: datetime | None,
) -> AppointmentType:
    if service is None and current is not None:
        return current.appointment_type
    code = _appointment_type_code(feed, service)
    existing = _known_appointment_type(feed, service)
    if existing is not None:
        return existing
    if not feed.create_unknown_appointment_types:
        raise NotApplicable(
            f"Unknown appointment type '{code}' (AIS-3/SCH-8): map it in the feed "
            f"'{feed.name}' settings.",
            code="103",
        )
    minutes = int((end - start).total_seconds() // 60) if end else 20
    return appointment_type_for_code(
        feed.organization,
        code=code,
        name=service.name if service else "",
        duration_minutes=max(minutes, 1),
    )


def _appointment_type_code(feed: Hl7Feed, service: Resource | None) -> str:
    code = service.code if service else feed.default_appointment_type_code
    return feed.appointment_type_map.get(code, code)[:40]


def _known_appointment_type(feed: Hl7Feed, service: Resource | None) -> AppointmentType | None:
    code = _appointment_type_code(feed, service)
    return _found(
        ("appointment type", feed.organization_id, code),
        lambda: AppointmentType.objects.filter(
            organization_id=feed.organization_id, code=code
        ).first(),
    )
