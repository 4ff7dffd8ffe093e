"""Write-back: what patients did in Careline, sent to the EHR as HL7 v2 over MLLP.

What goes back, per feed that has an outbound host and port:

- SIU for appointment changes made by patients (a text reply, a signed link, online
  booking; never what staff, the feed itself, FHIR or an import did, so nothing is
  echoed): S14 with SCH-25 `Confirmed` for a confirmation, S15 with `Cancelled` for a
  cancellation, S13 with the new start in SCH-11, TQ1 (2.5+) and AIS/AIL/AIP for a
  reschedule, S12 `Booked` for a visit the patient booked in Careline. The feed's own
  appointments carry the placer/filler ids (SCH-1/SCH-2) of the last message the feed
  sent for them, and its own PID segment; visits born in Careline carry
  `<id>^CARELINE` as placer id and are sent to the feeds of the organization whose
  location map is empty or names the visit's practice.
- ADT^A31 (update person information) for texting opt-outs and opt-ins, for every
  patient of the feed with that mobile number and an MRN. The PID is the one the feed
  last sent for the patient (so an EHR that replaces the whole person record loses
  nothing), with the mobile repetition of PID-13 marked in XTN-9 (`SMS OPTED-OUT` /
  `SMS OPTED-IN`), and a Z-segment for machines:

      ZCL|1|SMS|<number, E.164>|OPTED-OUT or OPTED-IN|<changed at>|<source>

  (ZCL-6 is Careline's consent source: patient_text, provider_report, staff,
  online_form, import). Consent changes the feed itself reported are not sent back.

Every message is a row in the outbox (Hl7OutboundMessage) before it is sent. The outbox
is filled set-based from the appointment history and the consent ledger, read from a
cursor per feed; a new feed's cursor starts one day back so configuring write-back does
not replay years of history. Sending claims due rows (SKIP LOCKED on PostgreSQL), one
connection per feed and pass, and keeps each stream (an appointment, a patient's consent)
strictly in order: a row waits while an earlier row of its stream is pending.

ACKs: AA (or CA) → sent. AR → failed at once with the EHR's reason. AE, an unreadable
ACK or one answering another control id → retried with exponential backoff, failed after
MAX_ERROR_ACKS such answers. A refused or dropped connection or a timeout is retried with
backoff (capped at an hour) without giving up: the EHR never judged the message, and
giving up would lose a patient's cancellation while the interface engine is down. A
retried message keeps its control id (MSH-10), so a receiver that saw it before can tell.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from itertools import groupby

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from careline.clinics.validators import normalize_phone
from careline.integrations.hl7.ack import escape
from careline.integrations.hl7.mllp import MllpClient
from careline.integrations.hl7.parsing import (
    MessageRejected,
    normalize_segment_breaks,
    parse_siu,
    read_header,
    unescape,
)
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

logger = logging.getLogger(__name__)

PATIENT_SOURCES = (
    ChangeSource.PATIENT_TEXT,
    ChangeSource.PATIENT_LINK,
    ChangeSource.ONLINE_BOOKING,
)
CARELINE = "CARELINE"
DEFAULT_VERSION = "2.5.1"

ROWS_PER_BATCH = 500
# Ids are handed out before commit: a late-committing event can sit just below the
# cursor, so recent events this far back are read again (the outbox is unique per event).
LOOKBACK_ROWS = 500
LATE_COMMIT_WINDOW = timedelta(minutes=2)
FIRST_RUN_HISTORY = timedelta(days=1)

LEASE = timedelta(minutes=2)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
MAX_ERROR_ACKS = 5
ACK_TIMEOUT_SECONDS = 30.0

_STATUS_TEXT = {
    Hl7OutboundType.BOOKED: "Booked",
    Hl7OutboundType.RESCHEDULED: "Booked",
    Hl7OutboundType.CONFIRMED: "Confirmed",
    Hl7OutboundType.CANCELLED: "Cancelled",
}
_STANDARD_ENCODING = "MSH|^~\\&|"


def backoff(attempts: int) -> timedelta:
    """Wait before retry number `attempts`: 30 s, 1 min, 2 min, … at most an hour."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX)


def writeback_feeds() -> QuerySet[Hl7Feed]:
    """Active feeds that have somewhere to send what patients did."""
    return (
        Hl7Feed.objects.filter(active=True, outbound_port__isnull=False)
        .exclude(outbound_host="")
        .select_related("organization")
    )


