"""Reading HL7 v2 SIU messages (and ADT A08/A31 patient updates, A40 merges) into plain values.

python-hl7 splits a message into segments, fields, repetitions and components; this
module knows where SIU feeds put what, and how differently they do it:

- the appointment id is the filler's (SCH-2), else the placer's (SCH-1);
- the start is in SCH-11.4, TQ1-7, AIS-4, AIL-6, AIP-6 or AIG-8, whichever the feed fills;
- the length is an end time (SCH-11.5, TQ1-8) or a duration with units (TQ1-6, SCH-9/10,
  AIS-7/8, AIL-9/10, AIP-9/10, AIG-11/12, SCH-11.3);
- the provider is in AIP (personnel) or AIG (general resource, athenahealth style);
- phones are PID-13 (home) and PID-14 (business) repetitions, as XTN components
  (country XTN-5, area XTN-6, local XTN-7, extension XTN-8), XTN-12 unformatted or
  XTN-1 / a v2.3 bare string like (303)555-0143; the mobile one says so in XTN-3
  equipment type (CP; CELL from some engines) or XTN-2 use (CELL);
- the location is AIL-3, else the visit's PV1-3 (point of care, else facility);
- the address is PID-11 (XAD: street, other, city, state, ZIP, country, type), the home
  (H) repetition, else the first;
- \\Xhh\\ escapes are bytes in the message's character set (MSH-18).

Segments may come in any order, Z-segments and unknown segments are ignored, and
segments may end in \\r, \\r\\n or \\n.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

import hl7

from careline.scheduling.appointments import (
    EARLIEST_VISIT,
    LATEST_VISIT,
    LONGEST_VISIT,
    SHORTEST_VISIT,
)

SIU_TRIGGERS = ("S12", "S13", "S14", "S15", "S17", "S26")
# ADT events that update a patient's demographics (A08 update patient information, A31
# update person information); other ADT events are refused.
ADT_TRIGGERS = ("A08", "A31")

# Segment action code (AIx-2) "D": the resource is being removed from the appointment.
_ACTION_DELETE = "D"
# AIG-4 resource types that are not a person (rooms and equipment are booked via AIG too).
_NON_PERSON_RESOURCES = {"E", "EQ", "EQUIPMENT", "R", "ROOM", "L", "LOC", "LOCATION"}


class InvalidField(Exception):
    """A field's value cannot be used: AE whose ERR-2 names the field, nothing applied."""

    def __init__(self, location: str, reason: str, *, code: str = "102"):
        super().__init__(reason)
        self.location = location  # ERL: segment^sequence^field[^repetition^component]
        self.reason = reason
        self.code = code


class MessageRejected(Exception):
    """Not a parseable SIU message: the sender gets AR with this reason."""

    def __init__(self, reason: str, *, code: str = "207"):
        super().__init__(reason)
        self.reason = reason
        self.code = code  # HL7 table 0357


def normalize_segment_breaks(text: str) -> str:
    """HL7 separates segments with CR; files and some engines use CRLF or LF."""
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r \t\x00")


# MSH-18 character sets (HL7 table 0211) as Python codecs. Without MSH-18 the standard
# says ASCII; Latin-1 is what such feeds turn out to mean when they escape a byte.
_CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "UNICODE UTF-16": "utf-16-be",
    "UNICODE UTF-32": "utf-32-be",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}
DEFAULT_ESCAPE_CHARSET = "latin-1"


def escape_charset(msh18: str) -> str:
    """The codec \\Xhh\\ bytes are decoded with, for an MSH-18 value."""
    return _CHARSETS.get(" ".join(msh18.upper().split()), DEFAULT_ESCAPE_CHARSET)


def unescape(value: str, esc: str, separators: str, charset: str = DEFAULT_ESCAPE_CHARSET) -> str:
    """Undo HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\).

    Done here rather than with python-hl7's unescape, which logs the field's text when it
    meets an unknown sequence, and patient data must not reach the logs.
    """
    if esc not in value:
        return value
    simple = {
        "F": separators[1],
        "R": separators[2],
        "S": separators[3],
        "T": separators[4],
        "E": esc,
        ".br": "\n",
        ".sp": "\n",
    }
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        end = value.find(esc, i + 1) if ch == esc else -1
        if end == -1:
            out.append(ch)
            i += 1
            continue
        seq = value[i + 1 : end]
        if seq in simple:
            out.append(simple[seq])
        elif seq.startswith("X") and re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", seq):
            out.append(bytes.fromhex(seq[1:]).decode(charset, errors="replace"))
        # Highlighting (\H\ \N\), character-set switches and unknown sequences carry no text.
        i = end + 1
    return "".join(out)


