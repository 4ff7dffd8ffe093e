"""Reading HL7 v2 SIU messages into plain values.

python-hl7 splits a message into segments, fields, repetitions and components; this
module knows where SIU feeds put what, and how differently they do it:

- the appointment id is the filler's (SCH-2), else the placer's (SCH-1);
- the start is in SCH-11.4, TQ1-7, AIS-4, AIL-6, AIP-6 or AIG-8, whichever the feed fills;
- the length is an end time (SCH-11.5, TQ1-8) or a duration with units (TQ1-6, SCH-9/10,
  AIS-7/8, AIL-9/10, AIP-9/10, AIG-11/12, SCH-11.3);
- the provider is in AIP (personnel) or AIG (general resource, athenahealth style);
- the mobile number is the PID-13 repetition whose equipment type (XTN-3) is CP.

Segments may come in any order, Z-segments and unknown segments are ignored, and
segments may end in \\r, \\r\\n or \\n.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

import hl7
from hl7.datatypes import parse_datetime

SIU_TRIGGERS = ("S12", "S13", "S14", "S15", "S17", "S26")

# Segment action code (AIx-2) "D": the resource is being removed from the appointment.
_ACTION_DELETE = "D"
# AIG-4 resource types that are not a person (rooms and equipment are booked via AIG too).
_NON_PERSON_RESOURCES = {"E", "EQ", "EQUIPMENT", "R", "ROOM", "L", "LOC", "LOCATION"}


class MessageRejected(Exception):
    """Not a parseable SIU message: the sender gets AR with this reason."""

    def __init__(self, reason: str, *, code: str = "207"):
        super().__init__(reason)
        self.reason = reason
        self.code = code  # HL7 table 0357


def normalize_segment_breaks(text: str) -> str:
    """HL7 separates segments with CR; files and some engines use CRLF or LF."""
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r \t\x00")


def unescape(value: str, esc: str, separators: str) -> str:
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
            out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
        # Highlighting (\H\ \N\), character-set switches and unknown sequences carry no text.
        i = end + 1
    return "".join(out)


class _Segment:
    """1-based access to one segment's fields as unescaped strings."""

    def __init__(self, raw: hl7.Segment, esc: str, separators: str):
        self.raw = raw
        self.id = str(raw[0]).strip()
        self._esc = esc
        self._separators = separators

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
        return unescape(str(value), self._esc, self._separators)


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
    authority: str  # CX-4
    type_code: str  # CX-5, e.g. MR


@dataclass(frozen=True)
class Phone:
    number: str  # best text to normalize: XTN-1, else built from XTN-5/6/7
    use: str  # XTN-2: PRN, ORN, WPN, NET…
    equipment: str  # XTN-3: PH, CP, FX, Internet…
    email: str  # XTN-4


@dataclass
class SiuPatient:
    identifiers: list[PatientIdentifier] = field(default_factory=list)
    family_name: str = ""
    given_name: str = ""
    birth_date: str = ""  # PID-7 as sent
    phones: list[Phone] = field(default_factory=list)
    language: str = ""  # PID-15.1


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
    filler_status: str = ""  # SCH-25.1
    start: str = ""  # DTM as sent
    end: str = ""
    duration: tuple[str, str] | None = None  # (quantity, units) as sent
    service: Resource | None = None
    patient: SiuPatient | None = None
    providers: list[Resource] = field(default_factory=list)
    locations: list[Resource] = field(default_factory=list)

    @property
    def appointment_id(self) -> str:
        return self.filler_id or self.placer_id


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
            "accepted here; this interface takes SIU scheduling messages only.",
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
        filler_status=sch.get(25),
    )
    if not siu.appointment_id:
        raise MessageRejected(
            "SCH-1 and SCH-2 are both empty: the appointment has no id.", code="101"
        )
    by_id: dict[str, list[_Segment]] = {}
    for seg in segments:
        by_id.setdefault(seg.id, []).append(seg)

    _read_timing(siu, sch, by_id)
    siu.service = _service(sch, by_id.get("AIS", []))
    pids = by_id.get("PID")
    if pids:
        siu.patient = _patient(pids[0])
    siu.providers = _providers(by_id.get("AIP", []), by_id.get("AIG", []))
    siu.locations = _locations(by_id.get("AIL", []))
    return siu


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
    return [_Segment(seg, message.esc, message.separators) for seg in message]


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


def _first(*values: str) -> str:
    return next((v for v in values if v), "")