def writeback_configured() -> bool:
    return writeback_feeds().exists()


# ---- filling the outbox --------------------------------------------------------------


def fill_outbox(*, now: datetime | None = None) -> int:
    """Queue what patients did since the last pass, for every write-back feed.
    Returns how many messages were queued."""
    now = now or timezone.now()
    return sum(_fill_feed(feed, now) for feed in writeback_feeds())


@dataclass(frozen=True)
class Peer:
    """How the feed talks: its version, and its MSH-3/MSH-4 to address our messages to."""

    version: str
    application: str
    facility: str


def _peer(feed: Hl7Feed) -> Peer:
    latest = (
        Hl7Message.objects.filter(feed=feed)
        .exclude(state=Hl7MessageState.REJECTED)
        .order_by("-received_at", "-id")
        .values_list("raw", flat=True)
        .first()
    )
    if latest is not None:
        try:
            header = read_header(latest)
        except MessageRejected:
            header = None
        if header is not None:
            app, facility = header.sender
            return Peer(
                version=header.version or DEFAULT_VERSION,
                application=_hd(app) or escape(feed.routing_application),
                facility=_hd(facility),
            )
    return Peer(DEFAULT_VERSION, escape(feed.routing_application), "")


def _hd(components: Iterable[str]) -> str:
    return "^".join(escape(c) for c in components).rstrip("^")


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
    peer = _peer(feed)
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
    from careline.clinics.models import Practice

    codes = set(feed.location_map.values()) | set(feed.location_map)
    return list(
        Practice.objects.filter(organization_id=feed.organization_id, code__in=codes).values_list(
            "id", flat=True
        )
    )


def _patient_changes(feed: Hl7Feed) -> Q:
    born_in_careline = Q(appointment__external_system="", appointment__external_id="")
    served = _practices_served(feed)
    if served is not None:
        born_in_careline &= Q(appointment__practice_id__in=served)
    return (
        Q(source__in=PATIENT_SOURCES, appointment__organization_id=feed.organization_id)
        & (Q(appointment__external_system=feed.name) | born_in_careline)
        & (
            Q(to_status__in=[AppointmentStatus.CONFIRMED, AppointmentStatus.CANCELLED])
            | Q(old_start__isnull=False, new_start__isnull=False)
            | Q(from_status="")
        )
    )


def _since_cursor(last_id: int, now: datetime) -> Q:
    return Q(id__gt=last_id) | Q(
        id__gt=last_id - LOOKBACK_ROWS, occurred_at__gte=now - LATE_COMMIT_WINDOW
    )


def _message_type(event: AppointmentEvent) -> str:
    if event.to_status == AppointmentStatus.CANCELLED:
        return Hl7OutboundType.CANCELLED
    if event.to_status == AppointmentStatus.CONFIRMED:
        return Hl7OutboundType.CONFIRMED
    if event.old_start is not None:
        return Hl7OutboundType.RESCHEDULED
    return Hl7OutboundType.BOOKED


def _fill_appointment_batch(
    feed: Hl7Feed, cursor: Hl7WritebackCursor, peer: Peer, now: datetime
) -> tuple[int, bool]:
    top = AppointmentEvent.objects.order_by("-id").values_list("id", flat=True).first()
    if top is None:
        return 0, False
    events = list(
        AppointmentEvent.objects.filter(_patient_changes(feed), id__lte=top)
        .filter(_since_cursor(cursor.last_event_id, now))
        .exclude(Exists(Hl7OutboundMessage.objects.filter(feed=feed, event=OuterRef("pk"))))
        .select_related(
            "appointment__patient",
            "appointment__practice",
            "appointment__provider",
            "appointment__appointment_type",
        )
        .order_by("id")[:ROWS_PER_BATCH]
    )
    full = len(events) == ROWS_PER_BATCH
    cursor.last_event_id = max(cursor.last_event_id, events[-1].id if full else top)
    cursor.save(update_fields=["last_event_id"])
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
    top = ConsentEvent.objects.order_by("-id").values_list("id", flat=True).first()
    if top is None:
        return 0, False
    changes = list(
        ConsentEvent.objects.filter(organization_id=feed.organization_id, id__lte=top)
        .exclude(source=ConsentSource.EHR_FEED)
        .filter(_since_cursor(cursor.last_consent_event_id, now))
        .order_by("id")[:ROWS_PER_BATCH]
    )
    full = len(changes) == ROWS_PER_BATCH
    cursor.last_consent_event_id = max(
        cursor.last_consent_event_id, changes[-1].id if full else top
    )
    cursor.save(update_fields=["last_consent_event_id"])
    if not changes:
        return 0, False

    patients = (
        Patient.objects.filter(
            organization_id=feed.organization_id,
            mobile_phone__in={c.phone for c in changes},
        )
        .exclude(mrn="")
        .filter(
            Exists(
                Appointment.objects.filter(
                    patient=OuterRef("pk"),
                    organization_id=feed.organization_id,
                    external_system=feed.name,
                )
            )
        )
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


# ---- building messages ---------------------------------------------------------------


def _version_at_least(version: str, wanted: tuple[int, int]) -> bool:
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]]
    return tuple(parts + [0, 0])[:2] >= wanted