class _Segment:
    """1-based access to one segment's fields as unescaped strings."""

    def __init__(
        self, raw: hl7.Segment, esc: str, separators: str, charset: str = DEFAULT_ESCAPE_CHARSET
    ):
        self.raw = raw
        self.id = str(raw[0]).strip()
        self._esc = esc
        self._separators = separators
        self._charset = charset

    def repetitions(self, n: int) -> list[list[str]]:
        """Field n as repetitions of components (first subcomponent of each)."""
        if n >= len(self.raw):
            return []
        node = self.raw[n]
        if isinstance(node, str):
            return [[self._text(node)]]
        reps: list[list[str]] = []
        for rep in node:
            if isinstance(rep, str):
                reps.append([self._text(rep)])
                continue
            comps = []
            for comp in rep:
                if not isinstance(comp, str):
                    comp = comp[0] if len(comp) else ""
                comps.append(self._text(comp))
            reps.append(comps)
        return reps

    def subcomponents(self, n: int) -> list[list[list[str]]]:
        """Field n as repetitions of components of subcomponents (e.g. CX-4's HD)."""
        if n >= len(self.raw):
            return []
        node = self.raw[n]
        if isinstance(node, str):
            return [[[self._text(node)]]]
        reps: list[list[list[str]]] = []
        for rep in node:
            if isinstance(rep, str):
                reps.append([[self._text(rep)]])
                continue
            reps.append(
                [
                    [self._text(comp)]
                    if isinstance(comp, str)
                    else [self._text(sub) for sub in comp]
                    for comp in rep
                ]
            )
        return reps

    def get(self, n: int, component: int = 1, repetition: int = 1) -> str:
        reps = self.repetitions(n)
        if len(reps) < repetition:
            return ""
        comps = reps[repetition - 1]
        return comps[component - 1].strip() if len(comps) >= component else ""

    def components(self, n: int) -> list[str]:
        reps = self.repetitions(n)
        return [c.strip() for c in reps[0]] if reps else []

    def _text(self, value: str) -> str:
        return unescape(str(value), self._esc, self._separators, self._charset)


@dataclass(frozen=True)
class Header:
    control_id: str
    message_type: str
    trigger: str
    version: str
    sending_application: str  # MSH-3.1, what feeds are routed by
    sending_facility: str  # MSH-4.1
    sent_at: str  # MSH-7 as sent; its time zone is the feed's business
    # MSH-3 and MSH-4 with all their components, echoed back in the ACK.
    sender: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    processing_id: str = ""  # MSH-11.1: P, T or D


@dataclass(frozen=True)
class PatientIdentifier:
    value: str
    authority: str  # CX-4.1, the HD's namespace id
    type_code: str  # CX-5, e.g. MR
    # CX-4.2 and CX-4.3: the HD's universal id and its type (ISO: an OID).
    authority_id: str = ""
    authority_id_type: str = ""


# XTN-3 equipment types (table 0202 CP, and what engines write instead) and XTN-2 use
# codes (some engines put the kind of phone there) that mean a phone that takes texts.
MOBILE_EQUIPMENT = frozenset({"CP", "CELL", "MOBILE", "MOB"})
MOBILE_USES = frozenset({"CELL", "MOBILE", "MOB", "CP"})


@dataclass(frozen=True)
class Phone:
    number: str  # best text to normalize: XTN-5/6/7(/8), else XTN-12, else XTN-1
    use: str  # XTN-2: PRN, ORN, WPN, NET…
    equipment: str  # XTN-3: PH, CP, FX, Internet…
    email: str  # XTN-4
    # Every way the repetition spells the number, best first (a sender may fill the
    # components with a local number only and XTN-1 in full).
    alternatives: tuple[str, ...] = ()
    location: str = ""  # ERR-2, e.g. PID^1^13^2

    @property
    def is_mobile(self) -> bool:
        return self.equipment in MOBILE_EQUIPMENT or self.use in MOBILE_USES


