"""Building the write-back messages: SIU (S12-S15) for what a patient did to a visit,
ADT^A31 for a texting opt-out or opt-in, addressed and versioned like the feed's own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from django.core.exceptions import ValidationError

from careline.clinics.validators import normalize_phone
from careline.integrations.hl7.ack import escape
from careline.integrations.hl7.parsing import (
    MessageRejected,
    normalize_segment_breaks,
    parse_siu,
    read_header,
    unescape,
)
from careline.integrations.models import Hl7Feed, Hl7Message, Hl7MessageState, Hl7OutboundType
from careline.patients.models import ConsentEvent, Patient
from careline.scheduling.models import (
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    ChangeSource,
)

CARELINE = "CARELINE"
DEFAULT_VERSION = "2.5.1"
# SCH-25 filler status codes are HL7 table 0278, which has no "confirmed": a confirmed
# visit is Booked, and the S14's event reason (SCH-6) says the patient confirmed it.
_STATUS_0278 = {
    Hl7OutboundType.BOOKED: "Booked",
    Hl7OutboundType.RESCHEDULED: "Booked",
    Hl7OutboundType.MODIFIED: "Booked",
    Hl7OutboundType.CANCELLED: "Cancelled",
}
# SCH-16 filler contact person (required in SIU from 2.5): who made the change on the
# filler's side, here Careline on the patient's behalf.
_FILLER_CONTACT = f"{CARELINE}^Careline^Patient^^^^^^{CARELINE}"
_STANDARD_ENCODING = "MSH|^~\\&|"


@dataclass(frozen=True)
class Peer:
    """How the feed talks: its version, and its MSH-3/MSH-4 to address our messages to."""

    version: str
    application: str
    facility: str
    processing_id: str = "P"  # the feed's MSH-11: a test system gets test messages


def peer_of(feed: Hl7Feed) -> Peer:
    """Read from the last message the feed sent us; a feed that sent none gets defaults."""
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
                application=_joined(app) or escape(feed.routing_application),
                facility=_joined(facility),
                processing_id=feed.processing_id,
            )
    return Peer(DEFAULT_VERSION, escape(feed.routing_application), "", feed.processing_id)


def _joined(components: Iterable[str]) -> str:
    """A composite field (HD, EI) from its components as received, escaped again."""
    return "^".join(escape(c) for c in components).rstrip("^")


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
            escape(peer.processing_id),
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
    # Only the feed's own MRN: another system's 12345 is another person at this EHR.
    mrn = (
        patient.identifiers.filter(system=feed.namespace)
        .order_by("id")
        .values_list("value", flat=True)
    ).first()
    if mrn:
        cx = [escape(mrn), "", "", escape(feed.mrn_assigning_authority)]
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
    """SCH-1 and SCH-2 of the EHR's last message, escaped for a new one: whole EIs, so
    the EHR gets its ids back in the namespaces it sent them in."""
    if not inbound:
        return None
    try:
        siu = parse_siu(inbound)
    except MessageRejected:
        return None
    return _joined(siu.placer_ei), _joined(siu.filler_ei)


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
        placer, filler = _ids_from(inbound) or ("", escape(appointment.external_id))
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
    event_reason = f"{reason.value}^{escape(str(reason.label))}^{CARELINE}"
    if event.to_status == AppointmentStatus.CONFIRMED and message_type == Hl7OutboundType.MODIFIED:
        event_reason = (
            f"confirmed^Confirmed by the patient ({escape(str(reason.label))})^{CARELINE}"
        )
    elif message_type == Hl7OutboundType.MODIFIED:
        undone = (
            "Cancellation" if event.from_status == AppointmentStatus.CANCELLED else "Confirmation"
        )
        code = "reinstated" if undone == "Cancellation" else "unconfirmed"
        event_reason = f"{code}^{undone} undone ({escape(str(reason.label))})^{CARELINE}"
    status = _STATUS_0278[message_type]
    segments = [
        _msh(peer, f"SIU^{message_type}^SIU_S12", control_id, _dtm(event.occurred_at, zone)),
        _fields(
            "SCH",
            {
                1: placer,
                2: filler,
                6: event_reason,
                8: service,
                9: minutes,
                10: "min",
                11: f"^^{minutes}^{start_text}^{end_text}",
                16: _FILLER_CONTACT,
                25: f"{status}^{status}^HL70278",
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