def _dtm(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y%m%d%H%M%S%z")


def _msh(peer: Peer, message_type: str, control_id: str, at: str) -> str:
    kind, trigger, structure = message_type.split("^")
    # The message structure (MSG.3) exists from 2.3.1 on; 2.3 receivers expect two parts.
    msh9 = (
        f"{kind}^{trigger}^{structure}"
        if _version_at_least(peer.version, (2, 4))
        else f"{kind}^{trigger}"
    )
    return "|".join(
        [
            "MSH",
            "^~\\&",
            CARELINE,
            CARELINE,
            peer.application,
            peer.facility,
            at,
            "",
            msh9,
            control_id,
            "P",
            escape(peer.version),
        ]
    )


def _fields(segment_id: str, values: dict[int, str]) -> str:
    width = max(values)
    return "|".join([segment_id] + [values.get(n, "") for n in range(1, width + 1)])


def _segment(raw: str | None, segment_id: str) -> str | None:
    """A segment of an inbound message, verbatim, when it uses the standard delimiters."""
    if not raw:
        return None
    text = normalize_segment_breaks(raw)
    if not text.startswith(_STANDARD_ENCODING):
        return None
    return next((s for s in text.split("\r") if s.startswith(segment_id + "|")), None)


def _own_pid(feed: Hl7Feed, patient: Patient) -> str:
    if patient.mrn:
        cx = [escape(patient.mrn), "", "", escape(feed.mrn_assigning_authority)]
        cx.append(escape(feed.mrn_identifier_type))
        pid3 = "^".join(cx).rstrip("^")
    else:
        # Not known to the EHR yet: Careline's own patient id.
        pid3 = f"{patient.id}^^^{CARELINE}^PI"
    return _fields(
        "PID",
        {
            1: "1",
            3: pid3,
            5: f"{escape(patient.family_name)}^{escape(patient.given_name)}",
            7: patient.birth_date.strftime("%Y%m%d") if patient.birth_date else "",
        },
    )


def _ids_from(inbound: str | None) -> tuple[str, str] | None:
    if not inbound:
        return None
    try:
        siu = parse_siu(inbound)
    except MessageRejected:
        return None
    return siu.placer_id, siu.filler_id


def build_siu(
    feed: Hl7Feed,
    peer: Peer,
    *,
    message_type: str,
    control_id: str,
    event: AppointmentEvent,
    appointment: Appointment,
    inbound: str | None,
    provider_code: str,
) -> str:
    """An SIU message telling the feed's EHR what the patient did to the appointment."""
    zone = feed.zone
    length = appointment.end - appointment.start
    start = event.new_start if message_type == Hl7OutboundType.RESCHEDULED else appointment.start
    start = start or appointment.start
    end = start + length
    minutes = str(int(length.total_seconds() // 60))
    start_text, end_text = _dtm(start, zone), _dtm(end, zone)

    if appointment.external_id:
        placer, filler = _ids_from(inbound) or ("", appointment.external_id)
        placer, filler = escape(placer), escape(filler)
    else:
        placer, filler = f"{appointment.id}^{CARELINE}", ""
    appointment_type = appointment.appointment_type
    service_code = next(
        (k for k, v in feed.appointment_type_map.items() if v == appointment_type.code),
        appointment_type.code,
    )
    service = f"{escape(service_code)}^{escape(appointment_type.name)}"
    practice = appointment.practice
    location = next((k for k, v in feed.location_map.items() if v == practice.code), practice.code)
    provider = appointment.provider
    if provider_code:
        xcn = (
            f"{escape(provider_code)}^{escape(provider.family_name)}^{escape(provider.given_name)}"
        )
    else:
        xcn = (
            f"{provider.id}^{escape(provider.family_name)}^{escape(provider.given_name)}"
            f"^^^^^^{CARELINE}"
        )
    reason = ChangeSource(event.source)
    segments = [
        _msh(peer, f"SIU^{message_type}^SIU_S12", control_id, _dtm(event.occurred_at, zone)),
        _fields(
            "SCH",
            {
                1: placer,
                2: filler,
                6: f"{reason.value}^{escape(str(reason.label))}^{CARELINE}",
                8: service,
                9: minutes,
                10: "min",
                11: f"^^{minutes}^{start_text}^{end_text}",
                25: _STATUS_TEXT[message_type],
            },
        ),
    ]
    if _version_at_least(peer.version, (2, 5)):
        segments.append(_fields("TQ1", {1: "1", 7: start_text, 8: end_text}))
    segments += [
        _segment(inbound, "PID") or _own_pid(feed, appointment.patient),
        "RGS|1",
        _fields("AIS", {1: "1", 3: service, 4: start_text, 7: minutes, 8: "min"}),
        _fields("AIL", {1: "1", 3: escape(location), 6: start_text, 9: minutes, 10: "min"}),
        _fields("AIP", {1: "1", 3: xcn, 6: start_text, 9: minutes, 10: "min"}),
    ]
    return "\r".join(segments) + "\r"


def _with_texting_status(pid: str, phone: str, note: str) -> str:
    """The PID with the mobile repetition of PID-13 marked; added when missing."""
    fields = pid.split("|")
    fields += [""] * (14 - len(fields))
    repetitions = [r for r in fields[13].split("~") if r]
    marked = False
    for i, rep in enumerate(repetitions):
        parts = rep.split("^")
        if len(parts) < 3 or parts[2].upper() != "CP" or not _same_number(parts, phone):
            continue
        parts += [""] * (9 - len(parts))
        parts[8] = note
        repetitions[i] = "^".join(parts)
        marked = True
    if not marked:
        repetitions.append(f"{escape(phone)}^PRN^CP^^^^^^{note}")
    fields[13] = "~".join(repetitions)
    return "|".join(fields)


def _same_number(xtn: list[str], phone: str) -> bool:
    xtn = [unescape(p, "\\", "\r|~^&") for p in xtn] + [""] * 7
    candidates = [xtn[0], f"{xtn[5]}{xtn[6]}"]
    for candidate in candidates:
        try:
            if candidate and normalize_phone(candidate) == phone:
                return True
        except ValidationError:  # an unreadable number is simply not this one
            continue
    return False


def build_a31(
    feed: Hl7Feed,
    peer: Peer,
    *,
    control_id: str,
    change: ConsentEvent,
    patient: Patient,
    inbound: str | None,
) -> str:
    """ADT^A31 telling the feed's EHR that the patient's mobile number opted out or in."""
    zone = feed.zone
    at = _dtm(change.occurred_at, zone)
    status = "OPTED-OUT" if change.kind == ConsentEvent.Kind.OPT_OUT else "OPTED-IN"
    pid = _segment(inbound, "PID") or _own_pid(feed, patient)
    segments = [
        _msh(peer, "ADT^A31^ADT_A05", control_id, at),
        f"EVN|A31|{at}",
        _with_texting_status(pid, change.phone, f"SMS {status}"),
        "PV1|1|N",
        _fields(
            "ZCL",
            {1: "1", 2: "SMS", 3: escape(change.phone), 4: status, 5: at, 6: change.source},
        ),
    ]
    return "\r".join(segments) + "\r"


# ---- sending -------------------------------------------------------------------------


@dataclass(frozen=True)
class AckReading:
    code: str  # AA, AE or AR (enhanced-mode CA/CE/CR folded in)
    reason: str
    in_step: bool = True  # False when the ACK answers another message


def read_ack(text: str, control_id: str) -> AckReading:
    """What the EHR said about the message with `control_id`."""
    text = normalize_segment_breaks(text)
    if not text.startswith("MSH") or len(text) < 8:
        return AckReading("AE", "The answer is not an HL7 acknowledgement.", in_step=False)
    field_sep, encoding = text[3], text[4:8]
    separators = "\r" + field_sep + encoding[1] + encoding[0] + encoding[3]
    segments = {s[:3]: s.split(field_sep) for s in reversed(text.split("\r"))}
    msa = segments.get("MSA")
    if msa is None or len(msa) < 2:
        return AckReading("AE", "The acknowledgement has no MSA segment.", in_step=False)

    def field(fields: list[str], n: int) -> str:
        return unescape(fields[n], encoding[2], separators).strip() if len(fields) > n else ""

    code = {"CA": "AA", "CE": "AE", "CR": "AR"}.get(field(msa, 1).upper(), field(msa, 1).upper())
    answered = field(msa, 2)
    if answered != control_id:
        return AckReading(
            "AE", f"The acknowledgement answers message '{answered}', not this one.", False
        )
    if code not in ("AA", "AE", "AR"):
        return AckReading("AE", f"Unknown acknowledgement code '{code}'.")
    err = segments.get("ERR", [])
    reason = field(msa, 3) or field(err, 8) or field(err, 1).replace(encoding[0], " ").strip()
    return AckReading(code, reason)


def _claim(now: datetime, batch_size: int) -> list[Hl7OutboundMessage]:
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


def send_due(
    *,
    now: datetime | None = None,
    batch_size: int = 50,
    timeout: float = ACK_TIMEOUT_SECONDS,
) -> Counter[str]:
    """Send every due message in order, over one connection per feed and batch."""
    now = now or timezone.now()
    stats: Counter[str] = Counter()
    while True:
        rows = _claim(now, batch_size)
        if not rows:
            return stats
        feeds = {f.pk: f for f in Hl7Feed.objects.filter(pk__in={r.feed_id for r in rows})}
        rows.sort(key=lambda r: (r.feed_id, r.id))
        for feed_id, group in groupby(rows, key=lambda r: r.feed_id):
            _send_to_feed(feeds[feed_id], list(group), now, timeout, stats)


def _send_to_feed(
    feed: Hl7Feed,
    rows: list[Hl7OutboundMessage],
    now: datetime,
    timeout: float,
    stats: Counter[str],
) -> None:
    address = f"{feed.outbound_host}:{feed.outbound_port}"
    try:
        client = MllpClient(feed.outbound_host, feed.outbound_port, timeout=timeout)
    except OSError as exc:
        for row in rows:
            _retry(row, now, f"Cannot connect to {address}: {_why(exc)}.", stats)
        return
    with client:
        for i, row in enumerate(rows):
            try:
                ack = client.send(row.raw)
            except OSError as exc:
                _retry(row, now, f"No ACK from {address}: {_why(exc)}.", stats)
                for untried in rows[i + 1 :]:
                    _retry(untried, now, "Not sent: the connection failed.", stats, tried=False)
                return
            reading = read_ack(ack, row.control_id)
            _record(row, reading, now, stats)
            if not reading.in_step:
                # The connection answers something else; start afresh next pass.
                for untried in rows[i + 1 :]:
                    _retry(
                        untried,
                        now,
                        "Not sent: the connection got out of step.",
                        stats,
                        tried=False,
                    )
                return


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _record(row: Hl7OutboundMessage, reading: AckReading, now: datetime, stats: Counter) -> None:
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


def _retry(
    row: Hl7OutboundMessage, now: datetime, error: str, stats: Counter, *, tried: bool = True
) -> None:
    if tried:
        row.attempts += 1
        row.last_error = error
    row.next_attempt_at = now + backoff(max(row.attempts, 1))
    row.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    stats["retry" if tried else "deferred"] += 1
    if tried:
        logger.warning("HL7 write-back %s: %s", row.pk, error)


def run_once(
    *, now: datetime | None = None, batch_size: int = 50, timeout: float = ACK_TIMEOUT_SECONDS
) -> Counter[str]:
    """Queue what patients did, then send everything due."""
    now = now or timezone.now()
    stats: Counter[str] = Counter()
    stats["queued"] = fill_outbox(now=now)
    stats.update(send_due(now=now, batch_size=batch_size, timeout=timeout))
    return +stats