@dataclass
class SiuPatient:
    identifiers: list[PatientIdentifier] = field(default_factory=list)
    family_name: str = ""
    given_name: str = ""
    birth_date: str = ""  # PID-7 as sent
    phones: list[Phone] = field(default_factory=list)
    language: str = ""  # PID-15.1 (CE/CWE code), else PID-15.2
    language_text: str = ""  # PID-15.2
    language_system: str = ""  # PID-15.3, e.g. HL70296 or ISO639
    address: Address | None = None  # PID-11


@dataclass(frozen=True)
class Address:
    line: str  # XAD-1 (street) and XAD-2 (other designation)
    city: str  # XAD-3
    state: str  # XAD-4
    postal_code: str  # XAD-5
    country: str  # XAD-6


@dataclass(frozen=True)
class Resource:
    """A provider, location or service named by the feed's own code."""

    code: str
    name: str = ""
    family_name: str = ""
    given_name: str = ""
    prefix: str = ""


@dataclass
class SiuMessage:
    header: Header
    placer_id: str = ""
    filler_id: str = ""
    # SCH-1 and SCH-2 as sent (EI: entity id^namespace id^universal id^universal id type):
    # whose ids they are, and what a write-back echoes.
    placer_ei: tuple[str, ...] = ()
    filler_ei: tuple[str, ...] = ()
    filler_status: str = ""  # SCH-25.1
    start: str = ""  # DTM as sent
    end: str = ""
    duration: tuple[str, str] | None = None  # (quantity, units) as sent
    # Where each came from (ERR-2 location), since feeds fill different fields.
    start_location: str = ""
    end_location: str = ""
    duration_location: str = ""
    service: Resource | None = None
    patient: SiuPatient | None = None
    providers: list[Resource] = field(default_factory=list)
    locations: list[Resource] = field(default_factory=list)

    @property
    def appointment_id(self) -> str:
        return self.filler_id or self.placer_id

    @property
    def appointment_system(self) -> str:
        """The identifier system of `appointment_id` its EI names ("" when it names none)."""
        return ei_system(self.filler_ei if self.filler_id else self.placer_ei)


# Universal id types whose ids become URIs by a prefix.
_UNIVERSAL_ID_PREFIX = {"ISO": "urn:oid:", "UUID": "urn:uuid:"}
# Universal id types that are URIs already.
_UNIVERSAL_ID_URIS = ("URI", "URL")


def hd_system(namespace: str, universal_id: str, universal_id_type: str) -> str:
    """The identifier system an HL7 HD names (namespace id ^ universal id ^ universal id
    type: CX-4 of a patient identifier, EI-2..4 of a visit's): an ISO universal id as
    `urn:oid:<oid>`, a UUID as `urn:uuid:<uuid>` (lower case), a URI or URL as sent;
    a universal id of any other type gives way to the namespace id, when there is one;
    "" when the HD names nothing (the caller's fallback, e.g. the feed's namespace)."""
    namespace, universal = namespace.strip(), universal_id.strip()
    kind = universal_id_type.strip().upper()
    if universal:
        prefix = _UNIVERSAL_ID_PREFIX.get(kind)
        if prefix is not None:
            if kind == "UUID":
                universal = universal.lower()
            return universal if universal.startswith(prefix) else prefix + universal
        if kind in _UNIVERSAL_ID_URIS or not namespace:
            return universal
    return namespace


def ei_system(ei: tuple[str, ...] | list[str]) -> str:
    """The system an EI's id belongs to (its EI-2..4 read as an HD, `hd_system`), else ""."""
    parts = [*ei, "", "", "", ""]
    return hd_system(parts[1], parts[2], parts[3])


@dataclass
class AdtMessage:
    """An ADT A08/A31: the patient's demographics, applied to the patient PID-3 names."""

    header: Header
    patient: SiuPatient
    locations: list[Resource] = field(default_factory=list)  # PV1-3


@dataclass
class MergeMessage:
    """ADT^A40: the patient in PID survives; MRG-1 lists the prior record's identifiers."""

    header: Header
    patient: SiuPatient
    prior_identifiers: list[PatientIdentifier] = field(default_factory=list)


MERGE_TRIGGERS = ("A40",)