def _read_timing(siu: SiuMessage, sch: _Segment, by_id: dict[str, list[_Segment]]) -> None:
    tq1 = (by_id.get("TQ1") or [None])[0]
    ais = (by_id.get("AIS") or [None])[0]
    ail = (by_id.get("AIL") or [None])[0]
    aip = (by_id.get("AIP") or [None])[0]
    aig = (by_id.get("AIG") or [None])[0]
    siu.start = _first(
        sch.get(11, 4),
        tq1.get(7) if tq1 else "",
        ais.get(4) if ais else "",
        ail.get(6) if ail else "",
        aip.get(6) if aip else "",
        aig.get(8) if aig else "",
    )
    siu.end = _first(sch.get(11, 5), tq1.get(8) if tq1 else "")
    candidates = [
        (tq1.get(6, 1), tq1.get(6, 2)) if tq1 else ("", ""),
        (sch.get(9), sch.get(10)),
        (ais.get(7), ais.get(8)) if ais else ("", ""),
        (ail.get(9), ail.get(10)) if ail else ("", ""),
        (aip.get(9), aip.get(10)) if aip else ("", ""),
        (aig.get(11), aig.get(12)) if aig else ("", ""),
        (sch.get(11, 3), ""),
    ]
    siu.duration = next((c for c in candidates if c[0]), None)


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
    for rep in pid.repetitions(3):
        rep = [c.strip() for c in rep] + [""] * 5
        if rep[0]:
            patient.identifiers.append(
                PatientIdentifier(value=rep[0], authority=rep[3], type_code=rep[4])
            )
    patient.family_name = pid.get(5, 1)
    patient.given_name = pid.get(5, 2)
    patient.birth_date = pid.get(7)
    for rep in pid.repetitions(13):
        rep = [c.strip() for c in rep] + [""] * 8
        number = rep[0]
        if not number and rep[6]:
            country = rep[4].lstrip("+") or ""
            number = f"{'+' + country if country else ''}{rep[5]}{rep[6]}"
        if number or rep[3]:
            patient.phones.append(
                Phone(number=number, use=rep[1].upper(), equipment=rep[2].upper(), email=rep[3])
            )
    patient.language = pid.get(15, 1) or pid.get(15, 2)
    return patient


def _preferred(segments: list[_Segment]) -> list[_Segment]:
    """Resources being added or kept first; ones being removed (action D) last."""
    return sorted(segments, key=lambda s: s.get(2).upper() == _ACTION_DELETE)


def _providers(aips: list[_Segment], aigs: list[_Segment]) -> list[Resource]:
    found = []
    for aip in _preferred(aips):
        code = aip.get(3, 1)
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
        if code and aig.get(4, 1).upper() not in _NON_PERSON_RESOURCES:
            found.append(Resource(code=code, name=aig.get(3, 2)))
    return found


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


# ---- values --------------------------------------------------------------------------


class BadValue(ValueError):
    """A field is present but cannot be read; the message says which and why."""


def to_datetime(value: str, zone: tzinfo, what: str) -> datetime:
    """An HL7 DTM as an aware UTC datetime; one without an offset is in `zone`."""
    try:
        parsed = parse_datetime(value.strip())
    except (ValueError, TypeError) as exc:
        raise BadValue(
            f"{what} '{value}' is not an HL7 date/time (YYYYMMDDHHMM[SS][±ZZZZ])."
        ) from exc
    if parsed is None:
        raise BadValue(f"{what} is empty.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    # In UTC, so adding a duration means elapsed time, not wall-clock time across DST.
    return parsed.astimezone(UTC)


def to_date(value: str, what: str) -> date:
    digits = value.strip()[:8]
    try:
        return datetime.strptime(digits, "%Y%m%d").date()
    except ValueError as exc:
        raise BadValue(f"{what} '{value}' is not a date (YYYYMMDD).") from exc


_TQ_DURATION = re.compile(r"^([SMHDW]?)(\d+(?:\.\d+)?)$", re.IGNORECASE)


def to_duration(quantity: str, units: str, what: str) -> timedelta:
    """A duration like (15, min), (20, minutes), (1, h), (M15, '') as a timedelta."""
    match = _TQ_DURATION.match(quantity.strip())
    if not match:
        raise BadValue(f"{what} '{quantity}' is not a number.")
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
        raise BadValue(f"{what} unit '{units}' is not understood (use min, h or s).")
    if result <= timedelta(0):
        raise BadValue(f"{what} must be positive.")
    return result