def parse_message(text: str) -> SiuMessage | AdtMessage | MergeMessage:
    """An SIU message, an ADT A08/A31 patient update or an ADT^A40 merge; MessageRejected
    (→ AR) for anything else."""
    message = _parse(text)
    header = _header(message)
    if header.message_type != "ADT":
        return parse_siu(text)  # which refuses any other type, naming what is taken
    if header.trigger in MERGE_TRIGGERS:
        return _merge(header, _segments(message))
    if header.trigger not in ADT_TRIGGERS:
        raise MessageRejected(
            f"Message type ADT^{header.trigger or '(empty)'} is not accepted here; this "
            f"interface takes ADT {'/'.join(ADT_TRIGGERS)} (update patient information) and "
            f"{'/'.join(MERGE_TRIGGERS)} (merge patients) only.",
            code="200",
        )
    segments = _segments(message)
    pids = [s for s in segments if s.id == "PID"]
    if not pids:
        raise MessageRejected("The message has no PID segment: whose update is it?", code="100")
    return AdtMessage(
        header=header,
        patient=_patient(pids[0]),
        locations=_visit_location([s for s in segments if s.id == "PV1"]),
    )


def _merge(header: Header, segments: list[_Segment]) -> MergeMessage:
    pids = [s for s in segments if s.id == "PID"]
    mrgs = [s for s in segments if s.id == "MRG"]
    if not pids:
        raise MessageRejected("ADT^A40 has no PID segment: who survives the merge?", code="100")
    if not mrgs:
        raise MessageRejected("ADT^A40 has no MRG segment: which record is merged?", code="100")
    merge = MergeMessage(header=header, patient=_patient(pids[0]))
    merge.prior_identifiers = _identifiers(mrgs[0].subcomponents(1))
    if not merge.patient.identifiers:
        raise MessageRejected("PID-3 of the surviving patient is empty.", code="101")
    if not merge.prior_identifiers:
        raise MessageRejected("MRG-1 (the prior patient's identifiers) is empty.", code="101")
    return merge


def read_header(text: str) -> Header:
    """MSH of a message, enough to route and acknowledge it; MessageRejected if none."""
    message = _parse(text)
    return _header(message)


def parse_siu(text: str) -> SiuMessage:
    """Parse an SIU message; MessageRejected (→ AR) if it is not one we can read."""
    message = _parse(text)
    header = _header(message)
    if header.message_type != "SIU":
        raise MessageRejected(
            f"Message type {header.message_type or '(empty)'}^{header.trigger} is not "
            "accepted here; this interface takes SIU scheduling messages only (and ADT "
            f"{'/'.join(ADT_TRIGGERS)} patient updates, {'/'.join(MERGE_TRIGGERS)} merges).",
            code="200",
        )
    if header.trigger not in SIU_TRIGGERS:
        raise MessageRejected(
            f"SIU event {header.trigger or '(empty)'} is not supported "
            f"(supported: {', '.join(SIU_TRIGGERS)}).",
            code="201",
        )
    segments = _segments(message)
    schs = [s for s in segments if s.id == "SCH"]
    if not schs:
        raise MessageRejected("The message has no SCH segment.", code="100")
    sch = schs[0]
    siu = SiuMessage(
        header=header,
        placer_id=sch.get(1),
        filler_id=sch.get(2),
        placer_ei=tuple(sch.components(1)),
        filler_ei=tuple(sch.components(2)),
        filler_status=sch.get(25),
    )
    if not siu.appointment_id:
        raise MessageRejected(
            "SCH-1 and SCH-2 are both empty: the appointment has no id.", code="101"
        )

    if len(siu.appointment_id) > MAX_APPOINTMENT_ID:
        raise InvalidField(
            "SCH^1^2" if siu.filler_id else "SCH^1^1",
            f"The appointment id (SCH-2, else SCH-1) is longer than {MAX_APPOINTMENT_ID} "
            "characters.",
        )
    if len(siu.appointment_system) > MAX_APPOINTMENT_SYSTEM:
        raise InvalidField(
            "SCH^1^2" if siu.filler_id else "SCH^1^1",
            "The appointment id's namespace (EI-2, or universal id EI-3) is longer than "
            f"{MAX_APPOINTMENT_SYSTEM} characters.",
        )
    by_id: dict[str, list[_Segment]] = {}
    for seg in segments:
        by_id.setdefault(seg.id, []).append(seg)

    _read_timing(siu, sch, by_id)
    _check_timing(siu)
    siu.service = _service(sch, by_id.get("AIS", []))
    pids = by_id.get("PID")
    if pids:
        siu.patient = _patient(pids[0])
    siu.providers = _providers(by_id.get("AIP", []), by_id.get("AIG", []))
    siu.locations = _locations(by_id.get("AIL", [])) or _visit_location(by_id.get("PV1", []))
    return siu


# Receiving reads a message's header, then the whole of it, then (group path) looks at it
# once more: the same text parsed once. Parsing is the costliest step of receiving a
# message after the database; parsed messages are only ever read, never changed.
@functools.lru_cache(maxsize=256)
def _parse(text: str) -> hl7.Message:
    text = normalize_segment_breaks(text)
    if not text.startswith("MSH") or len(text) < 8:
        raise MessageRejected(
            "Not an HL7 v2 message: it does not start with an MSH segment.", code="100"
        )
    try:
        return hl7.parse(text)
    except Exception as exc:  # python-hl7 raises assorted errors on malformed input
        raise MessageRejected(f"The message could not be parsed ({type(exc).__name__}).") from exc


def _segments(message: hl7.Message) -> list[_Segment]:
    charset = DEFAULT_ESCAPE_CHARSET
    if len(message) and str(message[0][0]).strip() == "MSH":
        # MSH-18 is field 18 counting the field separator as MSH-1.
        msh = _Segment(message[0], message.esc, message.separators)
        charset = escape_charset(msh.get(18))
    return [_Segment(seg, message.esc, message.separators, charset) for seg in message]


def _header(message: hl7.Message) -> Header:
    msh = _segments(message)[0]
    if msh.id != "MSH":
        raise MessageRejected("Not an HL7 v2 message: the first segment is not MSH.", code="100")
    message_type = msh.components(9)
    return Header(
        control_id=msh.get(10),
        message_type=(message_type[0] if message_type else "").upper(),
        trigger=(message_type[1] if len(message_type) > 1 else "").upper(),
        version=msh.get(12),
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
        sent_at=msh.get(7),
        sender=(tuple(msh.components(3)), tuple(msh.components(4))),
        processing_id=msh.get(11).upper(),
    )


def _first(*candidates: tuple[str, str]) -> tuple[str, str]:
    """The first filled (value, location) pair, else two empty strings."""
    return next((c for c in candidates if c[0]), ("", ""))


def _read_timing(siu: SiuMessage, sch: _Segment, by_id: dict[str, list[_Segment]]) -> None:
    tq1 = (by_id.get("TQ1") or [None])[0]
    ais = (by_id.get("AIS") or [None])[0]
    ail = (by_id.get("AIL") or [None])[0]
    aip = (by_id.get("AIP") or [None])[0]
    aig = (by_id.get("AIG") or [None])[0]
    siu.start, siu.start_location = _first(
        (sch.get(11, 4), "SCH^1^11^1^4"),
        (tq1.get(7) if tq1 else "", "TQ1^1^7"),
        (ais.get(4) if ais else "", "AIS^1^4"),
        (ail.get(6) if ail else "", "AIL^1^6"),
        (aip.get(6) if aip else "", "AIP^1^6"),
        (aig.get(8) if aig else "", "AIG^1^8"),
    )
    siu.end, siu.end_location = _first(
        (sch.get(11, 5), "SCH^1^11^1^5"), (tq1.get(8) if tq1 else "", "TQ1^1^8")
    )
    candidates = [
        ((tq1.get(6, 1), tq1.get(6, 2)) if tq1 else ("", ""), "TQ1^1^6"),
        ((sch.get(9), sch.get(10)), "SCH^1^9"),
        ((ais.get(7), ais.get(8)) if ais else ("", ""), "AIS^1^7"),
        ((ail.get(9), ail.get(10)) if ail else ("", ""), "AIL^1^9"),
        ((aip.get(9), aip.get(10)) if aip else ("", ""), "AIP^1^9"),
        ((aig.get(11), aig.get(12)) if aig else ("", ""), "AIG^1^11"),
        ((sch.get(11, 3), ""), "SCH^1^11^1^3"),
    ]
    found = next((c for c in candidates if c[0][0]), None)
    if found is not None:
        siu.duration, siu.duration_location = found


def _check_timing(siu: SiuMessage) -> None:
    """Refuse, naming the field, times the scheduler and reminder planner could not use.

    Only syntax and ranges are checked here; the feed's time zone is applied later, and
    the year window leaves room for any offset, so that conversion cannot fail.
    """
    for value, location, what in (
        (siu.start, siu.start_location, "Start time"),
        (siu.end, siu.end_location, "End time"),
    ):
        if value:
            try:
                _visit_year_in_range(read_dtm(value, what), what)
            except BadValue as exc:
                raise InvalidField(location, str(exc)) from exc
    if siu.duration:
        try:
            to_duration(*siu.duration, "Duration")
        except BadValue as exc:
            raise InvalidField(siu.duration_location, str(exc)) from exc


def _service(sch: _Segment, aiss: list[_Segment]) -> Resource | None:
    for ais in aiss:
        code = ais.get(3, 1)
        if code:
            return Resource(code=code, name=ais.get(3, 2))
    code = sch.get(8, 1)
    if code:
        return Resource(code=code, name=sch.get(8, 2))
    return None


def _patient(pid: _Segment) -> SiuPatient:
    patient = SiuPatient()
    patient.identifiers = _identifiers(pid.subcomponents(3))
    patient.family_name = pid.get(5, 1)
    patient.given_name = pid.get(5, 2)
    patient.birth_date = pid.get(7)
    for field_number in (13, 14):
        for n, rep in enumerate(pid.repetitions(field_number), start=1):
            phone = _phone(rep, f"PID^1^{field_number}^{n}")
            if phone is not None:
                patient.phones.append(phone)
    patient.language_text = pid.get(15, 2)
    patient.language_system = pid.get(15, 3)
    patient.language = pid.get(15, 1) or patient.language_text
    patient.address = _address(pid)
    return patient


def _address(pid: _Segment) -> Address | None:
    """PID-11: the home (H) repetition, else the first that holds anything."""
    found = []
    for rep in pid.repetitions(11):
        rep = [c.strip() for c in rep] + [""] * 7
        if any(rep[:6]):
            found.append(rep)
    if not found:
        return None
    rep = next((r for r in found if r[6].upper() == "H"), found[0])
    return Address(
        line=", ".join(part for part in rep[:2] if part),
        city=rep[2],
        state=rep[3],
        postal_code=rep[4],
        country=rep[5],
    )


def _identifiers(field_reps: list[list[list[str]]]) -> list[PatientIdentifier]:
    """CX repetitions (PID-3, MRG-1): value CX-1, assigning authority CX-4 (an HD:
    namespace id & universal id & its type), identifier type CX-5."""
    identifiers = []
    for rep in field_reps:
        rep = [[s.strip() for s in c] for c in rep] + [[""]] * 5
        hd = rep[3] + ["", "", ""]
        if rep[0][0]:
            identifiers.append(
                PatientIdentifier(
                    value=rep[0][0],
                    authority=hd[0],
                    type_code=rep[4][0],
                    authority_id=hd[1],
                    authority_id_type=hd[2].upper(),
                )
            )
    return identifiers


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text, flags=re.ASCII)


def _phone(rep: list[str], location: str) -> Phone | None:
    """One XTN repetition; None when it holds neither a number nor an address."""
    rep = [c.strip() for c in rep] + [""] * 12
    formatted, use, equipment, email = rep[0], rep[1].upper(), rep[2].upper(), rep[3]
    country, area, local, extension, unformatted = rep[4], rep[5], rep[6], rep[7], rep[11]
    spellings = []
    if _digits(local):
        # XTN-5 may be written 1, +1 or 001.
        code = _digits(country).lstrip("0")
        built = f"{'+' + code if code else ''}{_digits(area)}{_digits(local)}"
        spellings.append(built + (f" ext. {_digits(extension)}" if _digits(extension) else ""))
    for text in (unformatted, formatted):
        if _digits(text) and text not in spellings:
            spellings.append(text)
    if not spellings and not email:
        return None
    return Phone(
        number=spellings[0] if spellings else "",
        use=use,
        equipment=equipment,
        email=email,
        alternatives=tuple(spellings),
        location=location,
    )


def _preferred(segments: list[_Segment]) -> list[_Segment]:
    """Resources being added or kept first; ones being removed (action D) last."""
    return sorted(segments, key=lambda s: s.get(2).upper() == _ACTION_DELETE)


def _providers(aips: list[_Segment], aigs: list[_Segment]) -> list[Resource]:
    found = []
    for aip in _preferred(aips):
        code = aip.get(3, 1)
        _check_code_length(code, "AIP", aips.index(aip) + 1)
        if code:
            found.append(
                Resource(
                    code=code,
                    family_name=aip.get(3, 2),
                    given_name=aip.get(3, 3),
                    prefix=aip.get(3, 6),
                )
            )
    for aig in _preferred(aigs):
        code = aig.get(3, 1)
        _check_code_length(code, "AIG", aigs.index(aig) + 1)
        if code and aig.get(4, 1).upper() not in _NON_PERSON_RESOURCES:
            found.append(Resource(code=code, name=aig.get(3, 2)))
    return found


def _check_code_length(code: str, segment: str, sequence: int) -> None:
    # Provider links key on the whole code; a longer one could never be matched again.
    if len(code) > MAX_RESOURCE_CODE:
        raise InvalidField(
            f"{segment}^{sequence}^3",
            f"The provider code in {segment}-3 is longer than {MAX_RESOURCE_CODE} characters.",
        )


def _locations(ails: list[_Segment]) -> list[Resource]:
    found = []
    for ail in _preferred(ails):
        code = ail.get(3, 1) or ail.get(3, 4)
        if code:
            found.append(Resource(code=code, name=ail.get(3, 9) or ail.get(3, 2)))
        facility = ail.get(3, 4)
        if facility and facility != code:
            found.append(Resource(code=facility, name=ail.get(3, 9)))
    return found


def _visit_location(pv1s: list[_Segment]) -> list[Resource]:
    """PV1-3 (assigned patient location), for feeds that send no AIL."""
    if not pv1s:
        return []
    pv1 = pv1s[0]
    point_of_care, facility = pv1.get(3, 1), pv1.get(3, 4)
    found = []
    for code in (point_of_care, facility):
        if code and all(r.code != code for r in found):
            found.append(Resource(code=code, name=pv1.get(3, 9)))
    return found


# ---- values --------------------------------------------------------------------------


class BadValue(ValueError):
    """A field is present but cannot be read; the message says which and why."""


# The one visit-time rule of every door (scheduling.appointments.check_visit_times),
# checked here field by field so that the ACK can name the segment and field.
EARLIEST_VISIT_YEAR, LATEST_VISIT_YEAR = EARLIEST_VISIT.year, LATEST_VISIT.year - 1
# Column sizes of what these ids are stored in; a longer id is refused, never cut.
MAX_CONTROL_ID = 199
MAX_APPOINTMENT_ID = 120
# Appointment.external_system's length.
MAX_APPOINTMENT_SYSTEM = 255
MAX_MRN = 64
MAX_RESOURCE_CODE = 80

# DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ], ASCII digits only: without
# re.ASCII, \d and int() would accept Arabic-Indic and other Unicode digits.
_DTM = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"([+-]\d{4})?",
    re.ASCII,
)


def read_dtm(value: str, what: str) -> datetime:
    """An HL7 DTM as a datetime (aware only if it carries an offset); BadValue says why."""
    text = value.strip()
    if not text:
        raise BadValue(f"{what} is empty.")
    match = _DTM.fullmatch(text)
    if not match:
        raise BadValue(
            f"{what} '{value[:40]}' is not an HL7 date/time (YYYYMMDDHHMM[SS][±ZZZZ], "
            "ASCII digits)."
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    parts = {
        "month": (int(month or 1), 1, 12),
        "day": (int(day or 1), 1, 31),
        "hour": (int(hour or 0), 0, 23),
        "minute": (int(minute or 0), 0, 59),
        "second": (int(second or 0), 0, 59),
    }
    for name, (number, low, high) in parts.items():
        if not low <= number <= high:
            raise BadValue(f"{what} '{text}': {name} {number} is out of range ({low}–{high}).")
    if int(year) < 1:
        raise BadValue(f"{what} '{text}': year 0000 does not exist.")
    tz = None
    if offset:
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise BadValue(f"{what} '{text}': time zone offset {offset} is out of range.")
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if offset[0] == "-" else delta)
    micro = int((fraction or "0").ljust(6, "0"))
    try:
        return datetime(
            int(year),
            parts["month"][0],
            parts["day"][0],
            parts["hour"][0],
            parts["minute"][0],
            parts["second"][0],
            micro,
            tzinfo=tz,
        )
    except ValueError as exc:  # e.g. 30 February
        raise BadValue(f"{what} '{text}': day {parts['day'][0]} is not in that month.") from exc


def _visit_year_in_range(moment: datetime, what: str) -> datetime:
    if not EARLIEST_VISIT_YEAR <= moment.year <= LATEST_VISIT_YEAR:
        raise BadValue(
            f"{what}: year {moment.year} is outside {EARLIEST_VISIT_YEAR}–{LATEST_VISIT_YEAR}."
        )
    return moment


def to_datetime(value: str, zone: tzinfo, what: str) -> datetime:
    """An HL7 DTM as an aware UTC datetime; one without an offset is in `zone`.

    Only years EARLIEST_VISIT_YEAR–LATEST_VISIT_YEAR are accepted: these are visit and
    message times, and everything downstream adds and subtracts days from them.
    """
    parsed = _visit_year_in_range(read_dtm(value, what), what)
    if parsed.tzinfo is None:
        local = parsed
        parsed = parsed.replace(tzinfo=zone)
        if parsed.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
            # Skipped by a spring-forward change: guessing an hour either way could
            # text the wrong time, so the sender is asked to say what it meant.
            raise BadValue(
                f"{what} '{value.strip()[:40]}' does not exist in {zone} (the clocks "
                "spring forward over it); send the time with its UTC offset."
            )
    # In UTC, so adding a duration means elapsed time, not wall-clock time across DST.
    in_utc = parsed.astimezone(UTC)
    if not EARLIEST_VISIT <= in_utc < LATEST_VISIT:
        raise BadValue(
            f"{what} '{value.strip()[:40]}' is outside the years "
            f"{EARLIEST_VISIT_YEAR}–{LATEST_VISIT_YEAR} in UTC."
        )
    return in_utc


_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)


def to_date(value: str, what: str) -> date:
    match = _DATE.match(value.strip())
    try:
        if not match:
            raise ValueError(value)
        found = date(*(int(g) for g in match.groups()))
    except ValueError as exc:
        raise BadValue(f"{what} '{value[:40]}' is not a date (YYYYMMDD).") from exc
    if not 1850 <= found.year <= date.today().year:
        raise BadValue(f"{what} '{value[:40]}' is not a plausible date.")
    return found


# TQ1-6 style (M15) or a plain number; at most 9 digits, so no float or timedelta overflow.
_TQ_DURATION = re.compile(r"([SMHDW]?)(\d+(?:\.\d{1,6})?)", re.IGNORECASE | re.ASCII)


def to_duration(quantity: str, units: str, what: str) -> timedelta:
    """A duration like (15, min), (20, minutes), (1, h), (M15, '') as a timedelta.

    A visit is at least SHORTEST_VISIT and at most LONGEST_VISIT long.
    """
    text = quantity.strip()
    if text.startswith("-"):
        raise BadValue(f"{what} '{text[:40]}' is negative; it must be positive.")
    match = _TQ_DURATION.fullmatch(text)
    if not match:
        raise BadValue(f"{what} '{text[:40]}' is not a number (ASCII digits).")
    if len(match.group(2).split(".")[0]) > 9:
        raise BadValue(f"{what} '{text[:40]}' is too large.")
    prefix, number = match.group(1).upper(), float(match.group(2))
    unit = (units or prefix or "min").strip().lower()
    if unit in {"s", "sec", "secs", "second", "seconds"}:
        result = timedelta(seconds=number)
    elif unit in {"h", "hr", "hrs", "hour", "hours"}:
        result = timedelta(hours=number)
    elif unit in {"d", "day", "days"}:
        result = timedelta(days=number)
    elif unit in {"m", "min", "mins", "minute", "minutes"}:
        result = timedelta(minutes=number)
    else:
        raise BadValue(f"{what} unit '{units[:20]}' is not understood (use min, h or s).")
    if result <= timedelta(0):
        raise BadValue(f"{what} must be positive.")
    check_visit_length(result, what)
    return result


def check_visit_length(length: timedelta, what: str) -> None:
    if length < SHORTEST_VISIT:
        raise BadValue(f"{what} is shorter than a minute; a visit lasts at least one minute.")
    if length > LONGEST_VISIT:
        hours = int(LONGEST_VISIT.total_seconds() // 3600)
        raise BadValue(f"{what} is longer than {hours} hours.")
